//! The mock upstream (`--role mock`): an instant OpenRouter chat endpoint.
//!
//! It answers any POST at once, so what the harness measures is the path in front of it.
//! The load generator says what it wants in headers (`x-mock-chunks`, `x-mock-interval-ms`)
//! rather than the mock parsing the JSON body: parsing would add the same cost to every target
//! and blur the comparison. The body is still read whole, as a real upstream would.
//!
//! Every SSE chunk carries `"ts_us"`, the wall-clock microsecond it was produced; the gateway
//! passes bytes unchanged, so the load generator's receive time minus the stamp is the chunk's
//! delay through whatever sat in between.

use std::convert::Infallible;
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
            .body(Either::Right(SseBody::new(chunks as u32, interval))),
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

/// An SSE stream: OpenRouter's `: OPENROUTER PROCESSING` comment, then `total` chunks, the
/// first at once and chunk k at `start + k × interval` (a fixed schedule, so one late wake-up
/// does not push every later chunk back), the last with usage, then `[DONE]`.
pub(crate) struct SseBody {
    next: u32,
    total: u32,
    interval: Duration,
    start: Instant,
    sleep: Pin<Box<Sleep>>,
    preamble_sent: bool,
}

impl SseBody {
    fn new(total: u32, interval: Duration) -> Self {
        let start = Instant::now();
        Self {
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
                b": OPENROUTER PROCESSING\n\n",
            )))));
        }
        if this.next >= this.total {
            return Poll::Ready(None);
        }
        // Chunk 0 goes at once: tokio's timer rounds every deadline up to its next 1 ms tick,
        // which would show up as first-chunk time on every target alike.
        if this.next > 0 {
            ready!(this.sleep.as_mut().poll(cx));
        }
        let k = this.next;
        this.next += 1;
        let deadline = this.start + this.interval * this.next;
        this.sleep.as_mut().reset(deadline);
        // Stamped when produced: hyper writes a frame as soon as the body returns it.
        Poll::Ready(Some(Ok(Frame::data(chunk(k, this.total, now_us())))))
    }
}

/// Wall-clock microseconds: the mock and the load generator are different processes, and the
/// realtime clock is the one both can read.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Chunk `k` of `total`, OpenRouter's shape, with the send stamp as the last field.
fn chunk(k: u32, total: u32, ts_us: u64) -> Bytes {
    const HEAD: &str = r#"data: {"id":"gen-1732000000-bench0000000000000","provider":"OpenAI","model":"openai/gpt-4o-mini","object":"chat.completion.chunk","created":1732000000,"choices":[{"index":0,"delta":{"role":"assistant","content":"#;
    let last = k + 1 == total;
    let text = if last {
        format!(
            r#"{HEAD}""}},"finish_reason":"stop","native_finish_reason":"stop","logprobs":null}}],"usage":{{"prompt_tokens":24,"completion_tokens":{total},"total_tokens":{},"cost":0.0000174}},"ts_us":{ts_us}}}

data: [DONE]

"#,
            24 + total
        )
    } else {
        format!(
            r#"{HEAD}" token{k}"}},"finish_reason":null,"native_finish_reason":null,"logprobs":null}}],"ts_us":{ts_us}}}

"#
        )
    };
    Bytes::from(text)
}
