//! A mock OpenRouter: an axum server on an ephemeral port that answers with the shapes in
//! `shared/openrouter/` and records every request it receives (method, path, query, headers,
//! exact body bytes).
//!
//! Behaviour is chosen per request by the `x-mock` header, which the gateway forwards like any
//! other client header:
//! - (none) or `json`: a chat completion (non-streaming), or an SSE stream if the body says
//!   `"stream": true`;
//! - `stream`: the SSE stream below; `x-mock-delay-ms` spaces its chunks; `x-mock-chunks` sets
//!   how many content chunks;
//! - `stream-cut`: two chunks, then the connection is reset mid-stream;
//! - `stream-stall`: one chunk, then silence;
//! - `stream-no-done`: the stream without `[DONE]`, then a clean end;
//! - `stream-error`: OpenRouter's own in-band error chunk;
//! - `status-NNN`: status NNN with OpenRouter's error body (and `Retry-After` on 429/503);
//! - `fail-then-ok`: 503 for the first `x-mock-fail-times` requests, then the normal answer;
//! - `hang`: never answers;
//! - `error-200`: HTTP 200 carrying an error body;
//! - `json-cut`: a 200 JSON body announced longer than it is, cut short;
//! - `headers-stall`: 200 JSON headers, then nothing;
//! - `stream-garbage`: an event stream of non-JSON and malformed events, ending without `[DONE]`.
//!
//! The other doors answer in their own format (see [`Door`]), chosen by the path the request
//! reached: `/responses`, `/messages`, `/completions`, `/embeddings`, `/rerank`, `/images` (and
//! `/images/generations`). For them (none), `json` and `stream` give the door's JSON answer, or
//! its event stream when the body says `"stream": true` (`/responses`, `/messages`;
//! `/completions` streams chat's chunks), and these scenarios are added:
//! - `stream-cut` on `/responses` or `/messages`: the stream up to its last content delta (no
//!   terminal event: no `response.completed`, no `message_delta`/`message_stop`), then a reset;
//! - `stream-large` on `/responses`: a terminal `response.completed` carrying an output text of
//!   [`LARGE_TEXT`] bytes (over 2 MiB), sent in 64 KiB pieces.
//!
//! Every other scenario (`status-NNN`, `hang`, ...) behaves on every path as on chat. Usage and
//! cost by door: [`DOOR_COSTS`]. `GET /generation?id=` answers `total_cost` [`GENERATION_COST`]
//! (after a first 404 for the gateway's own lookups).

#![allow(dead_code, unreachable_pub, unused_assignments)]

mod doors;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use futures_util::stream::{self, StreamExt};
use http::{HeaderMap, Method, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex as AsyncMutex};

pub use doors::{
    anthropic_message, responses_events, Door, DoorCost, DOOR_COSTS, LARGE_TEXT,
    RESPONSES_STREAM_COST,
};
use doors::{door_events, door_json, Asked};

/// The exact bytes of every SSE stream sent, by generation id.
type SentStreams = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    fn of(parts: &http::request::Parts, body: Bytes) -> Self {
        Self {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The token of `Authorization: Bearer <token>`.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the forwarded body is JSON")
    }
}

#[derive(Clone)]
struct MockState {
    seen: mpsc::UnboundedSender<Recorded>,
    /// The gateway's own requests (`User-Agent: orgate/…`): model list, generation lookups.
    internal: mpsc::UnboundedSender<Recorded>,
    /// Generation ids looked up once already (the first lookup gets 404, as upstream may).
    looked_up: Arc<Mutex<Vec<String>>>,
    /// Streams the client abandoned before their end (the gateway dropped them).
    abandoned: mpsc::UnboundedSender<String>,
    requests: Arc<AtomicUsize>,
    /// The exact bytes of every SSE stream sent, by generation id.
    sent_streams: SentStreams,
}

