//! The model doors from the client's side: where each is, a body it accepts, how its errors
//! look, and a gateway with the org's rules that says what reached the upstream for a request
//! or how the gateway refused it.

use std::time::Duration;

use reqwest::{RequestBuilder, Response};
use serde_json::{json, Value};

pub use super::mock_openrouter::{Door, DoorCost, DOOR_COSTS, LARGE_TEXT};
use super::{
    client::json_error, error_of, start_gateway_with, Gateway, MockOpenRouter, RequestExt,
    TestGateway, MODEL,
};

/// The doors that lead to a model, chat included.
pub const MODEL_DOORS: [Door; 6] = [
    Door::Chat,
    Door::Responses,
    Door::Messages,
    Door::Completions,
    Door::Embeddings,
    Door::Rerank,
];

/// Both API prefixes: OpenRouter's and the one SDKs append to a base URL.
pub const PREFIXES: [&str; 2] = ["/api/v1", "/v1"];

/// The doors whose answers can be a stream with a format of its own.
pub const STREAM_DOORS: [Door; 2] = [Door::Responses, Door::Messages];

impl Door {
    /// The path under the API prefix.
    pub fn path(self) -> &'static str {
        match self {
            Door::Chat => "/chat/completions",
            Door::Responses => "/responses",
            Door::Messages => "/messages",
            Door::Completions => "/completions",
            Door::Embeddings => "/embeddings",
            Door::Rerank => "/rerank",
            Door::Images => "/images/generations",
            Door::Other => panic!("not a door"),
        }
    }

    /// The door's `route` label in the metrics.
    pub fn route(self) -> &'static str {
        match self {
            Door::Chat => "chat",
            Door::Responses => "responses",
            Door::Messages => "messages",
            Door::Completions => "completions",
            Door::Embeddings => "embeddings",
            Door::Rerank => "rerank",
            Door::Images | Door::Other => "allowed",
        }
    }

    /// A plain (non-streaming) body for `model`, as a client of this door sends it.
    pub fn body(self, model: &str) -> Value {
        let hi = json!([{"role": "user", "content": "Hi"}]);
        match self {
            Door::Chat => json!({"model": model, "messages": hi}),
            Door::Responses => json!({"model": model, "input": "Hi"}),
            Door::Messages => json!({"model": model, "max_tokens": 1024, "messages": hi}),
            Door::Completions => json!({"model": model, "prompt": "Hi"}),
            Door::Embeddings => json!({"model": model, "input": "hello"}),
            Door::Rerank => json!({"model": model, "query": "capital of France",
                "documents": ["Paris is the capital of France.", "Berlin is in Germany."]}),
            Door::Images => json!({"model": model, "prompt": "a lighthouse"}),
            Door::Other => panic!("not a door"),
        }
    }

    /// [`Door::body`] with `extra`'s fields added (or replaced).
    pub fn body_with(self, model: &str, extra: Value) -> Value {
        let mut body = self.body(model);
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().expect("extra fields").clone());
        body
    }

    /// What this door's JSON answer reports (the mock's [`DOOR_COSTS`]).
    pub fn json_usage(self) -> DoorCost {
        *DOOR_COSTS.iter().find(|c| c.door == self).expect("a door")
    }

    /// Whether the gateway's own errors on this door are Anthropic-shaped.
    pub fn anthropic(self) -> bool {
        self == Door::Messages
    }
}

/// Requests to the doors of a gateway.
pub trait DoorsExt: Gateway {
    /// `POST /v1<door>` without credentials.
    fn door_without_key(&self, door: Door) -> RequestBuilder {
        self.door_at("/v1", door)
    }

    /// `POST <prefix><door>` without credentials.
    fn door_at(&self, prefix: &str, door: Door) -> RequestBuilder {
        self.post(&format!("{prefix}{}", door.path()))
    }

    /// `POST /v1<door>` as `key` (`Authorization: Bearer`).
    fn door(&self, door: Door, key: &str) -> RequestBuilder {
        self.door_without_key(door).bearer_auth(key)
    }

    /// `POST /v1<door>` as `key` with the door's plain body for [`MODEL`].
    fn door_request(&self, door: Door, key: &str) -> RequestBuilder {
        self.door(door, key).json(&door.body(MODEL))
    }

    /// `POST /v1<door>` as `key` with the door's body for [`MODEL`] and `"stream": true`.
    fn door_stream(&self, door: Door, key: &str) -> RequestBuilder {
        self.door(door, key)
            .json(&door.body_with(MODEL, json!({"stream": true})))
    }
}

impl<G: Gateway> DoorsExt for G {}

