//! `limits.backend = "redis"` as teams run it: a TLS-only `redis-server` with a password and a
//! certificate the test makes, and Redis going away mid-traffic without a charge lost (issue
//! 22). Skipped without `redis-server`, except under CI, as in `redis_limits`. Valkey runs the
//! TLS test too when `valkey-server` is installed (Debian 12 does not package it).

use std::time::Duration;

use crate::common::process::{key_toml, serve_command, ConfigFile, Served};
use crate::common::redis_server::{RedisOptions, RedisServer, REDIS_PASSWORD};
use crate::common::*;
use orgate::config::{Config, LimitsBackend, OnBackendError};

/// A JSON completion's cost in the mock (micro-dollars), and a stream's.
const JSON_MICROS: u64 = 140;
const STREAM_MICROS: u64 = 60;

const TLS: RedisOptions = RedisOptions {
    valkey: false,
    tls: true,
    persistent: false,
};

/// A config sharing the limits through `redis` (over TLS, trusting its certificate).
fn over_tls(redis: &RedisServer, mock: &MockOpenRouter) -> Config {
    let mut config = config_for(mock);
    config.limits.backend = LimitsBackend::Redis;
    config.limits.redis_url = redis.url();
    config.limits.redis_ca_file = ca_path(redis);
    config
}

fn ca_path(redis: &RedisServer) -> String {
    redis.ca_file.as_ref().unwrap().to_str().unwrap().to_owned()
}

/// Alice's spend counter for today, in micro-dollars (0 when absent).
async fn spent_today(redis: &RedisServer) -> u64 {
    let day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let mut connection = redis.connection().await;
    let spent: Option<u64> = redis::cmd("GET")
        .arg(format!("orgate:{{alice}}:spend:day:{day}"))
        .query_async(&mut connection)
        .await
        .unwrap();
    spent.unwrap_or(0)
}

/// Waits until Redis holds exactly `micros` for alice today.
async fn until_spent(redis: &RedisServer, micros: u64) {
    eventually(
        &format!("alice's spend in Redis to be {micros}"),
        async || {
            let spent = spent_today(redis).await;
            if spent == micros {
                Ok(())
            } else {
                Err(format!("spent {spent}"))
            }
        },
    )
    .await;
}

/// The micro-dollars the journal file at `path` holds (sent or not), 0 when unreadable.
fn journalled_micros(path: &std::path::Path) -> u64 {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0;
    };
    let Ok(saved) = serde_json::from_str::<serde_json::Value>(&text) else {
        return 0;
    };
    let sent = saved["batch"]["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let open = saved["open"].as_array().cloned().unwrap_or_default();
    sent.iter()
        .chain(&open)
        .filter(|entry| entry[0]["window"].get("day").is_some())
        .filter_map(|entry| entry[1]["amount"].as_u64())
        .sum()
}

async fn json_ok(gw: &impl Gateway) {
    let response = gw.completion(ALICE_KEY).fetch().await;
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
}

async fn connects_over_rediss_with_a_password(options: RedisOptions) {
    let Some(redis) = RedisServer::start("connects_over_rediss", options).await else {
        return;
    };
    let mock = MockOpenRouter::start().await;
    let mut config = over_tls(&redis, &mock);
    key_rate(&mut config.auth.keys[0], 1, 10);
    config.auth.keys[0].usd_per_day = Some(1.0);
    let gw = TestGateway::start(config).await;

    let response = gw.completion(ALICE_KEY).fetch().await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-ratelimit-remaining-requests"],
        "9",
        "checked in Redis"
    );
    response.bytes().await.unwrap();
    until_spent(&redis, JSON_MICROS).await;
    let text = gw.metrics_text().await;
    assert_eq!(
        metric_value(&text, "orgate_limits_backend_up"),
        1.0,
        "{text}"
    );
    assert!(
        metric_value(&text, "orgate_limits_backend_round_trip_seconds_count") >= 1.0,
        "{text}"
    );
    assert!(!text.contains(REDIS_PASSWORD));
}

#[tokio::test]
async fn connects_to_redis_over_rediss_with_a_password() {
    connects_over_rediss_with_a_password(TLS).await;
}

#[tokio::test]
async fn connects_to_valkey_over_valkeys_with_a_password_when_installed() {
    let installed = std::process::Command::new("valkey-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        // Not a CI failure: Debian 12 has no valkey-server package.
        eprintln!("SKIPPED: valkey-server is not installed");
        return;
    }
    connects_over_rediss_with_a_password(RedisOptions {
        valkey: true,
        ..TLS
    })
    .await;
}

