//! The mock upstream (`--role mock`): an instant OpenRouter, on the chat, Responses and
//! Messages doors.
//!
//! It answers any POST at once, so what the harness measures is the path in front of it.
//! The load generator says what it wants in headers (`x-mock-chunks`, `x-mock-interval-ms`)
//! rather than the mock parsing the JSON body: parsing would add the same cost to every target
//! and blur the comparison. The body is still read whole, as a real upstream would. A stream's
//! format is the door's, read from the end of the path (`/responses`, `/messages`, else chat).
//!
//! Every delta event carries `"ts_us"`, the wall-clock microsecond it was produced, as the last
//! field of its JSON; the gateway passes bytes unchanged, so the load generator's receive time
//! minus the stamp is the chunk's delay through whatever sat in between.

use std::convert::Infallible;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpSocket;
use tokio::time::{Instant, Sleep};

use crate::procs;
use crate::spec::Door;

/// An OpenRouter-shaped non-streaming completion (provider, usage with cost, native finish
/// reason), about the size of a short real answer.
const COMPLETION: &str = r#"{"id":"gen-1732000000-bench0000000000000","provider":"OpenAI","model":"openai/gpt-4o-mini","object":"chat.completion","created":1732000000,"choices":[{"logprobs":null,"finish_reason":"stop","native_finish_reason":"stop","index":0,"message":{"role":"assistant","content":"Hello! I am a fast mock upstream, answering at once so that only the path in front of me is measured.","refusal":null,"reasoning":null}}],"system_fingerprint":"fp_bench","usage":{"prompt_tokens":24,"completion_tokens":23,"total_tokens":47,"cost":0.0000174,"is_byok":false,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#;

/// Runs the mock until its stdin closes (the orchestrator exited or dropped it). Prints the
/// port it listens on, on one line, first.
pub(crate) fn run() -> ExitCode {
    procs::serve_role("mock", serve())
}

async fn serve() -> std::io::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(([127, 0, 0, 1], 0).into())?;
    // A long backlog: a proxy opening a thousand upstream connections at once must not see
    // SYN retries (1 s each) that would be charged to it.
    let listener = socket.listen(4096)?;
    let port = listener.local_addr()?.port();
    let mut out = std::io::stdout();
    writeln!(out, "{port}")?;
    out.flush()?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}

type MockBody = Either<Full<Bytes>, SseBody>;

async fn handle(request: Request<Incoming>) -> Result<Response<MockBody>, Infallible> {
    let door = Door::of(request.uri().path());
    let chunks = number(request.headers(), "x-mock-chunks");
    let interval =
        Duration::from_millis(number(request.headers(), "x-mock-interval-ms").unwrap_or(0));
    // Read (and drop) the whole body, frame by frame, without gathering it.
    let mut body = request.into_body();
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
    let response = match chunks {
        None => Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Either::Left(Full::new(Bytes::from_static(
                COMPLETION.as_bytes(),
            )))),
        Some(chunks) => Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Either::Right(SseBody::new(door, chunks as u32, interval))),
    };
    // The builder only fails on invalid parts, and these are constants.
    Ok(response.unwrap_or_else(|_| Response::new(Either::Left(Full::new(Bytes::new())))))
}

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// An SSE stream in `door`'s format: OpenRouter's `: OPENROUTER PROCESSING` comment and the
/// door's opening events, then `total` deltas, the first at once and delta k at
/// `start + k × interval` (a fixed schedule, so one late wake-up does not push every later
/// delta back), the last followed by the door's closing events, usage among them.
pub(crate) struct SseBody {
    door: Door,
    next: u32,
    total: u32,
    interval: Duration,
    start: Instant,
    sleep: Pin<Box<Sleep>>,
    preamble_sent: bool,
}