pub struct MockOpenRouter {
    pub addr: SocketAddr,
    /// The base URL to configure as `upstream.base_url`.
    pub base_url: String,
    seen: AsyncMutex<mpsc::UnboundedReceiver<Recorded>>,
    internal: AsyncMutex<mpsc::UnboundedReceiver<Recorded>>,
    abandoned: AsyncMutex<mpsc::UnboundedReceiver<String>>,
    requests: Arc<AtomicUsize>,
    sent_streams: SentStreams,
    task: tokio::task::JoinHandle<()>,
}

impl MockOpenRouter {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener).await
    }

    pub async fn start_on(listener: TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let (seen_tx, seen_rx) = mpsc::unbounded_channel();
        let (ab_tx, ab_rx) = mpsc::unbounded_channel();
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let requests = Arc::new(AtomicUsize::new(0));
        let sent_streams = Arc::new(Mutex::new(Vec::new()));
        let state = MockState {
            seen: seen_tx,
            internal: internal_tx,
            looked_up: Arc::new(Mutex::new(Vec::new())),
            abandoned: ab_tx,
            requests: requests.clone(),
            sent_streams: sent_streams.clone(),
        };
        let app = Router::new().fallback(handle).with_state(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            base_url: format!("http://{addr}/api/v1"),
            seen: AsyncMutex::new(seen_rx),
            internal: AsyncMutex::new(internal_rx),
            abandoned: AsyncMutex::new(ab_rx),
            requests,
            sent_streams,
            task,
        }
    }

    /// The `[upstream]` table of a config file, pointing at this mock.
    pub fn upstream_toml(&self) -> String {
        format!("[upstream]\nbase_url = \"{}\"\n", self.base_url)
    }

    /// The next request the mock received, waiting up to 5 s.
    pub async fn next_request(&self) -> Recorded {
        next(&self.seen, WAIT, "the mock received no request").await
    }

    /// Whether a request arrives within `wait` (for "nothing was forwarded" checks).
    pub async fn try_next_request(&self, wait: Duration) -> Option<Recorded> {
        let mut rx = self.seen.lock().await;
        tokio::time::timeout(wait, rx.recv()).await.ok().flatten()
    }

    /// Whether no request arrives within `wait`: nothing was forwarded.
    pub async fn forwarded_nothing(&self, wait: Duration) -> bool {
        self.try_next_request(wait).await.is_none()
    }

    /// The next request the gateway made on its own behalf other than the model list,
    /// waiting up to 10 s.
    pub async fn next_internal_request(&self) -> Recorded {
        self.next_own(false).await
    }

    /// The next time the gateway asked for the model list, waiting up to 10 s.
    pub async fn next_model_list_request(&self) -> Recorded {
        self.next_own(true).await
    }

    async fn next_own(&self, model_list: bool) -> Recorded {
        loop {
            let own = "the gateway made no such request of its own";
            let recorded = next(&self.internal, 2 * WAIT, own).await;
            if recorded.path.ends_with("/models") == model_list {
                return recorded;
            }
        }
    }

    /// Waits up to 5 s for a stream to be abandoned by its reader; returns its generation id.
    pub async fn next_abandoned(&self) -> String {
        next(&self.abandoned, WAIT, "no stream was abandoned").await
    }

    pub fn request_count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The bytes the mock sent for the stream with this generation id.
    pub fn sent_stream(&self, id: &str) -> Vec<u8> {
        self.sent_streams
            .lock()
            .unwrap()
            .iter()
            .find(|(gid, _)| gid == id)
            .map(|(_, bytes)| bytes.clone())
            .expect("no such stream was sent")
    }
}

/// How long the mock's `next_*` wait for what a test expects to have happened.
const WAIT: Duration = Duration::from_secs(5);

