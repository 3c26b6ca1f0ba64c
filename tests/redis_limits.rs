//! `limits.backend = "redis"`: several gateways share every per-key limit through a real
//! `redis-server`, started by each test on an ephemeral port. Without `redis-server` the tests
//! print `SKIPPED:` and pass, except under CI (`CI` set), where they fail.

use std::time::Duration;

use crate::common::process::{key_toml, serve_command, ConfigFile, Served};
use crate::common::redis_server::{RedisOptions, RedisServer};
use crate::common::*;
use orgate::config::{Config, LimitsBackend, OnBackendError};
use tokio::time::Instant;

/// A `redis-server` of the test's own, the mock, and a config that shares the limits through
/// that Redis (leases of 1 s); `None` when `redis-server` is missing (see [`RedisServer::start`]).
async fn shared_limits(test: &str) -> Option<(RedisServer, MockOpenRouter, Config)> {
    let redis = RedisServer::start(test, RedisOptions::default()).await?;
    let mock = MockOpenRouter::start().await;
    let mut config = config_for(&mock);
    config.limits.backend = LimitsBackend::Redis;
    config.limits.redis_url = redis.url();
    config.limits.lease_ttl = "1s".parse().unwrap();
    Some((redis, mock, config))
}

async fn chat(gw: &impl Gateway, key: &str) -> reqwest::Response {
    gw.completion(key).fetch().await
}

/// A stream of `chunks` chunks 50 ms apart; its response (headers) returns at once.
async fn stream(gw: &impl Gateway, key: &str, chunks: usize) -> reqwest::Response {
    gw.stream(key).paced(chunks, 50).fetch().await
}

/// Sends requests of `key` to `gw` until one is answered `status`; returns that response.
async fn until(gw: &TestGateway, key: &str, status: u16, what: &str) -> reqwest::Response {
    eventually(what, async || {
        let response = chat(gw, key).await;
        if response.status() == status {
            return Ok(response);
        }
        let seen = response.status();
        response.bytes().await.unwrap();
        Err(format!("still {seen}"))
    })
    .await
}

/// Sends requests of `key` until one is checked against Redis again (it has limit headers);
/// returns that response.
async fn checked_again(gw: &TestGateway, key: &str) -> reqwest::Response {
    eventually("Redis checking again", async || {
        let response = chat(gw, key).await;
        if response
            .headers()
            .contains_key("x-ratelimit-remaining-requests")
        {
            Ok(response)
        } else {
            Err(format!("unchecked: {}", response.status()))
        }
    })
    .await
}

