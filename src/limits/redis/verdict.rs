//! The check script's answer, read: which limit refused (if any), how long to wait, and what
//! the rate-limit headers show.
//!
//! Its own module because it is the one place where Rust and `redis.lua` must agree on a
//! format: the reply is a flat array of integers, `{code, wait_us, detail, req_seen,
//! req_remaining, req_reset_us, tok_seen, tok_remaining, tok_reset_us}`. The codes are named
//! constants at the top of the script and the discriminants of [`Code`] here; a test reads
//! the script and holds the two together. A reply of any other shape, or with a code or a
//! budget period the script never sends, is an error reply, decided by
//! `limits.on_backend_error` like any failed call.

use std::time::Duration;

use crate::limits::spend::Period;

/// What the check decided: admitted, or the first limit that refused. Each discriminant is
/// the value of the constant of the same meaning in `redis.lua` (`ADMITTED`, `REFUSED_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub(super) enum Code {
    Admitted = 0,
    Budget = 1,
    Tokens = 2,
    Concurrency = 3,
    Requests = 4,
    Global = 5,
}

impl TryFrom<i64> for Code {
    /// The code the script never sends.
    type Error = i64;

    fn try_from(code: i64) -> Result<Self, i64> {
        Ok(match code {
            0 => Self::Admitted,
            1 => Self::Budget,
            2 => Self::Tokens,
            3 => Self::Concurrency,
            4 => Self::Requests,
            5 => Self::Global,
            _ => return Err(code),
        })
    }
}

/// A budget refusal's `detail` (`BUDGET_DAY`, `BUDGET_MONTH` in `redis.lua`).
const BUDGET_DAY: i64 = 1;
const BUDGET_MONTH: i64 = 2;

/// The check script's answer, read.
#[derive(Debug, PartialEq)]
pub(super) struct Verdict {
    pub(super) code: Code,
    pub(super) wait: Duration,
    /// For [`Code::Budget`]: the period whose budget is spent; else `None`.
    pub(super) budget: Option<Period>,
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
        let code = Code::try_from(code).map_err(drop)?;
        let budget = match (code, detail) {
            (Code::Budget, BUDGET_DAY) => Some(Period::Day),
            (Code::Budget, BUDGET_MONTH) => Some(Period::Month),
            (Code::Budget, _) => return Err(()),
            _ => None,
        };
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
            budget,
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

    const SCRIPT: &str = include_str!("redis.lua");

    /// The value of `local NAME = <integer>` in the script, if it has one.
    fn lua_constant(name: &str) -> Option<i64> {
        SCRIPT.lines().find_map(|line| {
            let (lhs, rhs) = line.strip_prefix("local ")?.split_once(" = ")?;
            (lhs == name).then(|| rhs.split_whitespace().next()?.parse().ok())?
        })
    }

    /// The script's name for each code; a new variant does not compile until it has one.
    fn lua_name(code: Code) -> &'static str {
        match code {
            Code::Admitted => "ADMITTED",
            Code::Budget => "REFUSED_BUDGET",
            Code::Tokens => "REFUSED_TOKENS",
            Code::Concurrency => "REFUSED_CONCURRENCY",
            Code::Requests => "REFUSED_REQUESTS",
            Code::Global => "REFUSED_GLOBAL",
        }
    }

    #[test]
    fn the_scripts_codes_are_the_enums() {
        let codes: Vec<Code> = (-1..=16).filter_map(|n| Code::try_from(n).ok()).collect();
        assert_eq!(codes.len(), 6, "{codes:?}");
        for code in codes {
            assert_eq!(Code::try_from(code as i64), Ok(code));
            let name = lua_name(code);
            assert_eq!(lua_constant(name), Some(code as i64), "{name} in redis.lua");
        }
        // And no verdict constant in the script that the enum lacks.
        for line in SCRIPT.lines() {
            let Some((name, _)) = line
                .strip_prefix("local ")
                .and_then(|l| l.split_once(" = "))
            else {
                continue;
            };
            if name == "ADMITTED" || name.starts_with("REFUSED_") {
                let value = lua_constant(name).unwrap();
                let code = Code::try_from(value).unwrap_or_else(|n| panic!("{name} = {n}"));
                assert_eq!(lua_name(code), name);
            }
        }
        assert_eq!(lua_constant("BUDGET_DAY"), Some(BUDGET_DAY));
        assert_eq!(lua_constant("BUDGET_MONTH"), Some(BUDGET_MONTH));
    }

    #[test]
    fn the_script_answers_with_named_codes() {
        let calls: Vec<&str> = SCRIPT.split("return answer(").skip(1).collect();
        assert_eq!(calls.len(), 7, "every limit's refusal and the admission");
        for call in calls {
            let code = call.split(',').next().unwrap().trim();
            assert!(
                lua_constant(code).is_some(),
                "answer({code}, ..): not a named code"
            );
        }
    }

    #[test]
    fn reads_the_scripts_answer() {
        let verdict = Verdict::parse(&[0, 0, 0, 1, 9, 6_000_000, 0, 0, 0]).unwrap();
        assert_eq!(verdict.code, Code::Admitted);
        assert_eq!(verdict.requests, Some((9, Duration::from_secs(6))));
        assert_eq!(verdict.tokens, None);
        let verdict = Verdict::parse(&[1, 3_600_000_000, 2, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(
            (verdict.code, verdict.budget),
            (Code::Budget, Some(Period::Month))
        );
        assert_eq!(verdict.wait, Duration::from_secs(3600));
        assert!(Verdict::parse(&[0, 0]).is_err());
        assert!(Verdict::parse(&[9, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(Verdict::parse(&[1, 0, 7, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
