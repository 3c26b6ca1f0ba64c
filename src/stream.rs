//! The response body on its way back: the upstream's bytes, passed on as they come.
//!
//! [`UpstreamBody`] hands each upstream frame to hyper the moment it arrives and only peeks at
//! it: for an event stream, an [`SseScanner`] notes the generation id, `[DONE]`, in-band errors
//! and (later) usage, without holding anything back. It also owns the stream's ending: if the
//! upstream goes quiet for `idle_timeout`, breaks, or closes without `[DONE]`, the client gets
//! one final `data:` event with an `error` object and `finish_reason: "error"` (OpenRouter's own
//! mid-stream error shape), then the end. Dropping the body (the client went away) drops the
//! upstream response with it, which closes that connection and cancels the generation.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde::Deserialize;
use tokio::time::{Instant, Sleep};

use crate::sse::SseScanner;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the gateway learnt from an event stream as it passed.
#[derive(Debug, Default)]
pub struct StreamFacts {
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
        self.scanner.feed(chunk, |data| observe_event(facts, data));
    }
}

/// Reads what matters from one event's data. Cheap substring checks come first: most events are
/// content deltas that need no parsing at all.
fn observe_event(facts: &mut StreamFacts, data: &[u8]) {
    if data == b"[DONE]" {
        facts.saw_done = true;
        return;
    }
    let first = !facts.head_seen;
    let maybe_error = memchr::memmem::find(data, b"\"error\"").is_some();
    if !first && !maybe_error {
        return;
    }
    #[derive(Deserialize)]
    struct Head {
        id: Option<String>,
        model: Option<String>,
        provider: Option<String>,
        #[serde(default)]
        error: Option<serde::de::IgnoredAny>,
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
    if head.error.is_some() {
        facts.saw_error = true;
    }
}

enum Phase {
    Streaming,
    /// The final error event, still to be sent.
    Tail(Bytes),
    Done,
}

/// The upstream's body, wrapped.
pub struct UpstreamBody {
    inner: reqwest::Body,
    phase: Phase,
    /// Present for `text/event-stream` responses only.
    sse: Option<SseWatch>,
    idle_timeout: Duration,
    last_activity: Instant,
    /// Fires at `last_activity + idle_timeout` or earlier; re-armed lazily, not per chunk.
    idle_timer: Pin<Box<Sleep>>,
    /// The model the client asked for, for the final error event when the stream named none.
    requested_model: Option<String>,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("sse", &self.sse.is_some())
            .finish_non_exhaustive()
    }
}

impl UpstreamBody {
    pub fn new(
        inner: reqwest::Body,
        is_event_stream: bool,
        idle_timeout: Duration,
        requested_model: Option<String>,
    ) -> Self {
        let now = Instant::now();
        Self {
            inner,
            phase: Phase::Streaming,
            sse: is_event_stream.then(SseWatch::default),
            idle_timeout,
            last_activity: now,
            idle_timer: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
            requested_model,
        }
    }

    /// Ends the body because of `why`: an event stream gets its final error event, any other
    /// body an error (hyper then cuts the connection, so the client sees it is incomplete).
    fn end_with_error(&mut self, why: String) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        tracing::warn!(reason = %why, "upstream body ended abnormally");
        match &self.sse {
            Some(watch) => {
                let event = error_event(watch, &why, self.requested_model.as_deref());
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

impl Body for UpstreamBody {
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
                    if let Some(watch) = &mut this.sse {
                        watch.feed(data);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.end_with_error(format!(
                "the upstream connection broke mid-body: {}",
                root_cause(&e)
            )),
            Poll::Ready(None) => match &this.sse {
                Some(watch) if !watch.facts.saw_done && !watch.facts.saw_error => {
                    this.end_with_error("the upstream closed the stream before [DONE]".to_owned())
                }
                _ => {
                    this.phase = Phase::Done;
                    Poll::Ready(None)
                }
            },
            Poll::Pending => {
                ready!(this.poll_idle(cx));
                let idle = humantime::format_duration(this.idle_timeout);
                this.end_with_error(format!("the upstream sent nothing for {idle}"))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.phase, &self.sse) {
            // An event stream may grow by our final error event.
            (Phase::Streaming, None) => self.inner.size_hint(),
            _ => SizeHint::default(),
        }
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
    let lead: &[u8] = if !watch.scanner.at_line_start() {
        b"\n\n"
    } else if !watch.scanner.at_event_boundary() {
        b"\n"
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
}
