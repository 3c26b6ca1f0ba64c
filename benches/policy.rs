//! Policy application on a chat body, end to end as the chat handler runs it: parse the body,
//! apply the policy (aliases, model globs, caps, plugins, provider merge), write the body back.
//! A small request, and a ~1 MB one whose size is all in `messages` (never parsed as a tree).
//! `parse+apply+outgoing body` is the handler's own path: a large body is sent in pieces.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use orgate::config::parse_toml;
use orgate::internals::OutgoingBody;
use orgate::internals::RequestBody;
use orgate::internals::{CompiledPolicy, RequestShape};
use serde_json::json;

const POLICY: &str = r#"
[policy]
models.allow = ["openai/*", "anthropic/*", "google/*"]
models.deny = ["*:free", "openai/o1*"]
aliases = { "gpt-4o" = "openai/gpt-4o", "claude" = "anthropic/claude-sonnet-4" }
max_tokens = 4096
deny_plugins = ["web"]

[policy.provider]
data_collection = "deny"
zdr = true
ignore = ["DeepInfra"]
only = ["OpenAI", "Azure", "Anthropic", "Google Vertex"]
max_price = { prompt = 5, completion = 15 }
sort = "price"
"#;

fn policy(toml: &str) -> CompiledPolicy {
    let (config, problems) = parse_toml(toml);
    assert!(problems.is_empty(), "{problems:?}");
    CompiledPolicy::for_key(&config, None).expect("the bench policy compiles")
}

/// A chat body whose `messages` hold about `message_bytes` of text.
fn body(message_bytes: usize) -> Bytes {
    let turn =
        "The quick brown fox jumps over the lazy dog; \"quoted\" and \\escaped\\ text. ".repeat(40);
    let turns = (message_bytes / turn.len()).max(1);
    let messages: Vec<_> = (0..turns)
        .map(|i| json!({ "role": if i % 2 == 0 { "user" } else { "assistant" }, "content": turn }))
        .collect();
    let body = json!({
        "model": "gpt-4o",
        "models": ["claude", "google/gemini-2.5-pro"],
        "messages": messages,
        "max_tokens": 8000,
        "temperature": 0.2,
        "stream": true,
        "plugins": [{ "id": "response-healing" }],
        "provider": { "only": ["azure", "Together"], "max_price": { "prompt": "10" }, "order": ["azure"] },
    });
    Bytes::from(serde_json::to_vec(&body).expect("a JSON value serialises"))
}

/// Parse, apply, write the body.
fn parse_apply_write(policy: &CompiledPolicy, original: &Bytes) -> Bytes {
    let mut req = RequestBody::parse(original).expect("the bench body parses");
    policy
        .apply(&mut req, RequestShape::CHAT)
        .expect("the bench body is allowed");
    req.to_body(original)
}

/// What the chat handler sends: as [`parse_apply_write`], but a large body goes as pieces that
/// share its messages with the client's bytes (`OutgoingBody::chat`).
fn parse_apply_send(policy: &CompiledPolicy, original: &Bytes) -> OutgoingBody {
    let mut req = RequestBody::parse(original).expect("the bench body parses");
    policy
        .apply(&mut req, RequestShape::CHAT)
        .expect("the bench body is allowed");
    OutgoingBody::from_request(&req, original)
}

fn bench(c: &mut Criterion) {
    let rules = policy(POLICY);
    let empty = policy("");
    let mut group = c.benchmark_group("policy");
    for (name, size) in [("small", 0), ("1MB", 1 << 20)] {
        let original = body(size);
        group.throughput(Throughput::Bytes(original.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("parse+apply+to_body", name),
            &original,
            |b, original| b.iter(|| parse_apply_write(&rules, black_box(original))),
        );
        group.bench_with_input(
            BenchmarkId::new("parse+apply+outgoing body", name),
            &original,
            |b, original| b.iter(|| parse_apply_send(&rules, black_box(original))),
        );
        group.bench_with_input(
            BenchmarkId::new("empty policy", name),
            &original,
            |b, original| b.iter(|| parse_apply_write(&empty, black_box(original))),
        );
        group.bench_with_input(
            BenchmarkId::new("parse only", name),
            &original,
            |b, original| {
                b.iter(|| RequestBody::parse(black_box(original)).map(|req| req.keys().count()))
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
