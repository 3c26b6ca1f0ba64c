//! OpenAI-style rate-limit headers: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.
//!
//! `limit` is the bucket's size (requests: `burst`; tokens: `tokens_per_minute`), `remaining`
//! what is left of it now, and `reset` the time until the bucket is full again, written as
//! OpenAI writes it (Go durations: `6m0s`, `1s`, `250ms`).

use std::fmt::Write as _;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// One limit as the headers show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitStatus {
    pub limit: u64,
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset: Duration,
}

/// The headers for one decision. A limit that is unlimited (`0`) or was not looked at is `None`
/// and its trio is left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub requests: Option<LimitStatus>,
    pub tokens: Option<LimitStatus>,
}

impl RateLimitHeaders {
    /// Writes (replaces) the trios that apply.
    pub fn write_to(&self, headers: &mut HeaderMap) {
        if let Some(status) = &self.requests {
            write_trio(
                headers,
                [&LIMIT_REQUESTS, &REMAINING_REQUESTS, &RESET_REQUESTS],
                status,
            );
        }
        if let Some(status) = &self.tokens {
            write_trio(
                headers,
                [&LIMIT_TOKENS, &REMAINING_TOKENS, &RESET_TOKENS],
                status,
            );
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }
}

fn write_trio(
    headers: &mut HeaderMap,
    [limit, remaining, reset]: [&HeaderName; 3],
    status: &LimitStatus,
) {
    headers.insert(limit.clone(), HeaderValue::from(status.limit));
    headers.insert(remaining.clone(), HeaderValue::from(status.remaining));
    // A formatted duration is ASCII digits and unit letters, always a valid header value.
    if let Ok(value) = HeaderValue::try_from(format_reset(status.reset)) {
        headers.insert(reset.clone(), value);
    }
}

/// A duration the way OpenAI's headers (and Go's `Duration.String`) write it, rounded up to the
/// millisecond so a client that waits this long is not early: `0s`, `250ms`, `1s`, `1.5s`,
/// `6m0s`, `1h0m0s`.
pub fn format_reset(d: Duration) -> String {
    let millis = d.as_nanos().div_ceil(1_000_000);
    let mut out = String::with_capacity(12);
    if millis == 0 {
        out.push_str("0s");
    } else if millis < 1000 {
        let _ = write!(out, "{millis}ms");
    } else {
        let (hours, rest) = (millis / 3_600_000, millis % 3_600_000);
        let (minutes, rest) = (rest / 60_000, rest % 60_000);
        let (secs, frac) = (rest / 1000, rest % 1000);
        if hours > 0 {
            let _ = write!(out, "{hours}h");
        }
        if hours > 0 || minutes > 0 {
            let _ = write!(out, "{minutes}m");
        }
        let _ = write!(out, "{secs}");
        // Fractional seconds without trailing zeros, as Go writes them.
        let _ = match frac {
            0 => Ok(()),
            f if f % 100 == 0 => write!(out, ".{}", f / 100),
            f if f % 10 == 0 => write!(out, ".{:02}", f / 10),
            f => write!(out, ".{f:03}"),
        };
        out.push('s');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_openai() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ms"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_micros(249_001), "250ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(20_250), "20.25s"),
            (Duration::from_secs(360), "6m0s"),
            (Duration::from_millis(90_500), "1m30.5s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(3600 + 61), "1h1m1s"),
        ];
        for (d, want) in cases {
            assert_eq!(format_reset(d), want, "{d:?}");
        }
    }

    #[test]
    fn writes_only_the_trios_that_apply() {
        let mut map = HeaderMap::new();
        let headers = RateLimitHeaders {
            requests: Some(LimitStatus {
                limit: 60,
                remaining: 59,
                reset: Duration::from_millis(100),
            }),
            tokens: None,
        };
        headers.write_to(&mut map);
        assert_eq!(map["x-ratelimit-limit-requests"], "60");
        assert_eq!(map["x-ratelimit-remaining-requests"], "59");
        assert_eq!(map["x-ratelimit-reset-requests"], "100ms");
        assert!(map.get("x-ratelimit-limit-tokens").is_none());
        assert_eq!(map.len(), 3);

        let mut map = HeaderMap::new();
        RateLimitHeaders::default().write_to(&mut map);
        assert!(map.is_empty());
    }

    #[test]
    fn writes_the_token_trio() {
        let mut map = HeaderMap::new();
        RateLimitHeaders {
            requests: None,
            tokens: Some(LimitStatus {
                limit: 200_000,
                remaining: 0,
                reset: Duration::from_secs(360),
            }),
        }
        .write_to(&mut map);
        assert_eq!(map["x-ratelimit-limit-tokens"], "200000");
        assert_eq!(map["x-ratelimit-remaining-tokens"], "0");
        assert_eq!(map["x-ratelimit-reset-tokens"], "6m0s");
    }
}
