//! Per-key limits through the real gateway: request rate, concurrency, tokens.

use crate::common::*;

async fn chat(gw: &TestGateway, key: &str) -> reqwest::Response {
    gw.completion(key).fetch().await
}

/// Polls until a request of `key` is admitted (a slot or a refill frees); until then it is
/// refused with 429, nothing else.
async fn admitted_eventually(gw: &TestGateway, key: &str) {
    eventually("a request admitted again", async || {
        match chat(gw, key).await.status().as_u16() {
            200 => Ok(()),
            429 => Err("refused: 429"),
            other => panic!("refused with {other}, not 429"),
        }
    })
    .await;
}

#[tokio::test]
async fn a_burst_admits_exactly_burst_then_429_with_retry_after() {
    let (mock, gw) = start_gateway_with(|config| default_rate(config, 6, 3)).await;
    for remaining in [2, 1, 0] {
        let response = chat(&gw, ALICE_KEY).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-ratelimit-limit-requests"], "3");
        assert_eq!(
            response.headers()["x-ratelimit-remaining-requests"],
            remaining.to_string().as_str()
        );
        assert!(response
            .headers()
            .contains_key("x-ratelimit-reset-requests"));
    }
    let refused = chat(&gw, ALICE_KEY).await;
    assert_eq!(refused.status(), 429);
    let retry_after = retry_after(&refused);
    assert!(
        (1..=10).contains(&retry_after),
        "one cell every 10 s: {retry_after}"
    );
    assert_eq!(refused.headers()["x-ratelimit-remaining-requests"], "0");
    let (code, message) = error_of(refused).await;
    assert_eq!(code, 429);
    assert!(
        message.contains("rate limit exceeded for key \"alice\"")
            && message.contains("6 requests per minute"),
        "{message}"
    );
    assert_eq!(
        mock.request_count(),
        3,
        "a refused request is not forwarded"
    );
    // Another key has its own bucket.
    assert_eq!(chat(&gw, BOB_KEY).await.status(), 200);
}

#[tokio::test]
async fn a_drained_bucket_refills_with_time() {
    // One cell every 100 ms.
    let (_mock, gw) = start_gateway_with(|config| default_rate(config, 600, 1)).await;
    assert_eq!(chat(&gw, ALICE_KEY).await.status(), 200);
    assert_eq!(chat(&gw, ALICE_KEY).await.status(), 429);
    admitted_eventually(&gw, ALICE_KEY).await;
}

#[tokio::test]
async fn per_key_values_override_the_defaults_and_zero_is_unlimited() {
    let (_mock, gw) = start_gateway_with(|config| {
        config.limits.requests_per_minute = 0;
        key_rate(&mut config.auth.keys[0], 60, 1);
    })
    .await;
    assert_eq!(chat(&gw, ALICE_KEY).await.status(), 200);
    assert_eq!(chat(&gw, ALICE_KEY).await.status(), 429);
    for _ in 0..20 {
        let response = chat(&gw, BOB_KEY).await;
        assert_eq!(response.status(), 200);
        assert!(
            !response
                .headers()
                .contains_key("x-ratelimit-limit-requests"),
            "no limit, no headers"
        );
    }
}

#[tokio::test]
async fn anonymous_use_has_its_own_bucket() {
    let (_mock, gw) = start_gateway_with(|config| {
        config.auth.allow_anonymous = true;
        default_rate(config, 1, 2);
    })
    .await;
    let anonymous = async || gw.chat_without_key().completion().fetch().await.status();
    assert_eq!(anonymous().await, 200);
    assert_eq!(anonymous().await, 200);
    assert_eq!(anonymous().await, 429);
    assert_eq!(
        chat(&gw, ALICE_KEY).await.status(),
        200,
        "keys are not charged for anonymous use"
    );
}

