//! `GET /metrics`: values move as requests, streams, tokens and failures happen.

use crate::common::*;

/// Waits until the gateway has learnt the upstream's model list (a background fetch).
async fn models_learnt(gw: &TestGateway) {
    eventually("the model list learnt", async || {
        let body = format!(r#"{{"model":"{MODEL}","messages":[]}}"#);
        gw.chat(BOB_KEY).body(body).fetch_status().await;
        gw.metrics_text()
            .await
            .contains(&format!(r#"key="bob",route="chat",model="{MODEL}""#))
    })
    .await;
}

#[tokio::test]
async fn requests_tokens_and_cost_are_counted_by_key_and_model() {
    let (_mock, gw) = start_gateway().await;
    models_learnt(&gw).await;
    let requests = format!(
        r#"orgate_requests_total{{key="alice",route="chat",model="{MODEL}",status="200"}}"#
    );
    let prompt = format!(r#"orgate_tokens_total{{key="alice",model="{MODEL}",kind="prompt"}}"#);
    let completion =
        format!(r#"orgate_tokens_total{{key="alice",model="{MODEL}",kind="completion"}}"#);
    let cost = format!(r#"orgate_cost_usd_total{{key="alice",model="{MODEL}"}}"#);
    let before = gw.metrics_text().await;

    // A JSON completion (usage 10 + 4, cost 0.00014) and a stream (usage 10 + 2, cost 0.00006).
    gw.completion(ALICE_KEY).fetch_status().await;
    gw.stream(ALICE_KEY).fetch_status().await;

    let after = gw
        .metrics_when(&requests, metric_value(&before, &requests) + 2.0)
        .await;
    let delta = |series: &str| metric_value(&after, series) - metric_value(&before, series);
    assert_eq!(delta(&prompt), 20.0);
    assert_eq!(delta(&completion), 6.0);
    assert!((delta(&cost) - 0.0002).abs() < 1e-9, "{after}");
    assert!(after.contains(r#"orgate_request_duration_seconds_count{route="chat",status="200"}"#));
    assert!(after.contains(r#"orgate_upstream_ttfb_seconds_count{route="chat"}"#));
    assert!(after.contains(r#"orgate_overhead_seconds_count{route="chat"}"#));
}

#[tokio::test]
async fn in_flight_requests_and_streams_rise_and_fall() {
    let (_mock, gw) = start_gateway().await;
    let inflight = r#"orgate_inflight_requests{key="alice"}"#;
    let streams = r#"orgate_inflight_streams{key="alice"}"#;
    let response = gw.stream(ALICE_KEY).paced(50, 20).fetch().await;
    let text = gw.metrics_when(inflight, 1.0).await;
    assert_eq!(metric_value(&text, streams), 1.0);
    // The client leaves mid-stream: both fall back to 0.
    leave_after_first_piece(response).await;
    let text = gw.metrics_when(inflight, 0.0).await;
    assert_eq!(metric_value(&text, streams), 0.0);
}

#[tokio::test]
async fn upstream_failures_and_retries_are_counted_by_kind() {
    let (_mock, gw) = start_gateway_with(|config| {
        config.upstream.retries = 2;
        first_byte_timeout_300ms(config);
    })
    .await;
    let kind = |k: &str| format!(r#"orgate_upstream_errors_total{{kind="{k}"}}"#);
    let before = gw.metrics_text().await;
    let send = |scenario: &str| {
        gw.stream(ALICE_KEY)
            .scenario(scenario)
            .header("x-mock-fail-times", "1")
            .fetch()
    };
    send("fail-then-ok").await.bytes().await.unwrap();
    send("hang").await.bytes().await.unwrap();
    let _ = send("stream-cut").await.bytes().await;
    send("status-500").await.bytes().await.unwrap();
    let after = gw
        .metrics_when(&kind("reset"), metric_value(&before, &kind("reset")) + 1.0)
        .await;
    let delta = |k: &str| metric_value(&after, &kind(k)) - metric_value(&before, &kind(k));
    for k in ["retry", "timeout", "status_5xx"] {
        assert_eq!(delta(k), 1.0, "{k}");
    }
}

#[tokio::test]
async fn made_up_models_are_grouped_and_no_secret_is_scraped() {
    let (_mock, gw) = start_gateway().await;
    for i in 0..5 {
        let body = format!(r#"{{"model":"attacker/model-{i}","messages":[]}}"#);
        gw.chat(ALICE_KEY).body(body).fetch_status().await;
    }
    gw.get("/v1/models")
        .bearer_auth("sk-orgate-wrong-key")
        .fetch()
        .await;
    let text = gw
        .metrics_when(
            r#"orgate_requests_total{key="alice",route="chat",model="other",status="200"}"#,
            5.0,
        )
        .await;
    assert!(!text.contains("attacker"));
    for secret in [UPSTREAM_KEY, ALICE_KEY, BOB_KEY, "sk-orgate-wrong-key"] {
        assert!(!text.contains(secret));
    }
    assert!(
        text.contains(
            r#"orgate_requests_total{key="anonymous",route="other",model="other",status="401"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn rate_limit_refusals_are_counted_by_key_and_limit() {
    let (_mock, gw) = start_gateway_with(|config| default_rate(config, 1, 1)).await;
    for _ in 0..3 {
        gw.completion(ALICE_KEY).fetch().await;
    }
    let text = gw.metrics_text().await;
    assert_eq!(
        metric_value(
            &text,
            r#"orgate_ratelimited_total{key="alice",limit="requests"}"#
        ),
        2.0,
        "{text}"
    );
}
