//! Faithful forwarding: what the client sends reaches the upstream unchanged (but for the
//! credentials), and what the upstream answers reaches the client unchanged.

use std::time::Duration;

use crate::common::process::{serve_command, ConfigFile, Served};
use crate::common::*;

#[tokio::test]
async fn the_body_reaches_the_upstream_byte_for_byte() {
    let (mock, gw) = start_gateway().await;
    // Unknown fields, multimodal content, tools, reasoning, plugins, odd spacing and key order.
    let body = r#"{ "zeta": {"b":1,"a":[1.50,2e3]}, "model":"openai/gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"What is in this image? \u00e9"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"original"}}]}],
      "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}],
      "reasoning":{"effort":"high","exclude":false},"plugins":[{"id":"response-healing"}],"session_id":"s-1","trace":{"trace_id":"t1","custom":true},"user":"u-42","temperature":0.0,"seed":null }"#;
    let request = gw
        .openrouter_chat(ALICE_KEY)
        .header("content-type", "application/json")
        .body(body);
    let seen = forwarded(&mock, request).await;
    assert_eq!(
        seen.body,
        body.as_bytes(),
        "the forwarded body is the client's, byte for byte"
    );
    assert_eq!(seen.path, "/api/v1/chat/completions");
    assert_eq!(seen.method, "POST");
}

#[tokio::test]
async fn the_upstream_key_replaces_the_clients_credentials() {
    let (mock, gw) = start_gateway_with(|config| {
        config.upstream.referer = "https://team.example".into();
        config.upstream.title = "Team Gateway".into();
    })
    .await;
    for (name, value) in [
        ("authorization", format!("Bearer {ALICE_KEY}")),
        ("x-api-key", ALICE_KEY.to_owned()),
    ] {
        let response = gw
            .chat_without_key()
            .header(name, value)
            .header("cookie", "session=abc")
            .header("x-session-id", "conv-1")
            .header("x-request-id", "client-chosen-id")
            .completion()
            .fetch()
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-request-id"], "client-chosen-id");
        let seen = mock.next_request().await;
        assert_eq!(seen.bearer(), Some(UPSTREAM_KEY));
        assert_eq!(seen.header("x-api-key"), None);
        assert_eq!(seen.header("cookie"), None);
        assert_eq!(seen.header("x-session-id"), Some("conv-1"));
        assert_eq!(seen.header("x-request-id"), Some("client-chosen-id"));
        assert_eq!(seen.header("http-referer"), Some("https://team.example"));
        assert_eq!(seen.header("x-openrouter-title"), Some("Team Gateway"));
        assert_eq!(seen.header("x-title"), Some("Team Gateway"));
    }
    // The client's own attribution wins.
    gw.completion(ALICE_KEY)
        .header("http-referer", "https://mine.example")
        .header("x-title", "Mine")
        .fetch()
        .await;
    let seen = mock.next_request().await;
    assert_eq!(seen.header("http-referer"), Some("https://mine.example"));
    assert_eq!(seen.header("x-title"), Some("Mine"));
    assert_eq!(seen.header("x-openrouter-title"), None);
}

/// A fresh id, sent upstream too, when the client sent none or one that is not a bounded
/// token (it could forge fields in the pretty log).
#[tokio::test]
async fn a_request_id_is_made_when_the_client_sent_none_or_no_token() {
    let (mock, gw) = start_gateway().await;
    for sent in [
        None,
        Some("evil id key=\"admin\" status=200".to_owned()),
        Some("x".repeat(129)),
    ] {
        let mut request = gw.completion(ALICE_KEY);
        if let Some(sent) = &sent {
            request = request.header("x-request-id", sent.as_str());
        }
        let response = request.fetch().await;
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(id.starts_with("req-"), "{sent:?}: {id}");
        assert_eq!(
            mock.next_request().await.header("x-request-id"),
            Some(id.as_str())
        );
    }
    // Errors carry one too.
    let response = gw.get("/nope").fetch().await;
    assert!(response.headers().contains_key("x-request-id"));
}