/// The gateway's own error on `door`, checked for that door's shape; returns (status, message).
pub async fn door_error_of(door: Door, response: Response) -> (u16, String) {
    if door.anthropic() {
        let (status, _, message) = anthropic_error_of(response).await;
        (status, message)
    } else {
        error_of(response).await
    }
}

/// The Anthropic error type for a status the gateway answers with.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        502 => "api_error",
        503 => "overloaded_error",
        504 => "timeout_error",
        other => panic!("no Anthropic error type for {other} in these tests"),
    }
}

/// Parses an Anthropic-shaped error (`{"type":"error","error":{"type":..,"message":..}}`),
/// checking its type matches the status; returns (status, error type, message).
pub async fn anthropic_error_of(response: Response) -> (u16, String, String) {
    let (status, body) = json_error(response).await;
    assert_eq!(body["type"], "error", "Anthropic's error shape: {body}");
    let kind = body["error"]["type"]
        .as_str()
        .expect("error.type")
        .to_owned();
    assert_eq!(kind, anthropic_error_type(status), "{status}: {body}");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error.message: {body}"))
        .to_owned();
    assert!(!message.is_empty(), "{body}");
    (status, kind, message)
}

/// One server-sent event: its `event:` name (if any) and its `data:` text.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is JSON ({e}): {}", self.data))
    }
}

/// The events of an SSE text (comments and empty blocks left out).
pub fn sse_events(bytes: &[u8]) -> Vec<SseEvent> {
    String::from_utf8_lossy(bytes)
        .split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = Some(name.trim().to_owned());
                } else if let Some(text) = line.strip_prefix("data:") {
                    data.push(text.strip_prefix(' ').unwrap_or(text));
                }
            }
            (event.is_some() || !data.is_empty()).then(|| SseEvent {
                event,
                data: data.join("\n"),
            })
        })
        .collect()
}

/// The mock, and a gateway in front of it whose `[policy]`, `[policies.*]` and `[routes]` come
/// from `toml`, after `tweak`.
pub struct Org {
    pub mock: MockOpenRouter,
    pub gw: TestGateway,
}

impl Org {
    pub async fn start(toml: &str) -> Self {
        Self::start_with(toml, |_| {}).await
    }

    pub async fn start_with(toml: &str, tweak: impl FnOnce(&mut orgate::config::Config)) -> Self {
        let (parsed, problems) = orgate::config::parse_toml(toml);
        assert!(problems.is_empty(), "{problems:?}");
        let (mock, gw) = start_gateway_with(|config| {
            config.policy = parsed.policy;
            config.policies = parsed.policies;
            config.routes = parsed.routes;
            tweak(config);
        })
        .await;
        Self { mock, gw }
    }

    /// Sends `body` to `door` as `key`: the body the upstream received, or the gateway's
    /// refusal (status, message), which must have reached nobody.
    pub async fn forwarded(
        &self,
        door: Door,
        key: &str,
        body: &Value,
    ) -> Result<Value, (u16, String)> {
        let response = self.gw.door(door, key).json(body).fetch().await;
        if response.status() != 200 {
            let refusal = door_error_of(door, response).await;
            assert!(
                self.mock.forwarded_nothing(Duration::from_millis(50)).await,
                "a refused request reaches nobody ({door:?}: {refusal:?})"
            );
            return Err(refusal);
        }
        response.bytes().await.unwrap();
        let seen = self.mock.next_request().await;
        assert_eq!(seen.path, format!("/api/v1{}", door.path()));
        Ok(seen.json())
    }

    /// The body the upstream received for `body` sent to `door`; it must not be refused.
    pub async fn sent(&self, door: Door, key: &str, body: Value) -> Value {
        self.forwarded(door, key, &body)
            .await
            .unwrap_or_else(|refusal| panic!("{door:?} refused {body}: {refusal:?}"))
    }

    /// The gateway's refusal of `body` on `door`; it must not be forwarded.
    pub async fn refused(&self, door: Door, key: &str, body: Value) -> (u16, String) {
        match self.forwarded(door, key, &body).await {
            Ok(sent) => panic!("{door:?} forwarded {body} as {sent}"),
            Err(refusal) => refusal,
        }
    }
}

/// Sends a request exactly as written (no client-side path normalisation); returns its status
/// and body.
pub async fn raw_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the gateway answered")
        .unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

/// The sum of every `orgate_requests_total` series of `key` on `route` with `status`.
pub fn requests_on_route(metrics: &str, key: &str, route: &str, status: u16) -> f64 {
    let prefix = format!(r#"orgate_requests_total{{key="{key}",route="{route}","#);
    let suffix = format!(r#"status="{status}"}}"#);
    metrics
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| series.ends_with(&suffix))
        .map(|(_, value)| value.trim().parse::<f64>().unwrap())
        .sum()
}
