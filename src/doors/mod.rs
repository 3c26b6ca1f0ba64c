//! The doors a request can come through, and what differs between them. The pipeline
//! (`crate::proxy`) is written once; everything door-specific is read from here: the path the
//! door forwards to, what its body must hold, where its model selectors and caps are
//! ([`RequestShape`]), how its event stream reads ([`Events`]) and how its errors are written
//! ([`ErrorShape`]).
//!
//! Routing decides on the decoded path, so `/chat/%63ompletions` is the chat door, not a way
//! around it. What is neither a door, nor the read-only catalogue, nor opened by `[routes]
//! allow`, is refused (`route_not_allowed`) and never reaches the upstream.
//!
//! # Layout
//! - one file per model door: `chat`, `responses`, `messages` (with `count_tokens`),
//!   `completions`, `embeddings`, `rerank`;
//! - `catalogue`: the read-only paths, and `[routes] allow`;
//! - `key`: `GET /key`, answered from the caller's own limits.

mod catalogue;
mod chat;
mod completions;
mod embeddings;
mod key;
mod messages;
mod rerank;
mod responses;

use http::Method;

pub(crate) use key::{key_info, KeyFacts};
pub(crate) use messages::count_tokens;

use crate::config::RoutePattern;
use crate::error::{ErrorShape, GatewayError};
use crate::policy::{Cap, RequestShape};
use crate::request_body::RequestBody;
use crate::stream::{EventReader, SseWatch, StreamFacts};

/// Which way a request came in; its `route` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Door {
    /// A door to a model: governed by the whole pipeline.
    Model(ModelDoor),
    /// `POST /messages/count_tokens`: answered by the gateway.
    CountTokens,
    /// The read-only catalogue: forwarded as it is.
    Catalogue,
    /// `GET /key`: answered by the gateway.
    Key,
    /// Opened by `[routes] allow`: forwarded as it is, with spend charged where reported.
    Allowed,
}

/// The doors to a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModelDoor {
    Chat,
    Responses,
    Messages,
    Completions,
    Embeddings,
    Rerank,
}

/// What one model door is: see the module doc.
#[derive(Debug)]
pub(crate) struct DoorSpec {
    /// The `route` label.
    pub route: &'static str,
    /// The path under the API prefix, here and upstream.
    pub path: &'static str,
    /// A field every request must have, with what it holds (an array).
    pub required: Option<(&'static str, &'static str)>,
    pub shape: RequestShape,
    /// How its event stream reads.
    pub events: Events,
    pub errors: ErrorShape,
}

impl DoorSpec {
    /// A door answered in JSON only, with no output length to cap (embeddings, rerank): a
    /// stream never comes (one would be read as chat's).
    const fn json_only(route: &'static str, path: &'static str) -> DoorSpec {
        DoorSpec {
            route,
            path,
            required: None,
            shape: RequestShape {
                fallback_models: false,
                cap: Cap::None,
            },
            events: Events::Chat,
            errors: ErrorShape::OpenRouter,
        }
    }
}

const MODEL_DOORS: [ModelDoor; 6] = [
    ModelDoor::Chat,
    ModelDoor::Responses,
    ModelDoor::Messages,
    ModelDoor::Completions,
    ModelDoor::Embeddings,
    ModelDoor::Rerank,
];

impl ModelDoor {
    pub(crate) fn spec(self) -> &'static DoorSpec {
        match self {
            ModelDoor::Chat => &chat::DOOR,
            ModelDoor::Responses => &responses::DOOR,
            ModelDoor::Messages => &messages::DOOR,
            ModelDoor::Completions => &completions::DOOR,
            ModelDoor::Embeddings => &embeddings::DOOR,
            ModelDoor::Rerank => &rerank::DOOR,
        }
    }

    /// Parses a request body for this door: one JSON object, and the field it requires.
    pub(crate) fn parse<'b>(self, body: &'b [u8]) -> Result<RequestBody<'b>, GatewayError> {
        let spec = self.spec();
        let request = RequestBody::parse(body)?;
        if let Some((field, items)) = spec.required {
            request.require_array(field, items)?;
        }
        Ok(request)
    }

    /// The door `orgate explain --path` names: a model door's path, with or without the API
    /// prefix.
    pub(crate) fn at(path: &str) -> Option<ModelDoor> {
        let path = path
            .strip_prefix("/api/v1")
            .or_else(|| path.strip_prefix("/v1"))
            .unwrap_or(path);
        MODEL_DOORS.into_iter().find(|d| d.spec().path == path)
    }

    /// The reader of this door's event streams.
    pub(crate) fn events(self) -> EventStream {
        match self.spec().events {
            Events::Chat => EventStream::Chat(chat::ChatEvents::default()),
            Events::Responses => EventStream::Responses(Box::default()),
            Events::Messages => EventStream::Messages(messages::MessageEvents::default()),
        }
    }
}

