//! The response body on its way back: the upstream's bytes, passed on as they come.
//!
//! [`UpstreamBody`] hands each upstream frame to hyper the moment it arrives and only peeks at
//! it: for an event stream, an [`SseScanner`] notes the generation id, the model and provider,
//! usage, `[DONE]` and in-band errors; for a JSON answer, a side copy is read for its usage at
//! the end. What it sees goes to a [`BodyListener`]: this module charges nothing and imports
//! neither the pipeline nor the policy. It also owns the stream's ending: if the
//! upstream goes quiet for `idle_timeout`, breaks, or closes without `[DONE]`, the client gets
//! one final `data:` event with an `error` object and `finish_reason: "error"` (OpenRouter's own
//! mid-stream error shape), then the end. Dropping the body (the client went away) drops the
//! upstream response with it, which closes that connection and cancels the generation.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use memchr::memmem::Finder;
use serde::Deserialize;
use tokio::time::{Instant, Sleep};

use crate::sse::SseScanner;
use crate::usage::{ResponseSummary, Usage};

/// Non-streaming bodies are copied aside up to this size to read their `usage` at the end.
const MAX_JSON_COPY: usize = 4 << 20;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the gateway learnt from an event stream as it passed.
#[derive(Debug, Default)]
pub(crate) struct StreamFacts {
    /// The generation id (`gen-…`) from the first chunk.
    pub generation_id: Option<String>,
    pub model: Option<String>,
    /// The provider that served it, as OpenRouter reports it.
    pub provider: Option<String>,
    pub saw_done: bool,
    /// The upstream sent its own in-band error event.
    pub saw_error: bool,
    /// The first JSON event has been read (ids come from it alone).
    head_seen: bool,
    /// The usage event, once seen and not yet reported.
    usage: Option<Usage>,
    /// Data events seen (about one token each), for the estimate when usage never comes.
    pub events: u64,
}

/// Peeks at SSE events as they pass.
#[derive(Debug, Default)]
struct SseWatch {
    scanner: SseScanner,
    facts: StreamFacts,
}

impl SseWatch {
    fn feed(&mut self, chunk: &[u8]) {
        let facts = &mut self.facts;
        self.scanner
            .feed(chunk, &mut |data: &[u8]| observe_event(facts, data));
    }
}

/// The substring searches every event goes through, built once: building a searcher costs
/// more than searching a typical event with it.
static USAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
static ERROR_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));

/// Reads what matters from one event's data. Cheap substring checks come first: most events are
/// content deltas that need no parsing at all.
fn observe_event(facts: &mut StreamFacts, data: &[u8]) {
    facts.events += 1;
    if data == b"[DONE]" {
        facts.saw_done = true;
        return;
    }
    if USAGE_KEY.find(data).is_some() {
        if let Some(usage) = Usage::from_json(data) {
            facts.usage = Some(usage);
        }
    }
    let first = !facts.head_seen;
    let maybe_error = ERROR_KEY.find(data).is_some();
    if !first && !maybe_error {
        return;
    }
    #[derive(Deserialize)]
    struct Head {
        id: Option<String>,
        model: Option<String>,
        provider: Option<String>,
        #[serde(default)]
        error: Option<Box<serde_json::value::RawValue>>,
    }
    let Ok(head) = serde_json::from_slice::<Head>(data) else {
        return;
    };
    if first {
        facts.head_seen = true;
        facts.generation_id = head.id;
        facts.model = head.model;
        facts.provider = head.provider;
    }
    // OpenRouter's in-band error is an object; anything else is not one.
    if head.error.is_some_and(|e| e.get().starts_with('{')) {
        facts.saw_error = true;
    }
}

