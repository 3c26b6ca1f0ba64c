//! `POST /responses`: the OpenAI Responses API (Codex, the Agents SDK), served by OpenRouter
//! natively. The output length is `max_output_tokens`.
//!
//! Its stream is typed events (`{"type": "response.output_text.delta", ...}`). The first,
//! `response.created`, names the response and model; the last is `response.completed`,
//! `response.incomplete` or `response.failed`, and carries the whole response, `usage` (with
//! `cost`) included. That event can be megabytes (it repeats all the output): when it is too
//! large to read whole, its pieces go through a [`ValueCatcher`] that keeps only `type` and
//! `response.usage`, so the stream is never held back or buffered to find them.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

use super::{DoorSpec, Events};
use crate::error::ErrorShape;
use crate::json_scan::catch::ValueCatcher;
use crate::policy::{Cap, RequestShape};
use crate::stream::{EventReader, StreamFacts};
use crate::usage::Usage;

pub(super) const DOOR: DoorSpec = DoorSpec {
    route: "responses",
    path: "/responses",
    // `input` may be a string or an array: the upstream checks it.
    required: None,
    shape: RequestShape {
        fallback_models: false,
        cap: Cap::Field("max_output_tokens"),
    },
    events: Events::Responses,
    errors: ErrorShape::OpenRouter,
};

/// The event types that end a response stream.
const TERMINAL: [&str; 3] = [
    "response.completed",
    "response.incomplete",
    "response.failed",
];

/// What a large event is read for: `CAUGHT_TYPE` and `CAUGHT_USAGE` index these.
const CAUGHT: &[&[&str]] = &[&["type"], &["response", "usage"]];
const CAUGHT_TYPE: usize = 0;
const CAUGHT_USAGE: usize = 1;

/// Reads Responses API events.
#[derive(Debug, Default)]
pub(crate) struct ResponseEvents {
    /// The first event has been read (the response's id and model come from it).
    head_seen: bool,
    /// The event too large to read whole that is passing now, if any.
    large: Option<ValueCatcher>,
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    response: Option<Head<'a>>,
}

#[derive(Deserialize)]
struct Head<'a> {
    id: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
}

impl ResponseEvents {
    /// An event of type `kind` has ended; `usage` is its `response.usage`, raw.
    fn ended(facts: &mut StreamFacts, kind: &str, usage: Option<&[u8]>) {
        if TERMINAL.contains(&kind) {
            facts.complete = true;
            if let Some(usage) = usage.and_then(Usage::from_json) {
                facts.usage = Some(usage);
            }
        } else if kind == "error" {
            facts.saw_error = true;
        }
    }
}

impl EventReader for ResponseEvents {
    fn last_event(&self) -> &'static str {
        "response.completed"
    }

    fn event(&mut self, facts: &mut StreamFacts, data: &[u8]) {
        if data == b"[DONE]" {
            facts.complete = true;
            return;
        }
        let first = !self.head_seen;
        let worth_reading = first
            || super::leading_type(data).is_none_or(|kind| {
                kind == b"error" || TERMINAL.iter().any(|t| t.as_bytes() == kind)
            });
        if !worth_reading {
            return;
        }
        let Ok(event) = serde_json::from_slice::<Event<'_>>(data) else {
            return;
        };
        if first {
            self.head_seen = true;
            if let Some(head) = &event.response {
                facts.generation_id.clone_from(&head.id);
                facts.model.clone_from(&head.model);
                facts.provider.clone_from(&head.provider);
            }
        }
        let usage = event
            .response
            .as_ref()
            .and_then(|r| r.usage)
            .map(|raw| raw.get().as_bytes());
        Self::ended(facts, event.kind.as_deref().unwrap_or(""), usage);
    }

    fn large_piece(&mut self, _facts: &mut StreamFacts, piece: &[u8]) {
        self.large
            .get_or_insert_with(|| ValueCatcher::new(CAUGHT))
            .feed(piece);
    }

    fn large_end(&mut self, facts: &mut StreamFacts) {
        let Some(catcher) = self.large.take() else {
            return;
        };
        let kind = catcher
            .caught(CAUGHT_TYPE)
            .and_then(|raw| serde_json::from_slice::<String>(raw).ok());
        if let Some(kind) = kind {
            Self::ended(facts, &kind, catcher.caught(CAUGHT_USAGE));
        }
    }

    /// The Responses API's error event.
    fn error_event(&self, facts: &StreamFacts, why: &str, _model: Option<&str>) -> Vec<u8> {
        let event = serde_json::json!({
            "type": "error",
            "code": "server_error",
            "message": format!("stream interrupted: {why}"),
            "param": null,
            // Sequence numbers count the events from 0.
            "sequence_number": facts.events,
        });
        super::data_event(Some("error"), &event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(chunks: &[&[u8]]) -> StreamFacts {
        super::super::read_stream(DOOR.route, chunks).unwrap()
    }

    const CREATED: &[u8] = b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"gen-r1\",\"model\":\"openai/gpt-4o\",\"status\":\"in_progress\",\"usage\":null},\"sequence_number\":0}\n\n";
    const DELTA: &[u8] = b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\",\"sequence_number\":1}\n\n";

    fn completed(text: &str) -> Vec<u8> {
        let data = serde_json::json!({
            "type": "response.completed",
            "response": {
                "id": "gen-r1", "status": "completed",
                "output": [{"type": "message", "content": [{"type": "output_text", "text": text}]}],
                "usage": {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18, "cost": 0.25},
            },
            "sequence_number": 2,
        });
        format!("event: response.completed\ndata: {data}\n\n").into_bytes()
    }

    #[test]
    fn reads_the_head_and_the_terminal_usage() {
        let facts = read(&[CREATED, DELTA, &completed("hi")]);
        assert_eq!(facts.generation_id.as_deref(), Some("gen-r1"));
        assert_eq!(facts.model.as_deref(), Some("openai/gpt-4o"));
        assert!(facts.complete);
        assert_eq!(facts.usage.map(|u| u.tokens()), Some(18));
        assert_eq!(facts.usage.and_then(|u| u.cost), Some(0.25));
    }

    #[test]
    fn a_terminal_event_larger_than_the_scanner_holds_is_read_in_pieces() {
        let big = completed(&"x".repeat(crate::sse::MAX_EVENT_DATA + 300_000));
        let mut chunks: Vec<&[u8]> = vec![CREATED, DELTA];
        chunks.extend(big.chunks(16 * 1024));
        let facts = read(&chunks);
        assert!(facts.complete);
        assert_eq!(facts.usage.map(|u| u.tokens()), Some(18));
    }

    #[test]
    fn a_stream_without_its_terminal_event_is_not_complete() {
        let facts = read(&[CREATED, DELTA]);
        assert!(!facts.complete && facts.usage.is_none());
        let error = b"event: error\ndata: {\"type\":\"error\",\"code\":\"x\",\"message\":\"y\",\"sequence_number\":2}\n\n";
        assert!(read(&[CREATED, error]).saw_error);
    }

    #[test]
    fn the_error_event_is_the_responses_apis() {
        let facts = read(&[CREATED, DELTA]);
        let event = ResponseEvents::default().error_event(&facts, "boom", None);
        let text = String::from_utf8(event).unwrap();
        let data = text.strip_prefix("event: error\ndata: ").unwrap();
        let json: serde_json::Value = serde_json::from_str(data.trim_end()).unwrap();
        assert_eq!(json["type"], "error");
        assert_eq!(json["sequence_number"], 2);
        assert!(json["message"].as_str().unwrap().contains("boom"));
    }
}
