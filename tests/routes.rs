//! What a client key may reach besides the model doors: the read-only catalogue, `GET /key`
//! (answered here), the base URL probe, and what `[routes] allow` opens. Everything else is
//! refused with 403 and never reaches the upstream with the org's key.

use std::time::Duration;

use crate::common::doors::*;
use crate::common::*;
use serde_json::{json, Value};

/// `method path` as alice.
fn as_alice(gw: &TestGateway, method: &str, path: &str) -> reqwest::RequestBuilder {
    http()
        .request(method.parse().unwrap(), gw.url(path))
        .bearer_auth(ALICE_KEY)
}

/// `method path` as alice must be refused as a route not allowed, reaching nobody.
async fn assert_not_allowed(mock: &MockOpenRouter, gw: &TestGateway, method: &str, path: &str) {
    let mut request = as_alice(gw, method, path);
    if method == "POST" {
        request = request.json(&json!({}));
    }
    let response = request.fetch().await;
    let (status, message) = error_of(response).await;
    assert_eq!(status, 403, "{method} {path}: {message}");
    assert!(
        message.contains("[routes] allow"),
        "{method} {path}: {message}"
    );
    assert!(
        mock.forwarded_nothing(Duration::from_millis(20)).await,
        "{method} {path} reached the upstream"
    );
}

#[tokio::test]
async fn account_and_unlisted_routes_are_refused_and_never_forwarded() {
    let (mock, gw) = start_gateway().await;
    for (method, path) in [
        ("GET", "/v1/credits"),
        ("GET", "/api/v1/credits"),
        ("GET", "/v1/generation/content?id=gen-someone-else"),
        ("GET", "/v1/generation?id=gen-1"),
        ("GET", "/v1/activity"),
        ("GET", "/v1/keys"),
        ("DELETE", "/api/v1/keys/abc"),
        ("POST", "/v1/auth/keys"),
        ("POST", "/v1/presets/x/chat/completions"),
        ("GET", "/v1/files"),
        ("POST", "/v1/images/generations"),
        ("POST", "/api/v1/audio/speech"),
        ("PATCH", "/v1/keys/abc"),
        ("TRACE", "/v1/credits"),
        ("FROB", "/api/v1/credits"),
        ("GET", "/v1/cred%69ts"),
    ] {
        assert_not_allowed(&mock, &gw, method, path).await;
    }
}

#[tokio::test]
async fn dot_segments_and_percent_encoding_do_not_reach_the_upstream() {
    let (mock, gw) = start_gateway().await;
    let auth = format!("Bearer {ALICE_KEY}");
    for path in [
        "/v1/chat/completions/../../credits",
        "/v1/cred%69ts",
        "/api/v1/%6beys",
        "/v1/chat/completions/..%2f..%2fcredits",
    ] {
        // Raw request lines: a client would normalise these itself.
        let (status, body) =
            raw_request(gw.addr, "GET", path, &[("authorization", &auth)], "").await;
        assert!(matches!(status, 400 | 403), "{path}: {status} {body}");
    }
    assert!(
        mock.forwarded_nothing(Duration::from_millis(200)).await,
        "nothing forwarded"
    );
}

#[tokio::test]
async fn an_encoded_door_path_is_still_that_door_with_its_policy() {
    let org = Org::start("[policy.provider]\ndata_collection = \"deny\"\n").await;
    let body = Door::Chat
        .body_with(MODEL, json!({"provider": {"data_collection": "allow"}}))
        .to_string();
    let auth = format!("Bearer {ALICE_KEY}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let (status, answer) = raw_request(
        org.gw.addr,
        "POST",
        "/api/v1/chat/%63ompletions",
        &headers,
        &body,
    )
    .await;
    if status == 200 {
        let sent = org.mock.next_request().await.json();
        assert_eq!(
            sent["provider"]["data_collection"], "deny",
            "the chat door's merge"
        );
    } else {
        assert!(matches!(status, 400 | 403), "{status}: {answer}");
        assert!(org.mock.forwarded_nothing(Duration::from_millis(100)).await);
    }
}