/// Who hears what a response body shows as it passes. The body only peeks and reports; what it
/// means (charges, metrics, the provider check, a settlement) is the listener's business.
pub(crate) trait BodyListener: Send + Unpin + 'static {
    /// The response reported what it used; `model` is the model the response names, if any.
    fn usage(&mut self, usage: &Usage, model: Option<&str>);
    /// The provider that served the response, as the upstream reports it (once per body).
    fn provider(&mut self, provider: &str);
    /// The body broke off: `kind` is `reset` or `timeout` (`orgate_upstream_errors_total`).
    fn failed(&mut self, kind: &'static str);
    /// The body is gone (ended, broken off, or dropped by a client that left), with what an
    /// event stream showed of itself. Called once.
    fn gone(&mut self, stream: Option<&StreamFacts>);
    /// The model the request asked for, named in the final error event of a stream that broke
    /// before naming its own.
    fn requested_model(&self) -> Option<&str>;
}

/// A side copy of a JSON body, to read its usage once it is complete.
#[derive(Debug, Default)]
struct JsonCopy {
    bytes: Vec<u8>,
    overflow: bool,
}

impl JsonCopy {
    fn push(&mut self, chunk: &[u8]) {
        if self.overflow || self.bytes.len() + chunk.len() > MAX_JSON_COPY {
            self.overflow = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(chunk);
        }
    }
}

enum Phase {
    Streaming,
    /// The final error event, still to be sent.
    Tail(Bytes),
    Done,
}

/// The upstream's body, wrapped: `B` is the upstream client's body, `L` hears what passes.
pub(crate) struct UpstreamBody<B, L>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
    L: BodyListener,
{
    inner: B,
    phase: Phase,
    /// Present for `text/event-stream` responses only.
    sse: Option<SseWatch>,
    /// Present for JSON responses whose usage is read.
    json: Option<JsonCopy>,
    listener: L,
    /// The provider has been reported (an event stream names it in every event).
    provider_reported: bool,
    idle_timeout: Duration,
    last_activity: Instant,
    /// Fires at `last_activity + idle_timeout` or earlier; re-armed lazily, not per chunk.
    idle_timer: Pin<Box<Sleep>>,
}

impl<B, L> std::fmt::Debug for UpstreamBody<B, L>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
    L: BodyListener,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("sse", &self.sse.is_some())
            .finish_non_exhaustive()
    }
}

impl<B, L> UpstreamBody<B, L>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
    L: BodyListener,
{
    /// `kind` decides what is watched: an event stream's events, or a JSON body's usage.
    pub(crate) fn new(inner: B, kind: BodyKind, idle_timeout: Duration, listener: L) -> Self {
        let now = Instant::now();
        Self {
            inner,
            phase: Phase::Streaming,
            sse: (kind == BodyKind::EventStream).then(SseWatch::default),
            json: (kind == BodyKind::Json).then(JsonCopy::default),
            listener,
            provider_reported: false,
            idle_timeout,
            last_activity: now,
            idle_timer: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
        }
    }

    /// Looks at a chunk on its way past.
    fn peek(&mut self, data: &[u8]) {
        if let Some(watch) = &mut self.sse {
            watch.feed(data);
            if let Some(usage) = watch.facts.usage.take() {
                self.listener.usage(&usage, watch.facts.model.as_deref());
            }
            if let (false, Some(provider)) = (self.provider_reported, &watch.facts.provider) {
                self.provider_reported = true;
                self.listener.provider(provider);
            }
        } else if let Some(copy) = &mut self.json {
            copy.push(data);
        }
    }

    /// The body ended cleanly: a JSON body's usage is read now.
    fn finish(&mut self) {
        if let Some(copy) = self.json.take() {
            let summary = ResponseSummary::from_json(&copy.bytes);
            if let Some(usage) = &summary.usage {
                self.listener.usage(usage, summary.model.as_deref());
            }
            if let Some(provider) = &summary.provider {
                self.listener.provider(provider);
            }
        }
    }

    /// Ends the body because of `why`: an event stream gets its final error event, any other
    /// body an error (hyper then cuts the connection, so the client sees it is incomplete).
    fn end_with_error(
        &mut self,
        kind: &'static str,
        why: String,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        tracing::warn!(reason = %why, "upstream body ended abnormally");
        self.listener.failed(kind);
        match &self.sse {
            Some(watch) => {
                let event = error_event(watch, &why, self.listener.requested_model());
                self.phase = Phase::Tail(event);
                Poll::Ready(self.take_tail())
            }
            None => {
                self.phase = Phase::Done;
                Poll::Ready(Some(Err(why.into())))
            }
        }
    }

    fn take_tail(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Tail(bytes) => Some(Ok(Frame::data(bytes))),
            _ => None,
        }
    }

    /// `Ready` once the upstream has been silent for the whole idle timeout.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.idle_timer.as_mut().poll(cx));
            let quiet_until = self.last_activity + self.idle_timeout;
            if Instant::now() >= quiet_until {
                return Poll::Ready(());
            }
            self.idle_timer.as_mut().reset(quiet_until);
        }
    }
}