/// The pretty log writes the request id as it is: one that could forge fields is never there.
#[tokio::test]
async fn a_forged_request_id_forges_nothing_in_the_pretty_log() {
    let mock = MockOpenRouter::start().await;
    let config = ConfigFile::for_mock(&mock, "", ("mallory", "sk-orgate-mallory"));
    let mut command = serve_command(&config.path);
    command.env("ORGATE_LOG_FORMAT", "pretty");
    let mut served = Served::start_pretty(&mut command).await;
    let status = served
        .completion("sk-orgate-mallory")
        .header("x-request-id", "evil id key=\"admin\" status=200")
        .fetch_status()
        .await;
    assert_eq!(status, 200);
    served.wait_for("key=\"mallory\"").await;
    served.terminate();
    let (code, log) = served.finish().await;
    assert_eq!(code, Some(0));
    assert!(!log.contains("admin"), "{log}");
    assert!(!log.contains("evil"), "{log}");
}

#[tokio::test]
async fn the_upstream_answer_reaches_the_client_unchanged() {
    let (_mock, gw) = start_gateway().await;
    let response = gw.openrouter_chat(ALICE_KEY).completion().fetch().await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-generation-id"], "gen-mock-0");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = response.bytes().await.unwrap();
    let expected = serde_json::to_vec(&mock_openrouter::completion("gen-mock-0", MODEL)).unwrap();
    assert_eq!(body, expected);
}

#[tokio::test]
async fn upstream_errors_pass_through_with_status_body_and_headers() {
    let (_mock, gw) = start_gateway_with(|config| config.upstream.retries = 0).await;
    let api_chat = || gw.openrouter_chat(ALICE_KEY).completion();
    for status in [400u16, 401, 402, 403, 404, 429, 500, 502, 503, 524] {
        let response = api_chat()
            .scenario(&format!("status-{status}"))
            .fetch()
            .await;
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(
            response.headers()["x-mock-upstream"],
            "1",
            "the upstream's own headers pass"
        );
        if status == 429 || status == 503 {
            assert_eq!(response.headers()["retry-after"], "7");
        }
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], status);
        assert_eq!(body["user_id"], "user_mock", "the upstream body, not ours");
    }
    // A 200 that carries an error passes as it is.
    let response = api_chat().scenario("error-200").fetch().await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Provider returned error");
}

#[tokio::test]
async fn other_api_routes_are_forwarded_with_their_query() {
    let (mock, gw) = start_gateway().await;
    let cases = [
        ("/v1/models", "/api/v1/models", None),
        (
            "/api/v1/models?supported_parameters=tools",
            "/api/v1/models",
            Some("supported_parameters=tools"),
        ),
        (
            "/v1/models/openai/gpt-4o/endpoints",
            "/api/v1/models/openai/gpt-4o/endpoints",
            None,
        ),
    ];
    for (path, upstream_path, query) in cases {
        let seen = forwarded(&mock, gw.get(path).bearer_auth(BOB_KEY)).await;
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.path, upstream_path);
        assert_eq!(seen.query.as_deref(), query);
        assert_eq!(seen.bearer(), Some(UPSTREAM_KEY));
    }
    // Other methods and bodies too (embeddings).
    let body = r#"{"model":"openai/text-embedding-3-small","input":"hello"}"#;
    let request = gw.post("/v1/embeddings").bearer_auth(BOB_KEY).body(body);
    let seen = forwarded(&mock, request).await;
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/api/v1/embeddings")
    );
    assert_eq!(seen.body, body.as_bytes());
}

