//! The one connection to Redis that every check, charge and lease of the backend shares, and
//! how its failures are met.
//!
//! It is its own module because failure handling is a job apart from deciding requests: every
//! call gets `limits.backend_timeout`; after a timeout or a lost connection, calls fail at once
//! for [`COOL_DOWN`], so a dead Redis costs requests no waiting. The connection manager
//! reconnects after a dropped connection; a connection that stops answering for
//! [`STALE_AFTER`] is replaced; the script is loaded again when a restarted Redis has forgotten
//! it (`NOSCRIPT`). Failures are logged at most once per [`WARN_EVERY`] (with a count of those
//! left out) and counted in `orgate_limits_backend_errors_total{kind}`. What a failed call
//! means for the request is the caller's to decide (`limits.on_backend_error`).

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script, ScriptInvocation};

use crate::config::{check_redis_url, read_ca_file, redis_client};
use crate::metrics::Metrics;

/// The server side: checks, charges and lease renewals.
const SCRIPT: &str = include_str!("redis.lua");
/// After a timeout or a lost connection, calls fail at once for this long instead of each
/// waiting out the timeout; then the next call tries again.
const COOL_DOWN: Duration = Duration::from_millis(500);
/// A connection that has not answered for this long while calls time out is replaced.
const STALE_AFTER: Duration = Duration::from_secs(2);
/// At most one warning per this long while Redis fails.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// The connection and what every request and task of this backend shares; kept across
/// reloads while the URL and the timeout stay the same.
pub(super) struct Connection {
    url: String,
    /// `limits.redis_ca_file` (`""`: the system roots).
    ca_file: String,
    client: redis::Client,
    /// Connected on first use, then reconnecting on its own after a dropped connection;
    /// replaced when it stops answering altogether (see [`STALE_AFTER`]).
    manager: ArcSwapOption<ConnectionManager>,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
    /// When a call last succeeded (ms since `start`).
    answered_at_ms: AtomicU64,
    script: Script,
    timeout: Duration,
    metrics: Arc<Metrics>,
    start: Instant,
    /// Calls fail at once until then (ms since `start`), after a timeout or a lost connection.
    cool_until_ms: AtomicU64,
    /// Failures since the last warning, and when that was (ms since `start`, +1: 0 = never).
    suppressed: AtomicU64,
    warned_at_ms: AtomicU64,
    failing: AtomicBool,
}

impl fmt::Debug for Connection {
    /// Leaves out the URL and the client: they may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why a call to Redis failed.
#[derive(Debug)]
pub(super) enum CallError {
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

impl Connection {
    /// Checks the URL; does not connect (that waits for the first call).
    pub(super) fn new(
        url: String,
        ca_file: &str,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        check_redis_url(&url).map_err(|why| format!("limits.redis_url: {why}"))?;
        let ca = if ca_file.is_empty() {
            None
        } else {
            Some(read_ca_file(ca_file).map_err(|why| format!("limits.redis_ca_file: {why}"))?)
        };
        let client = redis_client(&url, ca).map_err(|why| format!("limits.redis_url: {why}"))?;
        Ok(Self {
            url,
            ca_file: ca_file.to_owned(),
            client,
            manager: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            answered_at_ms: AtomicU64::new(0),
            script: Script::new(SCRIPT),
            timeout,
            metrics,
            start: Instant::now(),
            cool_until_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            warned_at_ms: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        })
    }

    /// Whether this is the connection a reload naming `url`, `ca_file` and `timeout` would
    /// open.
    pub(super) fn is_for(&self, url: &str, ca_file: &str, timeout: Duration) -> bool {
        self.url == url && self.ca_file == ca_file && self.timeout == timeout
    }

    pub(super) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A call of the script, to fill with keys and arguments and give to [`Self::run`].
    pub(super) fn invocation(&self) -> ScriptInvocation<'_> {
        self.script.prepare_invoke()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The connection, connecting first if there is none. Not [`guarded`](Self::guarded):
    /// callers that want the timeout and the failure accounting go through `run` or `guarded`.
    pub(super) async fn manager(&self) -> Result<ConnectionManager, RedisError> {
        if let Some(manager) = self.manager.load_full() {
            return Ok(ConnectionManager::clone(&manager));
        }
        let _connecting = self.connecting.lock().await;
        if let Some(manager) = self.manager.load_full() {
            return Ok(ConnectionManager::clone(&manager));
        }
        // One attempt per (re)connection, no backoff of its own: a failed attempt is retried by
        // the next call after COOL_DOWN, so a restarted Redis is found again within a second
        // while a dead one sees a couple of attempts a second. No response timeout either:
        // every call has its own (`guarded`), and a late answer is simply dropped.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_number_of_retries(0);
        let manager = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        self.manager
            .store(Some(Arc::new(ConnectionManager::clone(&manager))));
        Ok(manager)
    }