impl<B, L> Body for UpstreamBody<B, L>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
    L: BodyListener,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match this.phase {
            Phase::Streaming => {}
            Phase::Tail(_) => return Poll::Ready(this.take_tail()),
            Phase::Done => return Poll::Ready(None),
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.last_activity = Instant::now();
                    this.peek(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let why = format!("the upstream connection broke mid-body: {}", root_cause(&e));
                this.end_with_error("reset", why)
            }
            Poll::Ready(None) => match &this.sse {
                Some(watch) if !watch.facts.saw_done && !watch.facts.saw_error => this
                    .end_with_error(
                        "reset",
                        "the upstream closed the stream before [DONE]".to_owned(),
                    ),
                _ => {
                    this.finish();
                    this.phase = Phase::Done;
                    Poll::Ready(None)
                }
            },
            Poll::Pending => {
                ready!(this.poll_idle(cx));
                let idle = humantime::format_duration(this.idle_timeout);
                this.end_with_error("timeout", format!("the upstream sent nothing for {idle}"))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.phase {
            Phase::Done => true,
            // A body of known length ends with its last byte: hyper may not poll again.
            Phase::Streaming => self.sse.is_none() && self.inner.is_end_stream(),
            Phase::Tail(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.phase, &self.sse) {
            // An event stream may grow by our final error event.
            (Phase::Streaming, None) => self.inner.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

/// What a response body watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// `text/event-stream`: events are scanned as they pass.
    EventStream,
    /// A JSON answer whose usage is wanted: copied aside to read it at the end.
    Json,
    /// Anything else: passed on, not looked at.
    Opaque,
}

impl<B, L> Drop for UpstreamBody<B, L>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
    L: BodyListener,
{
    fn drop(&mut self) {
        // hyper may drop a body of known length without polling it to its end.
        if self.inner.is_end_stream() {
            self.finish();
        }
        let facts = self.sse.as_ref().map(|w| &w.facts);
        self.listener.gone(facts);
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The final event of a stream that broke: OpenRouter's mid-stream error chunk.
fn error_event(watch: &SseWatch, why: &str, requested_model: Option<&str>) -> Bytes {
    let facts = &watch.facts;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let chunk = serde_json::json!({
        "id": facts.generation_id.as_deref().unwrap_or("orgate-error"),
        "object": "chat.completion.chunk",
        "created": created,
        "model": facts.model.as_deref().or(requested_model).unwrap_or(""),
        "error": {
            "code": 502,
            "message": format!("stream interrupted: {why}"),
            "metadata": { "error_type": "provider_unavailable", "source": "orgate" },
        },
        "choices": [{
            "index": 0,
            "delta": { "content": "" },
            "finish_reason": "error",
            "native_finish_reason": null,
        }],
    });
    // Close whatever line or event the upstream left open, so ours is read as its own event.
    // The blank line is `\r\n`: after an upstream that stopped on a bare `\r`, a lone `\n`
    // would be read as the second half of that line ending, not as a blank line.
    let lead: &[u8] = if !watch.scanner.at_line_start() {
        b"\n\n"
    } else if !watch.scanner.at_event_boundary() {
        b"\r\n"
    } else {
        b""
    };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(lead);
    out.extend_from_slice(b"data: ");
    // Serialising a `Value` cannot fail.
    let _ = serde_json::to_writer(&mut out, &chunk);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_reads_ids_done_and_errors_across_chunks() {
        let mut watch = SseWatch::default();
        watch.feed(b": OPENROUTER PROCESSING\n\ndata: {\"id\":\"gen-7\",\"model\":\"m\",\"prov");
        watch.feed(b"ider\":\"OpenAI\",\"choices\":[]}\n\n");
        assert_eq!(watch.facts.generation_id.as_deref(), Some("gen-7"));
        assert_eq!(watch.facts.provider.as_deref(), Some("OpenAI"));
        watch.feed(b"data: {\"id\":\"gen-7\",\"choices\":[{\"delta\":{\"content\":\"\\\"error\\\"\"}}]}\n\n");
        assert!(
            !watch.facts.saw_error,
            "the word in content is not an error"
        );
        watch.feed(b"data: {\"id\":\"gen-7\",\"error\":{\"code\":429,\"message\":\"x\"},\"choices\":[]}\n\ndata: [DONE]\n\n");
        assert!(watch.facts.saw_error && watch.facts.saw_done);
    }

    #[test]
    fn error_event_starts_a_fresh_event() {
        let mut watch = SseWatch::default();
        watch.feed(b"data: {\"id\":\"gen-1\",\"model\":\"m\"}\n\ndata: {\"partial");
        let event = error_event(&watch, "boom", None);
        assert!(event.starts_with(b"\n\ndata: {"));
        assert!(event.ends_with(b"\n\n"));
        let json: serde_json::Value = serde_json::from_slice(&event[8..event.len() - 2]).unwrap();
        assert_eq!(json["id"], "gen-1");
        assert_eq!(json["choices"][0]["finish_reason"], "error");
        assert_eq!(json["error"]["code"], 502);
    }

    /// The events a client reads from `bytes`.
    fn client_events(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut events = Vec::new();
        SseScanner::new().feed(bytes, &mut |data: &[u8]| events.push(data.to_vec()));
        events
    }

    #[test]
    fn error_event_after_a_bare_cr_is_still_its_own_event() {
        // Found writing the soak test (its broken streams may stop on a bare `\r`): a lone `\n`
        // lead made `\r\n` one line ending, so the error event was read as part of the
        // upstream's unfinished event.
        for upstream in [
            &b"data: x\r"[..],
            b": c\r",
            b"data: x\r\n",
            b"data: x\n",
            b"data: x\r\r",
        ] {
            let mut watch = SseWatch::default();
            watch.feed(upstream);
            let event = error_event(&watch, "boom", None);
            let events = client_events(&[upstream, &event[..]].concat());
            let last = events.last().expect("an event");
            let json: serde_json::Value = serde_json::from_slice(last)
                .unwrap_or_else(|e| panic!("{upstream:?}: last event is not the error ({e})"));
            assert_eq!(json["choices"][0]["finish_reason"], "error");
        }
    }

    proptest::proptest! {
        /// Whatever the upstream sent before it broke, the client reads the error as the last
        /// event, on its own.
        #[test]
        fn error_event_is_always_the_last_event(pieces in proptest::collection::vec(
            proptest::sample::select(vec!["data: x", "data:", ": c", "event: e", "x", "\r", "\n", "\r\n"]),
            0..16,
        )) {
            let upstream = pieces.concat().into_bytes();
            let mut watch = SseWatch::default();
            watch.feed(&upstream);
            let before = client_events(&upstream).len();
            let event = error_event(&watch, "boom", None);
            let events = client_events(&[&upstream[..], &event[..]].concat());
            proptest::prop_assert!(events.len() > before);
            let json: Result<serde_json::Value, _> = serde_json::from_slice(events.last().unwrap());
            proptest::prop_assert!(json.is_ok(), "{:?}: the last event is not the error", pieces);
            proptest::prop_assert_eq!(&json.unwrap()["choices"][0]["finish_reason"], "error");
        }
    }
}
