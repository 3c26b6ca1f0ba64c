//! Per-key limits: request rate, requests in flight, tokens per minute, and a gateway-wide rate.
//!
//! The gate ([`crate::gate::admit`]) calls [`Limits::check`] once per request, with the key id auth found
//! (or `anonymous`). A `Refusal` becomes the 429 (`GatewayError::from`, or `into_response`
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
//! - `backend`: the trait a backend implements; `memory`: the in-memory one; `redis/`: the one
//!   shared by every replica (`limits.backend = "redis"`), its server side in `redis/redis.lua`.

mod admission;
mod backend;
mod concurrency;
mod headers;
mod memory;
mod rate;
mod redis;
mod settings;
mod spend;
mod store;
mod tokens;

use std::sync::Arc;

use crate::config::{Config, LimitsBackend};
use crate::metrics::Metrics;

pub use headers::format_reset;

pub(crate) use admission::{Admission, LimitKind, Permit};
pub(crate) use backend::CheckFuture;
pub(crate) use headers::RateLimitHeaders;
pub(crate) use settings::KeyLimits;
pub(crate) use tokens::UsageAccount;

use backend::LimitBackend;
use memory::MemoryBackend;
use redis::RedisBackend;

/// The limits of every key, behind the backend that keeps their counters. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Limits {
    backend: Arc<dyn LimitBackend>,
    kind: LimitsBackend,
    /// Where a backend counts its own failures; kept for the backends of reloads.
    metrics: Arc<Metrics>,
}

impl Limits {
    /// The limiters for every key in `config.auth.keys` and for `anonymous`, built once, in the
    /// backend `limits.backend` names. Fails only when the Redis URL is missing or invalid;
    /// Redis itself is not contacted until the first request.
    pub fn build(config: &Config, metrics: &Arc<Metrics>) -> Result<Limits, String> {
        let backend: Arc<dyn LimitBackend> = match config.limits.backend {
            LimitsBackend::Memory => Arc::new(MemoryBackend::new(config)),
            LimitsBackend::Redis => Arc::new(RedisBackend::new(config, metrics)?),
        };
        Ok(Limits {
            backend,
            kind: config.limits.backend,
            metrics: Arc::clone(metrics),
        })
    }

    /// Limits over any backend (tests, on a fake clock).
    #[cfg(test)]
    fn with_backend(backend: Arc<dyn LimitBackend>) -> Limits {
        Limits {
            backend,
            kind: LimitsBackend::Memory,
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// Admits one request of `key_id` or refuses it. In memory it answers at once and takes
    /// no lock; the Redis backend makes one round trip.
    pub fn check<'a>(&'a self, key_id: &'a str) -> CheckFuture<'a> {
        self.backend.check(key_id)
    }

    /// Reaches the shared store (Redis) once, within `within`: `Err` when it refuses the TLS
    /// certificate or the credentials (the start stops), `Ok(Some(why))` when it is out of reach
    /// for now, `Ok(None)` when it answered or the backend is memory.
    pub async fn probe(&self, within: std::time::Duration) -> Result<Option<String>, String> {
        self.backend.probe(within).await
    }

    /// `orgate check`: reaches the shared store `config` names once, as [`Limits::probe`] does,
    /// without building the limits (a replica's journal is neither loaded nor applied).
    pub async fn probe_config(
        config: &Config,
        within: std::time::Duration,
    ) -> Result<Option<String>, String> {
        match config.limits.backend {
            LimitsBackend::Memory => Ok(None),
            LimitsBackend::Redis => redis::probe(config, within).await,
        }
    }

    /// Hands the shared store (Redis) the charges it has not taken yet, within `within`: the
    /// last responses of a shutdown. Whether nothing is left behind.
    pub async fn drain(&self, within: std::time::Duration) -> bool {
        self.backend.drain(within).await
    }

    /// Saves what must survive a restart (the memory backend's spend, with `state_dir`).
    pub fn persist(&self) -> std::io::Result<()> {
        self.backend.persist()
    }

    /// The limits for a reloaded `new_config`. In memory, every limit of a key id whose values
    /// did not change keeps its state (rate cells, slots in flight, token debt); a changed one
    /// starts afresh, and requests still in flight under a replaced concurrency limit are not
    /// counted by the new one. The Redis backend keeps its connection, and its state lives in
    /// Redis. A reload that switches `limits.backend` starts the new backend afresh.
    pub fn carry_over(&self, new_config: &Config) -> Result<Limits, String> {
        if new_config.limits.backend != self.kind {
            tracing::warn!(
                backend = ?new_config.limits.backend,
                "limits.backend changed: limits start afresh in the new backend"
            );
            return Self::build(new_config, &self.metrics);
        }
        Ok(Limits {
            backend: self.backend.carry_over(new_config),
            kind: self.kind,
            metrics: Arc::clone(&self.metrics),
        })
    }
}

#[cfg(test)]
mod tests;