#[tokio::test]
async fn a_wrong_method_on_a_door_is_405_and_not_forwarded() {
    let (mock, gw) = start_gateway().await;
    for prefix in PREFIXES {
        for door in [
            Door::Chat,
            Door::Responses,
            Door::Messages,
            Door::Embeddings,
        ] {
            let path = format!("{prefix}{}", door.path());
            for method in ["GET", "PUT", "DELETE"] {
                let status = as_alice(&gw, method, &path).fetch_status().await;
                assert_eq!(status, 405, "{method} {path}");
            }
        }
    }
    assert!(mock.forwarded_nothing(Duration::from_millis(100)).await);
}

#[tokio::test]
async fn the_catalogue_is_forwarded_to_key_holders_only() {
    let (mock, gw) = start_gateway().await;
    for (path, upstream) in [
        ("/v1/models", "/api/v1/models"),
        (
            "/api/v1/models?supported_parameters=tools",
            "/api/v1/models",
        ),
        (
            "/v1/models/openai/gpt-4o/endpoints",
            "/api/v1/models/openai/gpt-4o/endpoints",
        ),
        ("/v1/providers", "/api/v1/providers"),
        ("/v1/embeddings/models", "/api/v1/embeddings/models"),
    ] {
        let seen = forwarded(&mock, gw.get(path).bearer_auth(BOB_KEY)).await;
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("GET", upstream)
        );
        assert_eq!(seen.bearer(), Some(UPSTREAM_KEY));
        let (status, _) = error_of(gw.get(path).fetch().await).await;
        assert_eq!(status, 401, "{path} without a key");
        assert!(
            mock.forwarded_nothing(Duration::from_millis(20)).await,
            "{path}"
        );
    }
}

#[tokio::test]
async fn head_on_the_base_url_answers_200_without_reaching_the_upstream() {
    let (mock, gw) = start_gateway().await;
    for base in PREFIXES {
        let response = http()
            .head(gw.url(base))
            .header("x-api-key", ALICE_KEY)
            .fetch()
            .await;
        assert_eq!(response.status(), 200, "HEAD {base}");
    }
    assert!(mock.forwarded_nothing(Duration::from_millis(100)).await);
}

// ---- [routes] allow ----

const ALLOW_IMAGES_AND_GENERATION: &str =
    "[routes]\nallow = [\"POST /images/generations\", \"GET /generation\"]\n";

#[tokio::test]
async fn routes_allow_opens_what_it_lists_and_nothing_more() {
    let org = Org::start(ALLOW_IMAGES_AND_GENERATION).await;
    let (mock, gw) = (&org.mock, &org.gw);
    for prefix in PREFIXES {
        let image = as_alice(gw, "POST", &format!("{prefix}/images/generations"))
            .json(&Door::Images.body("openai/gpt-image-1"));
        let seen = forwarded(mock, image).await;
        assert_eq!(seen.path, "/api/v1/images/generations");
        assert_eq!(seen.bearer(), Some(UPSTREAM_KEY));
        let generation = as_alice(gw, "GET", &format!("{prefix}/generation?id=gen-42"));
        let seen = forwarded(mock, generation).await;
        assert_eq!(
            (seen.path.as_str(), seen.query.as_deref()),
            ("/api/v1/generation", Some("id=gen-42"))
        );
    }
    // Still a key first.
    let bare = gw
        .post("/v1/images/generations")
        .json(&Door::Images.body("openai/gpt-image-1"));
    assert_eq!(error_of(bare.fetch().await).await.0, 401);
    // Only the listed method, and nothing beside it.
    let wrong_method = as_alice(gw, "POST", "/v1/generation").fetch_status().await;
    assert!(matches!(wrong_method, 403 | 405), "{wrong_method}");
    assert!(mock.forwarded_nothing(Duration::from_millis(50)).await);
    for (method, path) in [
        ("GET", "/v1/credits"),
        ("GET", "/v1/generation/content?id=gen-42"),
        ("POST", "/v1/images/edits"),
    ] {
        assert_not_allowed(mock, gw, method, path).await;
    }
}

