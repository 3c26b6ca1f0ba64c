//! `POST /messages`: Anthropic's Messages API (Claude Code, Anthropic's SDKs), served by
//! OpenRouter natively; and `POST /messages/count_tokens`, which OpenRouter does not have and
//! the gateway answers itself.
//!
//! Its stream is named events: `message_start` names the message (a `gen-…` id), the model and
//! the input usage; `message_delta` brings the output usage; `message_stop` ends it. OpenRouter
//! does not always add `cost` here, so a response without it is settled from `/generation`
//! (the accounting does that). Errors the gateway writes on this door are Anthropic's
//! (`{"type":"error","error":{...}}`), mid-stream an `event: error`, so Anthropic clients show
//! them as their own.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{DoorSpec, Events};
use crate::error::ErrorShape;
use crate::policy::{Cap, RequestShape};
use crate::request_body::RequestBody;
use crate::stream::{EventReader, StreamFacts};
use crate::usage::{estimate_tokens, Usage};

pub(super) const DOOR: DoorSpec = DoorSpec {
    route: "messages",
    path: "/messages",
    required: Some(("messages", "{\"role\", \"content\"} objects")),
    shape: RequestShape {
        fallback_models: true,
        cap: Cap::Messages,
    },
    events: Events::Messages,
    errors: ErrorShape::Anthropic,
};

/// The token counter Anthropic's clients call before a request.
pub(super) const COUNT_TOKENS_PATH: &str = "/messages/count_tokens";

/// The fields of a Messages request that become input tokens.
const INPUT_FIELDS: [&str; 3] = ["system", "messages", "tools"];

/// `count_tokens`' answer for `request`: about four bytes a token of what becomes the prompt.
/// An estimate (the gateway has no tokenizer), never 0 for a request with any content.
pub(crate) fn count_tokens(request: &RequestBody<'_>) -> serde_json::Value {
    let bytes: usize = INPUT_FIELDS
        .iter()
        .filter_map(|field| request.get(field))
        .map(str::len)
        .sum();
    serde_json::json!({ "input_tokens": estimate_tokens(bytes) })
}

/// Reads Messages events.
#[derive(Debug, Default)]
pub(crate) struct MessageEvents {
    /// `message_start`'s usage: the input side, kept until `message_delta` completes it.
    start: Option<Usage>,
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    message: Option<Message<'a>>,
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Message<'a> {
    id: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
}

impl EventReader for MessageEvents {
    fn last_event(&self) -> &'static str {
        "message_stop"
    }

    fn event(&mut self, facts: &mut StreamFacts, data: &[u8]) {
        if data == b"[DONE]" {
            facts.complete = true;
            return;
        }
        // Content deltas are most of the stream; only these few are parsed.
        let worth_reading = super::leading_type(data).is_none_or(|kind| {
            matches!(
                kind,
                b"message_start" | b"message_delta" | b"message_stop" | b"error"
            )
        });
        if !worth_reading {
            return;
        }
        let Ok(event) = serde_json::from_slice::<Event<'_>>(data) else {
            return;
        };
        match event.kind {
            "message_start" => {
                if let Some(message) = event.message {
                    facts.generation_id = message.id;
                    facts.model = message.model;
                    facts.provider = message.provider;
                    self.start = message
                        .usage
                        .and_then(|u| Usage::from_json(u.get().as_bytes()));
                }
            }
            "message_delta" => {
                let delta = event
                    .usage
                    .and_then(|u| Usage::from_json(u.get().as_bytes()));
                if let Some(delta) = delta {
                    facts.usage = Some(combine(self.start.take(), delta));
                }
            }
            "message_stop" => facts.complete = true,
            "error" => facts.saw_error = true,
            _ => {}
        }
    }

    /// Anthropic's mid-stream error event.
    fn error_event(&self, _facts: &StreamFacts, why: &str, _model: Option<&str>) -> Vec<u8> {
        let event = serde_json::json!({
            "type": "error",
            "error": { "type": "api_error", "message": format!("stream interrupted: {why}") },
        });
        super::data_event(Some("error"), &event)
    }
}

/// The usage of a whole message: `message_delta`'s counts are cumulative, but it may leave out
/// the input side `message_start` reported.
fn combine(start: Option<Usage>, delta: Usage) -> Usage {
    let start = start.unwrap_or_default();
    let prompt_tokens = delta.prompt_tokens.or(start.prompt_tokens);
    let completion_tokens = delta.completion_tokens.or(start.completion_tokens);
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: delta.total_tokens.filter(|_| delta.prompt_tokens.is_some()),
        cost: delta.cost.or(start.cost),
        cached_tokens: delta.cached_tokens.or(start.cached_tokens),
        reasoning_tokens: delta.reasoning_tokens.or(start.reasoning_tokens),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(stream: &[u8]) -> StreamFacts {
        super::super::read_stream(DOOR.route, &[stream]).unwrap()
    }

    const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"gen-m1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"anthropic/claude-sonnet-4\",\"content\":[],\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n";
    const DELTA: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n";
    const END: &str = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn reads_the_message_and_its_usage_from_start_and_delta() {
        let facts = read(format!("{START}{DELTA}{END}").as_bytes());
        assert_eq!(facts.generation_id.as_deref(), Some("gen-m1"));
        assert_eq!(facts.model.as_deref(), Some("anthropic/claude-sonnet-4"));
        assert!(facts.complete);
        let usage = facts.usage.unwrap();
        assert_eq!(usage.prompt_tokens, Some(30));
        assert_eq!(usage.completion_tokens, Some(15));
        assert_eq!(usage.tokens(), 45);
        assert_eq!(usage.cost, None);
    }

    #[test]
    fn a_stream_without_message_stop_is_not_complete() {
        let facts = read(format!("{START}{DELTA}").as_bytes());
        assert!(!facts.complete && facts.usage.is_none());
        let error = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"x\"}}\n\n";
        assert!(read(format!("{START}{error}").as_bytes()).saw_error);
    }

    #[test]
    fn the_error_event_is_anthropics() {
        let event = MessageEvents::default().error_event(&StreamFacts::default(), "boom", None);
        let text = String::from_utf8(event).unwrap();
        let data = text.strip_prefix("event: error\ndata: ").unwrap();
        let json: serde_json::Value = serde_json::from_str(data.trim_end()).unwrap();
        assert_eq!(json["type"], "error");
        assert_eq!(json["error"]["type"], "api_error");
        assert!(json["error"]["message"].as_str().unwrap().contains("boom"));
    }

    #[test]
    fn count_tokens_estimates_the_prompt() {
        let body = br#"{"model":"anthropic/claude-sonnet-4","system":"Be brief.","messages":[{"role":"user","content":"Hello there, how are you?"}]}"#;
        let request = RequestBody::parse(body).unwrap();
        let n = count_tokens(&request)["input_tokens"].as_u64().unwrap();
        assert!((10..40).contains(&n), "{n}");
    }
}
