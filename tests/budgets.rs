//! Spend budgets per key, from the cost OpenRouter reports, kept across restarts.

use crate::common::*;

#[tokio::test]
async fn a_spent_daily_budget_refuses_until_utc_midnight() {
    // Each mock completion costs $0.00014: the third request finds the budget spent.
    let (_mock, gw) =
        start_gateway_with(|config| config.auth.keys[0].usd_per_day = Some(0.0002)).await;
    for _ in 0..2 {
        assert_eq!(gw.completion(ALICE_KEY).fetch_status().await, 200);
    }
    let refused = gw.completion(ALICE_KEY).fetch().await;
    assert_eq!(refused.status(), 429);
    let retry_after = retry_after(&refused);
    assert!(
        (1..=86_400).contains(&retry_after),
        "until the UTC day rolls over: {retry_after}"
    );
    let (_, message) = error_of(refused).await;
    assert!(
        message.contains("spend budget exhausted for key \"alice\": $0.0002 per day (UTC)"),
        "{message}"
    );
    assert_eq!(
        gw.completion(BOB_KEY).fetch().await.status(),
        200,
        "other keys keep their own budgets"
    );
    let text = gw.metrics_text().await;
    assert!(
        text.contains(r#"orgate_ratelimited_total{key="alice",limit="budget"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_streamed_usage_event_is_charged_to_the_monthly_budget() {
    // One stream ($0.00006) leaves some; two spend it.
    let (_mock, gw) = start_gateway_with(|config| config.limits.usd_per_month = 0.0001).await;
    gw.stream(ALICE_KEY).fetch_status().await;
    gw.stream(ALICE_KEY).fetch_status().await;
    let (code, message) = gw.completion(ALICE_KEY).fetch_error().await;
    assert_eq!(code, 429);
    assert!(message.contains("per month"), "{message}");
}

#[tokio::test]
async fn spending_survives_a_restart_with_state_dir() {
    let mock = MockOpenRouter::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(&mock);
    config.limits.state_dir = dir.path().to_str().unwrap().to_owned();
    config.auth.keys[0].usd_per_day = Some(0.0002);
    let gw = TestGateway::start(config.clone()).await;
    gw.completion(ALICE_KEY).fetch_status().await;
    gw.completion(ALICE_KEY).fetch_status().await;
    gw.shutdown().await.unwrap();
    assert!(dir.path().join("spend.json").exists(), "saved at shutdown");

    let gw = TestGateway::start(config.clone()).await;
    assert_eq!(
        gw.completion(ALICE_KEY).fetch().await.status(),
        429,
        "the restarted gateway remembers the spending"
    );
    gw.shutdown().await.unwrap();

    // Without state_dir a restart starts afresh (the documented default).
    config.limits.state_dir.clear();
    let gw = TestGateway::start(config).await;
    assert_eq!(gw.completion(ALICE_KEY).fetch().await.status(), 200);
}
