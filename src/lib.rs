//! orgate: a local, OpenAI-compatible gateway in front of OpenRouter.
//!
//! Clients call it with their own key; it checks the key, applies the org's limits and
//! provider policy, injects the upstream OpenRouter key and forwards, passing streams through
//! byte for byte.
//!
//! # Layout
//! - [`server`]: `serve(config, listener, shutdown)`, the router and its layer stack;
//!   [`workers`]: the I/O threads that serve the connections it accepts.
//! - [`config`]: the TOML schema, loading (file, `ORGATE_*`, `NAME_FILE` secrets), validation.
//! - [`state`]: the [`Snapshot`](state::Snapshot) every request reads, built once from config.
//! - [`auth`]: client keys (hashed, constant-time) and the API layer (`admit`), which
//!   authenticates and then asks [`limits`] in one step.
//! - [`limits`]: per-key request rate, concurrency, tokens and spend, and the per-request check.
//! - [`policy`]: the org's rules on models and providers; pure, and explainable.
//! - [`metrics`]: every Prometheus series; [`models`]: learning model ids for labels.
//! - [`usage`]: what a response reports it used.
//! - [`chat_request`]: the chat body, parsed once, `messages` left raw; [`json_scan`]: where
//!   its values end, found faster than serde_json finds them and checked as strictly.
//! - [`proxy`]: the chat handler, the pass-through, upstream client, header and path rules.
//! - [`stream`]: the response body wrapper: unbuffered, watches SSE, ends broken streams cleanly.
//! - [`sse`]: the incremental SSE scanner (pure).
//! - [`error`]: `GatewayError`, the one way gateway errors become responses.
//! - [`telemetry`]: log setup and the access log; [`shutdown`]: signals.
//! - [`secret`]: `Secret<T>`, never printed; [`cli`]: the commands.
#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)
)]

pub mod auth;
pub mod chat_request;
#[allow(clippy::print_stdout)]
pub mod cli;
pub mod config;
pub mod error;
pub mod gate;
pub mod json_scan;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod models;
pub mod policy;
pub mod proxy;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod sse;
pub mod state;
pub mod stream;
pub mod telemetry;
pub mod upstream;
pub mod usage;
pub mod workers;

pub use config::Config;
pub use server::{app, router, serve, serve_with_reloads, ReloadRequest};
pub use state::StartupError;
