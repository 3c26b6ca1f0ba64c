//! The outcome of a limit check: an admission that holds what the request took, or a refusal
//! that says which limit refused it and when to come back.

use std::any::Any;
use std::fmt;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use tokio::sync::OwnedSemaphorePermit;

use super::headers::RateLimitHeaders;
use super::tokens::UsageAccount;
use crate::error::{retry_after_secs, ErrorShape, GatewayError};

/// A request that may go on. Keep `permit` alive until the response body ends; write `headers`
/// on the response; debit the reported usage through `tokens`.
#[derive(Debug)]
#[must_use = "dropping the admission releases its concurrency slot at once"]
pub struct Admission {
    pub permit: Permit,
    pub headers: RateLimitHeaders,
    /// Where the response's usage is charged, when the key has a token limit or a budget.
    pub account: Option<UsageAccount>,
}

/// A request's concurrency slot; dropping it releases the slot. Its fields are only held for
/// their `Drop`.
#[must_use = "dropping the permit releases the concurrency slot"]
pub struct Permit {
    /// A slot of the in-memory semaphore.
    slot: Option<OwnedSemaphorePermit>,
    /// Another backend's slot, released by the guard's own `Drop`.
    guard: Option<Box<dyn Any + Send + Sync>>,
}

impl Permit {
    /// A permit that holds nothing: the key has no concurrency limit.
    pub(crate) fn unlimited() -> Self {
        Self {
            slot: None,
            guard: None,
        }
    }

    /// A permit for another backend: dropping `guard` must release the slot.
    pub(crate) fn from_guard(guard: impl Any + Send + Sync) -> Self {
        Self {
            slot: None,
            guard: Some(Box::new(guard)),
        }
    }

    pub(crate) fn slot(permit: OwnedSemaphorePermit) -> Self {
        Self {
            slot: Some(permit),
            guard: None,
        }
    }

    /// Whether a concurrency slot is held (false when the key has no concurrency limit).
    pub(crate) fn holds_slot(&self) -> bool {
        self.slot.is_some() || self.guard.is_some()
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("holds_slot", &self.holds_slot())
            .finish()
    }
}

/// Which limit refused a request; `as_str` is the `limit` label of `orgate_ratelimited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Requests,
    Concurrency,
    Tokens,
    Budget,
    Global,
    /// Not a limit: the shared limits backend could not be asked and `on_backend_error` refused.
    /// A 503, not a 429, and not counted in `orgate_ratelimited_total`.
    Backend,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Concurrency => "concurrency",
            Self::Tokens => "tokens",
            Self::Budget => "budget",
            Self::Global => "global",
            Self::Backend => "backend",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request: 429 with `Retry-After`, the message naming the limit, and the headers.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub limit: LimitKind,
    pub retry_after: Duration,
    pub message: String,
    pub headers: RateLimitHeaders,
}

/// A client that finds all its slots taken cannot be told when one frees; one second is the
/// shortest `Retry-After` there is.
const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);

impl Refusal {
    pub(crate) fn requests(
        key_id: &str,
        per_minute: u64,
        burst: u32,
        wait: Duration,
        headers: RateLimitHeaders,
    ) -> Self {
        Self {
            limit: LimitKind::Requests,
            retry_after: wait,
            message: format!(
                "rate limit exceeded for key {key_id:?}: {per_minute} requests per minute \
                 (burst {burst}); retry in {}s",
                retry_after_secs(wait)
            ),
            headers,
        }
    }

    pub(crate) fn concurrency(key_id: &str, max: u64, headers: RateLimitHeaders) -> Self {
        Self {
            limit: LimitKind::Concurrency,
            retry_after: CONCURRENCY_RETRY,
            message: format!(
                "concurrency limit exceeded for key {key_id:?}: at most {max} requests in flight; \
                 retry when one finishes"
            ),
            headers,
        }
    }

    pub(crate) fn tokens(
        key_id: &str,
        per_minute: u64,
        wait: Duration,
        headers: RateLimitHeaders,
    ) -> Self {
        Self {
            limit: LimitKind::Tokens,
            retry_after: wait,
            message: format!(
                "token limit exceeded for key {key_id:?}: {per_minute} tokens per minute; \
                 retry in {}s",
                retry_after_secs(wait)
            ),
            headers,
        }
    }