impl SseBody {
    fn new(door: Door, total: u32, interval: Duration) -> Self {
        let start = Instant::now();
        Self {
            door,
            next: 0,
            total,
            interval,
            start,
            sleep: Box::pin(tokio::time::sleep_until(start)),
            preamble_sent: false,
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if !this.preamble_sent {
            this.preamble_sent = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                opening(this.door).as_bytes(),
            )))));
        }
        if this.next >= this.total {
            return Poll::Ready(None);
        }
        // Delta 0 goes at once: tokio's timer rounds every deadline up to its next 1 ms tick,
        // which would show up as first-chunk time on every target alike.
        if this.next > 0 {
            ready!(this.sleep.as_mut().poll(cx));
        }
        let k = this.next;
        this.next += 1;
        let deadline = this.start + this.interval * this.next;
        this.sleep.as_mut().reset(deadline);
        // Stamped when produced: hyper writes a frame as soon as the body returns it.
        Poll::Ready(Some(Ok(Frame::data(delta(
            this.door,
            k,
            this.total,
            now_us(),
        )))))
    }
}

/// Wall-clock microseconds: the mock and the load generator are different processes, and the
/// realtime clock is the one both can read.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The generation every answer names.
const ID: &str = "gen-1732000000-bench0000000000000";
/// The Messages door's model: what the load generator asks for there.
pub(crate) const CLAUDE: &str = "anthropic/claude-sonnet-4";
/// The prompt's tokens, and the cost every answer reports (OpenRouter's `usage.cost`).
const PROMPT_TOKENS: u32 = 24;
const COST: &str = "0.0000174";

/// Before the first delta: OpenRouter's comment, then the door's opening events (Responses:
/// the response created and in progress, its message item and text part; Messages: the
/// message with its input usage, the text block, a ping), in one frame.
fn opening(door: Door) -> &'static str {
    match door {
        Door::Chat => ": OPENROUTER PROCESSING\n\n",
        Door::Responses => concat!(
            ": OPENROUTER PROCESSING\n\n",
            "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"gen-1732000000-bench0000000000000\",\"object\":\"response\",\"created_at\":1732000000,\"model\":\"openai/gpt-4o-mini\",\"status\":\"in_progress\",\"error\":null,\"incomplete_details\":null,\"output\":[],\"usage\":null},\"sequence_number\":0}\n\n",
            "event: response.in_progress\ndata: {\"type\":\"response.in_progress\",\"response\":{\"id\":\"gen-1732000000-bench0000000000000\",\"object\":\"response\",\"created_at\":1732000000,\"model\":\"openai/gpt-4o-mini\",\"status\":\"in_progress\",\"error\":null,\"incomplete_details\":null,\"output\":[],\"usage\":null},\"sequence_number\":1}\n\n",
            "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"id\":\"msg_bench\",\"type\":\"message\",\"status\":\"in_progress\",\"role\":\"assistant\",\"content\":[]},\"sequence_number\":2}\n\n",
            "event: response.content_part.added\ndata: {\"type\":\"response.content_part.added\",\"item_id\":\"msg_bench\",\"output_index\":0,\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"\",\"annotations\":[]},\"sequence_number\":3}\n\n",
        ),
        Door::Messages => concat!(
            ": OPENROUTER PROCESSING\n\n",
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"gen-1732000000-bench0000000000000\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"anthropic/claude-sonnet-4\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":24,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        ),
    }
}

/// The Responses door's opening events, counted: the first delta's sequence number.
const RESPONSES_OPENING_EVENTS: u32 = 4;

/// Delta `k` of `total` in `door`'s format, stamped; the last followed by the closing events.
fn delta(door: Door, k: u32, total: u32, ts_us: u64) -> Bytes {
    let last = k + 1 == total;
    let mut out = String::with_capacity(if last { 2048 } else { 512 });
    match door {
        Door::Chat if last => stamped(
            &mut out,
            None,
            ts_us,
            format_args!(
                r#"{CHAT_HEAD}""}},"finish_reason":"stop","native_finish_reason":"stop","logprobs":null}}],"usage":{{"prompt_tokens":{PROMPT_TOKENS},"completion_tokens":{total},"total_tokens":{},"cost":{COST}}}"#,
                PROMPT_TOKENS + total
            ),
        ),
        Door::Chat => stamped(
            &mut out,
            None,
            ts_us,
            format_args!(
                r#"{CHAT_HEAD}" token{k}"}},"finish_reason":null,"native_finish_reason":null,"logprobs":null}}]"#
            ),
        ),
        Door::Responses => stamped(
            &mut out,
            door.delta_event(),
            ts_us,
            format_args!(
                r#"{{"type":"response.output_text.delta","item_id":"msg_bench","output_index":0,"content_index":0,"delta":" token{k}","logprobs":[],"sequence_number":{}"#,
                RESPONSES_OPENING_EVENTS + k
            ),
        ),
        Door::Messages => stamped(
            &mut out,
            door.delta_event(),
            ts_us,
            format_args!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":" token{k}"}}"#
            ),
        ),
    }
    if last {
        closing(&mut out, door, total);
    }
    Bytes::from(out)
}

