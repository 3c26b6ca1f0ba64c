//! The response body on its way back: the upstream's bytes, passed on as they come.
//!
//! [`UpstreamBody`] hands each upstream frame to hyper the moment it arrives and only peeks at
//! it: for an event stream, an [`SseScanner`] hands each event to the door's [`EventReader`],
//! which notes the generation id, the model and provider, usage, the stream's own last event
//! and in-band errors; for a JSON answer, a side copy is read for its usage at the end. What it
//! sees goes to a [`BodyListener`]: this module charges nothing and imports neither the
//! doors, the pipeline nor the policy. It also owns the stream's ending: if the upstream goes
//! quiet for `idle_timeout`, breaks, or closes before the door's last event (`[DONE]`,
//! `message_stop`, `response.completed`), the client gets one final error event in the door's
//! shape, then the end. Dropping the body (the client went away) drops the upstream response
//! with it, which closes that connection and cancels the generation.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::sse::{SseScanner, SseSink};
use crate::usage::{ResponseSummary, Usage};

/// Non-streaming bodies are copied aside up to this size to read their `usage` at the end.
const MAX_JSON_COPY: usize = 4 << 20;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the gateway learnt from an event stream as it passed, written by the door's
/// `EventReader`.
#[derive(Debug, Default)]
pub struct StreamFacts {
    /// The generation id (`gen-…`) the stream names.
    pub generation_id: Option<String>,
    pub model: Option<String>,
    /// The provider that served it, as OpenRouter reports it.
    pub provider: Option<String>,
    /// The stream's own last event was seen (`[DONE]`, `message_stop`, `response.completed`):
    /// it is complete by its door's rule.
    pub complete: bool,
    /// The upstream sent its own in-band error event (the stream ends there too).
    pub saw_error: bool,
    /// The usage the stream reported, once seen and not yet handed on.
    pub usage: Option<Usage>,
    /// Data events seen (about one token each), for the estimate when usage never comes.
    pub events: u64,
}

/// How one door's event stream reads: which events say what, when the stream is complete, and
/// the event that ends it when it breaks. Each door with a stream has one (`crate::doors`).
pub(crate) trait EventReader: Send + Unpin + 'static {
    /// Reads one event's `data` (whole, at most [`crate::sse::MAX_EVENT_DATA`] bytes).
    fn event(&mut self, facts: &mut StreamFacts, data: &[u8]);
    /// A piece of an event too large to hand on whole (see [`crate::sse::SseSink`]).
    fn large_piece(&mut self, _facts: &mut StreamFacts, _piece: &[u8]) {}
    /// The large event whose pieces came has ended.
    fn large_end(&mut self, _facts: &mut StreamFacts) {}
    /// The event a complete stream of this door ends with, for the message when it is missing.
    fn last_event(&self) -> &'static str;
    /// The last event of a stream that broke because of `why`, in the door's own error shape:
    /// its fields and the blank line that ends it.
    fn error_event(&self, facts: &StreamFacts, why: &str, requested_model: Option<&str>)
        -> Vec<u8>;
}

/// Peeks at SSE events as they pass: the scanner, the door's reader, and what it learnt.
#[derive(Debug, Default)]
pub(crate) struct SseWatch<R> {
    scanner: SseScanner,
    facts: StreamFacts,
    reader: R,
}

impl<R: EventReader> SseWatch<R> {
    pub(crate) fn new(reader: R) -> Self {
        Self {
            scanner: SseScanner::new(),
            facts: StreamFacts::default(),
            reader,
        }
    }

    /// Reads the events that end in `chunk`.
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        let mut sink = ReaderSink {
            facts: &mut self.facts,
            reader: &mut self.reader,
        };
        self.scanner.feed(chunk, &mut sink);
    }

    /// What the stream showed of itself so far.
    pub(crate) fn into_facts(self) -> StreamFacts {
        self.facts
    }
}

/// The scanner's events, counted and handed to the door's reader.
struct ReaderSink<'a, R> {
    facts: &'a mut StreamFacts,
    reader: &'a mut R,
}

impl<R: EventReader> SseSink for ReaderSink<'_, R> {
    fn event(&mut self, data: &[u8]) {
        self.facts.events += 1;
        self.reader.event(self.facts, data);
    }

    fn large_piece(&mut self, piece: &[u8]) {
        self.reader.large_piece(self.facts, piece);
    }

    fn large_end(&mut self) {
        self.facts.events += 1;
        self.reader.large_end(self.facts);
    }
}

/// Who hears what a response body shows as it passes. The body only peeks and reports; what it
/// means (charges, metrics, the provider check, a settlement) is the listener's business.
pub(crate) trait BodyListener: Send + Unpin + 'static {
    /// The response reported what it used; `model` and `generation` are the model and the
    /// generation id (`gen-…`) the response names, if any.
    fn usage(&mut self, usage: &Usage, model: Option<&str>, generation: Option<&str>);
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

/// The upstream's body, wrapped: `B` is the upstream client's body, `L` hears what passes, `R`
/// reads the door's events.
pub(crate) struct UpstreamBody<B, L, R>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
    L: BodyListener,
    R: EventReader,
{
    inner: B,
    phase: Phase,
    /// Present for `text/event-stream` responses only.
    sse: Option<SseWatch<R>>,
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

impl<B, L, R> std::fmt::Debug for UpstreamBody<B, L, R>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
    L: BodyListener,
    R: EventReader,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("sse", &self.sse.is_some())
            .finish_non_exhaustive()
    }
}

