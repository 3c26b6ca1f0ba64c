//! Upstream faults before the first byte: timeouts, refusals and the retry rule.

use std::time::{Duration, Instant};

use crate::common::*;

#[tokio::test]
async fn an_upstream_that_refuses_connections_gives_502() {
    let port = unused_port();
    let (_mock, gw) = start_gateway_with(|config| {
        config.upstream.base_url = format!("http://127.0.0.1:{port}/api/v1");
        config.upstream.retries = 2;
    })
    .await;
    let (code, message) = gw.completion(ALICE_KEY).fetch_error().await;
    assert_eq!(code, 502);
    assert!(
        message.starts_with("upstream unreachable: connection refused"),
        "{message}"
    );
    assert!(
        !message.contains(&port.to_string()),
        "the upstream address is not the client's business: {message}"
    );
}

#[tokio::test]
async fn an_upstream_that_never_answers_gives_504_after_the_first_byte_timeout() {
    let (mock, gw) = start_gateway_with(first_byte_timeout_300ms).await;
    let started = Instant::now();
    let (code, message) = gw
        .completion(ALICE_KEY)
        .scenario("hang")
        .fetch_error()
        .await;
    assert_eq!(code, 504);
    assert!(message.contains("300ms"), "{message}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    assert_eq!(mock.request_count(), 1, "a timeout is not retried");
}

#[tokio::test]
async fn a_503_is_retried_and_the_recovery_reaches_the_client() {
    let (mock, gw) = start_gateway_with(|config| config.upstream.retries = 2).await;
    let response = gw.completion(ALICE_KEY).fail_then_ok(2).fetch().await;
    assert_eq!(response.status(), 200);
    assert_eq!(mock.request_count(), 3);
    for _ in 0..3 {
        assert_eq!(
            mock.next_request().await.body,
            chat_body(MODEL).as_bytes(),
            "each attempt carries the same body"
        );
    }
}

#[tokio::test]
async fn when_retries_run_out_the_upstreams_own_answer_passes() {
    let (mock, gw) = start_gateway_with(|config| config.upstream.retries = 1).await;
    let response = gw.completion(ALICE_KEY).fail_then_ok(5).fetch().await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["user_id"], "user_mock");
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test]
async fn other_statuses_and_broken_streams_are_never_retried() {
    let (mock, gw) = start_gateway_with(|config| config.upstream.retries = 3).await;
    for scenario in ["status-500", "status-429", "status-400"] {
        gw.completion(ALICE_KEY).scenario(scenario).fetch().await;
    }
    assert_eq!(mock.request_count(), 3);
    // Once the first byte has gone to the client, a broken stream is not retried.
    let response = gw
        .completion(ALICE_KEY)
        .scenario("stream-cut")
        .fetch()
        .await;
    let _ = response.bytes().await;
    assert_eq!(mock.request_count(), 4);
}

#[tokio::test]
async fn an_upstream_that_accepts_and_never_answers_gives_504() {
    // A black hole: connections are accepted and held, nothing is ever read or written.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = hole.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((socket, _)) = hole.accept().await {
            kept.push(socket);
        }
    });
    let (_mock, gw) = start_gateway_with(|config| {
        config.upstream.base_url = format!("http://127.0.0.1:{port}/api/v1");
        first_byte_timeout_300ms(config);
    })
    .await;
    let (code, _) = gw.completion(ALICE_KEY).fetch_error().await;
    assert_eq!(code, 504);
    held.abort();
}

#[tokio::test]
async fn headers_then_silence_on_a_json_body_is_cut_at_the_idle_timeout() {
    let (_mock, gw) = start_gateway_with(idle_timeout_300ms).await;
    let started = Instant::now();
    let response = gw
        .completion(ALICE_KEY)
        .scenario("headers-stall")
        .fetch()
        .await;
    assert_eq!(response.status(), 200, "the headers had already come");
    assert!(
        response.bytes().await.is_err(),
        "the body is visibly broken, not passed off as complete"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn garbage_sse_passes_unchanged_and_still_ends_with_an_error_event() {
    let (mock, gw) = start_gateway().await;
    let response = gw
        .completion(ALICE_KEY)
        .scenario("stream-garbage")
        .fetch()
        .await;
    let id = generation_id(&response);
    let received = response.bytes().await.unwrap();
    let sent = mock.sent_stream(&id);
    assert!(
        received.starts_with(&sent),
        "the upstream's bytes, unchanged"
    );
    let tail = String::from_utf8_lossy(&received[sent.len()..]).into_owned();
    assert!(
        tail.starts_with("\n\ndata: {"),
        "a fresh event after the unterminated line: {tail:?}"
    );
    let event: serde_json::Value =
        serde_json::from_str(tail.trim().strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(event["choices"][0]["finish_reason"], "error");
    // The gateway is unharmed.
    assert_eq!(gw.completion(ALICE_KEY).fetch().await.status(), 200);
}
