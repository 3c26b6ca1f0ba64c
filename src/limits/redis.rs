//! The Redis backend (`limits.backend = "redis"`): every per-key limit shared by all replicas.
//!
//! Everything a request needs is one atomic server-side script (`redis.lua`), one round trip:
//! the spend budgets and token room (looked at), a free concurrency slot, the key's request
//! rate and the global rate, in the in-memory backend's order, and all or nothing: a refused
//! request takes nothing (better than memory, where a global refusal spends a key's cell). The
//! script reads the server's clock, so replicas with skewed clocks agree. Same semantics as
//! memory: the rates are GCRA buckets (`burst` refilled at `requests_per_minute`; the global
//! one holds a second's worth), tokens an overdraft bucket debited after the response, spend
//! micro-dollar counters per UTC day and month.
//!
//! Concurrency slots are leases: members of a sorted set scored by their expiry. The [`Permit`]
//! renews its lease every `lease_ttl / 3` while the request is in flight and removes it when
//! dropped; a replica that dies leaves leases that expire after `limits.lease_ttl`.
//!
//! Usage is charged by a second small script, spawned when the response's usage arrives.
//!
//! # When Redis cannot be asked
//! Every call has `limits.backend_timeout`. A check that fails (timeout, no connection, an
//! error reply) is decided by `limits.on_backend_error`: `allow` admits without limits (no
//! slot, no charge), `deny` refuses with 503 and `Retry-After: 1`, `default` denies keys with
//! a spend budget and allows the rest. After a timeout or a lost connection, calls fail at once
//! for [`COOL_DOWN`], so a dead Redis costs requests no waiting; the connection manager
//! reconnects after a dropped connection, a connection that stops answering for
//! [`STALE_AFTER`] is replaced, and the script is loaded again when a restarted Redis has
//! forgotten it (`NOSCRIPT`). A check that timed out may still run later on a slow Redis: its
//! lease is removed right behind it. Failures are logged at most once a second and counted in
//! `orgate_limits_backend_errors_total{kind}`, fallbacks in
//! `orgate_limits_backend_fallbacks_total{decision}`. Charges and lease releases that fail are
//! lost (a lost release frees itself after `lease_ttl`).
//!
//! The keys are listed in `redis.lua`. A key's own keys share its `{id}` hash tag; the global
//! rate's key is apart, so this runs on one Redis or Valkey server (its primary), not on a
//! Redis Cluster.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures_util::future::Either;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};

use super::admission::{Admission, Permit, Refusal};
use super::backend::{CheckFuture, LimitBackend};
use super::headers::{LimitStatus, RateLimitHeaders};
use super::settings::KeyLimits;
use super::spend::to_micros;
use super::tokens::{ChargeUsage, UsageAccount};
use crate::config::{check_redis_url, Config, OnBackendError};
use crate::metrics::Metrics;