    /// A spend budget is used up until its UTC period rolls over.
    pub(crate) fn budget(
        key_id: &str,
        period: &str,
        budget_usd: f64,
        retry_after: Duration,
        headers: RateLimitHeaders,
    ) -> Self {
        let renews = humantime::format_duration(Duration::from_secs(retry_after_secs(retry_after)));
        Self {
            limit: LimitKind::Budget,
            retry_after,
            message: format!(
                "spend budget exhausted for key {key_id:?}: ${budget_usd} per {period} (UTC); renews in {renews}"
            ),
            headers,
        }
    }

    pub(crate) fn global(per_second: u64, wait: Duration, headers: RateLimitHeaders) -> Self {
        Self {
            limit: LimitKind::Global,
            retry_after: wait,
            message: format!(
                "gateway-wide rate limit exceeded: {per_second} requests per second; retry in {}s",
                retry_after_secs(wait)
            ),
            headers,
        }
    }

    /// The limits backend cannot be reached and `limits.on_backend_error` refuses: a 503 with
    /// `Retry-After: 1` (`GatewayError::LimitsUnavailable`).
    pub(crate) fn backend_unavailable() -> Self {
        Self {
            limit: LimitKind::Backend,
            retry_after: Duration::from_secs(1),
            message: GatewayError::LimitsUnavailable.to_string(),
            headers: RateLimitHeaders::default(),
        }
    }
}

impl From<Refusal> for GatewayError {
    /// The 429 itself (503 when the limits backend is unavailable); the rate-limit headers are
    /// the caller's to add (or use `into_response`).
    fn from(refusal: Refusal) -> Self {
        match refusal.limit {
            LimitKind::Backend => GatewayError::LimitsUnavailable,
            _ => GatewayError::RateLimited {
                message: refusal.message,
                retry_after: refusal.retry_after,
            },
        }
    }
}

impl Refusal {
    /// The gateway's 429 with `Retry-After` and this refusal's rate-limit headers, its body in
    /// `shape`.
    pub(crate) fn respond(self, shape: ErrorShape) -> Response {
        let headers = self.headers;
        let mut response = GatewayError::from(self).respond(shape);
        headers.write_to(response.headers_mut());
        response
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        self.respond(ErrorShape::OpenRouter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::headers::LimitStatus;
    use http::StatusCode;

    #[test]
    fn a_refusal_is_a_429_naming_the_limit() {
        let headers = RateLimitHeaders {
            requests: Some(LimitStatus {
                limit: 3,
                remaining: 0,
                reset: Duration::from_secs(60),
            }),
            tokens: None,
        };
        let refusal = Refusal::requests("alice", 3, 3, Duration::from_millis(19_500), headers);
        assert_eq!(refusal.limit.as_str(), "requests");
        assert_eq!(
            refusal.message,
            "rate limit exceeded for key \"alice\": 3 requests per minute (burst 3); retry in 20s"
        );

        let response = refusal.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "20");
        assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "0");
        assert_eq!(response.headers()["x-ratelimit-reset-requests"], "1m0s");
    }

    #[test]
    fn converts_to_the_gateway_error() {
        let refusal = Refusal::concurrency("bob", 8, RateLimitHeaders::default());
        let error = GatewayError::from(refusal);
        assert_eq!(error.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(error.to_string().contains("at most 8 requests in flight"));
        let GatewayError::RateLimited { retry_after, .. } = error else {
            panic!("not RateLimited: {error:?}");
        };
        assert_eq!(retry_after, Duration::from_secs(1));
    }

    #[test]
    fn limit_kinds_are_the_metric_labels() {
        let labels = [
            LimitKind::Requests,
            LimitKind::Concurrency,
            LimitKind::Tokens,
            LimitKind::Global,
        ]
        .map(LimitKind::as_str);
        assert_eq!(labels, ["requests", "concurrency", "tokens", "global"]);
    }

    #[test]
    fn permits_release_what_they_hold() {
        let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let permit = Permit::slot(semaphore.clone().try_acquire_owned().unwrap());
        assert_eq!(semaphore.available_permits(), 0);
        drop(permit);
        assert_eq!(semaphore.available_permits(), 1);

        let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct Release(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Release {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        drop(Permit::from_guard(Release(released.clone())));
        assert!(released.load(std::sync::atomic::Ordering::SeqCst));
    }
}