    /// Runs the script with `invocation`, within the timeout; logs and counts a failure.
    pub(super) async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, CallError> {
        self.guarded(async {
            let mut manager = self.manager().await?;
            invocation.invoke_async(&mut manager).await
        })
        .await
    }

    /// Runs `call` within the timeout, unless cooling down; logs and counts a failure.
    pub(super) async fn guarded<T>(
        &self,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, CallError> {
        if self.now_ms() < self.cool_until_ms.load(Ordering::Relaxed) {
            return Err(CallError::CoolingDown);
        }
        let sent = Instant::now();
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => {
                self.metrics.limits_backend_round_trip(sent.elapsed());
                Ok(value)
            }
            Ok(Err(e)) => Err(CallError::from(e)),
            Err(_elapsed) => Err(CallError::Timeout),
        };
        match &outcome {
            Ok(_) => {
                self.answered_at_ms.store(self.now_ms(), Ordering::Relaxed);
                self.metrics.limits_backend_up(true);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("limits backend (redis) answers again: limits are shared again");
                }
            }
            Err(e) => self.failed(e),
        }
        outcome
    }

    /// Counts and (rate-limited) logs a failed call; cools down after a timeout or a lost
    /// connection, and drops a connection that stopped answering.
    pub(super) fn failed(&self, error: &CallError) {
        // A connection that was cut is re-established by the connection manager; one that
        // silently stopped answering (a network partition, a replaced host) never is: after
        // STALE_AFTER without an answer, the next call connects afresh.
        if matches!(error, CallError::Timeout)
            && self
                .now_ms()
                .saturating_sub(self.answered_at_ms.load(Ordering::Relaxed))
                >= millis(STALE_AFTER)
            && self.manager.swap(None).is_some()
        {
            tracing::debug!("no answer from Redis for a while: reconnecting");
        }
        if matches!(error, CallError::Timeout | CallError::Connection(_)) {
            self.metrics.limits_backend_up(false);
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
}

/// `d` in whole milliseconds, at least 1: what the script's `PEXPIRE`s and lease scores take.
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Why a first connection failed.
#[derive(Debug)]
pub(super) enum ProbeError {
    /// No retry mends it: the TLS certificate or the credentials were refused.
    Refused(String),
    /// Not now: Redis is down or out of reach; `on_backend_error` decides meanwhile.
    Unreachable(String),
}

impl Connection {
    /// Connects once, apart from the shared connection, and sends PING, within `within`: what
    /// the start-up and `orgate check` ask. Messages name the key to fix, never the URL.
    pub(super) async fn probe(&self, within: Duration) -> Result<(), ProbeError> {
        let ping = async {
            let mut connection = self.client.get_multiplexed_async_connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        };
        let answered = tokio::time::timeout(within, ping).await;
        self.metrics
            .limits_backend_up(matches!(answered, Ok(Ok(_))));
        let error = match answered {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => {
                return Err(ProbeError::Unreachable(format!(
                    "no answer within {}",
                    humantime::format_duration(within)
                )))
            }
        };
        let tls = crate::config::is_tls_url(&self.url);
        let handshake = tls
            && error.kind() == redis::ErrorKind::IoError
            && std::error::Error::source(&error)
                .and_then(|source| source.downcast_ref::<std::io::Error>())
                .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData);
        if handshake {
            let trusted = if self.ca_file.is_empty() {
                "the system roots (set limits.redis_ca_file to trust a private CA)".to_owned()
            } else {
                format!(
                    "the system roots and limits.redis_ca_file ({})",
                    self.ca_file
                )
            };
            return Err(ProbeError::Refused(format!(
                "limits.redis_url: TLS certificate verification failed: {error}; the server's \
                 certificate is checked against {trusted}"
            )));
        }
        if error.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(error.code(), Some("NOAUTH" | "WRONGPASS"))
        {
            return Err(ProbeError::Refused(format!(
                "limits.redis_url: Redis refused the credentials (user name and password in the \
                 URL, or in limits.redis_url_env): {}",
                error.code().unwrap_or("authentication failed")
            )));
        }
        Err(ProbeError::Unreachable(error.to_string()))
    }
}