#[tokio::test]
async fn the_global_rate_caps_all_keys_together() {
    let (_mock, gw) = start_gateway_with(|config| {
        config.limits.global_requests_per_second = 2;
    })
    .await;
    let mut statuses = Vec::new();
    for key in [ALICE_KEY, BOB_KEY, ALICE_KEY, BOB_KEY] {
        statuses.push(chat(&gw, key).await.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    assert!(statuses.contains(&429));
}

#[tokio::test]
async fn concurrency_counts_streams_until_they_end_or_the_client_leaves() {
    let (_mock, gw) = start_gateway_with(|config| config.limits.max_concurrent = 2).await;
    // 200 chunks 20 ms apart: 4 s, far longer than what the test does while they run.
    let long = async || gw.stream(ALICE_KEY).paced(200, 20).fetch().await;
    let first = long().await;
    let second = long().await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = long().await;
    assert_eq!(third.status(), 429);
    let (_, message) = error_of(third).await;
    assert!(
        message.contains("concurrency") || message.contains("in flight"),
        "{message}"
    );
    assert_eq!(
        chat(&gw, BOB_KEY).await.status(),
        200,
        "other keys are unaffected"
    );
    // The first client leaves: its slot comes back.
    leave_after_first_piece(first).await;
    admitted_eventually(&gw, ALICE_KEY).await;
    // A stream that ends frees its slot too: both slots are free again.
    second.bytes().await.unwrap();
    let both_free = async || {
        let (one, two) = (long().await, long().await);
        match (one.status().as_u16(), two.status().as_u16()) {
            (200, 200) => Ok(()),
            statuses => Err(format!("{statuses:?}")),
        }
    };
    eventually("both of alice's slots free", both_free).await;
    admitted_eventually(&gw, ALICE_KEY).await;
    // A failed upstream request holds none.
    for _ in 0..3 {
        let status = gw
            .completion(ALICE_KEY)
            .scenario("status-500")
            .fetch_status()
            .await;
        assert_eq!(status, 500);
    }
    admitted_eventually(&gw, ALICE_KEY).await;
    eventually("both of alice's slots free", both_free).await;
}

#[tokio::test]
async fn tokens_reported_by_a_stream_are_debited() {
    let (_mock, gw) = start_gateway_with(|config| config.limits.tokens_per_minute = 10).await;
    // The stream's usage event says 12 tokens: the bucket is overdrawn.
    let response = gw.stream(ALICE_KEY).scenario("stream").fetch().await;
    assert_eq!(response.headers()["x-ratelimit-limit-tokens"], "10");
    response.bytes().await.unwrap();
    let refused = chat(&gw, ALICE_KEY).await;
    assert_eq!(refused.status(), 429);
    assert!(refused
        .headers()
        .contains_key("x-ratelimit-remaining-tokens"));
    let (_, message) = error_of(refused).await;
    assert!(message.contains("token"), "{message}");
    assert_eq!(chat(&gw, BOB_KEY).await.status(), 200);
}

#[tokio::test]
async fn tokens_reported_by_a_json_body_are_debited() {
    let (_mock, gw) = start_gateway_with(|config| config.limits.tokens_per_minute = 20).await;
    // 14 tokens: room remains for one more request, which overdraws.
    chat(&gw, ALICE_KEY).await.bytes().await.unwrap();
    assert_eq!(chat(&gw, ALICE_KEY).await.status(), 200);
    let refused = chat(&gw, ALICE_KEY).await;
    assert_eq!(refused.status(), 429);
}

#[tokio::test]
async fn hanging_up_is_not_free_the_generation_is_looked_up() {
    let (mock, gw) = start_gateway_with(|config| config.limits.tokens_per_minute = 10).await;
    // The client leaves before the usage event.
    let response = gw.stream(ALICE_KEY).paced(100, 20).fetch().await;
    let id = generation_id(&response);
    leave_after_first_piece(response).await;
    mock.next_abandoned().await;
    // The gateway asks upstream what it cost (the first answer is a 404, as upstream may give).
    for _ in 0..2 {
        let lookup = mock.next_internal_request().await;
        assert_eq!(lookup.path, "/api/v1/generation");
        assert_eq!(lookup.query.as_deref(), Some(format!("id={id}").as_str()));
        assert_eq!(lookup.bearer(), Some(UPSTREAM_KEY));
    }
    // 14 tokens debited: the next request is refused.
    eventually("the settled tokens debited", async || {
        chat(&gw, ALICE_KEY).await.status() == 429
    })
    .await;
}
