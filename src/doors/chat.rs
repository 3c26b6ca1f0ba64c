//! `POST /chat/completions`: OpenAI's chat shape, OpenRouter's own door.
//!
//! Its stream is `data:` chunks: the first names the generation, model and provider; usage
//! comes in a chunk of its own near the end; `[DONE]` closes it. An upstream error mid-stream
//! is a chunk with an `error` object, and so is the gateway's own.

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use memchr::memmem::Finder;
use serde::Deserialize;

use super::{DoorSpec, Events};
use crate::error::ErrorShape;
use crate::policy::RequestShape;
use crate::stream::{EventReader, StreamFacts};
use crate::usage::Usage;

pub(super) const DOOR: DoorSpec = DoorSpec {
    route: "chat",
    path: "/chat/completions",
    required: Some(("messages", "{\"role\", \"content\"} objects")),
    shape: RequestShape::CHAT,
    events: Events::Chat,
    errors: ErrorShape::OpenRouter,
};

/// The substring searches every event goes through, built once: building a searcher costs
/// more than searching a typical event with it.
static USAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
static ERROR_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));

/// Reads chat (and legacy completions) chunks.
#[derive(Debug, Default)]
pub(crate) struct ChatEvents {
    /// The first JSON event has been read (ids come from it alone).
    head_seen: bool,
}

impl EventReader for ChatEvents {
    fn last_event(&self) -> &'static str {
        "[DONE]"
    }

    /// Cheap substring checks come first: most events are content deltas that need no parsing.
    fn event(&mut self, facts: &mut StreamFacts, data: &[u8]) {
        if data == b"[DONE]" {
            facts.complete = true;
            return;
        }
        if USAGE_KEY.find(data).is_some() {
            if let Some(usage) = Usage::from_json(data) {
                facts.usage = Some(usage);
            }
        }
        let first = !self.head_seen;
        if !first && ERROR_KEY.find(data).is_none() {
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
            self.head_seen = true;
            facts.generation_id = head.id;
            facts.model = head.model;
            facts.provider = head.provider;
        }
        // OpenRouter's in-band error is an object; anything else is not one.
        if head.error.is_some_and(|e| e.get().starts_with('{')) {
            facts.saw_error = true;
        }
    }

    /// OpenRouter's mid-stream error chunk: an `error` object and `finish_reason: "error"`.
    fn error_event(
        &self,
        facts: &StreamFacts,
        why: &str,
        requested_model: Option<&str>,
    ) -> Vec<u8> {
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
        super::data_event(None, &chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(chunks: &[&[u8]]) -> StreamFacts {
        super::super::read_stream(DOOR.route, chunks).unwrap()
    }

    #[test]
    fn reads_ids_done_and_errors_across_chunks() {
        let facts = read(&[
            b": OPENROUTER PROCESSING\n\ndata: {\"id\":\"gen-7\",\"model\":\"m\",\"prov",
            b"ider\":\"OpenAI\",\"choices\":[]}\n\n",
        ]);
        assert_eq!(facts.generation_id.as_deref(), Some("gen-7"));
        assert_eq!(facts.provider.as_deref(), Some("OpenAI"));
        let content = b"data: {\"id\":\"gen-7\",\"choices\":[{\"delta\":{\"content\":\"\\\"error\\\"\"}}]}\n\n";
        let facts = read(&[b"data: {\"id\":\"gen-7\"}\n\n", content]);
        assert!(!facts.saw_error, "the word in content is not an error");
        let facts = read(&[b"data: {\"id\":\"gen-7\",\"error\":{\"code\":429,\"message\":\"x\"},\"choices\":[]}\n\ndata: [DONE]\n\n"]);
        assert!(facts.saw_error && facts.complete);
    }

    #[test]
    fn the_error_chunk_is_openrouters() {
        let facts = read(&[b"data: {\"id\":\"gen-1\",\"model\":\"m\"}\n\n"]);
        let event = ChatEvents::default().error_event(&facts, "boom", None);
        assert!(event.starts_with(b"data: {") && event.ends_with(b"\n\n"));
        let json: serde_json::Value = serde_json::from_slice(&event[6..event.len() - 2]).unwrap();
        assert_eq!(json["id"], "gen-1");
        assert_eq!(json["choices"][0]["finish_reason"], "error");
        assert_eq!(json["error"]["code"], 502);
    }
}