#[tokio::test]
async fn paths_that_escape_the_api_prefix_are_refused_and_never_forwarded() {
    let (mock, gw) = start_gateway().await;
    for path in [
        "/api/v1/../admin",
        "/api/v1/models/../../secret",
        "/v1/%2e%2e/credits",
        "/v1/%2E%2E/%2e%2e/x",
        "/v1//evil.example/steal",
        "/api/v1/models%2f..%2fkeys",
        "/v1/models/.%2e/keys",
    ] {
        // Raw request line: clients (and reqwest) would normalise these paths themselves.
        let (status, body) = raw_get(gw.addr, path).await;
        assert_eq!(status, 400, "{path}");
        assert!(body.contains("refused"), "{path}: {body}");
    }
    assert!(
        mock.forwarded_nothing(Duration::from_millis(200)).await,
        "nothing was forwarded"
    );
    // A path the client normalised itself is simply a different path, forwarded as such.
    let request = gw.get("/v1/models/../models").bearer_auth(ALICE_KEY);
    assert_eq!(forwarded(&mock, request).await.path, "/api/v1/models");
}

/// Sends `GET path` as written; returns the status and the body.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {ALICE_KEY}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn bad_chat_bodies_get_400_saying_what_and_where() {
    let (mock, gw) = start_gateway().await;
    let cases = [
        ("{\"model\": \"x\",\n \"messages\": [}", "line 2, column 15"),
        ("{\"model\": \"x\"}", "`messages` is required"),
        (
            "{\"model\": \"x\", \"messages\": {\"role\":\"user\"}}",
            "`messages` must be an array, found an object",
        ),
        ("[]", "must be a JSON object"),
        ("", "line 1, column 0"),
        (
            "{\"messages\": [], \"model\": 7}",
            "`model` must be a string",
        ),
    ];
    for (body, expected) in cases {
        let (code, message) = gw.chat(ALICE_KEY).body(body).fetch_error().await;
        assert_eq!(code, 400, "{body}");
        assert!(message.contains(expected), "{body:?}: {message}");
    }
    assert!(mock.forwarded_nothing(Duration::from_millis(100)).await);
}

#[tokio::test]
async fn bodies_over_max_body_get_413() {
    let (mock, gw) = start_gateway_with(|config| {
        config.server.max_body = "1KiB".parse().unwrap();
    })
    .await;
    let big = format!(
        r#"{{"model":"x","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(2000)
    );
    let (code, message) = gw.chat(ALICE_KEY).body(big.clone()).fetch_error().await;
    assert_eq!(code, 413);
    assert!(message.contains("1024 bytes"), "{message}");
    // Without Content-Length (chunked), the limit holds while reading.
    let chunks: Vec<Result<String, std::io::Error>> =
        vec![Ok(big[..600].to_owned()), Ok(big[600..].to_owned())];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = gw.chat(ALICE_KEY).body(body).fetch().await;
    assert_eq!(response.status(), 413);
    assert!(mock.forwarded_nothing(Duration::from_millis(100)).await);
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_404_and_405() {
    let (_mock, gw) = start_gateway().await;
    let (code, message) = gw.get("/nothing/here").fetch_error().await;
    assert_eq!(code, 404);
    assert!(message.contains("/nothing/here"));
    let (code, message) = gw
        .get("/v1/chat/completions")
        .bearer_auth(ALICE_KEY)
        .fetch_error()
        .await;
    assert_eq!(code, 405);
    assert!(message.contains("GET"), "{message}");
    let (code, _) = gw.post("/healthz").fetch_error().await;
    assert_eq!(code, 405);
}

#[tokio::test]
async fn health_and_readiness() {
    let (_mock, gw) = start_gateway().await;
    assert_eq!(gw.get("/healthz").fetch().await.status(), 200);
    assert_eq!(gw.get("/readyz").fetch().await.status(), 200);
}

#[tokio::test]
async fn while_draining_readyz_and_new_api_requests_get_503() {
    use tower::ServiceExt;
    let mock = MockOpenRouter::start().await;
    let (state, app) = internals::router(config_for(&mock));
    let get = |path: &str| {
        http::Request::get(path)
            .header("authorization", format!("Bearer {ALICE_KEY}"))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    assert_eq!(
        app.clone().oneshot(get("/readyz")).await.unwrap().status(),
        200
    );
    state.set_draining();
    let response = app.clone().oneshot(get("/readyz")).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        app.clone()
            .oneshot(get("/v1/models"))
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        app.oneshot(get("/healthz")).await.unwrap().status(),
        200,
        "still alive while draining"
    );
}