#[tokio::test]
async fn an_allowed_routes_reported_cost_is_charged_to_the_key() {
    let org = Org::start_with(ALLOW_IMAGES_AND_GENERATION, |config| {
        config.auth.keys[0].usd_per_day = Some(0.01);
    })
    .await;
    // One image costs $0.04.
    let image = as_alice(&org.gw, "POST", "/v1/images/generations")
        .json(&Door::Images.body("openai/gpt-image-1"));
    forwarded(&org.mock, image).await;
    // The probes spend nothing: admitted, they get the upstream's 402.
    eventually("the image's cost charged", async || {
        let probe = org.gw.completion(ALICE_KEY).scenario("status-402");
        probe.fetch_status().await == 429
    })
    .await;
    assert_eq!(org.gw.completion(BOB_KEY).fetch_status().await, 200);
}

// ---- GET /key ----

/// `GET <prefix>/key` as `key`: its `data`.
async fn key_info(gw: &TestGateway, prefix: &str, key: &str) -> Value {
    let response = gw
        .get(&format!("{prefix}/key"))
        .bearer_auth(key)
        .fetch()
        .await;
    assert_eq!(response.status(), 200, "{prefix}/key");
    let body: Value = response.json().await.unwrap();
    body["data"].clone()
}

#[tokio::test]
async fn get_key_answers_the_callers_own_limits_and_spend_and_is_never_forwarded() {
    let (mock, gw) = start_gateway_with(|config| {
        config.auth.keys[0].usd_per_day = Some(0.001);
        config.auth.keys[1].usd_per_month = Some(0.5);
        config.auth.keys.push(key("carol", "sk-orgate-carol"));
    })
    .await;
    let alice = key_info(&gw, "/v1", ALICE_KEY).await;
    assert_eq!(alice["label"], "alice", "{alice}");
    assert_eq!(alice["limit"].as_f64(), Some(0.001), "{alice}");
    assert_eq!(alice["limit_remaining"].as_f64(), Some(0.001), "{alice}");
    assert_eq!(alice["usage"].as_f64(), Some(0.0), "{alice}");
    assert_eq!(alice["is_free_tier"], false);

    let bob = key_info(&gw, "/api/v1", BOB_KEY).await;
    assert_eq!(bob["label"], "bob");
    assert_eq!(
        bob["limit"].as_f64(),
        Some(0.5),
        "the monthly budget: {bob}"
    );
    let carol = key_info(&gw, "/v1", "sk-orgate-carol").await;
    assert_eq!(carol["label"], "carol");
    assert_eq!(carol["limit"], Value::Null, "no budget: {carol}");
    assert_eq!(carol["limit_remaining"], Value::Null, "{carol}");
    assert!(
        mock.forwarded_nothing(Duration::from_millis(50)).await,
        "answered here"
    );

    // One chat completion costs $0.00014.
    forwarded(&mock, gw.completion(ALICE_KEY)).await;
    let alice = eventually("alice's spend in /key", async || {
        let data = key_info(&gw, "/api/v1", ALICE_KEY).await;
        let spent = data["usage"]
            .as_f64()
            .is_some_and(|u| (u - 0.00014).abs() < 1e-9);
        if spent {
            Ok(data)
        } else {
            Err(data)
        }
    })
    .await;
    let remaining = alice["limit_remaining"].as_f64().unwrap();
    assert!((remaining - 0.00086).abs() < 1e-9, "{alice}");

    let (status, _) = error_of(gw.get("/v1/key").fetch().await).await;
    assert_eq!(status, 401);
    assert!(mock.forwarded_nothing(Duration::from_millis(50)).await);
}
