//! Spend budgets per key, from the cost OpenRouter reports, kept across restarts.

use crate::common::*;

async fn chat(gw: &TestGateway, key: &str) -> reqwest::Response {
    gw.chat(key).body(chat_body(MODEL)).send().await.unwrap()
}

#[tokio::test]
async fn a_spent_daily_budget_refuses_until_utc_midnight() {
    let mock = MockOpenRouter::start().await;
    let mut config = config_for(&mock);
    // Each mock completion costs $0.00014: the third request finds the budget spent.
    config.auth.keys[0].usd_per_day = Some(0.0002);
    let gw = TestGateway::start(config).await;
    for _ in 0..2 {
        let response = chat(&gw, ALICE_KEY).await;
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    let refused = chat(&gw, ALICE_KEY).await;
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
        chat(&gw, BOB_KEY).await.status(),
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
    let mock = MockOpenRouter::start().await;
    let mut config = config_for(&mock);
    config.limits.usd_per_month = 0.0001; // one stream ($0.00006) leaves some; two spend it
    let gw = TestGateway::start(config).await;
    let stream = || {
        gw.chat(ALICE_KEY)
            .body(format!(
                r#"{{"model":"{MODEL}","messages":[],"stream":true}}"#
            ))
            .send()
    };
    stream().await.unwrap().bytes().await.unwrap();
    stream().await.unwrap().bytes().await.unwrap();
    let (code, message) = error_of(chat(&gw, ALICE_KEY).await).await;
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
    chat(&gw, ALICE_KEY).await.bytes().await.unwrap();
    chat(&gw, ALICE_KEY).await.bytes().await.unwrap();
    gw.shutdown().await.unwrap();
    assert!(dir.path().join("spend.json").exists(), "saved at shutdown");

    let gw = TestGateway::start(config.clone()).await;
    assert_eq!(
        chat(&gw, ALICE_KEY).await.status(),
        429,
        "the restarted gateway remembers the spending"
    );
    gw.shutdown().await.unwrap();

    // Without state_dir a restart starts afresh (the documented default).
    config.limits.state_dir.clear();
    let gw = TestGateway::start(config).await;
    assert_eq!(chat(&gw, ALICE_KEY).await.status(), 200);
}