impl Door {
    /// The `route` label of its metrics and access-log lines.
    pub(crate) fn route(self) -> &'static str {
        match self {
            Door::Model(door) => door.spec().route,
            Door::CountTokens => "count_tokens",
            Door::Catalogue => "catalogue",
            Door::Key => "key",
            Door::Allowed => "allowed",
        }
    }

    /// How the gateway's own errors on this door are written.
    pub(crate) fn errors(self) -> ErrorShape {
        match self {
            Door::Model(door) => door.spec().errors,
            Door::CountTokens => ErrorShape::Anthropic,
            Door::Catalogue | Door::Key | Door::Allowed => ErrorShape::OpenRouter,
        }
    }

    /// The door a `method` on `path` (decoded, under the API prefix: `/chat/completions`)
    /// leads to, or why there is none: 405 for a door's path with another method, else 403
    /// `route_not_allowed`.
    pub(crate) fn of(
        method: &Method,
        path: &str,
        allowed: &[RoutePattern],
    ) -> Result<Door, GatewayError> {
        let model_door = MODEL_DOORS.into_iter().find(|d| d.spec().path == path);
        // What may be read may be asked about: HEAD goes wherever GET does.
        let reads = method == Method::GET || method == Method::HEAD;
        let door = match (model_door, path) {
            (Some(door), _) if method == Method::POST => Some(Door::Model(door)),
            (None, messages::COUNT_TOKENS_PATH) if method == Method::POST => {
                Some(Door::CountTokens)
            }
            (None, key::PATH) if reads => Some(Door::Key),
            _ if reads && catalogue::is_catalogue(path) => Some(Door::Catalogue),
            _ => None,
        };
        if let Some(door) = door {
            return Ok(door);
        }
        if allowed.iter().any(|pattern| pattern.matches(method, path)) {
            return Ok(Door::Allowed);
        }
        if model_door.is_some() || path == messages::COUNT_TOKENS_PATH {
            return Err(GatewayError::MethodNotAllowed {
                method: method.to_string(),
                path: path.to_owned(),
            });
        }
        Err(GatewayError::RouteNotAllowed {
            method: method.to_string(),
            path: path.to_owned(),
        })
    }
}

/// Which reader a door's event stream needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Events {
    /// `data:` chunks ending with `[DONE]`, usage in a chunk of its own (chat, completions).
    Chat,
    /// The Responses API's typed events, ending with `response.completed` (or incomplete,
    /// failed).
    Responses,
    /// Anthropic's Messages events, ending with `message_stop`.
    Messages,
}

/// The reader of one response's event stream.
#[derive(Debug)]
pub(crate) enum EventStream {
    Chat(chat::ChatEvents),
    /// Boxed: it holds the catcher for terminal events too large to read whole.
    Responses(Box<responses::ResponseEvents>),
    Messages(messages::MessageEvents),
}

impl EventReader for EventStream {
    fn event(&mut self, facts: &mut StreamFacts, data: &[u8]) {
        match self {
            EventStream::Chat(reader) => reader.event(facts, data),
            EventStream::Responses(reader) => reader.event(facts, data),
            EventStream::Messages(reader) => reader.event(facts, data),
        }
    }

    fn large_piece(&mut self, facts: &mut StreamFacts, piece: &[u8]) {
        match self {
            EventStream::Chat(reader) => reader.large_piece(facts, piece),
            EventStream::Responses(reader) => reader.large_piece(facts, piece),
            EventStream::Messages(reader) => reader.large_piece(facts, piece),
        }
    }

    fn large_end(&mut self, facts: &mut StreamFacts) {
        match self {
            EventStream::Chat(reader) => reader.large_end(facts),
            EventStream::Responses(reader) => reader.large_end(facts),
            EventStream::Messages(reader) => reader.large_end(facts),
        }
    }

    fn last_event(&self) -> &'static str {
        match self {
            EventStream::Chat(reader) => reader.last_event(),
            EventStream::Responses(reader) => reader.last_event(),
            EventStream::Messages(reader) => reader.last_event(),
        }
    }

    fn error_event(&self, facts: &StreamFacts, why: &str, model: Option<&str>) -> Vec<u8> {
        match self {
            EventStream::Chat(reader) => reader.error_event(facts, why, model),
            EventStream::Responses(reader) => reader.error_event(facts, why, model),
            EventStream::Messages(reader) => reader.error_event(facts, why, model),
        }
    }
}

/// What the reader of the door with the `route` label learns from an event stream fed in
/// `chunks`, as the body wrapper feeds it; `None` for a route without one. For the tests and
/// the fuzz target `door_events`, which hold every reader to never panicking and to reading the
/// same whatever the chunking.
#[doc(hidden)]
pub fn read_stream(route: &str, chunks: &[&[u8]]) -> Option<StreamFacts> {
    let door = MODEL_DOORS.into_iter().find(|d| d.spec().route == route)?;
    let mut watch = SseWatch::new(door.events());
    for chunk in chunks {
        watch.feed(chunk);
    }
    Some(watch.into_facts())
}

/// The `type` of a JSON event that names it first, as OpenAI's and Anthropic's streams write
/// them (`{"type":"message_delta",…`): found with a prefix compare, so that the many content
/// deltas are passed over without a parse or a search. `None` when the event does not start so;
/// the reader then parses it whole.
fn leading_type(data: &[u8]) -> Option<&[u8]> {
    let rest = data.strip_prefix(b"{\"type\":\"")?;
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    (rest[end] == b'"').then(|| &rest[..end])
}