/// The next message on one of the mock's channels, waiting up to `wait`; `none` says what did
/// not happen.
async fn next<T>(rx: &AsyncMutex<mpsc::UnboundedReceiver<T>>, wait: Duration, none: &str) -> T {
    let mut rx = rx.lock().await;
    tokio::time::timeout(wait, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{none} within {wait:?}"))
        .expect("mock channel closed")
}

impl Drop for MockOpenRouter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub const MODEL: &str = "openai/gpt-4o";

async fn handle(State(state): State<MockState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    // The gateway's own requests are recorded apart and not counted as client requests.
    let own = parts
        .headers
        .get("user-agent")
        .is_some_and(|ua| ua.as_bytes().starts_with(b"orgate/"));
    if own {
        let _ = state.internal.send(Recorded::of(&parts, Bytes::new()));
        if parts.uri.path().ends_with("/generation") {
            let id = parts
                .uri
                .query()
                .unwrap_or("")
                .trim_start_matches("id=")
                .to_owned();
            let first = {
                let mut seen = state.looked_up.lock().unwrap();
                let first = !seen.contains(&id);
                seen.push(id);
                first
            };
            if first {
                return error_response_with(404, "Generation not found");
            }
        }
        return other_route(parts.uri.path(), parts.uri.query());
    }
    let n = state.requests.fetch_add(1, Ordering::SeqCst);
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let _ = state.seen.send(Recorded::of(&parts, body.clone()));
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let num =
        |name: &str, default: u64| header(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    let request_json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let model = request_json["model"].as_str().unwrap_or(MODEL).to_owned();
    let wants_stream = request_json["stream"] == serde_json::Value::Bool(true);
    let scenario = header("x-mock").unwrap_or_default();
    let generation_id = format!("gen-mock-{n}");
    let delay = Duration::from_millis(num("x-mock-delay-ms", 0));
    let chunks = num("x-mock-chunks", 2) as usize;

    let path = parts.uri.path();
    let door = Door::of(path);
    if door == Door::Other && scenario.is_empty() {
        return other_route(path, parts.uri.query());
    }
    if door != Door::Chat {
        let asked = Asked {
            id: &generation_id,
            model: &model,
            stream: wants_stream,
            chunks,
        };
        if let Some(events) = door_events(door, &scenario, &asked) {
            return sse(&state, &generation_id, events.events, delay, events.ending);
        }
        if let Some(body) = door_json(door, &scenario, &asked) {
            return json_response(StatusCode::OK, body);
        }
    }
    match scenario.as_str() {
        "" | "json" if !wants_stream => {
            json_response(StatusCode::OK, completion(&generation_id, &model))
        }
        "" | "json" | "stream" => sse(
            &state,
            &generation_id,
            stream_events(&generation_id, &model, chunks, true),
            delay,
            Ending::Clean,
        ),
        "stream-no-done" => sse(
            &state,
            &generation_id,
            stream_events(&generation_id, &model, chunks, false),
            delay,
            Ending::Clean,
        ),
        "stream-cut" => sse(
            &state,
            &generation_id,
            stream_events(&generation_id, &model, 2, true)[..3].to_vec(),
            delay,
            Ending::Reset,
        ),
        "stream-stall" => sse(
            &state,
            &generation_id,
            stream_events(&generation_id, &model, 2, true)[..2].to_vec(),
            delay,
            Ending::Stall,
        ),
        "stream-error" => {
            let mut events = stream_events(&generation_id, &model, 1, false)[..2].to_vec();
            events.push(format!(
                "data: {{\"id\":\"{generation_id}\",\"object\":\"chat.completion.chunk\",\"created\":1738000000,\"model\":\"{model}\",\"provider\":\"OpenAI\",\"error\":{{\"code\":429,\"message\":\"Rate limit exceeded\",\"metadata\":{{\"error_type\":\"rate_limit_exceeded\",\"provider_code\":\"rate_limited\"}}}},\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"\"}},\"finish_reason\":\"error\",\"native_finish_reason\":\"error\"}}]}}\n\n"
            ));
            sse(&state, &generation_id, events, delay, Ending::Clean)
        }
        "fail-then-ok" if (n as u64) < num("x-mock-fail-times", 1) => error_response(503),
        "fail-then-ok" => json_response(StatusCode::OK, completion(&generation_id, &model)),
        "hang" => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        "error-200" => json_response(
            StatusCode::OK,
            serde_json::json!({"error": {"code": 502, "message": "Provider returned error", "metadata": {"provider_name": "OpenAI"}}, "user_id": "user_mock"}),
        ),
        "json-cut" => {
            let full = serde_json::to_vec(&completion(&generation_id, &model)).unwrap();
            let half = Bytes::copy_from_slice(&full[..full.len() / 2]);
            let body =
                stream::iter(vec![Ok::<_, std::io::Error>(half)]).chain(stream::once(async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err(std::io::Error::other("cut"))
                }));
            Response::builder()
                .header("content-type", "application/json")
                .header("content-length", full.len())
                .body(Body::from_stream(body))
                .unwrap()
        }
        "headers-stall" => {
            let body = stream::once(async {
                std::future::pending::<()>().await;
                Ok::<Bytes, std::io::Error>(Bytes::new())
            });
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from_stream(body))
                .unwrap()
        }
        "stream-garbage" => {
            let events = vec![
                "data: {not json at all\n\n".to_owned(),
                "data: \u{0}\u{1}\u{2}binary\n\n".to_owned(),
                "event: weird\nid: 7\nretry: x\n\n".to_owned(),
                "data: {\"usage\": \"lots\", \"error\": 5}\n\n".to_owned(),
                "data: [DONE".to_owned(),
            ];
            sse(&state, &generation_id, events, delay, Ending::Clean)
        }
        s if s.starts_with("status-") => error_response(s[7..].parse().unwrap_or(500)),
        other => error_response_with(400, &format!("unknown x-mock scenario {other:?}")),
    }
}

