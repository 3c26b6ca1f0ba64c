//! The Redis backend (`limits.backend = "redis"`): every per-key limit shared by all replicas.
//!
//! Everything a request needs is one atomic server-side script (`redis.lua`), one round trip:
//! the spend budgets and token room (looked at), a free concurrency slot, the key's request
//! rate and the global rate, in the in-memory backend's order, and all or nothing: a refused
//! request takes nothing (better than memory, where a global refusal spends a key's cell). The
//! check reads the server's clock, so replicas with skewed clocks agree on rates; a charge is
//! filed by the clock of the replica that made it (one kept through an outage must carry its
//! own time), so spend near midnight UTC may land in the day of a skewed replica's clock.
//! Same semantics as
//! memory: the rates are GCRA buckets (`burst` refilled at `requests_per_minute`; the global
//! one holds a second's worth), tokens an overdraft bucket debited after the response, spend
//! micro-dollar counters per UTC day and month.
//!
//! # When Redis cannot be asked
//! A check that fails (timeout, no connection, an error reply, an answer it cannot read) is
//! decided by `limits.on_backend_error`: `allow` admits without limits (no slot; its usage is
//! still charged, through the journal),
//! `deny` refuses with 503 and `Retry-After: 1`, `default` denies keys with a spend budget and
//! allows the rest; each counted in `orgate_limits_backend_fallbacks_total{decision}`.
//! What responses used meanwhile is not lost: it waits in the journal (`ledger`).
//!
//! # Start-up
//! The backend connects once at start ([`LimitBackend::probe`]): a TLS certificate or
//! credentials Redis refuses stop the start (a configuration error no retry mends); a Redis
//! that is merely down does not (`on_backend_error` decides until it answers).
//!
//! # Layout
//! This file decides a request (the check, the fallback, what a reload keeps); the rest each
//! do one job for it:
//! - `connection`: the shared connection, its timeouts, cool-down, reconnection and
//!   rate-limited warnings;
//! - `keys`: the names of a key id's Redis keys;
//! - `verdict`: the check script's answer, read;
//! - `lease`: a concurrency slot held in Redis (renewed while held, removed when dropped);
//! - `account`: where a response's usage is charged;
//! - `journal`: the charges Redis has not taken yet, bounded and coalesced (pure);
//! - `ledger`: the journal's task and file: every charge is journalled, then applied in
//!   batches, each once, and kept while Redis is away (on disk with `limits.state_dir`);
//! - `redis.lua`: the server side of all of them.

mod account;
mod connection;
mod journal;
mod keys;
mod lease;
mod ledger;
mod verdict;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;

use self::account::Account;
use self::connection::{millis, CallError, Connection, ProbeError};
use self::keys::{KeyNames, GLOBAL_RATE_KEY};
use self::lease::{Lease, LeaseIds};
use self::ledger::Ledger;
use self::verdict::{Code, Verdict};
use super::admission::{Admission, Permit, Refusal};
use super::backend::{CheckFuture, LimitBackend, ProbeFuture};
use super::headers::{LimitStatus, RateLimitHeaders};
use super::settings::KeyLimits;
use super::spend::{to_micros, Period};
use super::tokens::UsageAccount;
use crate::config::{Config, OnBackendError};
use crate::metrics::Metrics;

/// The URL `config` names: `limits.redis_url`, else the secret `limits.redis_url_env` names.
fn redis_url(config: &Config) -> Result<String, String> {
    let limits = &config.limits;
    if !limits.redis_url.is_empty() {
        return Ok(limits.redis_url.clone());
    }
    if limits.redis_url_env.is_empty() {
        return Err(
            "limits.backend = \"redis\" needs limits.redis_url or limits.redis_url_env".into(),
        );
    }
    config
        .secrets
        .get(&limits.redis_url_env)
        .map(|url| url.expose().clone())
        .ok_or_else(|| {
            format!(
                "limits.redis_url_env: the Redis URL is missing: set {var} (or {var}_FILE to a \
                 file holding it)",
                var = limits.redis_url_env
            )
        })
}