#[tokio::test]
async fn a_burst_of_ten_admits_exactly_ten_across_two_replicas() {
    let Some((_redis, _mock, mut config)) = shared_limits("a_burst_of_ten").await else {
        return;
    };
    // One request a minute after the burst: none refills during the test.
    key_rate(&mut config.auth.keys[0], 1, 10);
    let a = TestGateway::start(config.clone()).await;
    let b = TestGateway::start(config).await;

    let first = chat(&a, ALICE_KEY).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit-requests"], "10");
    assert_eq!(first.headers()["x-ratelimit-remaining-requests"], "9");
    assert_eq!(first.headers()["x-ratelimit-reset-requests"], "1m0s");
    let mut admitted = 1;
    let mut refused = Vec::new();
    for i in 0..19 {
        let gw = if i % 2 == 0 { &b } else { &a };
        let response = chat(gw, ALICE_KEY).await;
        match response.status().as_u16() {
            200 => admitted += 1,
            429 => refused.push(response),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(admitted, 10, "the burst is shared, not per replica");
    assert_eq!(refused.len(), 10);
    let last = refused.pop().unwrap();
    let retry_after = retry_after(&last);
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(last.headers()["x-ratelimit-remaining-requests"], "0");
    let (code, message) = error_of(last).await;
    assert_eq!(code, 429);
    assert!(
        message
            .starts_with("rate limit exceeded for key \"alice\": 1 requests per minute (burst 10)"),
        "{message}"
    );
    assert_eq!(chat(&b, BOB_KEY).await.status(), 200, "bob has his own");
    assert!(a
        .metrics_text()
        .await
        .contains(r#"orgate_ratelimited_total{key="alice",limit="requests"}"#));
}

#[tokio::test]
async fn concurrency_holds_across_replicas_and_slots_come_back() {
    let Some((_redis, _mock, mut config)) = shared_limits("concurrency_holds").await else {
        return;
    };
    config.auth.keys[0].max_concurrent = Some(2);
    let a = TestGateway::start(config.clone()).await;
    let b = TestGateway::start(config).await;

    // 100 chunks 50 ms apart: 5 s each, far longer than the 1 s lease: renewals keep them.
    let one = stream(&a, ALICE_KEY, 100).await;
    let two = stream(&b, ALICE_KEY, 100).await;
    assert_eq!((one.status().as_u16(), two.status().as_u16()), (200, 200));
    for gw in [&a, &b] {
        let (code, message) = error_of(chat(gw, ALICE_KEY).await).await;
        assert_eq!(code, 429);
        assert!(
            message.contains("at most 2 requests in flight"),
            "{message}"
        );
    }
    // Past two lease TTLs the streams still hold their slots: the leases are renewed.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(chat(&a, ALICE_KEY).await.status(), 429);
    assert_eq!(chat(&b, BOB_KEY).await.status(), 200, "bob has his own");

    // Ending one stream (the client leaves) gives its slot back at once, on either replica.
    drop(one);
    let started = Instant::now();
    until(&b, ALICE_KEY, 200, "a slot after a stream ended").await;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "released, not expired: {:?}",
        started.elapsed()
    );
    drop(two);
}

#[tokio::test]
async fn a_killed_replicas_leases_expire_after_lease_ttl() {
    let Some(redis) = RedisServer::start("a_killed_replicas_leases", RedisOptions::default()).await
    else {
        return;
    };
    let mock = MockOpenRouter::start().await;
    let config = ConfigFile::new(&format!(
        "{}idle_timeout = \"5s\"\n\
         [limits]\nbackend = \"redis\"\nredis_url_env = \"ORGATE_TEST_REDIS_URL\"\n\
         lease_ttl = \"1s\"\n\
         {}max_concurrent = 1\n",
        mock.upstream_toml(),
        key_toml("alice", ALICE_KEY)
    ));
    let replica = || {
        let mut command = serve_command(&config.path);
        command.env("ORGATE_TEST_REDIS_URL", redis.url());
        command
    };
    let a = Served::start(&mut replica()).await;
    let b = Served::start(&mut replica()).await;

    // A holds alice's one slot with a long stream, then dies without a word.
    let held = stream(&a, ALICE_KEY, 400).await;
    assert_eq!(held.status(), 200);
    assert_eq!(chat(&b, ALICE_KEY).await.status(), 429);
    a.kill();
    let killed = Instant::now();
    assert_eq!(
        chat(&b, ALICE_KEY).await.status(),
        429,
        "the dead replica's lease outlives it for up to lease_ttl"
    );
    eventually("the dead replica's lease to expire", async || {
        match chat(&b, ALICE_KEY).await.status().as_u16() {
            200 => Ok(()),
            429 => Err("refused: 429"),
            other => panic!("refused with {other}, not 429"),
        }
    })
    .await;
    let freed_after = killed.elapsed();
    assert!(
        freed_after <= Duration::from_millis(2500),
        "free within about lease_ttl: {freed_after:?}"
    );
    drop(held);
    b.terminate();
    assert_eq!(b.finish().await.0, Some(0));
}

#[tokio::test]
async fn spend_debited_on_one_replica_refuses_the_key_on_the_other() {
    let Some((redis, _mock, mut config)) = shared_limits("spend_debited").await else {
        return;
    };
    // Each mock completion costs $0.00014: two spend the day's $0.0002.
    config.auth.keys[0].usd_per_day = Some(0.0002);
    let a = TestGateway::start(config.clone()).await;
    let b = TestGateway::start(config).await;
    for _ in 0..2 {
        let response = chat(&a, ALICE_KEY).await;
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    // The charge is written after the response: the other replica sees it moments later.
    let refused = until(&b, ALICE_KEY, 429, "the budget on the other replica").await;
    let retry_after = retry_after(&refused);
    assert!((1..=86_400).contains(&retry_after), "{retry_after}");
    let (_, message) = error_of(refused).await;
    assert!(
        message.contains("spend budget exhausted for key \"alice\": $0.0002 per day (UTC)"),
        "{message}"
    );
    assert_eq!(chat(&b, BOB_KEY).await.status(), 200);

    // The counters are micro-dollars per UTC day and month, expiring after their period.
    let mut connection = redis.connection().await;
    let day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let key = format!("orgate:{{alice}}:spend:day:{day}");
    let spent: u64 = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(spent, 280, "{key}");
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!((86_400..=2 * 86_400).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn tokens_debited_on_one_replica_refuse_the_key_on_the_other() {
    let Some((_redis, _mock, mut config)) = shared_limits("tokens_debited").await else {
        return;
    };
    config.limits.tokens_per_minute = 20;
    let a = TestGateway::start(config.clone()).await;
    let b = TestGateway::start(config).await;
    // 14 tokens: room for one more request, which overdraws.
    let first = chat(&a, ALICE_KEY).await;
    assert_eq!(first.headers()["x-ratelimit-limit-tokens"], "20");
    assert_eq!(first.headers()["x-ratelimit-remaining-tokens"], "20");
    first.bytes().await.unwrap();
    let second = until(&a, ALICE_KEY, 200, "the first charge").await;
    second.bytes().await.unwrap();
    let refused = until(&b, ALICE_KEY, 429, "tokens on the other replica").await;
    assert_eq!(refused.headers()["x-ratelimit-remaining-tokens"], "0");
    let (_, message) = error_of(refused).await;
    assert!(
        message.starts_with("token limit exceeded for key \"alice\": 20 tokens per minute"),
        "{message}"
    );
    assert_eq!(chat(&b, BOB_KEY).await.status(), 200);
}

#[tokio::test]
async fn with_allow_a_stopped_redis_lets_requests_through_and_limits_return_with_it() {
    let Some((mut redis, _mock, mut config)) = shared_limits("with_allow").await else {
        return;
    };
    config.limits.on_backend_error = OnBackendError::Allow;
    key_rate(&mut config.auth.keys[0], 1, 2);
    let gw = TestGateway::start(config).await;
    for _ in 0..2 {
        assert_eq!(chat(&gw, ALICE_KEY).await.status(), 200);
    }
    assert_eq!(chat(&gw, ALICE_KEY).await.status(), 429);

    redis.stop();
    for _ in 0..5 {
        let started = Instant::now();
        let response = chat(&gw, ALICE_KEY).await;
        assert_eq!(response.status(), 200, "allowed while Redis is down");
        assert!(
            !response
                .headers()
                .contains_key("x-ratelimit-remaining-requests"),
            "admitted unchecked: no limit headers"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the backend timeout bounds the wait: {:?}",
            started.elapsed()
        );
    }
    let text = gw.metrics_text().await;
    let errors: f64 = ["timeout", "connection", "reply"]
        .iter()
        .map(|kind| {
            metric_value(
                &text,
                &format!("orgate_limits_backend_errors_total{{kind=\"{kind}\"}}"),
            )
        })
        .sum();
    assert!(errors >= 1.0, "{text}");
    assert!(
        metric_value(
            &text,
            r#"orgate_limits_backend_fallbacks_total{decision="allow"}"#
        ) >= 5.0,
        "{text}"
    );

    // Back (empty: the burst is whole again), and limiting again: exactly the burst passes.
    redis.restart().await;
    let checked = checked_again(&gw, ALICE_KEY).await;
    assert_eq!(checked.status(), 200);
    assert_eq!(checked.headers()["x-ratelimit-remaining-requests"], "1");
    assert_eq!(chat(&gw, ALICE_KEY).await.status(), 200);
    assert_eq!(chat(&gw, ALICE_KEY).await.status(), 429);
}

#[tokio::test]
async fn with_deny_or_a_budget_a_stopped_redis_refuses_with_503_until_it_returns() {
    let Some((mut redis, _mock, mut config)) = shared_limits("with_deny").await else {
        return;
    };
    // default: alice has a budget (denied), bob has none (allowed).
    config.auth.keys[0].usd_per_day = Some(5.0);
    let by_default = TestGateway::start(config.clone()).await;
    config.limits.on_backend_error = OnBackendError::Deny;
    let deny = TestGateway::start(config).await;
    assert_eq!(chat(&by_default, ALICE_KEY).await.status(), 200);
    assert_eq!(chat(&deny, BOB_KEY).await.status(), 200);

    redis.stop();
    for (gw, key) in [
        (&by_default, ALICE_KEY),
        (&deny, BOB_KEY),
        (&deny, ALICE_KEY),
    ] {
        let refused = chat(gw, key).await;
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.headers()["retry-after"], "1");
        let (_, message) = error_of(refused).await;
        assert!(
            message.contains("limits backend is unavailable"),
            "{message}"
        );
    }
    assert_eq!(
        chat(&by_default, BOB_KEY).await.status(),
        200,
        "default allows a key without a budget"
    );
    let text = deny.metrics_text().await;
    assert!(
        metric_value(
            &text,
            r#"orgate_limits_backend_fallbacks_total{decision="deny"}"#
        ) >= 2.0,
        "{text}"
    );
    assert!(
        !text.contains(r#"limit="backend""#),
        "a backend failure is not a rate limit: {text}"
    );

    redis.restart().await;
    until(&deny, BOB_KEY, 200, "admitted again").await;
    until(&by_default, ALICE_KEY, 200, "admitted again").await;
}

#[tokio::test]
async fn a_slow_redis_is_not_waited_for_and_leaves_no_lease_behind() {
    let Some((redis, _mock, mut config)) = shared_limits("a_slow_redis").await else {
        return;
    };
    // default: alice has a budget (denied), bob has none (allowed). A lease bob's timed-out
    // check took late would hold his one slot for 30 s.
    config.auth.keys[0].usd_per_day = Some(5.0);
    config.auth.keys[1].max_concurrent = Some(1);
    config.limits.lease_ttl = "30s".parse().unwrap();
    let gw = TestGateway::start(config).await;
    assert_eq!(chat(&gw, BOB_KEY).await.status(), 200);

    // Redis holds every command for 2.5 s: the checks time out after backend_timeout (200ms).
    let mut connection = redis.connection().await;
    let () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "2500", "ALL"])
        .query_async(&mut connection)
        .await
        .unwrap();
    let paused = Instant::now();
    let response = chat(&gw, BOB_KEY).await;
    assert_eq!(
        response.status(),
        200,
        "default allows a key without a budget"
    );
    assert!(!response
        .headers()
        .contains_key("x-ratelimit-remaining-requests"));
    assert_eq!(chat(&gw, ALICE_KEY).await.status(), 503);
    assert!(
        paused.elapsed() < Duration::from_millis(1500),
        "not waited for: {:?}",
        paused.elapsed()
    );
    let text = gw.metrics_text().await;
    assert!(
        metric_value(
            &text,
            r#"orgate_limits_backend_errors_total{kind="timeout"}"#
        ) >= 1.0,
        "{text}"
    );

    // Once Redis answers again, bob's one slot is free: the late lease was removed.
    let response = checked_again(&gw, BOB_KEY).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let leases: i64 = redis::cmd("ZCARD")
        .arg("orgate:{bob}:leases")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(leases <= 1, "{leases} leases");
    assert_eq!(chat(&gw, ALICE_KEY).await.status(), 200);
}

#[tokio::test]
async fn the_scripts_calendar_matches_utc() {
    let Some(redis) = RedisServer::start("the_scripts_calendar", RedisOptions::default()).await
    else {
        return;
    };
    let script = redis::Script::new(crate::common::internals::REDIS_SCRIPT);
    let mut connection = redis.connection().await;
    const DAY: i64 = 86_400;
    // (a moment, its day index, its day's end, its month index, its month's end)
    let cases = [
        (0, 0, DAY, 0, 31 * DAY),
        // 2024-02-29 12:00 UTC: a leap day; March starts on day 19783.
        (
            19_782 * DAY + 43_200,
            19_782,
            19_783 * DAY,
            649,
            19_783 * DAY,
        ),
        // 2025-12-31 23:59:59 UTC: the year's last second; 2026-01-01 is day 20454.
        (20_454 * DAY - 1, 20_453, 20_454 * DAY, 671, 20_454 * DAY),
        // 2026-01-01 00:00:00 UTC; February starts on day 20485.
        (20_454 * DAY, 20_454, 20_455 * DAY, 672, 20_485 * DAY),
    ];
    for (secs, day, day_end, month, month_end) in cases {
        let got: Vec<i64> = script
            .arg("periods")
            .arg(secs)
            .invoke_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(got, [day, day_end, month, month_end], "at {secs}");
    }
}

#[tokio::test]
async fn a_reload_keeps_the_connection_and_the_shared_state() {
    let Some((_redis, _mock, mut config)) = shared_limits("a_reload_keeps").await else {
        return;
    };
    key_rate(&mut config.auth.keys[0], 1, 2);
    let gw = TestGateway::start(config.clone()).await;
    for _ in 0..2 {
        assert_eq!(chat(&gw, ALICE_KEY).await.status(), 200);
    }
    // A reload that changes another key: alice's bucket, in Redis, stays spent.
    config.auth.keys[1].burst = Some(7);
    gw.reload(Ok(config)).await;
    eventually("the reload applied", async || {
        chat(&gw, BOB_KEY).await.headers()["x-ratelimit-limit-requests"] == "7"
    })
    .await;
    assert_eq!(chat(&gw, ALICE_KEY).await.status(), 429);
}

#[tokio::test]
async fn a_journal_batch_is_applied_once_and_a_malformed_one_not_at_all() {
    let Some(redis) =
        RedisServer::start("a_journal_batch_is_applied_once", RedisOptions::default()).await
    else {
        return;
    };
    let script = redis::Script::new(crate::common::internals::REDIS_SCRIPT);
    let mut connection = redis.connection().await;
    // Now: counters of a period long over expire at once.
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let periods: Vec<u64> = script
        .arg("periods")
        .arg(at)
        .invoke_async(&mut connection)
        .await
        .unwrap();
    let day_key = format!("orgate:{{alice}}:spend:day:{}", periods[0]);
    let month_key = format!("orgate:{{alice}}:spend:month:{}", periods[2]);
    let replay = |seq: u64, kind: &str| {
        let mut invocation = script.prepare_invoke();
        invocation
            .key("orgate:journal:w1")
            .key("orgate:{alice}:spend")
            .arg("replay")
            .arg(seq)
            .arg(60_000)
            .arg(kind)
            .arg(250)
            .arg(0)
            .arg(at);
        invocation
    };
    let spent = async |connection: &mut redis::aio::MultiplexedConnection| -> (u64, u64) {
        redis::cmd("MGET")
            .arg(&day_key)
            .arg(&month_key)
            .query_async::<(Option<u64>, Option<u64>)>(connection)
            .await
            .map(|(d, m)| (d.unwrap_or(0), m.unwrap_or(0)))
            .unwrap()
    };
    let applied: i64 = replay(1, "d").invoke_async(&mut connection).await.unwrap();
    assert_eq!(applied, 1);
    // Sent again (its reply lost), or an older batch: nothing changes.
    for seq in [1, 0] {
        let applied: i64 = replay(seq, "d")
            .invoke_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(applied, 0, "seq {seq}");
    }
    assert_eq!(spent(&mut connection).await, (250, 250));
    let applied: i64 = replay(2, "d").invoke_async(&mut connection).await.unwrap();
    assert_eq!(applied, 1);
    assert_eq!(spent(&mut connection).await, (500, 500));
    // A malformed entry: refused before anything is written, the mark included.
    let refused: redis::RedisResult<i64> = replay(3, "x").invoke_async(&mut connection).await;
    assert!(refused.is_err());
    assert_eq!(spent(&mut connection).await, (500, 500));
    let applied: i64 = replay(3, "d").invoke_async(&mut connection).await.unwrap();
    assert_eq!(applied, 1, "the refused batch's number was not taken");
}
