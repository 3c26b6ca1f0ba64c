//! Where the counters live: in memory ([`MemoryBackend`](super::MemoryBackend)), or in Redis,
//! shared by every replica ([`RedisBackend`](super::RedisBackend)), behind the same few
//! operations.
//!
//! The three operations a request needs are spread over three small seams, so the hot path
//! makes one dynamic call and no lookups after it:
//! - check and admit: [`LimitBackend::check`];
//! - release the concurrency slot: dropping the [`Permit`](super::Permit) the admission holds
//!   (another backend builds it with `Permit::from_guard`);
//! - debit tokens: the [`UsageAccount`](super::UsageAccount) the admission carries, over any
//!   [`ChargeUsage`](super::tokens::ChargeUsage).

use std::fmt;
use std::future::Ready;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, Either};

use super::admission::{Admission, Refusal};
use crate::config::Config;

pub(crate) trait LimitBackend: Send + Sync + fmt::Debug {
    /// Admits one request of `key_id` (a configured key id, or `anonymous`) or says which limit
    /// refuses it. An id the backend does not know gets `anonymous`'s limits. The in-memory
    /// backend answers at once (a ready future, no allocation); a shared store answers after one
    /// round trip.
    fn check<'a>(&'a self, key_id: &'a str) -> CheckFuture<'a>;

    /// The backend for a reloaded `config`, keeping the state of every limit whose values did
    /// not change, so that a reload cannot reset a client's budget.
    fn carry_over(&self, config: &Config) -> Arc<dyn LimitBackend>;

    /// Writes what must survive a restart (spend), where the backend keeps it locally.
    fn persist(&self) -> std::io::Result<()> {
        Ok(())
    }

    /// Hands the shared store what it has not taken yet, within `within` (at shutdown):
    /// whether nothing is left behind.
    fn drain(&self, _within: Duration) -> BoxFuture<'_, bool> {
        Box::pin(std::future::ready(true))
    }

    /// Reaches the shared store once, within `within`: `Err` for what stops a start (a
    /// certificate or credentials refused), `Ok(Some(why))` when it is merely out of reach,
    /// `Ok(None)` when it answered or there is none.
    fn probe(&self, _within: Duration) -> ProbeFuture<'_> {
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// A probe's answer (see [`LimitBackend::probe`]).
pub(crate) type ProbeFuture<'a> = BoxFuture<'a, Result<Option<String>, String>>;

/// A check's answer: [`Either::Left`] when the backend needed no I/O (the in-memory one: a
/// [`Ready`], no allocation), [`Either::Right`] when it waits for a shared store's round trip.
/// A caller that knows its backend answers at once can take the answer with
/// [`FutureExt::now_or_never`](futures_util::FutureExt::now_or_never).
pub(crate) type CheckFuture<'a> =
    Either<Ready<Result<Admission, Refusal>>, BoxFuture<'a, Result<Admission, Refusal>>>;
