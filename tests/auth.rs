//! Client authentication and key injection.

use std::time::Duration;

use crate::common::*;

#[tokio::test]
async fn requests_without_a_valid_key_get_401_and_are_not_forwarded() {
    let (mock, gw) = start_gateway().await;
    let (code, message) = gw.chat_without_key().completion().fetch_error().await;
    assert_eq!(code, 401);
    assert!(message.contains("missing API key"), "{message}");
    let wrong = "sk-orgate-not-a-real-key";
    let response = gw.completion(wrong).fetch().await;
    let text = response.text().await.unwrap();
    assert!(text.contains("invalid API key"), "{text}");
    assert!(!text.contains(wrong), "the presented key is not echoed");
    let response = gw
        .get("/v1/models")
        .header("x-api-key", wrong)
        .fetch()
        .await;
    assert_eq!(response.status(), 401);
    assert!(mock.forwarded_nothing(Duration::from_millis(100)).await);
}

#[tokio::test]
async fn without_configured_keys_everyone_is_anonymous_and_gets_the_upstream_key() {
    let (mock, gw) = start_gateway_with(|config| config.auth.keys.clear()).await;
    for auth in [None, Some("sk-or-v1-whatever-the-sdk-sent")] {
        let mut request = gw.chat_without_key().completion();
        if let Some(key) = auth {
            request = request.bearer_auth(key);
        }
        assert_eq!(forwarded(&mock, request).await.bearer(), Some(UPSTREAM_KEY));
    }
}

#[tokio::test]
async fn allow_anonymous_admits_requests_without_credentials_but_not_wrong_keys() {
    let (_mock, gw) = start_gateway_with(|config| config.auth.allow_anonymous = true).await;
    assert_eq!(gw.chat_without_key().completion().fetch_status().await, 200);
    assert_eq!(gw.completion("nope").fetch().await.status(), 401);
}

#[tokio::test]
async fn a_key_can_have_its_own_upstream_key() {
    let (mock, gw) = start_gateway_with(|config| {
        let mut carol = key("carol", "sk-orgate-carol");
        carol.upstream_key_env = Some("OPENROUTER_API_KEY_TEAM_A".into());
        config.auth.keys.push(carol);
        config
            .secrets
            .insert("OPENROUTER_API_KEY_TEAM_A", "sk-or-v1-team-a");
    })
    .await;
    gw.completion("sk-orgate-carol").fetch().await;
    assert_eq!(mock.next_request().await.bearer(), Some("sk-or-v1-team-a"));
    gw.completion(ALICE_KEY).fetch().await;
    assert_eq!(mock.next_request().await.bearer(), Some(UPSTREAM_KEY));
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
