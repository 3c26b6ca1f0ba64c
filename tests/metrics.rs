//! `GET /metrics`: values move as requests, streams, tokens and failures happen.

use crate::common::*;
use futures_util::StreamExt;

async fn scrape(gw: &TestGateway) -> String {
    let response = http().get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    response.text().await.unwrap()
}

/// The value of one series (name with its labels, as printed), 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Polls the scrape until `series` reaches `expected` (gauges move when bodies finish).
async fn reaches(gw: &TestGateway, series: &str, expected: f64) -> String {
    eventually(&format!("{series} to reach {expected}"), async || {
        let text = scrape(gw).await;
        if value(&text, series) == expected {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await
}

/// Waits until the gateway has learnt the upstream's model list (a background fetch).
async fn models_learnt(gw: &TestGateway) {
    eventually("the model list learnt", async || {
        let body = format!(r#"{{"model":"{MODEL}","messages":[]}}"#);
        gw.chat(BOB_KEY)
            .body(body)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        scrape(gw)
            .await
            .contains(&format!(r#"key="bob",route="chat",model="{MODEL}""#))
    })
    .await;
}

#[tokio::test]
async fn requests_tokens_and_cost_are_counted_by_key_and_model() {
    let mock = MockOpenRouter::start().await;
    let gw = TestGateway::start(config_for(&mock)).await;
    models_learnt(&gw).await;
    let requests = format!(
        r#"orgate_requests_total{{key="alice",route="chat",model="{MODEL}",status="200"}}"#
    );
    let prompt = format!(r#"orgate_tokens_total{{key="alice",model="{MODEL}",kind="prompt"}}"#);
    let completion =
        format!(r#"orgate_tokens_total{{key="alice",model="{MODEL}",kind="completion"}}"#);
    let cost = format!(r#"orgate_cost_usd_total{{key="alice",model="{MODEL}"}}"#);
    let before = scrape(&gw).await;

    // A JSON completion (usage 10 + 4, cost 0.00014) and a stream (usage 10 + 2, cost 0.00006).
    let json = gw
        .chat(ALICE_KEY)
        .body(chat_body(MODEL))
        .send()
        .await
        .unwrap();
    json.bytes().await.unwrap();
    let stream_body = stream_body();
    let stream = gw.chat(ALICE_KEY).body(stream_body).send().await.unwrap();
    stream.bytes().await.unwrap();

    let after = reaches(&gw, &requests, value(&before, &requests) + 2.0).await;
    assert_eq!(value(&after, &prompt) - value(&before, &prompt), 20.0);
    assert_eq!(
        value(&after, &completion) - value(&before, &completion),
        6.0
    );
    assert!(
        (value(&after, &cost) - value(&before, &cost) - 0.0002).abs() < 1e-9,
        "{after}"
    );
    assert!(after.contains(r#"orgate_request_duration_seconds_count{route="chat",status="200"}"#));
    assert!(after.contains(r#"orgate_upstream_ttfb_seconds_count{route="chat"}"#));
    assert!(after.contains(r#"orgate_overhead_seconds_count{route="chat"}"#));
}

#[tokio::test]
async fn in_flight_requests_and_streams_rise_and_fall() {
    let mock = MockOpenRouter::start().await;
    let gw = TestGateway::start(config_for(&mock)).await;
    let inflight = r#"orgate_inflight_requests{key="alice"}"#;
    let streams = r#"orgate_inflight_streams{key="alice"}"#;
    let response = gw
        .chat(ALICE_KEY)
        .header("x-mock", "stream")
        .header("x-mock-chunks", "50")
        .header("x-mock-delay-ms", "20")
        .body(format!(
            r#"{{"model":"{MODEL}","messages":[],"stream":true}}"#
        ))
        .send()
        .await
        .unwrap();
    let text = reaches(&gw, inflight, 1.0).await;
    assert_eq!(value(&text, streams), 1.0);
    // The client leaves mid-stream: both fall back to 0.
    let mut body = response.bytes_stream();
    body.next().await.unwrap().unwrap();
    drop(body);
    let text = reaches(&gw, inflight, 0.0).await;
    assert_eq!(value(&text, streams), 0.0);
}

#[tokio::test]
async fn upstream_failures_and_retries_are_counted_by_kind() {
    let mock = MockOpenRouter::start().await;
    let mut config = config_for(&mock);
    config.upstream.retries = 2;
    config.upstream.first_byte_timeout = "300ms".parse().unwrap();
    let gw = TestGateway::start(config).await;
    let kind = |k: &str| format!(r#"orgate_upstream_errors_total{{kind="{k}"}}"#);
    let before = scrape(&gw).await;
    let send = |scenario: &'static str| {
        gw.chat(ALICE_KEY)
            .header("x-mock", scenario)
            .header("x-mock-fail-times", "1")
            .body(format!(
                r#"{{"model":"{MODEL}","messages":[],"stream":true}}"#
            ))
            .send()
    };
    send("fail-then-ok").await.unwrap().bytes().await.unwrap();
    send("hang").await.unwrap().bytes().await.unwrap();
    let _ = send("stream-cut").await.unwrap().bytes().await;
    send("status-500").await.unwrap().bytes().await.unwrap();
    let after = reaches(&gw, &kind("reset"), value(&before, &kind("reset")) + 1.0).await;
    assert_eq!(
        value(&after, &kind("retry")) - value(&before, &kind("retry")),
        1.0
    );
    assert_eq!(
        value(&after, &kind("timeout")) - value(&before, &kind("timeout")),
        1.0
    );
    assert_eq!(
        value(&after, &kind("status_5xx")) - value(&before, &kind("status_5xx")),
        1.0
    );
}

#[tokio::test]
async fn made_up_models_are_grouped_and_no_secret_is_scraped() {
    let mock = MockOpenRouter::start().await;
    let gw = TestGateway::start(config_for(&mock)).await;
    for i in 0..5 {
        let body = format!(r#"{{"model":"attacker/model-{i}","messages":[]}}"#);
        gw.chat(ALICE_KEY)
            .body(body)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    http()
        .get(gw.url("/v1/models"))
        .bearer_auth("sk-orgate-wrong-key")
        .send()
        .await
        .unwrap();
    let text = reaches(
        &gw,
        r#"orgate_requests_total{key="alice",route="chat",model="other",status="200"}"#,
        5.0,
    )
    .await;
    assert!(!text.contains("attacker"));
    for secret in [UPSTREAM_KEY, ALICE_KEY, BOB_KEY, "sk-orgate-wrong-key"] {
        assert!(!text.contains(secret));
    }
    assert!(text.contains(r#"orgate_requests_total{key="anonymous",route="passthrough",model="other",status="401"} 1"#), "{text}");
}

#[tokio::test]
async fn rate_limit_refusals_are_counted_by_key_and_limit() {
    let mock = MockOpenRouter::start().await;
    let mut config = config_for(&mock);
    config.limits.burst = 1;
    config.limits.requests_per_minute = 1;
    let gw = TestGateway::start(config).await;
    for _ in 0..3 {
        gw.chat(ALICE_KEY)
            .body(chat_body(MODEL))
            .send()
            .await
            .unwrap();
    }
    let text = scrape(&gw).await;
    assert_eq!(
        value(
            &text,
            r#"orgate_ratelimited_total{key="alice",limit="requests"}"#
        ),
        2.0,
        "{text}"
    );
}
