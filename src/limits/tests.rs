//! The limits as the middleware sees them: `Limits::check` on a fake clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use governor::clock::FakeRelativeClock;
use http::HeaderMap;

use super::admission::Refusal;
use super::*;
use crate::config::{KeyConfig, LimitsConfig, ANONYMOUS};

/// `[limits]` with every limit off, to switch on one at a time.
fn unlimited() -> LimitsConfig {
    LimitsConfig {
        requests_per_minute: 0,
        burst: 0,
        max_concurrent: 0,
        tokens_per_minute: 0,
        global_requests_per_second: 0,
        ..LimitsConfig::default()
    }
}

/// The answer of a backend that needs no I/O (the in-memory one): its future is ready at once.
fn at_once(check: CheckFuture<'_>) -> Result<Admission, Refusal> {
    check
        .now_or_never()
        .expect("the in-memory backend answers without waiting")
}

fn key(id: &str) -> KeyConfig {
    KeyConfig {
        id: id.to_owned(),
        ..KeyConfig::default()
    }
}

fn config(limits: LimitsConfig, keys: Vec<KeyConfig>) -> Config {
    let mut config = Config {
        limits,
        ..Config::default()
    };
    config.auth.keys = keys;
    config
}

fn limits_on(config: &Config) -> (Limits, FakeRelativeClock) {
    let clock = FakeRelativeClock::default();
    let backend = MemoryBackend::with_clock(config, clock.clone());
    (Limits::with_backend(Arc::new(backend)), clock)
}

#[test]
fn keys_get_their_own_limits_and_the_rest_get_anonymous() {
    let limits = LimitsConfig {
        requests_per_minute: 60,
        burst: 1,
        ..unlimited()
    };
    let alice = KeyConfig {
        burst: Some(3),
        ..key("alice")
    };
    let (limits, _clock) = limits_on(&config(limits, vec![alice, key("bob")]));

    assert!((0..3).all(|_| at_once(limits.check("alice")).is_ok()));
    assert_eq!(
        at_once(limits.check("alice")).unwrap_err().limit,
        LimitKind::Requests
    );
    // bob has [limits]'s burst, and his own bucket.
    assert!(at_once(limits.check("bob")).is_ok());
    assert!(at_once(limits.check("bob")).is_err());
    assert!(at_once(limits.check(ANONYMOUS)).is_ok());
    assert!(at_once(limits.check(ANONYMOUS)).is_err());
    // An id that is not configured is counted as anonymous.
    assert!(at_once(limits.check("mallory")).is_err());
}

#[test]
fn unlimited_takes_nothing_and_says_nothing() {
    let (limits, _clock) = limits_on(&config(unlimited(), vec![key("alice")]));
    for _ in 0..1000 {
        let admission = at_once(limits.check("alice")).unwrap();
        assert!(!admission.permit.holds_slot());
        assert!(admission.headers.is_empty());
        assert!(admission.account.is_none());
    }
}

#[test]
fn the_rate_refusal_reads_as_documented() {
    let limits = LimitsConfig {
        requests_per_minute: 3,
        burst: 3,
        ..unlimited()
    };
    let (limits, clock) = limits_on(&config(limits, vec![key("alice")]));
    let admissions: Vec<_> = (0..3)
        .map(|_| at_once(limits.check("alice")).unwrap())
        .collect();
    let last = admissions[2].headers.requests.unwrap();
    assert_eq!((last.limit, last.remaining), (3, 0));

    let refusal = at_once(limits.check("alice")).unwrap_err();
    assert_eq!(refusal.retry_after, Duration::from_secs(20));
    assert_eq!(
        refusal.message,
        "rate limit exceeded for key \"alice\": 3 requests per minute (burst 3); retry in 20s"
    );
    let mut headers = HeaderMap::new();
    refusal.headers.write_to(&mut headers);
    assert_eq!(headers["x-ratelimit-limit-requests"], "3");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
    assert_eq!(headers["x-ratelimit-reset-requests"], "1m0s");

    clock.advance(Duration::from_secs(20));
    assert!(at_once(limits.check("alice")).is_ok());
}