fn other_route(path: &str, query: Option<&str>) -> Response {
    let body = if path.ends_with("/models") {
        serde_json::json!({"data": [{"id": MODEL, "name": "OpenAI: GPT-4o", "context_length": 128000,
            "pricing": {"prompt": "0.0000025", "completion": "0.00001"}}]})
    } else if path.ends_with("/key") {
        serde_json::json!({"data": {"label": "sk-or-v1-abc...xyz", "limit": null, "usage": 1.5, "is_free_tier": false}})
    } else if path.ends_with("/generation") {
        serde_json::json!({"data": {"id": query.unwrap_or("").trim_start_matches("id="), "model": MODEL, "total_cost": GENERATION_COST,
            "tokens_prompt": 10, "tokens_completion": 4, "native_tokens_prompt": 10, "native_tokens_completion": 4}})
    } else {
        serde_json::json!({"echo": {"path": path, "query": query}})
    };
    json_response(StatusCode::OK, body)
}

/// What a `GET /generation?id=` answer says the generation cost (the chat JSON's cost too).
pub const GENERATION_COST: f64 = 0.00014;

pub fn completion(id: &str, model: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "provider": "OpenAI",
        "model": model,
        "object": "chat.completion",
        "created": 1738000000,
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{
            "index": 0,
            "finish_reason": "stop",
            "native_finish_reason": "stop",
            "logprobs": null,
            "message": {"role": "assistant", "content": "Hello there!", "refusal": null, "reasoning": null}
        }],
        "usage": {
            "prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
            "cost": 0.00014, "is_byok": false
        }
    })
}

