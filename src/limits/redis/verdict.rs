//! The check script's answer, read: which limit refused (if any), how long to wait, and what
//! the rate-limit headers show.
//!
//! Its own module because it is the one place where Rust and `redis.lua` must agree on a
//! format: the reply is a flat array of integers, `{code, wait_us, detail, req_seen,
//! req_remaining, req_reset_us, tok_seen, tok_remaining, tok_reset_us}`. A reply of any other
//! shape is an error reply, decided by `limits.on_backend_error` like any failed call.

use std::time::Duration;

/// The check script's answer, read.
#[derive(Debug, PartialEq)]
pub(super) struct Verdict {
    /// 0 admitted; 1 budget, 2 tokens, 3 concurrency, 4 requests, 5 global.
    pub(super) code: i64,
    pub(super) wait: Duration,
    /// For a budget: 1 day, 2 month.
    pub(super) detail: i64,
    /// `(remaining, reset)` of the request rate and the token bucket, when looked at.
    pub(super) requests: Option<(u64, Duration)>,
    pub(super) tokens: Option<(u64, Duration)>,
}

impl Verdict {
    pub(super) fn parse(reply: &[i64]) -> Result<Self, ()> {
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

fn micros_duration(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
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
}
