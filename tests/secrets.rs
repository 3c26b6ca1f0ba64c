//! Keys never leak: not in responses, headers, logs (any level, either format) or metrics.

use crate::common::process::{key_toml, serve_command, ConfigFile, Served};
use crate::common::*;

const WRONG_KEY: &str = "sk-orgate-wrong-but-secret-looking-key-123";

/// Drives one gateway process through every path that can fail; returns every response as
/// text (status, headers, body).
async fn exercise(served: &Served) -> Vec<String> {
    let mut seen = Vec::new();
    let chat = |key: Option<&str>, scenario: &str, body: String| {
        let mut request = served.chat_without_key().scenario(scenario).body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.fetch()
    };
    let stream_body = stream_body();
    let requests = vec![
        chat(Some(ALICE_KEY), "", chat_body(MODEL)),
        chat(Some(ALICE_KEY), "stream", stream_body.clone()),
        chat(None, "", chat_body(MODEL)),
        chat(Some(WRONG_KEY), "", chat_body(MODEL)),
        chat(Some(ALICE_KEY), "", "{bad json".into()),
        chat(
            Some(ALICE_KEY),
            "",
            format!(r#"{{"messages":[],"x":"{}"}}"#, "a".repeat(4096)),
        ),
        chat(Some(ALICE_KEY), "", chat_body("x/y:free")),
        chat(Some(ALICE_KEY), "status-500", chat_body(MODEL)),
        chat(Some(ALICE_KEY), "status-429", chat_body(MODEL)),
        chat(Some(ALICE_KEY), "stream-cut", stream_body.clone()),
        chat(Some(ALICE_KEY), "stream-stall", stream_body.clone()),
        chat(Some(ALICE_KEY), "hang", chat_body(MODEL)),
        chat(Some("sk-orgate-limited"), "", chat_body(MODEL)),
        chat(Some("sk-orgate-limited"), "", chat_body(MODEL)),
    ];
    for request in requests {
        seen.push(describe(request.await).await);
    }
    for (method, path, key) in [
        ("GET", "/v1/models", Some(ALICE_KEY)),
        ("GET", "/api/v1/key", Some(WRONG_KEY)),
        ("GET", "/v1/../x", Some(ALICE_KEY)),
        ("DELETE", "/v1/chat/completions", Some(ALICE_KEY)),
        ("GET", "/nowhere", Some(ALICE_KEY)),
        ("GET", "/metrics", None),
        ("GET", "/readyz", None),
    ] {
        let mut request = http()
            .request(method.parse().unwrap(), served.url(path))
            .header("x-api-key", key.unwrap_or(""));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        seen.push(describe(request.fetch().await).await);
    }
    // A client that leaves mid-stream.
    leave_after_first_piece(chat(Some(ALICE_KEY), "stream", stream_body).await).await;
    seen
}

async fn describe(response: reqwest::Response) -> String {
    let mut text = format!("{}\n", response.status());
    for (name, value) in response.headers() {
        text.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    let body = response.bytes().await.unwrap_or_default();
    text.push_str(&String::from_utf8_lossy(&body));
    text
}

async fn run(format: &str) {
    let mock = MockOpenRouter::start().await;
    let config = ConfigFile::new(&format!(
        r#"[server]
max_body = "2KiB"
{}first_byte_timeout = "500ms"
idle_timeout = "300ms"
[policy]
models.deny = ["*:free"]
{}{}requests_per_minute = 1
burst = 1
"#,
        mock.upstream_toml(),
        key_toml("alice", ALICE_KEY),
        key_toml("limited", "sk-orgate-limited")
    ));
    let mut command = serve_command(&config.path);
    command
        .env("ORGATE_LOG", "trace")
        .env("ORGATE_LOG_FORMAT", format);
    let mut served = if format == "json" {
        Served::start(&mut command).await
    } else {
        Served::start_pretty(&mut command).await
    };
    let responses = exercise(&served).await;
    let metrics = served.get("/metrics").fetch().await.text().await.unwrap();
    served.wait_for("request").await;
    served.terminate();
    let (code, log) = served.finish().await;
    assert_eq!(code, Some(0));
    assert!(
        log.len() > 10_000,
        "trace logging was on ({} bytes)",
        log.len()
    );
    for secret in [UPSTREAM_KEY, ALICE_KEY, WRONG_KEY, "sk-orgate-limited"] {
        for response in &responses {
            assert!(
                !response.contains(secret),
                "{secret} in a response:\n{response}"
            );
        }
        assert!(!metrics.contains(secret), "{secret} in the metrics");
        assert!(!log.contains(secret), "{secret} in the {format} log");
    }
    // What the client did see: the refusals happened.
    let statuses: Vec<&str> = responses
        .iter()
        .map(|r| r.lines().next().unwrap())
        .collect();
    for expected in [
        "401", "400", "413", "403", "429", "500", "504", "404", "405",
    ] {
        assert!(
            statuses.iter().any(|s| s.starts_with(expected)),
            "no {expected} in {statuses:?}"
        );
    }
}

#[tokio::test]
async fn no_key_leaks_anywhere_with_json_logs() {
    run("json").await;
}

#[tokio::test]
async fn no_key_leaks_anywhere_with_pretty_logs() {
    run("pretty").await;
}

#[test]
fn debug_output_of_config_and_state_redacts_keys() {
    let mut config = orgate::Config::default();
    config.secrets.insert("OPENROUTER_API_KEY", UPSTREAM_KEY);
    config.auth.keys.push(key("alice", ALICE_KEY));
    let debug = format!("{config:?}");
    assert!(!debug.contains(UPSTREAM_KEY), "{debug}");
    assert!(debug.contains("[redacted]"));
    let snapshot = crate::common::internals::snapshot(config);
    let debug = format!("{snapshot:?}");
    assert!(
        !debug.contains(UPSTREAM_KEY) && !debug.contains(ALICE_KEY),
        "{debug}"
    );
}