/// One SSE event: an `event:` line when the door names its events, the JSON `data`, the
/// blank line.
fn data_event(name: Option<&str>, data: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    // Serialising a `Value` cannot fail.
    let _ = serde_json::to_writer(&mut out, data);
    out.extend_from_slice(b"\n\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn door(method: &str, path: &str) -> Result<Door, GatewayError> {
        let allowed = [
            RoutePattern::parse("POST /images").unwrap(),
            RoutePattern::parse("GET /generation").unwrap(),
        ];
        Door::of(
            &Method::from_bytes(method.as_bytes()).unwrap(),
            path,
            &allowed,
        )
    }

    #[test]
    fn doors_by_method_and_path() {
        assert_eq!(
            door("POST", "/chat/completions").unwrap(),
            Door::Model(ModelDoor::Chat)
        );
        assert_eq!(
            door("POST", "/messages").unwrap(),
            Door::Model(ModelDoor::Messages)
        );
        assert_eq!(
            door("POST", "/messages/count_tokens").unwrap(),
            Door::CountTokens
        );
        assert_eq!(door("GET", "/models").unwrap(), Door::Catalogue);
        assert_eq!(door("HEAD", "/models").unwrap(), Door::Catalogue);
        assert_eq!(door("GET", "/key").unwrap(), Door::Key);
        assert_eq!(door("POST", "/images").unwrap(), Door::Allowed);
        assert_eq!(door("GET", "/generation").unwrap(), Door::Allowed);
    }

    #[test]
    fn everything_else_is_refused() {
        for (method, path) in [
            ("GET", "/credits"),
            ("GET", "/generation/content"),
            ("POST", "/presets/x/chat/completions"),
            ("POST", "/auth/keys"),
            ("DELETE", "/models"),
            ("TRACE", "/models"),
            ("POST", "/key"),
            ("POST", "/chat/completions/x"),
        ] {
            let refused = door(method, path).unwrap_err();
            assert!(
                matches!(refused, GatewayError::RouteNotAllowed { .. }),
                "{method} {path}: {refused:?}"
            );
        }
        assert!(matches!(
            door("GET", "/chat/completions").unwrap_err(),
            GatewayError::MethodNotAllowed { .. }
        ));
    }

    /// A complete stream of each door, as OpenRouter sends it.
    fn sample_stream(route: &str) -> &'static [u8] {
        match route {
            "chat" => b": OPENROUTER PROCESSING\n\ndata: {\"id\":\"gen-1\",\"model\":\"m\",\"provider\":\"P\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"id\":\"gen-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4,\"cost\":0.5}}\n\ndata: [DONE]\n\n",
            "messages" => b"event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"gen-2\",\"model\":\"m\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\r\n\r\nevent: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\r\n\r\nevent: message_delta\r\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":5}}\r\n\r\nevent: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n",
            _ => b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"gen-3\",\"model\":\"m\",\"usage\":null}}\n\nevent: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"gen-3\",\"usage\":{\"input_tokens\":3,\"output_tokens\":2,\"total_tokens\":5,\"cost\":0.25}}}\n\n",
        }
    }

    #[test]
    fn the_leading_type_is_read_without_parsing() {
        assert_eq!(
            leading_type(br#"{"type":"message_delta","usage":{}}"#),
            Some(&b"message_delta"[..])
        );
        assert_eq!(leading_type(br#"{"type": "message_delta"}"#), None);
        assert_eq!(leading_type(br#"{"index":0,"type":"x"}"#), None);
        assert_eq!(leading_type(br#"{"type":"a\"b"}"#), None);
        assert_eq!(leading_type(br#"{"type":"unterminated"#), None);
    }

    #[test]
    fn every_doors_sample_stream_is_complete_with_its_usage() {
        for (route, tokens) in [("chat", 4), ("messages", 8), ("responses", 5)] {
            let facts = read_stream(route, &[sample_stream(route)]).unwrap();
            assert!(facts.complete, "{route}");
            assert_eq!(facts.usage.map(|u| u.tokens()), Some(tokens), "{route}");
            assert!(facts.generation_id.is_some(), "{route}");
        }
        assert!(read_stream("images", &[b"data: x\n\n"]).is_none());
    }

    proptest::proptest! {
        /// Where the network cuts a stream changes nothing a reader learns.
        #[test]
        fn readers_learn_the_same_whatever_the_chunking(
            route in proptest::sample::select(vec!["chat", "messages", "responses"]),
            cuts in proptest::collection::vec(0usize..2000, 0..12),
        ) {
            let stream = sample_stream(route);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([stream.len()]) {
                chunks.push(&stream[from..cut]);
                from = cut;
            }
            let whole = read_stream(route, &[stream]).unwrap();
            let split = read_stream(route, &chunks).unwrap();
            proptest::prop_assert_eq!(
                (whole.complete, whole.usage, whole.generation_id, whole.events),
                (split.complete, split.usage, split.generation_id, split.events)
            );
        }
    }
}
