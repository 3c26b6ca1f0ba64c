//! orgate: a local, OpenAI-compatible gateway in front of OpenRouter.
//!
//! Clients call it with their own key; it checks the key, applies the org's limits and
//! provider policy, injects the upstream OpenRouter key and forwards, passing streams through
//! byte for byte.
//!
//! The public surface is small: [`serve`] (and [`serve_with_reloads`]) with a [`Config`], the
//! [`config`] schema, the [`cli`] the binary runs, and [`router`]/[`app`] over an [`AppState`]
//! for tests that drive the routes without a listener. `internals` is for the benchmarks and
//! fuzz targets only.
//!
//! # Layout
//! A request's path, top to bottom (arrows point down only; `ARCHITECTURE.md` has the picture):
//! - `server`: the accept loop, the route table and the layer stack; `workers`: the I/O threads
//!   that serve the connections it accepts; `telemetry`: log setup and the access log.
//! - `proxy`: the pipeline every door runs, written once (admit, read, policy, forward), and
//!   the intake (head size, body size, time and encoding), header and path rules; `doors`: what differs between the doors (paths, where each
//!   format keeps its models and caps, how its stream reads and ends, its error shape), and
//!   which paths are refused.
//! - `gate`: admission (client key, limits) and the request's home, its `RequestContext`, which
//!   owns the concurrency slot; accounting, which charges what a response used.
//! - `upstream`: the pooled client, the outgoing body, retries before the first byte.
//! - `stream`: the response body wrapper: bytes passed on unbuffered, SSE peeked at, broken
//!   streams ended cleanly, what it saw reported to a listener.
//! - `state`: the `Snapshot` every request reads, built once from the config; `models`:
//!   learning the upstream's model ids for metric labels.
//! - `auth`: client keys, stored hashed, looked up by digest.
//! - `limits`: per-key request rate, concurrency, tokens and spend; memory and Redis backends.
//! - `policy`: the org's rules on models and providers; pure, and explainable.
//! - `request_body`: a door's JSON body, parsed once, the bulk left raw; `json_scan`: where its
//!   values end, found faster than serde_json finds them and checked as strictly, and
//!   (`json_scan::catch`) a few values caught from JSON fed in pieces; `sse`: the incremental
//!   SSE scanner, which hands events too large to keep on in pieces; `usage`: what a response
//!   reports it used. All pure.
//! - [`config`]: the TOML schema, loading (file, `ORGATE_*`, `NAME_FILE` secrets), validation.
//! - `metrics`: every Prometheus series; `error`: `GatewayError`, the one way gateway errors
//!   become responses; `secret`: `Secret<T>`, never printed; `shutdown`: signals; `memory`:
//!   the allocator's settings; [`cli`]: the commands; `explain`: `orgate explain`.
#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)
)]

mod auth;
#[allow(clippy::print_stdout)]
pub mod cli;
pub mod config;
mod doors;
mod error;
mod explain;
mod gate;
mod json_scan;
mod limits;
mod memory;
mod metrics;
mod models;
mod policy;
mod proxy;
mod request_body;
mod secret;
mod server;
mod shutdown;
mod sse;
mod state;
mod stream;
mod telemetry;
mod upstream;
mod usage;
mod workers;

pub use auth::key_hash_field;
pub use config::Config;
pub use server::{app, router, serve, serve_with_reloads, ReloadRequest};
pub use state::{AppState, StartupError};

/// What the benchmarks, the fuzz targets and the tests' one internals file reach into: the
/// pure pieces and the state a config builds. Not an interface; names here change freely.
#[doc(hidden)]
pub mod internals {
    pub use crate::auth::KeyStore;
    pub use crate::doors::read_stream;
    pub use crate::limits::{format_reset, Limits};
    pub use crate::metrics::Metrics;
    pub use crate::policy::{CompiledPolicy, RequestShape};
    pub use crate::proxy::api_suffix;
    pub use crate::request_body::RequestBody;
    pub use crate::server::connection_builder;
    pub use crate::sse::{whatwg_reading, SseScanner, SseSink, MAX_EVENT_DATA};
    pub use crate::state::Snapshot;
    pub use crate::stream::StreamFacts;
    pub use crate::upstream::{
        Client as UpstreamClient, OutgoingBody, SendBody, Upstream, UpstreamRequest,
    };
    pub use crate::usage::{ResponseSummary, Usage};
    pub use crate::workers::{PerThread, Workers};

    /// The chat body's scanner, which the fuzz target holds to serde_json.
    pub mod json_scan {
        pub use crate::json_scan::catch::{ValueCatcher, MAX_CAUGHT};
        pub use crate::json_scan::{members_by_serde, object, Refused, MAX_DEPTH};
    }
}
