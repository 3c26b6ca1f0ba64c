//! The load generator (`--role loadgen --spec JSON`): drives one target, prints one JSON
//! [`LoadResult`] line.
//!
//! It speaks HTTP/1.1 over raw keep-alive TCP connections with `TCP_NODELAY`: each request is
//! built once as bytes and written as is, and responses are read with `httparse` and a small
//! chunked decoder. That keeps the generator's own cost per request to a couple of syscalls,
//! the same for every target, so the differences it sees belong to the targets.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hdrhistogram::Histogram;
use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::mock::{now_us, CLAUDE};
use crate::procs;
use crate::spec::{histogram, Door, Load, LoadResult, LoadSpec, Summary};

/// How long a non-streaming request may take before it counts as an error.
const STUCK: Duration = Duration::from_secs(30);

pub(crate) fn run(spec: &str) -> ExitCode {
    let spec: LoadSpec = match serde_json::from_str(spec) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("loadgen: bad --spec: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(runtime) = procs::role_runtime("loadgen") else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        match spec.load {
            Load::Requests {
                concurrency,
                warmup_ms,
                duration_ms,
                body_bytes,
            } => {
                let body = request_body(Door::Chat, body_bytes, false);
                let request = request_bytes(&spec, Door::Chat, &body, None);
                requests(
                    spec.addr,
                    request,
                    concurrency,
                    Duration::from_millis(warmup_ms),
                    Duration::from_millis(duration_ms),
                )
                .await
            }
            Load::Streams {
                streams: n,
                chunks,
                interval_ms,
                door,
            } => {
                let body = request_body(door, 0, true);
                let request = request_bytes(&spec, door, &body, Some((chunks, interval_ms)));
                streams(
                    spec.addr,
                    request,
                    door,
                    n,
                    chunks,
                    Duration::from_millis(interval_ms),
                )
                .await
            }
        }
    });
    let mut out = std::io::stdout();
    match serde_json::to_string(&result) {
        Ok(line) if writeln!(out, "{line}").is_ok() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// The system prompt, where each door keeps it.
const SYSTEM: &str = "You are a helpful assistant. Answer briefly.";

/// A request to `door` as its SDK would send it through OpenRouter (OpenAI's for chat and
/// Responses, Anthropic's for Messages), with a client `provider` object for orgate's policy
/// to merge into and an output cap under orgate's. `pad_to` > 0 adds long pasted documents
/// until the body is about that size.
fn request_body(door: Door, pad_to: usize, stream: bool) -> Vec<u8> {
    let mut messages = Vec::new();
    if pad_to > 0 {
        // Prose with newlines, quotes and some non-ASCII: every byte of it must be scanned as a
        // JSON string, escapes and UTF-8 included.
        let line = "The quick brown fox jumps over the lazy dog; \"quoted\" text, café, naïve, \
                    日本語, emoji 🚀 and a tab\there.\n";
        let mut size = 0;
        while size < pad_to {
            let doc = line.repeat((64 * 1024) / line.len());
            size += doc.len() + 40;
            messages.push(serde_json::json!({ "role": "user", "content": doc }));
        }
    }
    messages.push(serde_json::json!({
        "role": "user",
        "content": "Summarise the documents above in one sentence."
    }));
    // Field by field, in the order an SDK writes them (the map keeps it).
    let (model, system, prompt, cap) = match door {
        Door::Chat => {
            let system = serde_json::json!({ "role": "system", "content": SYSTEM });
            messages.insert(0, system);
            ("openai/gpt-4o-mini", None, "messages", "max_tokens")
        }
        Door::Responses => (
            "openai/gpt-4o-mini",
            Some("instructions"),
            "input",
            "max_output_tokens",
        ),
        Door::Messages => (CLAUDE, Some("system"), "messages", "max_tokens"),
    };
    let mut body = serde_json::Map::new();
    body.insert("model".into(), model.into());
    if let Some(field) = system {
        body.insert(field.into(), SYSTEM.into());
    }
    body.insert(prompt.into(), messages.into());
    body.insert(cap.into(), 256.into());
    body.insert("temperature".into(), 0.7.into());
    body.insert(
        "provider".into(),
        serde_json::json!({ "sort": "price", "ignore": ["ProviderY"], "max_price": { "prompt": 10 } }),
    );
    body.insert("stream".into(), stream.into());
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The request as bytes on the wire. `mock` = (chunks, interval ms) asks the mock for a stream.
fn request_bytes(spec: &LoadSpec, door: Door, body: &[u8], mock: Option<(u32, u64)>) -> Bytes {
    let client = match door {
        Door::Chat | Door::Responses => "User-Agent: OpenAI/Python 1.99.0\r\n",
        Door::Messages => {
            "User-Agent: Anthropic/Python 0.69.0\r\nanthropic-version: 2023-06-01\r\n"
        }
    };
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\n{client}\
         HTTP-Referer: https://bench.example\r\nX-Title: orgate-load\r\n",
        door.path(),
        spec.addr,
        spec.key
    );
    match mock {
        Some((chunks, interval_ms)) => head.push_str(&format!(
            "Accept: text/event-stream\r\nx-mock-chunks: {chunks}\r\nx-mock-interval-ms: {interval_ms}\r\n"
        )),
        None => head.push_str("Accept: application/json\r\n"),
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// Tallies shared by the tasks of one run. One thread runs them all, so the lock is never
/// contended; it is never held across an await.
struct Tally {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    /// Nanoseconds: request latency, or time to the first chunk.
    latency: Histogram<u64>,
    /// Microseconds: chunk delay, every chunk.
    delay: Histogram<u64>,
    /// Microseconds: chunk delay once every stream is open and past its first interval.
    delay_steady: Histogram<u64>,
}

impl Tally {
    fn shared() -> Arc<Mutex<Tally>> {
        Arc::new(Mutex::new(Tally {
            ok: 0,
            errors: 0,
            first_error: None,
            latency: histogram(),
            delay: histogram(),
            delay_steady: histogram(),
        }))
    }

    fn error(&mut self, why: String) {
        self.errors += 1;
        self.first_error.get_or_insert(why);
    }
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(|e| e.into_inner())
}

/// Closed loop: each of `concurrency` connections sends, waits for the whole answer, sends
/// again. Only requests that start after the warm-up and end inside the window count.
async fn requests(
    addr: SocketAddr,
    request: Bytes,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> LoadResult {
    let tally = Tally::shared();
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        match Conn::open(addr).await {
            Ok(c) => conns.push(c),
            Err(e) => lock(&tally).error(format!("connect: {e}")),
        }
    }
    let from = Instant::now() + warmup;
    let end = from + duration;
    let mut tasks = JoinSet::new();
    for mut conn in conns {
        let request = request.clone();
        let tally = tally.clone();
        tasks.spawn(async move {
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                // A target that stops answering must not hang the run.
                let outcome = tokio::time::timeout(STUCK, conn.exchange(&request, &mut |_| {}))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer after {STUCK:?}")));
                let t1 = Instant::now();
                let broken = match outcome {
                    Ok(()) => {
                        if t0 >= from && t1 <= end {
                            let mut t = lock(&tally);
                            t.ok += 1;
                            let _ = t.latency.record((t1 - t0).as_nanos() as u64);
                        }
                        !conn.reusable
                    }
                    Err(e) => {
                        lock(&tally).error(e);
                        // A broken connection is replaced, slowly enough not to spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        true
                    }
                };
                if broken {
                    match Conn::open(addr).await {
                        Ok(c) => conn = c,
                        Err(e) => {
                            lock(&tally).error(format!("reconnect: {e}"));
                            break;
                        }
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let t = lock(&tally);
    LoadResult {
        ok: t.ok,
        errors: t.errors,
        first_error: t.first_error.clone(),
        window_s: duration.as_secs_f64(),
        latency: Summary::of(&t.latency, 1.0),
        ..LoadResult::default()
    }
}

/// `n` streams, each on its own connection (opened beforehand, not timed), started evenly
/// over one interval so that chunks arrive spread out as from independent users, not in one
/// synchronized burst per tick.
async fn streams(
    addr: SocketAddr,
    request: Bytes,
    door: Door,
    n: usize,
    chunks: u32,
    interval: Duration,
) -> LoadResult {
    let tally = Tally::shared();
    // At most 256 connects in flight: a burst of thousands overflows the accept queue and the
    // SYN retries (1 s) would be charged to the target.
    let gate = Arc::new(Semaphore::new(256));
    let mut connecting = JoinSet::new();
    for _ in 0..n {
        let gate = gate.clone();
        connecting.spawn(async move {
            let _permit = gate.acquire().await;
            Conn::open(addr).await
        });
    }
    let mut conns = Vec::with_capacity(n);
    while let Some(joined) = connecting.join_next().await {
        match joined {
            Ok(Ok(c)) => conns.push(c),
            Ok(Err(e)) => lock(&tally).error(format!("connect: {e}")),
            Err(e) => lock(&tally).error(format!("connect task: {e}")),
        }
    }
    let start = Instant::now() + Duration::from_millis(50);
    let limit = interval * chunks + Duration::from_secs(30);
    let count = conns.len().max(1) as u32;
    // The ramp (every stream's request and the proxy's new upstream connection) is over by
    // then; later chunks measure the pass-through alone.
    let steady_from = start + interval * 2;
    let mut tasks = JoinSet::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let request = request.clone();
        let tally = tally.clone();
        let at = start + interval * i as u32 / count;
        tasks.spawn(async move {
            tokio::time::sleep_until(at).await;
            let stream = one_stream(&mut conn, &request, door, &tally, steady_from);
            let outcome = tokio::time::timeout(limit, stream).await;
            let verdict = match outcome {
                Err(_) => Err(format!("stream not finished after {limit:?}")),
                Ok(Err(e)) => Err(e),
                Ok(Ok(seen)) if seen.error_event => Err("the stream carried an error event".into()),
                Ok(Ok(seen)) if !seen.done => {
                    Err(format!("the stream ended without {}", door.last_event()))
                }
                Ok(Ok(seen)) if seen.chunks != chunks => {
                    Err(format!("{} chunks instead of {chunks}", seen.chunks))
                }
                Ok(Ok(_)) => Ok(()),
            };
            let mut t = lock(&tally);
            match verdict {
                Ok(()) => t.ok += 1,
                Err(e) => t.error(e),
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let t = lock(&tally);
    LoadResult {
        ok: t.ok,
        errors: t.errors,
        first_error: t.first_error.clone(),
        window_s: start.elapsed().as_secs_f64(),
        first_chunk: Summary::of(&t.latency, 1.0),
        chunk_delay: Summary::of(&t.delay, 1e3),
        chunk_delay_steady: Summary::of(&t.delay_steady, 1e3),
        ..LoadResult::default()
    }
}

/// What one stream showed.
#[derive(Default)]
struct Seen {
    /// Delta events (chat: chunks).
    chunks: u32,
    /// The door's last event came.
    done: bool,
    error_event: bool,
}

/// What a `data:` payload is to the stream's verdict.
enum Payload {
    Delta,
    End,
    Other,
}

/// A payload by `door`'s rules, and whether it is an error event. Chat's chunks are all deltas
/// and `[DONE]` ends them; the other doors' events are typed, the `type` first in the JSON (as
/// OpenRouter and orgate write them; the proxies pass the bytes on). An error event has an
/// `error` object (chat, Messages, a failed response) or is of type `error`.
fn payload(door: Door, data: &[u8]) -> (Payload, bool) {
    let kind = leading_type(data);
    let error = kind == Some(&b"error"[..]) || memmem::find(data, b"\"error\":{").is_some();
    let last = door.last_event().as_bytes();
    let payload = match (door.delta_event(), kind) {
        (None, _) if data == last => Payload::End,
        (None, _) => Payload::Delta,
        (Some(delta), Some(kind)) if kind == delta.as_bytes() => Payload::Delta,
        (Some(_), Some(kind)) if kind == last => Payload::End,
        (Some(_), _) => Payload::Other,
    };
    (payload, error)
}

/// The `type` of an event whose JSON starts with it.
fn leading_type(data: &[u8]) -> Option<&[u8]> {
    let rest = data.strip_prefix(b"{\"type\":\"")?;
    memchr::memchr(b'"', rest).map(|end| &rest[..end])
}

async fn one_stream(
    conn: &mut Conn,
    request: &[u8],
    door: Door,
    tally: &Mutex<Tally>,
    steady_from: Instant,
) -> Result<Seen, String> {
    let t0 = Instant::now();
    let mut seen = Seen::default();
    let mut events = SseEvents::default();
    conn.exchange(request, &mut |data| {
        // One clock read per read from the socket: every event in it arrived then.
        let now = now_us();
        let first_chunk = t0.elapsed();
        let steady = Instant::now() >= steady_from;
        events.feed(data, |data| {
            let (kind, error) = payload(door, data);
            seen.error_event |= error;
            match kind {
                Payload::Delta => {}
                Payload::End => {
                    seen.done = true;
                    return;
                }
                Payload::Other => return,
            }
            let mut t = lock(tally);
            if seen.chunks == 0 {
                let _ = t.latency.record(first_chunk.as_nanos() as u64);
            }
            seen.chunks += 1;
            if let Some(stamp) = stamp(data) {
                // A stamp from the future can only be clock noise; count it as no delay.
                let delay = now.saturating_sub(stamp).max(1);
                let _ = t.delay.record(delay);
                if steady {
                    let _ = t.delay_steady.record(delay);
                }
            }
        });
    })
    .await?;
    Ok(seen)
}

/// The `"ts_us":N` field of a chunk.
fn stamp(payload: &[u8]) -> Option<u64> {
    let at = memmem::find(payload, b"\"ts_us\":")? + 8;
    let digits = payload[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut value: u64 = 0;
    let mut any = false;
    for d in digits {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

/// Splits a decoded SSE body into events and hands on each `data:` payload; comments and
/// other fields are skipped.
#[derive(Default)]
struct SseEvents {
    pending: Vec<u8>,
}

impl SseEvents {
    fn feed(&mut self, data: &[u8], mut on_data: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(i) = memmem::find(&self.pending[start..], b"\n\n") {
            for line in self.pending[start..start + i].split(|&b| b == b'\n') {
                if let Some(payload) = line.strip_prefix(b"data:") {
                    on_data(payload.strip_prefix(b" ").unwrap_or(payload));
                }
            }
            start += i + 2;
        }
        self.pending.drain(..start);
    }
}

/// How a response body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// One keep-alive HTTP/1.1 client connection.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    /// False once the server said `Connection: close` or delimited a body by closing.
    reusable: bool,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: BytesMut::new(),
            reusable: true,
        })
    }

    /// Sends `request` and reads the whole response. A 200's body goes to `on_data` as it
    /// arrives (decoded); any other status is an error carrying the start of its body.
    async fn exchange(
        &mut self,
        request: &[u8],
        on_data: &mut impl FnMut(&[u8]),
    ) -> Result<(), String> {
        self.stream
            .write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let (status, framing) = self.read_head().await?;
        if status == 200 {
            self.read_body(framing, on_data).await
        } else {
            let mut body = Vec::new();
            self.read_body(framing, &mut |d| {
                if body.len() < 300 {
                    body.extend_from_slice(&d[..d.len().min(300 - body.len())]);
                }
            })
            .await?;
            Err(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ))
        }
    }

    /// Reads more bytes; the end of the stream is an error (a body or head was cut short).
    async fn fill(&mut self) -> Result<(), String> {
        self.buf.reserve(8 * 1024);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err("connection closed by the server".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("read: {e}")),
        }
    }

    async fn read_head(&mut self) -> Result<(u16, Framing), String> {
        loop {
            let parsed = {
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(&self.buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let mut framing = Framing::UntilClose;
                        let mut close = false;
                        for h in response.headers.iter() {
                            let value = std::str::from_utf8(h.value).unwrap_or("").trim();
                            if h.name.eq_ignore_ascii_case("content-length") {
                                if let Ok(n) = value.parse() {
                                    framing = Framing::Length(n);
                                }
                            } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                                && value.eq_ignore_ascii_case("chunked")
                            {
                                framing = Framing::Chunked;
                            } else if h.name.eq_ignore_ascii_case("connection")
                                && value.eq_ignore_ascii_case("close")
                            {
                                close = true;
                            }
                        }
                        Some((len, response.code.unwrap_or(0), framing, close))
                    }
                    Ok(httparse::Status::Partial) => None,
                    Err(e) => return Err(format!("bad response head: {e}")),
                }
            };
            match parsed {
                Some((len, status, framing, close)) => {
                    self.buf.advance(len);
                    if close || matches!(framing, Framing::UntilClose) {
                        self.reusable = false;
                    }
                    return Ok((status, framing));
                }
                None => self.fill().await?,
            }
        }
    }

    async fn read_body(
        &mut self,
        framing: Framing,
        on_data: &mut impl FnMut(&[u8]),
    ) -> Result<(), String> {
        match framing {
            Framing::Length(n) => {
                while self.buf.len() < n {
                    self.fill().await?;
                }
                on_data(&self.buf[..n]);
                self.buf.advance(n);
                Ok(())
            }
            Framing::Chunked => loop {
                let line = self.line().await?;
                let size_text = line.split(|&b| b == b';').next().unwrap_or(&[]);
                let size = std::str::from_utf8(size_text)
                    .ok()
                    .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                    .ok_or_else(|| "bad chunk size".to_owned())?;
                if size == 0 {
                    // Trailers, if any, up to the empty line.
                    while !self.line().await?.is_empty() {}
                    return Ok(());
                }
                while self.buf.len() < size + 2 {
                    self.fill().await?;
                }
                on_data(&self.buf[..size]);
                self.buf.advance(size + 2);
            },
            Framing::UntilClose => loop {
                if !self.buf.is_empty() {
                    on_data(&self.buf);
                    self.buf.clear();
                }
                self.buf.reserve(8 * 1024);
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("read: {e}")),
                }
            },
        }
    }

    /// The next CRLF-terminated line, without its CRLF.
    async fn line(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(i) = memmem::find(&self.buf, b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.advance(i + 2);
                return Ok(line);
            }
            self.fill().await?;
        }
    }
}
