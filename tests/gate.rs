//! The request's home: what an admitted request holds, it holds whatever layers the router is
//! served with. The router alone (no access log, no request ids) still enforces the limits.

use tower::ServiceExt;

use crate::common::{config_for, internals, stream_body, MockOpenRouter, ALICE_KEY};

fn stream_request(mock_scenario: &str) -> http::Request<axum::body::Body> {
    http::Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("content-type", "application/json")
        .header("x-mock", mock_scenario)
        .body(axum::body::Body::from(stream_body()))
        .unwrap()
}

#[tokio::test]
async fn the_router_without_the_access_log_still_holds_the_concurrency_limit() {
    let mock = MockOpenRouter::start().await;
    let mut config = config_for(&mock);
    config.limits.max_concurrent = 1;
    let (_state, app) = internals::router(config);

    // A stream that stays open holds the key's one slot while its body is held.
    let held = app
        .clone()
        .oneshot(stream_request("stream-stall"))
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    let refused = app.clone().oneshot(stream_request("stream")).await.unwrap();
    assert_eq!(refused.status(), 429, "the held stream's slot is taken");
    assert_eq!(refused.headers()["retry-after"], "1");

    // The client goes away: dropping the body releases the slot.
    drop(held);
    let admitted = app.oneshot(stream_request("stream")).await.unwrap();
    assert_eq!(admitted.status(), 200);
}