#[test]
fn a_full_house_is_refused_without_using_a_rate_cell() {
    let limits = LimitsConfig {
        requests_per_minute: 60,
        burst: 2,
        max_concurrent: 1,
        ..unlimited()
    };
    let (limits, _clock) = limits_on(&config(limits, vec![key("alice")]));
    let first = at_once(limits.check("alice")).unwrap();
    assert!(first.permit.holds_slot());

    let refusal = at_once(limits.check("alice")).unwrap_err();
    assert_eq!(refusal.limit, LimitKind::Concurrency);
    assert_eq!(refusal.retry_after, Duration::from_secs(1));
    assert_eq!(
        refusal.message,
        "concurrency limit exceeded for key \"alice\": at most 1 requests in flight; retry when one finishes"
    );

    // The refused request did not take the second cell of the burst.
    drop(first);
    let second = at_once(limits.check("alice")).unwrap();
    assert_eq!(second.headers.requests.unwrap().remaining, 0);
}

#[test]
fn a_rate_refusal_gives_the_slot_back() {
    let limits = LimitsConfig {
        requests_per_minute: 1,
        burst: 1,
        max_concurrent: 1,
        ..unlimited()
    };
    let (limits, clock) = limits_on(&config(limits, vec![key("alice")]));
    drop(at_once(limits.check("alice")).unwrap());
    assert_eq!(
        at_once(limits.check("alice")).unwrap_err().limit,
        LimitKind::Requests
    );
    clock.advance(Duration::from_secs(60));
    // Had the refused request kept its slot, this would be a concurrency refusal.
    assert!(at_once(limits.check("alice")).is_ok());
}

#[test]
fn tokens_are_debited_after_the_response_even_past_the_permit() {
    let limits = LimitsConfig {
        requests_per_minute: 60,
        burst: 5,
        max_concurrent: 1,
        tokens_per_minute: 1000,
        ..unlimited()
    };
    let (limits, clock) = limits_on(&config(limits, vec![key("alice")]));
    let admission = at_once(limits.check("alice")).unwrap();
    let tokens = admission.headers.tokens.unwrap();
    assert_eq!((tokens.limit, tokens.remaining), (1000, 1000));
    let account = admission.account.clone().unwrap();
    drop(admission);

    // The stream ends after the permit was released; its usage arrives now.
    account.charge(1500, 0.0);
    let refusal = at_once(limits.check("alice")).unwrap_err();
    assert_eq!(refusal.limit, LimitKind::Tokens);
    assert_eq!(refusal.retry_after, Duration::from_millis(30_060));
    assert!(refusal.message.starts_with(
        "token limit exceeded for key \"alice\": 1000 tokens per minute; retry in 31s"
    ));
    let tokens = refusal.headers.tokens.unwrap();
    assert_eq!(tokens.remaining, 0);
    assert_eq!(tokens.reset, Duration::from_secs(90));
    // The refusal by tokens took neither a slot nor a rate cell.
    assert!(refusal.headers.requests.is_none());

    clock.advance(Duration::from_millis(30_060));
    let admission = at_once(limits.check("alice")).unwrap();
    assert_eq!(admission.headers.tokens.unwrap().remaining, 1);
    assert_eq!(admission.headers.requests.unwrap().remaining, 4);
}

#[test]
fn the_global_rate_is_shared_by_every_key() {
    let limits = LimitsConfig {
        global_requests_per_second: 2,
        ..unlimited()
    };
    let (limits, clock) = limits_on(&config(limits, vec![key("alice"), key("bob")]));
    assert!(at_once(limits.check("alice")).is_ok());
    assert!(at_once(limits.check("bob")).is_ok());
    let refusal = at_once(limits.check(ANONYMOUS)).unwrap_err();
    assert_eq!(refusal.limit, LimitKind::Global);
    assert_eq!(refusal.retry_after, Duration::from_millis(500));
    assert_eq!(
        refusal.message,
        "gateway-wide rate limit exceeded: 2 requests per second; retry in 1s"
    );
    clock.advance(Duration::from_millis(500));
    assert!(at_once(limits.check("bob")).is_ok());
}