/// OpenRouter's stream: a processing comment, a role chunk, `content_chunks` content chunks,
/// the finish chunk, the usage chunk (`choices: []`) and, if `done`, `[DONE]`.
pub fn stream_events(id: &str, model: &str, content_chunks: usize, done: bool) -> Vec<String> {
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"{id}\",\"provider\":\"OpenAI\",\"model\":\"{model}\",\"object\":\"chat.completion.chunk\",\"created\":1738000000,\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish},\"native_finish_reason\":{finish},\"logprobs\":null}}]}}\n\n"
        )
    };
    let mut events = vec![": OPENROUTER PROCESSING\n\n".to_owned()];
    events.push(chunk(r#"{"role":"assistant","content":""}"#, "null"));
    for i in 0..content_chunks {
        events.push(chunk(
            &format!(r#"{{"role":"assistant","content":"tok{i} "}}"#),
            "null",
        ));
    }
    events.push(chunk(r#"{"role":"assistant","content":""}"#, "\"stop\""));
    events.push(format!(
        "data: {{\"id\":\"{id}\",\"provider\":\"OpenAI\",\"model\":\"{model}\",\"object\":\"chat.completion.chunk\",\"created\":1738000000,\"choices\":[],\"usage\":{{\"prompt_tokens\":10,\"completion_tokens\":{content_chunks},\"total_tokens\":{},\"cost\":0.00006,\"is_byok\":false,\"prompt_tokens_details\":{{\"cached_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":0}}}}}}\n\n",
        10 + content_chunks
    ));
    if done {
        events.push("data: [DONE]\n\n".to_owned());
    }
    events
}

enum Ending {
    Clean,
    /// The connection is reset: the body errors, hyper aborts it.
    Reset,
    /// Nothing more is ever sent.
    Stall,
}

/// Marks a stream abandoned if it is dropped before it ended.
struct AbandonGuard {
    id: String,
    finished: bool,
    tx: mpsc::UnboundedSender<String>,
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.tx.send(self.id.clone());
        }
    }
}

fn sse(
    state: &MockState,
    id: &str,
    events: Vec<String>,
    delay: Duration,
    ending: Ending,
) -> Response {
    let all: Vec<u8> = events.concat().into_bytes();
    state
        .sent_streams
        .lock()
        .unwrap()
        .push((id.to_owned(), all));
    let guard = AbandonGuard {
        id: id.to_owned(),
        finished: false,
        tx: state.abandoned.clone(),
    };
    let body = stream::unfold(
        (events.into_iter(), guard, ending, true),
        move |(mut events, mut guard, ending, first)| async move {
            match events.next() {
                Some(event) => {
                    if !first && !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Some((
                        Ok::<_, std::io::Error>(Bytes::from(event)),
                        (events, guard, ending, false),
                    ))
                }
                None => match ending {
                    Ending::Clean => {
                        guard.finished = true;
                        None
                    }
                    Ending::Reset => {
                        // Let what was sent leave the socket before the reset.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        guard.finished = true;
                        Some((
                            Err(std::io::Error::other("mock reset")),
                            (events, guard, Ending::Clean, false),
                        ))
                    }
                    Ending::Stall => {
                        std::future::pending::<()>().await;
                        None
                    }
                },
            }
        },
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .header("x-generation-id", id)
        .body(Body::from_stream(body))
        .unwrap()
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-generation-id", body["id"].as_str().unwrap_or("gen-none"))
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn error_response(status: u16) -> Response {
    let message = match status {
        400 => "Invalid request",
        401 => "Missing Authentication header",
        402 => "Insufficient credits. Add more using https://openrouter.ai/credits",
        429 => "Rate limit exceeded",
        503 => "No available model provider that meets your routing requirements",
        _ => "Internal Server Error",
    };
    error_response_with(status, message)
}

fn error_response_with(status: u16, message: &str) -> Response {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-mock-upstream", "1");
    if status == 429 || status == 503 {
        builder = builder.header("retry-after", "7");
    }
    let body = serde_json::json!({"error": {"code": status, "message": message, "metadata": {"error_type": "mock"}}, "user_id": "user_mock"});
    builder
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

/// Keeps `Infallible` in use for stream item types in callers.
pub type NoError = Infallible;
