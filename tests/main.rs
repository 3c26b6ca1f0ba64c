//! The integration tests, built as one binary: one link instead of one per file, which keeps
//! `cargo test` fast and its target directory small. Each module is one area of behaviour; run
//! one with `cargo test --test integration <module>::`.

mod common;

mod auth;
mod budgets;
mod cli;
mod container;
mod doors;
mod faults;
mod forwarding;
mod gate;
mod hostile;
mod limits;
mod metrics;
mod openai_client;
mod policy;
mod redis_limits;
mod redis_tls;
mod reload;
mod routes;
mod sdk_python;
mod secrets;
mod streaming;
mod upstream_tls;