/// The start of every chat chunk, up to its content.
const CHAT_HEAD: &str = r#"{"id":"gen-1732000000-bench0000000000000","provider":"OpenAI","model":"openai/gpt-4o-mini","object":"chat.completion.chunk","created":1732000000,"choices":[{"index":0,"delta":{"role":"assistant","content":"#;

/// One event whose JSON is `fields` (an object left open) closed by the send stamp, after an
/// `event:` line when the door names its events (`name`: the type of its deltas).
fn stamped(out: &mut String, name: Option<&str>, ts_us: u64, fields: fmt::Arguments<'_>) {
    if let Some(name) = name {
        let _ = writeln!(out, "event: {name}");
    }
    let _ = write!(out, "data: {fields},\"ts_us\":{ts_us}}}\n\n");
}

/// One event, unstamped.
fn event(out: &mut String, name: &str, data: fmt::Arguments<'_>) {
    let _ = write!(out, "event: {name}\ndata: {data}\n\n");
}

/// After the last of `total` deltas: the door's end, usage in its terminal event (chat's is
/// in the last chunk already).
fn closing(out: &mut String, door: Door, total: u32) {
    let output_tokens = total;
    let total_tokens = PROMPT_TOKENS + total;
    match door {
        Door::Chat => out.push_str("data: [DONE]\n\n"),
        Door::Responses => {
            let text: String = (0..total).map(|k| format!(" token{k}")).collect();
            let seq = RESPONSES_OPENING_EVENTS + total;
            let part = format!(r#"{{"type":"output_text","text":"{text}","annotations":[]}}"#);
            event(
                out,
                "response.output_text.done",
                format_args!(
                    r#"{{"type":"response.output_text.done","item_id":"msg_bench","output_index":0,"content_index":0,"text":"{text}","logprobs":[],"sequence_number":{seq}}}"#
                ),
            );
            event(
                out,
                "response.content_part.done",
                format_args!(
                    r#"{{"type":"response.content_part.done","item_id":"msg_bench","output_index":0,"content_index":0,"part":{part},"sequence_number":{}}}"#,
                    seq + 1
                ),
            );
            let item = format!(
                r#"{{"id":"msg_bench","type":"message","status":"completed","role":"assistant","content":[{part}]}}"#
            );
            event(
                out,
                "response.output_item.done",
                format_args!(
                    r#"{{"type":"response.output_item.done","output_index":0,"item":{item},"sequence_number":{}}}"#,
                    seq + 2
                ),
            );
            event(
                out,
                "response.completed",
                format_args!(
                    r#"{{"type":"response.completed","response":{{"id":"{ID}","object":"response","created_at":1732000000,"model":"openai/gpt-4o-mini","status":"completed","error":null,"incomplete_details":null,"output":[{item}],"usage":{{"input_tokens":{PROMPT_TOKENS},"input_tokens_details":{{"cached_tokens":0}},"output_tokens":{output_tokens},"output_tokens_details":{{"reasoning_tokens":0}},"total_tokens":{total_tokens},"cost":{COST},"is_byok":false}}}},"sequence_number":{}}}"#,
                    seq + 3
                ),
            );
        }
        Door::Messages => {
            event(
                out,
                "content_block_stop",
                format_args!(r#"{{"type":"content_block_stop","index":0}}"#),
            );
            // OpenRouter does not always add `cost` here; with it, the usage is whole at the
            // end of the stream, as on the other doors (without, orgate would settle the spend
            // from `/generation` when a budget needs it).
            event(
                out,
                "message_delta",
                format_args!(
                    r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{{"output_tokens":{output_tokens},"cost":{COST}}}}}"#
                ),
            );
            event(
                out,
                "message_stop",
                format_args!(r#"{{"type":"message_stop"}}"#),
            );
        }
    }
}