#[derive(Debug)]
pub(crate) struct RedisBackend {
    connection: Arc<Connection>,
    /// Kept with the connection across reloads, so that ids never repeat.
    lease_ids: Arc<LeaseIds>,
    /// Kept across every reload (its journal too), whatever the connection.
    ledger: Arc<Ledger>,
    keys: HashMap<Box<str>, KeyEntry>,
    anonymous: KeyEntry,
    global_rps: u64,
    lease_ttl: Duration,
    on_error: OnBackendError,
}

/// One key id's limits and the names of its Redis keys.
#[derive(Debug)]
struct KeyEntry {
    limits: KeyLimits,
    names: Arc<KeyNames>,
    /// Where an admitted request's usage is charged, built once with the key: only when a
    /// token limit or a budget applies.
    account: Option<UsageAccount>,
}

impl KeyEntry {
    fn new(
        id: &str,
        limits: KeyLimits,
        connection: &Arc<Connection>,
        ledger: &Arc<Ledger>,
    ) -> Self {
        let names = Arc::new(KeyNames::new(id));
        let charged = limits.tokens_per_minute > 0 || limits.has_budget();
        let account = charged.then(|| {
            UsageAccount::new(Arc::new(Account::new(
                id,
                Arc::clone(ledger),
                Arc::clone(connection),
                Arc::clone(&names),
                limits.tokens_per_minute,
            )))
        });
        Self {
            limits,
            names,
            account,
        }
    }

    /// Nothing to check: no round trip at all.
    fn unlimited(&self, global_rps: u64) -> bool {
        let l = &self.limits;
        global_rps == 0
            && l.requests_per_minute == 0
            && l.max_concurrent == 0
            && l.tokens_per_minute == 0
            && !l.has_budget()
    }
}

impl RedisBackend {
    /// The backend for `config`: checks the URL, does not connect (the first check does).
    pub(crate) fn new(config: &Config, metrics: &Arc<Metrics>) -> Result<Self, String> {
        let connection = Arc::new(Self::connection(config, metrics)?);
        let ledger = Ledger::new(Arc::clone(&connection), &config.limits.state_dir);
        Ok(Self::with_connection(
            config,
            connection,
            Arc::new(LeaseIds::new()),
            ledger,
        ))
    }

    fn connection(config: &Config, metrics: &Arc<Metrics>) -> Result<Connection, String> {
        Connection::new(
            redis_url(config)?,
            &config.limits.redis_ca_file,
            config.limits.backend_timeout.get(),
            Arc::clone(metrics),
        )
    }

    fn with_connection(
        config: &Config,
        connection: Arc<Connection>,
        lease_ids: Arc<LeaseIds>,
        ledger: Arc<Ledger>,
    ) -> Self {
        let keys = config
            .auth
            .keys
            .iter()
            .map(|key| {
                let limits = KeyLimits::for_key(key, &config.limits);
                (
                    Box::from(key.id.as_str()),
                    KeyEntry::new(&key.id, limits, &connection, &ledger),
                )
            })
            .collect();
        let anonymous = KeyEntry::new(
            crate::config::ANONYMOUS,
            KeyLimits::defaults(&config.limits),
            &connection,
            &ledger,
        );
        Self {
            connection,
            lease_ids,
            ledger,
            keys,
            anonymous,
            global_rps: config.limits.global_requests_per_second,
            lease_ttl: config.limits.lease_ttl.get(),
            on_error: config.limits.on_backend_error,
        }
    }

    /// What `on_backend_error` makes of a check Redis could not answer.
    fn fallback(&self, entry: &KeyEntry) -> Result<Admission, Refusal> {
        let deny = match self.on_error {
            OnBackendError::Allow => false,
            OnBackendError::Deny => true,
            OnBackendError::Default => entry.limits.has_budget(),
        };
        if deny {
            self.connection.metrics().limits_backend_fallback("deny");
            Err(Refusal::backend_unavailable())
        } else {
            self.connection.metrics().limits_backend_fallback("allow");
            // Unchecked, but what it uses is still charged: the journal keeps it for Redis.
            Ok(Admission {
                account: entry.account.clone(),
                ..unlimited_admission()
            })
        }
    }

