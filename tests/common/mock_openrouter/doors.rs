//! The mock's answers on the doors other than chat, in the shapes of
//! `shared/openrouter/openapi.yaml`: the Responses API, Anthropic Messages, legacy completions,
//! embeddings, rerank and images. Which door answers is chosen by the path ([`Door::of`]).

use serde_json::{json, Value};

use super::{stream_events, Ending};

/// The upstream paths the mock answers in a format of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Chat,
    Responses,
    Messages,
    Completions,
    Embeddings,
    Rerank,
    Images,
    Other,
}

impl Door {
    /// The door a request reached, by the end of its path.
    pub fn of(path: &str) -> Self {
        let ends = |suffix: &str| path.ends_with(suffix);
        if ends("/chat/completions") {
            Self::Chat
        } else if ends("/responses") {
            Self::Responses
        } else if ends("/messages") {
            Self::Messages
        } else if ends("/completions") {
            Self::Completions
        } else if ends("/embeddings") {
            Self::Embeddings
        } else if ends("/rerank") {
            Self::Rerank
        } else if ends("/images") || ends("/images/generations") {
            Self::Images
        } else {
            Self::Other
        }
    }
}

/// The usage one JSON answer of a door reports: tokens in all, and the cost when the answer
/// carries one (`/messages` does not: its cost comes from `/generation`).
#[derive(Debug, Clone, Copy)]
pub struct DoorCost {
    pub door: Door,
    pub tokens: u64,
    pub cost: Option<f64>,
}

/// The cost a `/responses` stream reports in its terminal event (as chat's stream does).
pub const RESPONSES_STREAM_COST: f64 = 0.00006;

/// What each door's JSON answer reports.
pub const DOOR_COSTS: [DoorCost; 7] = [
    DoorCost {
        door: Door::Chat,
        tokens: 14,
        cost: Some(0.00014),
    },
    DoorCost {
        door: Door::Responses,
        tokens: 14,
        cost: Some(0.00014),
    },
    DoorCost {
        door: Door::Messages,
        tokens: 14,
        cost: None,
    },
    DoorCost {
        door: Door::Completions,
        tokens: 14,
        cost: Some(0.00014),
    },
    DoorCost {
        door: Door::Embeddings,
        tokens: 5,
        cost: Some(0.0001),
    },
    DoorCost {
        door: Door::Rerank,
        tokens: 30,
        cost: Some(0.0001),
    },
    DoorCost {
        door: Door::Images,
        tokens: 0,
        cost: Some(0.04),
    },
];

/// The output text of the `stream-large` scenario's terminal event: over 2 MiB.
pub const LARGE_TEXT: usize = 2 * 1024 * 1024 + 300 * 1024;

/// What the request asked for, as far as the mock's answers care.
pub(super) struct Asked<'a> {
    pub id: &'a str,
    pub model: &'a str,
    pub stream: bool,
    pub chunks: usize,
}

/// A stream to send: its pieces, and how it ends.
pub(super) struct Events {
    pub events: Vec<String>,
    pub ending: Ending,
}

/// The door's event stream for `scenario`, if this request gets one.
pub(super) fn door_events(door: Door, scenario: &str, asked: &Asked<'_>) -> Option<Events> {
    let clean = |events| {
        Some(Events {
            events,
            ending: Ending::Clean,
        })
    };
    match (door, scenario) {
        (Door::Responses, "" | "json" | "stream") if asked.stream => {
            clean(responses_events(asked.id, asked.model, asked.chunks, None))
        }
        (Door::Responses, "stream-large") => clean(responses_events(
            asked.id,
            asked.model,
            asked.chunks,
            Some(LARGE_TEXT),
        )),
        (Door::Messages, "" | "json" | "stream") if asked.stream => {
            clean(messages_events(asked.id, asked.model, asked.chunks))
        }
        (Door::Completions, "" | "json" | "stream") if asked.stream => {
            clean(stream_events(asked.id, asked.model, asked.chunks, true))
        }
        (Door::Responses | Door::Messages, "stream-cut") => {
            let mut events = if door == Door::Responses {
                responses_events(asked.id, asked.model, 2, None)
            } else {
                messages_events(asked.id, asked.model, 2)
            };
            // Everything up to the last content delta.
            let last_delta = events
                .iter()
                .rposition(|e| {
                    e.starts_with("event: content_block_delta")
                        || e.starts_with("event: response.output_text.delta")
                })
                .expect("a content delta");
            events.truncate(last_delta + 1);
            Some(Events {
                events,
                ending: Ending::Reset,
            })
        }
        _ => None,
    }
}

/// The door's JSON answer for `scenario`, if this request gets one.
pub(super) fn door_json(door: Door, scenario: &str, asked: &Asked<'_>) -> Option<Value> {
    if !matches!(scenario, "" | "json" | "stream") {
        return None;
    }
    let (id, model) = (asked.id, asked.model);
    let usage = DOOR_COSTS.iter().find(|c| c.door == door);
    let cost = usage.and_then(|c| c.cost);
    Some(match door {
        Door::Responses => {
            let usage = Some((10, 4, cost.unwrap()));
            response_object(id, model, "completed", "Hello there!", usage)
        }
        Door::Messages => anthropic_message(id, model, "Hello there!", 10, 4),
        Door::Completions => json!({
            "id": id, "provider": "OpenAI", "model": model, "object": "text_completion",
            "created": 1738000000,
            "choices": [{"index": 0, "text": "Hello there!", "finish_reason": "stop",
                "native_finish_reason": "stop", "logprobs": null}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
                "cost": cost, "is_byok": false}
        }),
        Door::Embeddings => json!({
            "id": id, "object": "list", "model": model, "provider": "OpenAI",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0023, -0.0093, 0.0159]}],
            "usage": {"prompt_tokens": 5, "total_tokens": 5, "cost": cost}
        }),
        Door::Rerank => json!({
            "id": id, "model": model, "provider": "Cohere",
            "results": [{"index": 0, "relevance_score": 0.98,
                "document": {"text": "Paris is the capital of France."}}],
            "usage": {"search_units": 1, "total_tokens": 30, "cost": cost}
        }),
        Door::Images => json!({
            "id": id, "created": 1738000000,
            "data": [{"b64_json": "aW1hZ2U="}],
            "usage": {"cost": cost}
        }),
        Door::Chat | Door::Other => return None,
    })
}