/// `orgate check` (or `serve`, which must stop at start) with the config at `config` and the
/// Redis URL in its environment, run to its end: (exit code, stdout, stderr).
async fn orgate(check: bool, config: &ConfigFile, url: &str) -> (Option<i32>, String, String) {
    let mut command = if check {
        let mut check = tokio::process::Command::new(crate::common::process::BIN);
        check
            .env_clear()
            .args(["check", "--config"])
            .arg(&config.path)
            .env("OPENROUTER_API_KEY", UPSTREAM_KEY);
        check
    } else {
        serve_command(&config.path)
    };
    command.env("ORGATE_TEST_REDIS_URL", url);
    let output = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .expect("orgate ends")
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn tls_config_file(mock: &MockOpenRouter, ca_file: &str, extra: &str) -> ConfigFile {
    ConfigFile::new(&format!(
        "{}[limits]\nbackend = \"redis\"\nredis_url_env = \"ORGATE_TEST_REDIS_URL\"\n\
         redis_ca_file = \"{ca_file}\"\n{extra}\n{}usd_per_day = 100\n",
        mock.upstream_toml(),
        key_toml("alice", ALICE_KEY)
    ))
}

#[tokio::test]
async fn a_wrong_ca_or_password_is_refused_at_start_and_in_check() {
    let Some(redis) = RedisServer::start("a_wrong_ca", TLS).await else {
        return;
    };
    let mock = MockOpenRouter::start().await;
    let right = tls_config_file(&mock, &ca_path(&redis), "");
    let (code, stdout, stderr) = orgate(true, &right, &redis.url()).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("# limits backend (redis): answers"),
        "{stdout}"
    );

    // Another self-signed certificate: the server's is not issued by it.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let wrong_dir = tempfile::tempdir().unwrap();
    let wrong_ca = wrong_dir.path().join("other-ca.pem");
    std::fs::write(&wrong_ca, other.cert.pem()).unwrap();
    let wrong = tls_config_file(&mock, wrong_ca.to_str().unwrap(), "");
    let (code, stdout, stderr) = orgate(true, &wrong, &redis.url()).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("limits.redis_url: TLS certificate verification failed")
            && stderr.contains("limits.redis_ca_file"),
        "{stderr}"
    );
    let (code, stdout, stderr) = orgate(false, &wrong, &redis.url()).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("TLS certificate verification failed"),
        "{stderr}"
    );
    for text in [&stdout, &stderr] {
        assert!(!text.contains(REDIS_PASSWORD), "{text}");
    }

    // The right certificate, a wrong password: refused too, and named.
    let wrong_password = redis.url().replace(REDIS_PASSWORD, "not-the-password");
    let (code, stdout, stderr) = orgate(true, &right, &wrong_password).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("Redis refused the credentials"), "{stderr}");
    assert!(!stderr.contains("not-the-password") && !stdout.contains("not-the-password"));
}

/// A TLS Redis that keeps what it was told through a `SIGKILL`, and the mock.
async fn persistent_tls(test: &str) -> Option<(RedisServer, MockOpenRouter)> {
    let options = RedisOptions {
        persistent: true,
        ..TLS
    };
    let redis = RedisServer::start(test, options).await?;
    Some((redis, MockOpenRouter::start().await))
}

#[tokio::test]
async fn nothing_charged_is_lost_while_redis_is_away() {
    let Some((mut redis, mock)) = persistent_tls("nothing_charged_is_lost").await else {
        return;
    };
    let mut config = over_tls(&redis, &mock);
    config.limits.on_backend_error = OnBackendError::Allow;
    config.auth.keys[0].usd_per_day = Some(100.0);
    let gw = TestGateway::start(config).await;
    for _ in 0..2 {
        json_ok(&gw).await;
    }
    until_spent(&redis, 2 * JSON_MICROS).await;

    // Two streams admitted while Redis is there, finishing after it is gone.
    let streams = [
        gw.stream(ALICE_KEY).paced(10, 100).fetch().await,
        gw.stream(ALICE_KEY).paced(10, 100).fetch().await,
    ];
    redis.stop();
    for _ in 0..3 {
        json_ok(&gw).await;
    }
    for stream in streams {
        assert_eq!(stream.status(), 200);
        stream.bytes().await.unwrap();
    }
    eventually("the charges journalled", async || {
        let text = gw.metrics_text().await;
        metric_value(&text, "orgate_limits_backend_up") == 0.0
            && metric_value(&text, "orgate_limits_journal_entries") >= 1.0
    })
    .await;

    redis.restart().await;
    let total = 2 * JSON_MICROS + 3 * JSON_MICROS + 2 * STREAM_MICROS;
    until_spent(&redis, total).await;
    let text = gw.metrics_text().await;
    assert!(
        metric_value(&text, "orgate_limits_journal_replayed_total") >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "orgate_limits_journal_dropped_total"),
        0.0
    );
    // Nothing doubled: one more charge lands on exactly the sum.
    json_ok(&gw).await;
    until_spent(&redis, total + JSON_MICROS).await;
    eventually("the journal empty", async || {
        metric_value(&gw.metrics_text().await, "orgate_limits_journal_entries") == 0.0
    })
    .await;
}

#[tokio::test]
async fn nothing_charged_is_lost_across_a_gateway_restart_during_the_outage() {
    let Some((mut redis, mock)) = persistent_tls("across_a_gateway_restart").await else {
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let config = tls_config_file(
        &mock,
        &ca_path(&redis),
        &format!(
            "on_backend_error = \"allow\"\nstate_dir = \"{}\"\n",
            state.path().display()
        ),
    );
    let url = redis.url();
    let replica = || {
        let mut command = serve_command(&config.path);
        command.env("ORGATE_TEST_REDIS_URL", &url);
        command
    };
    let a = Served::start(&mut replica()).await;
    json_ok(&a).await;
    until_spent(&redis, JSON_MICROS).await;

    redis.stop();
    for _ in 0..2 {
        json_ok(&a).await;
    }
    let journal = state.path().join("redis-journal.json");
    eventually("both charges in the journal on disk", async || {
        journalled_micros(&journal) == 2 * JSON_MICROS
    })
    .await;
    // A crash: no shutdown, nothing saved on the way out.
    a.kill();
    let _ = a.finish().await;

    // Up again while Redis is still away; then Redis comes back.
    let b = Served::start(&mut replica()).await;
    json_ok(&b).await;
    redis.restart().await;
    until_spent(&redis, 4 * JSON_MICROS).await;
    b.terminate();
    let (code, log) = b.finish().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains(REDIS_PASSWORD), "{log}");
    assert_eq!(
        spent_today(&redis).await,
        4 * JSON_MICROS,
        "nothing doubled"
    );
}
