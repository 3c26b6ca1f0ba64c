//! Where the counters live. In memory today ([`MemoryBackend`](super::MemoryBackend)); a shared
//! store (Redis, for many replicas) implements the same few operations later.
//!
//! The three operations a request needs are spread over three small seams, so the hot path
//! makes one dynamic call and no lookups after it:
//! - check and admit: [`LimitBackend::check`];
//! - release the concurrency slot: dropping the [`Permit`](super::Permit) the admission holds
//!   (another backend builds it with `Permit::from_guard`);
//! - debit tokens: the [`TokenAccount`](super::TokenAccount) the admission carries, over any
//!   [`DebitTokens`](super::DebitTokens).

use std::fmt;
use std::sync::Arc;

use super::admission::{Admission, Refusal};
use crate::config::Config;

pub trait LimitBackend: Send + Sync + fmt::Debug {
    /// Admits one request of `key_id` (a configured key id, or `anonymous`) or says which limit
    /// refuses it. Never waits. An id the backend does not know gets `anonymous`'s limits.
    fn check(&self, key_id: &str) -> Result<Admission, Refusal>;

    /// The backend for a reloaded `config`, keeping the state of every limit whose values did
    /// not change, so that a reload cannot reset a client's budget.
    fn carry_over(&self, config: &Config) -> Arc<dyn LimitBackend>;
}