/// One SSE event as OpenAI and Anthropic send them: `event:` line, then the JSON `data:`.
fn event(data: &Value) -> String {
    let kind = data["type"].as_str().expect("an event type");
    format!("event: {kind}\ndata: {data}\n\n")
}

/// A Responses API `response` object; `usage` (input tokens, output tokens, cost) when it is
/// over.
fn response_object(
    id: &str,
    model: &str,
    status: &str,
    text: &str,
    usage: Option<(u64, u64, f64)>,
) -> Value {
    let output = if status == "completed" {
        json!([{"type": "message", "id": "msg_mock", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}])
    } else {
        json!([])
    };
    let usage = usage.map_or(Value::Null, |(input, output, cost)| {
        json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input + output,
            "cost": cost, "is_byok": false})
    });
    json!({
        "id": id, "object": "response", "created_at": 1738000000, "model": model,
        "status": status, "error": null, "incomplete_details": null, "instructions": null,
        "max_output_tokens": null, "output": output, "parallel_tool_calls": true,
        "temperature": null, "tool_choice": "auto", "tools": [], "top_p": null,
        "usage": usage
    })
}

/// The Responses API's stream: `response.created`, the output item and its text in `chunks`
/// deltas, then `response.completed` with the whole response and its usage (10 + `chunks`
/// tokens, cost [`RESPONSES_STREAM_COST`]). With `large`, the completed response's text is that many bytes and
/// its event is sent in 64 KiB pieces.
pub fn responses_events(id: &str, model: &str, chunks: usize, large: Option<usize>) -> Vec<String> {
    let usage = (10, chunks as u64, RESPONSES_STREAM_COST);
    let deltas: Vec<String> = (0..chunks).map(|i| format!("tok{i} ")).collect();
    let text = match large {
        Some(len) => "all work and no play ".repeat(len / 21 + 1)[..len].to_owned(),
        None => deltas.concat(),
    };
    let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
    let item = |status: &str, content: Value| {
        json!({"id": "msg_mock", "type": "message", "status": status, "role": "assistant",
            "content": content})
    };
    let mut data = vec![
        json!({"type": "response.created",
            "response": response_object(id, model, "in_progress", "", None)}),
        json!({"type": "response.in_progress",
            "response": response_object(id, model, "in_progress", "", None)}),
        json!({"type": "response.output_item.added", "output_index": 0,
            "item": item("in_progress", json!([]))}),
        json!({"type": "response.content_part.added", "item_id": "msg_mock", "output_index": 0,
            "content_index": 0, "part": part("")}),
    ];
    data.extend(deltas.iter().map(|delta| {
        json!({"type": "response.output_text.delta", "item_id": "msg_mock", "output_index": 0,
            "content_index": 0, "delta": delta, "logprobs": []})
    }));
    data.extend([
        json!({"type": "response.output_text.done", "item_id": "msg_mock", "output_index": 0,
            "content_index": 0, "text": text, "logprobs": []}),
        json!({"type": "response.content_part.done", "item_id": "msg_mock", "output_index": 0,
            "content_index": 0, "part": part(&text)}),
        json!({"type": "response.output_item.done", "output_index": 0,
            "item": item("completed", json!([part(&text)]))}),
        json!({"type": "response.completed",
            "response": response_object(id, model, "completed", &text, Some(usage))}),
    ]);
    let mut events = vec![": OPENROUTER PROCESSING\n\n".to_owned()];
    for (n, mut data) in data.into_iter().enumerate() {
        data["sequence_number"] = json!(n);
        events.push(event(&data));
    }
    if large.is_some() {
        let terminal = events.pop().unwrap();
        events.extend(
            terminal
                .as_bytes()
                .chunks(64 * 1024)
                .map(|piece| String::from_utf8(piece.to_vec()).unwrap()),
        );
    }
    events
}

/// An Anthropic `message` (`/messages` JSON answer): no `cost` in its usage.
pub fn anthropic_message(id: &str, model: &str, text: &str, input: u64, output: u64) -> Value {
    json!({
        "id": id, "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": input, "output_tokens": output}
    })
}

/// Anthropic's stream: `message_start` (input 10 tokens), one text block in `chunks` deltas,
/// `message_delta` (output `chunks` tokens), `message_stop`. No `cost` anywhere.
fn messages_events(id: &str, model: &str, chunks: usize) -> Vec<String> {
    let mut start = anthropic_message(id, model, "", 10, 1);
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    let mut data = vec![
        json!({"type": "message_start", "message": start}),
        json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        json!({"type": "ping"}),
    ];
    data.extend((0..chunks).map(|i| {
        json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": format!("tok{i} ")}})
    }));
    data.extend([
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": chunks}}),
        json!({"type": "message_stop"}),
    ]);
    data.iter().map(event).collect()
}