    async fn check_remote(&self, key_id: &str, entry: &KeyEntry) -> Result<Admission, Refusal> {
        let limits = &entry.limits;
        let names = &entry.names;
        let lease = (limits.max_concurrent > 0).then(|| self.lease_ids.next());
        let burst = limits.burst.clamp(1, u64::from(u32::MAX));
        let mut invocation = self.connection.invocation();
        invocation
            .key(&names.rate)
            .key(&names.tokens)
            .key(&names.leases)
            .key(&names.spend)
            .key(GLOBAL_RATE_KEY)
            .arg("check")
            .arg(limits.requests_per_minute)
            .arg(burst)
            .arg(limits.max_concurrent)
            .arg(limits.tokens_per_minute)
            .arg(to_micros(limits.usd_per_day))
            .arg(to_micros(limits.usd_per_month))
            .arg(self.global_rps.min(u64::from(u32::MAX)))
            .arg(millis(self.lease_ttl))
            .arg(lease.as_deref().unwrap_or(""));
        let reply: Vec<i64> = match self.connection.run(&invocation).await {
            Ok(reply) => reply,
            Err(error) => {
                if let (CallError::Timeout, Some(lease)) = (&error, lease) {
                    lease::forget_late(&self.connection, names, lease, self.lease_ttl);
                }
                return self.fallback(entry);
            }
        };
        let Ok(verdict) = Verdict::parse(&reply) else {
            self.connection
                .failed(&CallError::Reply(format!("unexpected answer {reply:?}")));
            return self.fallback(entry);
        };
        let mut headers = RateLimitHeaders::default();
        if let Some((remaining, reset)) = verdict.requests {
            headers.requests = Some(LimitStatus {
                limit: burst,
                remaining,
                reset,
            });
        }
        if let Some((remaining, reset)) = verdict.tokens {
            headers.tokens = Some(LimitStatus {
                limit: limits.tokens_per_minute,
                remaining,
                reset,
            });
        }
        let wait = verdict.wait;
        match verdict.code {
            Code::Admitted => {}
            Code::Budget => {
                // `Verdict::parse` refuses a budget verdict without its period.
                let period = verdict.budget.unwrap_or(Period::Day);
                let budget = match period {
                    Period::Day => limits.usd_per_day,
                    Period::Month => limits.usd_per_month,
                };
                return Err(Refusal::budget(
                    key_id,
                    period.as_str(),
                    budget,
                    wait,
                    headers,
                ));
            }
            Code::Tokens => {
                return Err(Refusal::tokens(
                    key_id,
                    limits.tokens_per_minute,
                    wait,
                    headers,
                ))
            }
            Code::Concurrency => {
                return Err(Refusal::concurrency(key_id, limits.max_concurrent, headers))
            }
            Code::Requests => {
                let burst = u32::try_from(burst).unwrap_or(u32::MAX);
                return Err(Refusal::requests(
                    key_id,
                    limits.requests_per_minute,
                    burst,
                    wait,
                    headers,
                ));
            }
            Code::Global => return Err(Refusal::global(self.global_rps, wait, headers)),
        }
        let permit = match lease {
            Some(lease) => Permit::from_guard(Lease::hold(
                Arc::clone(&self.connection),
                Arc::clone(names),
                lease,
                self.lease_ttl,
                limits.max_concurrent,
            )),
            None => Permit::unlimited(),
        };
        Ok(Admission {
            permit,
            headers,
            account: entry.account.clone(),
        })
    }
}

fn unlimited_admission() -> Admission {
    Admission {
        permit: Permit::unlimited(),
        headers: RateLimitHeaders::default(),
        account: None,
    }
}

