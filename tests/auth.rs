//! Client authentication and key injection.

use std::time::Duration;

use crate::common::*;

#[tokio::test]
async fn requests_without_a_valid_key_get_401_and_are_not_forwarded() {
    let mock = MockOpenRouter::start().await;
    let gw = TestGateway::start(config_for(&mock)).await;
    let (code, message) = error_of(
        http()
            .post(gw.url("/v1/chat/completions"))
            .body(chat_body(MODEL))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 401);
    assert!(message.contains("missing API key"), "{message}");
    let wrong = "sk-orgate-not-a-real-key";
    let response = gw.chat(wrong).body(chat_body(MODEL)).send().await.unwrap();
    let text = response.text().await.unwrap();
    assert!(text.contains("invalid API key"), "{text}");
    assert!(!text.contains(wrong), "the presented key is not echoed");
    let response = http()
        .get(gw.url("/v1/models"))
        .header("x-api-key", wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(mock
        .try_next_request(Duration::from_millis(100))
        .await
        .is_none());
}

#[tokio::test]
async fn without_configured_keys_everyone_is_anonymous_and_gets_the_upstream_key() {
    let mock = MockOpenRouter::start().await;
    let mut config = config_for(&mock);
    config.auth.keys.clear();
    let gw = TestGateway::start(config).await;
    for auth in [None, Some("sk-or-v1-whatever-the-sdk-sent")] {
        let mut request = http()
            .post(gw.url("/v1/chat/completions"))
            .body(chat_body(MODEL));
        if let Some(key) = auth {
            request = request.bearer_auth(key);
        }
        assert_eq!(request.send().await.unwrap().status(), 200);
        let seen = mock.next_request().await;
        assert_eq!(
            seen.header("authorization"),
            Some(format!("Bearer {UPSTREAM_KEY}").as_str())
        );
    }
}

#[tokio::test]
async fn allow_anonymous_admits_requests_without_credentials_but_not_wrong_keys() {
    let mock = MockOpenRouter::start().await;
    let mut config = config_for(&mock);
    config.auth.allow_anonymous = true;
    let gw = TestGateway::start(config).await;
    assert_eq!(
        http()
            .post(gw.url("/v1/chat/completions"))
            .body(chat_body(MODEL))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        gw.chat("nope")
            .body(chat_body(MODEL))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn a_key_can_have_its_own_upstream_key() {
    let mock = MockOpenRouter::start().await;
    let mut config = config_for(&mock);
    let mut carol = key("carol", "sk-orgate-carol");
    carol.upstream_key_env = Some("OPENROUTER_API_KEY_TEAM_A".into());
    config.auth.keys.push(carol);
    config
        .secrets
        .insert("OPENROUTER_API_KEY_TEAM_A", "sk-or-v1-team-a");
    let gw = TestGateway::start(config).await;
    gw.chat("sk-orgate-carol")
        .body(chat_body(MODEL))
        .send()
        .await
        .unwrap();
    assert_eq!(
        mock.next_request().await.header("authorization"),
        Some("Bearer sk-or-v1-team-a")
    );
    gw.chat(ALICE_KEY)
        .body(chat_body(MODEL))
        .send()
        .await
        .unwrap();
    assert_eq!(
        mock.next_request().await.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
}

#[tokio::test]
async fn the_gateway_refuses_to_start_without_an_upstream_key() {
    let mock = MockOpenRouter::start().await;
    let mut config = config_for(&mock);
    config.secrets = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = orgate::serve(config, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("set OPENROUTER_API_KEY (or OPENROUTER_API_KEY_FILE"),
        "{error}"
    );
}
