//! Per-key limits: request rate, requests in flight, tokens per minute, and a gateway-wide rate.
//!
//! The limits middleware calls [`Limits::check`] once per request, with the key id auth found
//! (or `anonymous`). A [`Refusal`] becomes the 429 (`GatewayError::from`, or `into_response`
//! for the headers too). An [`Admission`] holds the request's concurrency [`Permit`] (keep it
//! until the response body ends: dropping it releases the slot), the [`RateLimitHeaders`] for
//! the response, and a [`UsageAccount`] to debit the tokens the response reports
//! ([`crate::usage::Usage`], or an estimate when a stream ends without usage).
//!
//! # Layout
//! - `settings`: a key's limit values, its overrides laid over `[limits]`;
//! - `rate`: requests per minute with a burst (and the global requests per second), governor;
//! - `concurrency`: requests in flight, a semaphore;
//! - `tokens`: tokens per minute, an overdraft bucket debited after the response;
//! - `headers`: the `x-ratelimit-*` headers;
//! - `admission`: what a check returns, and the 429;
//! - `backend`: the trait a shared store would implement; `memory`: the in-memory one;
//! - `middleware`: the layer that checks each request and holds its permit.

mod admission;
mod backend;
mod concurrency;
mod headers;
mod memory;
mod middleware;
mod rate;
mod settings;
mod spend;
mod store;
mod tokens;

use std::sync::Arc;

use crate::config::{Config, LimitsBackend};

pub use crate::auth::ANONYMOUS;
pub use admission::{Admission, LimitKind, Permit, Refusal};
pub use backend::{CheckFuture, LimitBackend};
pub use headers::{format_reset, LimitStatus, RateLimitHeaders};
pub use memory::{LimitClock, MemoryBackend};
pub use middleware::enforce;
pub use settings::KeyLimits;
pub use spend::Period as BudgetPeriod;
pub use tokens::{ChargeUsage, UsageAccount};

/// The limits of every key, behind the backend that keeps their counters. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Limits {
    backend: Arc<dyn LimitBackend>,
}

impl Limits {
    /// The limiters for every key in `config.auth.keys` and for `anonymous`, built once.
    pub fn build(config: &Config) -> Limits {
        if config.limits.backend == LimitsBackend::Redis {
            tracing::warn!(
                "limits.backend = \"redis\" is not available yet: limits are kept in memory, \
                 per replica"
            );
        }
        Self::with_backend(Arc::new(MemoryBackend::new(config)))
    }

    pub fn with_backend(backend: Arc<dyn LimitBackend>) -> Limits {
        Limits { backend }
    }

    /// Admits one request of `key_id` or refuses it. In memory it answers at once and takes
    /// no lock; a shared backend makes one round trip.
    pub fn check<'a>(&'a self, key_id: &'a str) -> CheckFuture<'a> {
        self.backend.check(key_id)
    }

    /// Saves what must survive a restart (the memory backend's spend, with `state_dir`).
    pub fn persist(&self) -> std::io::Result<()> {
        self.backend.persist()
    }

    /// The limits for a reloaded `new_config`. Every limit of a key id whose values did not
    /// change keeps its state (rate cells, slots in flight, token debt); a changed one starts
    /// afresh, and requests still in flight under a replaced concurrency limit are not counted
    /// by the new one.
    pub fn carry_over(&self, new_config: &Config) -> Limits {
        Self::with_backend(self.backend.carry_over(new_config))
    }
}

#[cfg(test)]
mod tests;
