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
//!   [`ChargeUsage`](super::ChargeUsage).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::admission::{Admission, Refusal};
use crate::config::Config;

pub trait LimitBackend: Send + Sync + fmt::Debug {
    /// Admits one request of `key_id` (a configured key id, or `anonymous`) or says which limit
    /// refuses it. An id the backend does not know gets `anonymous`'s limits. The in-memory
    /// backend answers at once ([`CheckFuture::Ready`], no allocation); a shared store answers
    /// after one round trip.
    fn check<'a>(&'a self, key_id: &'a str) -> CheckFuture<'a>;

    /// The backend for a reloaded `config`, keeping the state of every limit whose values did
    /// not change, so that a reload cannot reset a client's budget.
    fn carry_over(&self, config: &Config) -> Arc<dyn LimitBackend>;

    /// Writes what must survive a restart (spend), where the backend keeps it locally.
    fn persist(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A check's answer: ready at once, or after I/O.
pub enum CheckFuture<'a> {
    Ready(Option<Result<Admission, Refusal>>),
    Pending(Pin<Box<dyn Future<Output = Result<Admission, Refusal>> + Send + 'a>>),
}

impl fmt::Debug for CheckFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ready(_) => "CheckFuture::Ready",
            Self::Pending(_) => "CheckFuture::Pending",
        })
    }
}

impl CheckFuture<'_> {
    /// The answer of a backend that needed no I/O (the in-memory one); `None` for a pending one.
    pub fn ready(self) -> Option<Result<Admission, Refusal>> {
        match self {
            Self::Ready(answer) => answer,
            Self::Pending(_) => None,
        }
    }
}

impl Future for CheckFuture<'_> {
    type Output = Result<Admission, Refusal>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Ready(answer) => match answer.take() {
                Some(answer) => Poll::Ready(answer),
                None => Poll::Pending,
            },
            Self::Pending(future) => future.as_mut().poll(cx),
        }
    }
}