#[test]
fn a_key_over_its_own_rate_does_not_drain_the_global_one() {
    let limits = LimitsConfig {
        global_requests_per_second: 1,
        ..unlimited()
    };
    let greedy = KeyConfig {
        requests_per_minute: Some(1),
        burst: Some(1),
        ..key("greedy")
    };
    let (limits, clock) = limits_on(&config(limits, vec![greedy, key("alice")]));
    assert!(at_once(limits.check("greedy")).is_ok());
    clock.advance(Duration::from_secs(1));
    for _ in 0..100 {
        assert_eq!(
            at_once(limits.check("greedy")).unwrap_err().limit,
            LimitKind::Requests
        );
    }
    assert!(at_once(limits.check("alice")).is_ok());
}

#[test]
fn reload_keeps_the_state_of_what_did_not_change() {
    let base = LimitsConfig {
        requests_per_minute: 1,
        burst: 1,
        max_concurrent: 1,
        tokens_per_minute: 100,
        ..unlimited()
    };
    let keys = vec![key("alice"), key("bob"), key("carol")];
    let (before, _clock) = limits_on(&config(base.clone(), keys));

    let alice_slot = at_once(before.check("alice")).unwrap();
    let bob = at_once(before.check("bob")).unwrap();
    bob.account.clone().unwrap().charge(500, 0.0);
    drop(bob);
    drop(at_once(before.check("carol")).unwrap());

    // bob gets a higher rate; carol goes; dave arrives.
    let bob = KeyConfig {
        requests_per_minute: Some(600),
        burst: Some(10),
        ..key("bob")
    };
    let after = before
        .carry_over(&config(base, vec![key("alice"), bob, key("dave")]))
        .unwrap();

    // alice: unchanged, her slot and her used cell carry over.
    let refusal = at_once(after.check("alice")).unwrap_err();
    assert_eq!(refusal.limit, LimitKind::Concurrency);
    drop(alice_slot);
    assert_eq!(
        at_once(after.check("alice")).unwrap_err().limit,
        LimitKind::Requests
    );
    // bob: a new rate, but his token debt stays.
    assert_eq!(
        at_once(after.check("bob")).unwrap_err().limit,
        LimitKind::Tokens
    );
    // dave is new and fresh; carol's id now counts as anonymous, whose bucket is untouched.
    assert!(at_once(after.check("dave")).is_ok());
    assert!(at_once(after.check("carol")).is_ok());
}

#[test]
fn in_flight_never_exceeds_the_max_under_contention() {
    let limits = LimitsConfig {
        max_concurrent: 3,
        ..unlimited()
    };
    let (limits, _clock) = limits_on(&config(limits, vec![key("alice")]));
    let (inside, peak, admitted) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..2000 {
                    if let Ok(admission) = at_once(limits.check("alice")) {
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        admitted.fetch_add(1, Ordering::SeqCst);
                        std::hint::spin_loop();
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(admission);
                    }
                }
            });
        }
    });
    assert!(peak.load(Ordering::SeqCst) <= 3);
    assert!(admitted.load(Ordering::SeqCst) > 0);
    // Every slot came back.
    let held: Vec<_> = (0..3)
        .map(|_| at_once(limits.check("alice")).unwrap())
        .collect();
    assert_eq!(
        at_once(limits.check("alice")).unwrap_err().limit,
        LimitKind::Concurrency
    );
    drop(held);
}

#[test]
fn builds_on_the_real_clock() {
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let limits = Limits::build(&Config::default(), &metrics).unwrap();
    let admission = at_once(limits.check(ANONYMOUS)).unwrap();
    let requests = admission.headers.requests.unwrap();
    assert_eq!((requests.limit, requests.remaining), (60, 59));
    assert!(admission.permit.holds_slot());
}