/// The server side: checks, charges and lease renewals.
const SCRIPT: &str = include_str!("redis.lua");
const GLOBAL_RATE_KEY: &str = "orgate:global:rate";
/// After a timeout or a lost connection, calls fail at once for this long instead of each
/// waiting out the timeout; then the next call tries again.
const COOL_DOWN: Duration = Duration::from_millis(500);
/// A connection that has not answered for this long while calls time out is replaced.
const STALE_AFTER: Duration = Duration::from_secs(2);
/// At most one warning per this long while Redis fails.
const WARN_EVERY: Duration = Duration::from_secs(1);

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
pub struct RedisBackend {
    shared: Arc<Shared>,
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

#[derive(Debug)]
struct KeyNames {
    rate: String,
    tokens: String,
    leases: String,
    spend: String,
}

impl KeyNames {
    fn new(id: &str) -> Self {
        let base = format!("orgate:{{{id}}}");
        Self {
            rate: format!("{base}:rate"),
            tokens: format!("{base}:tokens"),
            leases: format!("{base}:leases"),
            spend: format!("{base}:spend"),
        }
    }
}

impl KeyEntry {
    fn new(id: &str, limits: KeyLimits, shared: &Arc<Shared>) -> Self {
        let names = Arc::new(KeyNames::new(id));
        let charged = limits.tokens_per_minute > 0 || limits.has_budget();
        let account = charged.then(|| {
            UsageAccount::new(Arc::new(Account {
                shared: Arc::clone(shared),
                names: Arc::clone(&names),
                tokens_per_minute: limits.tokens_per_minute,
            }))
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

/// The connection and what every request and task of this backend shares; kept across
/// reloads while the URL and the timeout stay the same.
struct Shared {
    url: String,
    client: redis::Client,
    /// Connected on first use, then reconnecting on its own after a dropped connection;
    /// replaced when it stops answering altogether (see [`STALE_AFTER`]).
    connection: ArcSwapOption<ConnectionManager>,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
    /// When a call last succeeded (ms since `start`).
    answered_at_ms: AtomicU64,
    script: Script,
    timeout: Duration,
    metrics: Arc<Metrics>,
    /// This process's prefix for lease ids, and their counter.
    replica: String,
    next_lease: AtomicU64,
    start: Instant,
    /// Calls fail at once until then (ms since `start`), after a timeout or a lost connection.
    cool_until_ms: AtomicU64,
    /// Failures since the last warning, and when that was (ms since `start`, +1: 0 = never).
    suppressed: AtomicU64,
    warned_at_ms: AtomicU64,
    failing: AtomicBool,
}

impl fmt::Debug for Shared {
    /// Leaves out the URL and the client: they may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("timeout", &self.timeout)
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

/// Why a call to Redis failed.
#[derive(Debug)]
enum CallError {
    /// It took longer than `backend_timeout`.
    Timeout,
    /// No connection (refused, dropped, cannot reconnect).
    Connection(RedisError),
    /// Redis answered with an error, or with something the script never returns.
    Reply(String),
    /// Cooling down after a recent failure: not tried.
    CoolingDown,
}

impl CallError {
    fn kind(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connection(_) => "connection",
            Self::Reply(_) => "reply",
            Self::CoolingDown => "cooling_down",
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("no answer within limits.backend_timeout"),
            Self::Connection(e) => write!(f, "no connection: {e}"),
            Self::Reply(e) => write!(f, "error reply: {e}"),
            Self::CoolingDown => f.write_str("failed moments ago; not retried yet"),
        }
    }
}

impl From<RedisError> for CallError {
    fn from(e: RedisError) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_unrecoverable_error()
        {
            Self::Connection(e)
        } else {
            Self::Reply(e.to_string())
        }
    }
}

impl Shared {
    fn new(url: String, timeout: Duration, metrics: Arc<Metrics>) -> Result<Self, String> {
        check_redis_url(&url).map_err(|why| format!("limits.redis_url: {why}"))?;
        let client = redis::Client::open(url.as_str())
            .map_err(|e| format!("limits.redis_url: {}", e.detail().unwrap_or("invalid")))?;
        let mut seed = [0u8; 6];
        // Lease ids only need to differ between replicas; a failed read still gives a counter.
        let _ = getrandom::fill(&mut seed);
        Ok(Self {
            url,
            client,
            connection: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            answered_at_ms: AtomicU64::new(0),
            script: Script::new(SCRIPT),
            timeout,
            metrics,
            replica: hex::encode(seed),
            next_lease: AtomicU64::new(0),
            start: Instant::now(),
            cool_until_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            warned_at_ms: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn new_lease_id(&self) -> String {
        let n = self.next_lease.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.replica)
    }

    async fn connection(&self) -> Result<ConnectionManager, RedisError> {
        if let Some(connection) = self.connection.load_full() {
            return Ok(ConnectionManager::clone(&connection));
        }
        let _connecting = self.connecting.lock().await;
        if let Some(connection) = self.connection.load_full() {
            return Ok(ConnectionManager::clone(&connection));
        }
        // One attempt per (re)connection, no backoff of its own: a failed attempt is retried by
        // the next call after COOL_DOWN, so a restarted Redis is found again within a second
        // while a dead one sees a couple of attempts a second. No response timeout either:
        // every call has its own (`guarded`), and a late answer is simply dropped.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_number_of_retries(0);
        let connection = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        self.connection
            .store(Some(Arc::new(ConnectionManager::clone(&connection))));
        Ok(connection)
    }

    /// Runs the script with `invocation`, within the timeout; logs and counts a failure.
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, CallError> {
        self.guarded(async {
            let mut connection = self.connection().await?;
            invocation.invoke_async(&mut connection).await
        })
        .await
    }

    async fn guarded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, CallError> {
        if self.now_ms() < self.cool_until_ms.load(Ordering::Relaxed) {
            return Err(CallError::CoolingDown);
        }
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(CallError::from(e)),
            Err(_elapsed) => Err(CallError::Timeout),
        };
        match &outcome {
            Ok(_) => {
                self.answered_at_ms.store(self.now_ms(), Ordering::Relaxed);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("limits backend (redis) answers again: limits are shared again");
                }
            }
            Err(e) => self.failed(e),
        }
        outcome
    }

    fn failed(&self, error: &CallError) {
        // A connection that was cut is re-established by the connection manager; one that
        // silently stopped answering (a network partition, a replaced host) never is: after
        // STALE_AFTER without an answer, the next call connects afresh.
        if matches!(error, CallError::Timeout)
            && self
                .now_ms()
                .saturating_sub(self.answered_at_ms.load(Ordering::Relaxed))
                >= millis(STALE_AFTER)
            && self.connection.swap(None).is_some()
        {
            tracing::debug!("no answer from Redis for a while: reconnecting");
        }
        if matches!(error, CallError::Timeout | CallError::Connection(_)) {
            self.cool_until_ms.store(
                self.now_ms()
                    .saturating_add(u64::try_from(COOL_DOWN.as_millis()).unwrap_or(500)),
                Ordering::Relaxed,
            );
        }
        self.metrics.limits_backend_error(error.kind());
        self.failing.store(true, Ordering::Relaxed);
        // Warn at most once per WARN_EVERY; count what was left out.
        let now = self.now_ms().saturating_add(1);
        let last = self.warned_at_ms.load(Ordering::Relaxed);
        let every = u64::try_from(WARN_EVERY.as_millis()).unwrap_or(1000);
        if (last == 0 || now.saturating_sub(last) >= every)
            && self
                .warned_at_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            tracing::warn!(
                error = %error,
                kind = error.kind(),
                similar_errors_not_logged = suppressed,
                "limits backend (redis) failed: requests are decided by limits.on_backend_error \
                 until it answers again"
            );
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Extends a lease; `false` when it is lost (expired and its slot taken meanwhile).
    async fn renew(&self, names: &KeyNames, lease: &str, ttl: Duration, max: u64) -> bool {
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(&names.leases)
            .arg("renew")
            .arg(lease)
            .arg(millis(ttl))
            .arg(max);
        matches!(self.run::<i64>(&invocation).await, Ok(1))
    }

    async fn release(&self, names: &KeyNames, lease: &str) {
        let mut command = redis::cmd("ZREM");
        command.arg(&names.leases).arg(lease);
        let _ = self
            .guarded(async {
                let mut connection = self.connection().await?;
                command.query_async::<()>(&mut connection).await
            })
            .await;
    }

    async fn charge(&self, names: &KeyNames, tokens: u64, tokens_per_minute: u64, micros: u64) {
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(&names.tokens)
            .key(&names.spend)
            .arg("charge")
            .arg(tokens)
            .arg(tokens_per_minute)
            .arg(micros);
        if let Err(e) = self.run::<i64>(&invocation).await {
            tracing::debug!(error = %e, tokens, micros, "usage not charged: the limits backend failed");
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn micros_duration(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

impl RedisBackend {
    pub fn new(config: &Config, metrics: &Arc<Metrics>) -> Result<Self, String> {
        let url = redis_url(config)?;
        let shared = Shared::new(url, config.limits.backend_timeout.get(), metrics.clone())?;
        Ok(Self::with_shared(config, Arc::new(shared)))
    }

    fn with_shared(config: &Config, shared: Arc<Shared>) -> Self {
        let keys = config
            .auth
            .keys
            .iter()
            .map(|key| {
                let limits = KeyLimits::for_key(key, &config.limits);
                (
                    Box::from(key.id.as_str()),
                    KeyEntry::new(&key.id, limits, &shared),
                )
            })
            .collect();
        let anonymous = KeyEntry::new(
            crate::config::ANONYMOUS,
            KeyLimits::defaults(&config.limits),
            &shared,
        );
        Self {
            shared,
            keys,
            anonymous,
            global_rps: config.limits.global_requests_per_second,
            lease_ttl: config.limits.lease_ttl.get(),
            on_error: config.limits.on_backend_error,
        }
    }

    /// A check that timed out may still run on a slow Redis and take a lease nobody holds:
    /// remove it. Sent on the same connection, the removal runs after the check if the check
    /// runs at all; should it fail too, the lease expires after `lease_ttl`.
    fn forget_late_lease(&self, names: &Arc<KeyNames>, lease: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (shared, names, patience) =
            (Arc::clone(&self.shared), Arc::clone(names), self.lease_ttl);
        runtime.spawn(async move {
            let mut command = redis::cmd("ZREM");
            command.arg(&names.leases).arg(&lease);
            let removal = async {
                let mut connection = shared.connection().await?;
                command.query_async::<()>(&mut connection).await
            };
            // Not `guarded`: it must go out now, cooling down or not, and may wait longer.
            let _ = tokio::time::timeout(patience, removal).await;
        });
    }

    /// What `on_backend_error` makes of a check Redis could not answer.
    fn fallback(&self, entry: &KeyEntry) -> Result<Admission, Refusal> {
        let deny = match self.on_error {
            OnBackendError::Allow => false,
            OnBackendError::Deny => true,
            OnBackendError::Default => entry.limits.has_budget(),
        };
        if deny {
            self.shared.metrics.limits_backend_fallback("deny");
            Err(Refusal::backend_unavailable())
        } else {
            self.shared.metrics.limits_backend_fallback("allow");
            Ok(unlimited_admission())
        }
    }

    async fn check_remote(&self, key_id: &str, entry: &KeyEntry) -> Result<Admission, Refusal> {
        let limits = &entry.limits;
        let names = &entry.names;
        let lease = (limits.max_concurrent > 0).then(|| self.shared.new_lease_id());
        let burst = limits.burst.clamp(1, u64::from(u32::MAX));
        let mut invocation = self.shared.script.prepare_invoke();
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
        let reply: Vec<i64> = match self.shared.run(&invocation).await {
            Ok(reply) => reply,
            Err(error) => {
                if let (CallError::Timeout, Some(lease)) = (&error, lease) {
                    self.forget_late_lease(names, lease);
                }
                return self.fallback(entry);
            }
        };
        let Ok(verdict) = Verdict::parse(&reply) else {
            self.shared
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
            0 => {}
            1 => {
                let (period, budget) = if verdict.detail == 2 {
                    ("month", limits.usd_per_month)
                } else {
                    ("day", limits.usd_per_day)
                };
                return Err(Refusal::budget(key_id, period, budget, wait, headers));
            }
            2 => {
                return Err(Refusal::tokens(
                    key_id,
                    limits.tokens_per_minute,
                    wait,
                    headers,
                ))
            }
            3 => return Err(Refusal::concurrency(key_id, limits.max_concurrent, headers)),
            4 => {
                let burst = u32::try_from(burst).unwrap_or(u32::MAX);
                return Err(Refusal::requests(
                    key_id,
                    limits.requests_per_minute,
                    burst,
                    wait,
                    headers,
                ));
            }
            _ => return Err(Refusal::global(self.global_rps, wait, headers)),
        }
        let permit = match lease {
            Some(lease) => Permit::from_guard(Lease::hold(
                Arc::clone(&self.shared),
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

/// The check script's answer, read.
#[derive(Debug, PartialEq)]
struct Verdict {
    /// 0 admitted; 1 budget, 2 tokens, 3 concurrency, 4 requests, 5 global.
    code: i64,
    wait: Duration,
    /// For a budget: 1 day, 2 month.
    detail: i64,
    requests: Option<(u64, Duration)>,
    tokens: Option<(u64, Duration)>,
}

impl Verdict {
    fn parse(reply: &[i64]) -> Result<Self, ()> {
        let &[code, wait, detail, req_seen, req_remaining, req_reset, tok_seen, tok_remaining, tok_reset] =
            reply
        else {
            return Err(());
        };
        if !(0..=5).contains(&code) {
            return Err(());
        }
        let status = |seen: i64, remaining: i64, reset: i64| {
            (seen == 1).then(|| {
                (
                    u64::try_from(remaining).unwrap_or(0),
                    micros_duration(reset),
                )
            })
        };
        Ok(Self {
            code,
            wait: micros_duration(wait),
            detail,
            requests: status(req_seen, req_remaining, req_reset),
            tokens: status(tok_seen, tok_remaining, tok_reset),
        })
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

    /// Keeps the connection (the state lives in Redis anyway) unless the URL or the timeout
    /// changed.
    fn carry_over(&self, config: &Config) -> Arc<dyn LimitBackend> {
        let same_connection = redis_url(config).ok().as_deref() == Some(self.shared.url.as_str())
            && config.limits.backend_timeout.get() == self.shared.timeout;
        if !same_connection {
            match RedisBackend::new(config, &self.shared.metrics) {
                Ok(backend) => return Arc::new(backend),
                Err(why) => tracing::error!(
                    problem = %why,
                    "the reloaded Redis settings cannot be used; keeping the current connection"
                ),
            }
        }
        Arc::new(Self::with_shared(config, Arc::clone(&self.shared)))
    }
}

/// A request's concurrency lease: renewed while held, removed when dropped.
#[derive(Debug)]
struct Lease {
    shared: Arc<Shared>,
    names: Arc<KeyNames>,
    id: Arc<str>,
    renewal: Option<tokio::task::JoinHandle<()>>,
}

impl Lease {
    fn hold(
        shared: Arc<Shared>,
        names: Arc<KeyNames>,
        id: String,
        ttl: Duration,
        max: u64,
    ) -> Self {
        let id: Arc<str> = Arc::from(id);
        let renewal = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (shared, names, id) = (Arc::clone(&shared), Arc::clone(&names), Arc::clone(&id));
            runtime.spawn(async move {
                let every = (ttl / 3).max(Duration::from_millis(1));
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if !shared.renew(&names, &id, ttl, max).await {
                        tracing::debug!(lease = %id, "concurrency lease not renewed");
                    }
                }
            })
        });
        Self {
            shared,
            names,
            id,
            renewal,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        // Drop cannot wait: the release is its own task. Without a runtime (the process is
        // ending) the lease expires on its own.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (shared, names, id) = (
                Arc::clone(&self.shared),
                Arc::clone(&self.names),
                Arc::clone(&self.id),
            );
            runtime.spawn(async move { shared.release(&names, &id).await });
        }
    }
}

/// Where one key's usage is charged in Redis.
#[derive(Debug)]
struct Account {
    shared: Arc<Shared>,
    names: Arc<KeyNames>,
    tokens_per_minute: u64,
}

impl ChargeUsage for Account {
    fn charge(&self, tokens: u64, cost_usd: f64) {
        let micros = to_micros(cost_usd);
        let tokens = if self.tokens_per_minute > 0 {
            tokens
        } else {
            0
        };
        if tokens == 0 && micros == 0 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                tokens,
                micros,
                "usage not charged: no runtime to reach Redis"
            );
            return;
        };
        let (shared, names, tpm) = (
            Arc::clone(&self.shared),
            Arc::clone(&self.names),
            self.tokens_per_minute,
        );
        runtime.spawn(async move { shared.charge(&names, tokens, tpm, micros).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_scripts_answer() {
        let verdict = Verdict::parse(&[0, 0, 0, 1, 9, 6_000_000, 0, 0, 0]).unwrap();
        assert_eq!(verdict.code, 0);
        assert_eq!(verdict.requests, Some((9, Duration::from_secs(6))));
        assert_eq!(verdict.tokens, None);
        let verdict = Verdict::parse(&[1, 3_600_000_000, 2, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!((verdict.code, verdict.detail), (1, 2));
        assert_eq!(verdict.wait, Duration::from_secs(3600));
        assert!(Verdict::parse(&[0, 0]).is_err());
        assert!(Verdict::parse(&[9, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn key_names_share_the_ids_hash_tag() {
        let names = KeyNames::new("alice");
        assert_eq!(names.rate, "orgate:{alice}:rate");
        assert_eq!(names.leases, "orgate:{alice}:leases");
        assert_eq!(names.spend, "orgate:{alice}:spend");
    }

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
