//! What the orchestrator asks a load generator to do, and what it answers. Both cross a
//! process boundary as one line of JSON (`--role loadgen --spec JSON`, result on stdout), so
//! the load generator never shares a process, a runtime or an allocator with what it measures.

use std::net::SocketAddr;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// One load-generator run against one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LoadSpec {
    /// Where to send: the mock itself (direct), nginx, or orgate.
    pub(crate) addr: SocketAddr,
    /// The orgate client key; the mock and nginx ignore it.
    pub(crate) key: String,
    pub(crate) load: Load,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Load {
    /// Closed loop of non-streaming requests on `concurrency` keep-alive connections.
    Requests {
        concurrency: usize,
        warmup_ms: u64,
        duration_ms: u64,
        /// Size of the chat body: 0 for a small, typical request.
        body_bytes: usize,
    },
    /// `streams` concurrent SSE streams through `door`, one per connection, each `chunks`
    /// deltas `interval_ms` apart; stream starts are spread evenly over one interval.
    Streams {
        streams: usize,
        chunks: u32,
        interval_ms: u64,
        door: Door,
    },
}

/// The API a stream is asked for: its path, its request body's shape (the load generator's)
/// and its events (the mock's), and how it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Door {
    /// `POST /chat/completions`: `data:` chunks, usage in the last, then `[DONE]`.
    Chat,
    /// `POST /responses` (OpenAI's Responses API): typed events, usage in
    /// `response.completed`.
    Responses,
    /// `POST /messages` (Anthropic's Messages API): named events, the output usage in
    /// `message_delta`, then `message_stop`.
    Messages,
}

impl Door {
    /// The path every target is called on: orgate serves it, nginx and the floors pass it on,
    /// and it is what orgate itself calls on the mock.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Door::Chat => "/api/v1/chat/completions",
            Door::Responses => "/api/v1/responses",
            Door::Messages => "/api/v1/messages",
        }
    }

    /// The `data:` payload that ends a stream: `[DONE]`, else the type of the terminal event.
    pub(crate) fn last_event(self) -> &'static str {
        match self {
            Door::Chat => "[DONE]",
            Door::Responses => "response.completed",
            Door::Messages => "message_stop",
        }
    }

    /// The type of the events that carry the text (chat: `None`, every chunk does).
    pub(crate) fn delta_event(self) -> Option<&'static str> {
        match self {
            Door::Chat => None,
            Door::Responses => Some("response.output_text.delta"),
            Door::Messages => Some("content_block_delta"),
        }
    }

    /// The door a request reached, by the end of its path (the mock reads no JSON); anything
    /// else is chat.
    pub(crate) fn of(path: &str) -> Door {
        if path.ends_with("/responses") {
            Door::Responses
        } else if path.ends_with("/messages") {
            Door::Messages
        } else {
            Door::Chat
        }
    }
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub(crate) count: u64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Summary {
    /// `hist` holds values in `unit_ns` nanoseconds.
    pub(crate) fn of(hist: &Histogram<u64>, unit_ns: f64) -> Option<Self> {
        (!hist.is_empty()).then(|| {
            let us = |v: u64| v as f64 * unit_ns / 1e3;
            Self {
                count: hist.len(),
                p50: us(hist.value_at_quantile(0.50)),
                p99: us(hist.value_at_quantile(0.99)),
                max: us(hist.max()),
            }
        })
    }
}

/// What a load generator measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct LoadResult {
    /// Requests (or streams) that completed correctly inside the measured window.
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    /// The first error, to say what went wrong without flooding the output.
    pub(crate) first_error: Option<String>,
    /// Length of the measured window, seconds.
    pub(crate) window_s: f64,
    /// Request latency (non-streaming).
    pub(crate) latency: Option<Summary>,
    /// Chunk delay: receive time minus the mock's send stamp (streaming).
    pub(crate) chunk_delay: Option<Summary>,
    /// The same, for chunks received once every stream had started and had one interval to
    /// settle: the pass-through alone, without the ramp's connection set-ups competing.
    pub(crate) chunk_delay_steady: Option<Summary>,
    /// Time from writing the request to the first data event (streaming).
    pub(crate) first_chunk: Option<Summary>,
}

impl LoadResult {
    pub(crate) fn requests_per_s(&self) -> f64 {
        if self.window_s > 0.0 {
            self.ok as f64 / self.window_s
        } else {
            0.0
        }
    }
}

/// A histogram for values up to ten minutes in the unit used (ns or µs), 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    // 3 digits keeps a p99 honest to 0.1 %; bounds cannot be invalid here.
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}