impl<B, L, R> UpstreamBody<B, L, R>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
    L: BodyListener,
    R: EventReader,
{
    /// `kind` decides what is watched: an event stream's events (read by `reader`), or a JSON
    /// body's usage.
    pub(crate) fn new(
        inner: B,
        kind: BodyKind,
        idle_timeout: Duration,
        listener: L,
        reader: R,
    ) -> Self {
        let now = Instant::now();
        Self {
            inner,
            phase: Phase::Streaming,
            sse: (kind == BodyKind::EventStream).then(|| SseWatch::new(reader)),
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
                let facts = &watch.facts;
                let (model, generation) = (facts.model.as_deref(), facts.generation_id.as_deref());
                self.listener.usage(&usage, model, generation);
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
                let (model, generation) = (summary.model.as_deref(), summary.id.as_deref());
                self.listener.usage(usage, model, generation);
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
                let event = final_event(watch, &why, self.listener.requested_model());
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

impl<B, L, R> Body for UpstreamBody<B, L, R>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
    L: BodyListener,
    R: EventReader,
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
                Some(watch) if !watch.facts.complete && !watch.facts.saw_error => {
                    let last = watch.reader.last_event();
                    let why = format!("the upstream closed the stream before {last}");
                    this.end_with_error("reset", why)
                }
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

impl<B, L, R> Drop for UpstreamBody<B, L, R>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
    L: BodyListener,
    R: EventReader,
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

/// The final event of a stream that broke: the door's error event, after whatever closes the
/// line or event the upstream left open, so that it is read as its own event. The blank line is
/// `\r\n`: after an upstream that stopped on a bare `\r`, a lone `\n` would be read as the
/// second half of that line ending, not as a blank line.
fn final_event<R: EventReader>(
    watch: &SseWatch<R>,
    why: &str,
    requested_model: Option<&str>,
) -> Bytes {
    let lead: &[u8] = if !watch.scanner.at_line_start() {
        b"\n\n"
    } else if !watch.scanner.at_event_boundary() {
        b"\r\n"
    } else {
        b""
    };
    let mut out = lead.to_vec();
    out.extend(watch.reader.error_event(&watch.facts, why, requested_model));
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A door's reader reduced to what the body itself relies on: `end` completes the stream,
    /// and the error event is one JSON `data:` line.
    #[derive(Debug, Default)]
    struct Probe;

    impl EventReader for Probe {
        fn event(&mut self, facts: &mut StreamFacts, data: &[u8]) {
            facts.complete |= data == b"end";
        }
        fn last_event(&self) -> &'static str {
            "end"
        }
        fn error_event(&self, _: &StreamFacts, why: &str, _: Option<&str>) -> Vec<u8> {
            format!("data: {}\n\n", serde_json::json!({ "error": why })).into_bytes()
        }
    }

    fn watch_of(upstream: &[u8]) -> SseWatch<Probe> {
        let mut watch = SseWatch::new(Probe);
        watch.feed(upstream);
        watch
    }

    #[test]
    fn the_reader_hears_every_event_and_decides_completeness() {
        let mut watch = watch_of(b": comment\n\ndata: a\n\ndata: e");
        assert_eq!(watch.facts.events, 1);
        assert!(!watch.facts.complete);
        watch.feed(b"nd\n\n");
        assert_eq!(watch.facts.events, 2);
        assert!(watch.facts.complete);
    }

    #[test]
    fn the_final_event_starts_a_fresh_event() {
        let watch = watch_of(b"data: {\"id\":\"gen-1\"}\n\ndata: {\"partial");
        let event = final_event(&watch, "boom", None);
        assert!(event.starts_with(b"\n\ndata: {"));
        assert!(event.ends_with(b"\n\n"));
    }

    /// The events a client reads from `bytes`.
    fn client_events(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut events = Vec::new();
        SseScanner::new().feed(bytes, &mut |data: &[u8]| events.push(data.to_vec()));
        events
    }

    #[test]
    fn the_final_event_after_a_bare_cr_is_still_its_own_event() {
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
            let event = final_event(&watch_of(upstream), "boom", None);
            let events = client_events(&[upstream, &event[..]].concat());
            let last = events.last().expect("an event");
            let json: serde_json::Value = serde_json::from_slice(last)
                .unwrap_or_else(|e| panic!("{upstream:?}: last event is not the error ({e})"));
            assert_eq!(json["error"], "boom");
        }
    }

    proptest::proptest! {
        /// Whatever the upstream sent before it broke, the client reads the error as the last
        /// event, on its own.
        #[test]
        fn the_final_event_is_always_the_last_event(pieces in proptest::collection::vec(
            proptest::sample::select(vec!["data: x", "data:", ": c", "event: e", "x", "\r", "\n", "\r\n"]),
            0..16,
        )) {
            let upstream = pieces.concat().into_bytes();
            let before = client_events(&upstream).len();
            let event = final_event(&watch_of(&upstream), "boom", None);
            let events = client_events(&[&upstream[..], &event[..]].concat());
            proptest::prop_assert!(events.len() > before);
            let json: Result<serde_json::Value, _> = serde_json::from_slice(events.last().unwrap());
            proptest::prop_assert!(json.is_ok(), "{:?}: the last event is not the error", pieces);
            proptest::prop_assert_eq!(&json.unwrap()["error"], "boom");
        }
    }
}