impl LimitBackend for RedisBackend {
    fn check<'a>(&'a self, key_id: &'a str) -> CheckFuture<'a> {
        let entry = self.keys.get(key_id).unwrap_or(&self.anonymous);
        if entry.unlimited(self.global_rps) {
            return Either::Left(std::future::ready(Ok(unlimited_admission())));
        }
        Either::Right(Box::pin(self.check_remote(key_id, entry)))
    }

    /// Keeps the connection (the state lives in Redis anyway) unless the URL, the CA file or
    /// the timeout changed; keeps the journal always.
    fn carry_over(&self, config: &Config) -> Arc<dyn LimitBackend> {
        let limits = &config.limits;
        let same_connection = redis_url(config).is_ok_and(|url| {
            self.connection
                .is_for(&url, &limits.redis_ca_file, limits.backend_timeout.get())
        });
        let (connection, lease_ids) = if same_connection {
            (Arc::clone(&self.connection), Arc::clone(&self.lease_ids))
        } else {
            match Self::connection(config, self.connection.metrics()) {
                Ok(connection) => {
                    let connection = Arc::new(connection);
                    self.ledger.use_connection(Arc::clone(&connection));
                    (connection, Arc::new(LeaseIds::new()))
                }
                Err(why) => {
                    tracing::error!(
                        problem = %why,
                        "the reloaded Redis settings cannot be used; keeping the current connection"
                    );
                    (Arc::clone(&self.connection), Arc::clone(&self.lease_ids))
                }
            }
        };
        Arc::new(Self::with_connection(
            config,
            connection,
            lease_ids,
            Arc::clone(&self.ledger),
        ))
    }

    /// The journal, with `state_dir`.
    fn persist(&self) -> std::io::Result<()> {
        self.ledger.persist()
    }

    fn drain(&self, within: Duration) -> futures_util::future::BoxFuture<'_, bool> {
        Box::pin(self.ledger.drain(within))
    }

    fn probe(&self, within: Duration) -> ProbeFuture<'_> {
        Box::pin(async move { probe_answer(self.connection.probe(within).await) })
    }
}

/// What `orgate check` asks: one connection with `config`'s settings, apart from any backend
/// (no journal is loaded, none applied: a running replica may own it). As
/// [`LimitBackend::probe`] answers.
pub(super) async fn probe(config: &Config, within: Duration) -> Result<Option<String>, String> {
    let connection = RedisBackend::connection(config, &Arc::new(Metrics::new()))?;
    probe_answer(connection.probe(within).await)
}

fn probe_answer(probed: Result<(), ProbeError>) -> Result<Option<String>, String> {
    match probed {
        Ok(()) => Ok(None),
        Err(ProbeError::Refused(why)) => Err(why),
        Err(ProbeError::Unreachable(why)) => Ok(Some(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_comes_from_the_file_else_the_secret() {
        let metrics = Arc::new(Metrics::new());
        let mut config = Config::default();
        config.limits.backend = crate::config::LimitsBackend::Redis;
        config.limits.redis_url_env = "REDIS_URL".into();
        let why = RedisBackend::new(&config, &metrics).unwrap_err();
        assert!(why.contains("set REDIS_URL (or REDIS_URL_FILE"), "{why}");
        config.secrets.insert("REDIS_URL", "redis://127.0.0.1:1");
        assert_eq!(redis_url(&config).unwrap(), "redis://127.0.0.1:1");
        config.limits.redis_url = "redis://10.0.0.1".into();
        assert_eq!(redis_url(&config).unwrap(), "redis://10.0.0.1");
    }

    #[test]
    fn debug_output_hides_the_url() {
        let metrics = Arc::new(Metrics::new());
        let mut config = Config::default();
        config.limits.backend = crate::config::LimitsBackend::Redis;
        config.limits.redis_url = "redis://:hunter2@127.0.0.1:1".into();
        let backend = RedisBackend::new(&config, &metrics).unwrap();
        let debug = format!("{backend:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
