//! The two per-request pieces at the edges of the path: finding the caller from its key
//! (`KeyStore::authenticate`: a SHA-256 and a map lookup by digest), and scanning a stream's
//! bytes for SSE events (`SseScanner::feed`, run on every chunk a stream passes).

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, HeaderValue};
use orgate::config::{Config, KeyConfig};
use orgate::internals::Snapshot;
use orgate::internals::SseScanner;
use std::hint::black_box;

const KEYS: usize = 256;

fn key(i: usize) -> String {
    format!("sk-orgate-bench-{i:04}-0123456789abcdef0123456789abcdef")
}

fn snapshot() -> Snapshot {
    let mut config = Config::default();
    config
        .secrets
        .insert("OPENROUTER_API_KEY", "sk-or-v1-bench-upstream-key");
    config.auth.keys = (0..KEYS)
        .map(|i| KeyConfig {
            id: format!("key-{i}"),
            hash: orgate::key_hash_field(&key(i)),
            ..KeyConfig::default()
        })
        .collect();
    let metrics = Arc::new(orgate::internals::Metrics::new());
    Snapshot::build(config, &metrics).expect("the bench config builds")
}

fn headers(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(value).expect("a valid header value"),
    );
    headers
}

fn auth(c: &mut Criterion) {
    let snapshot = snapshot();
    let mut group = c.benchmark_group("auth");
    let known = headers(&format!("Bearer {}", key(KEYS / 2)));
    let unknown = headers("Bearer sk-orgate-not-a-configured-key-0123456789abcdef");
    group.bench_function("known key", |b| {
        b.iter(|| snapshot.keys.authenticate(black_box(&known)).is_ok())
    });
    group.bench_function("unknown key", |b| {
        b.iter(|| snapshot.keys.authenticate(black_box(&unknown)).is_err())
    });
    group.finish();
}

/// A stream as OpenRouter sends it: a comment, then `data:` chunks with usage on the last.
fn stream(chunks: usize) -> Vec<u8> {
    let mut out = b": OPENROUTER PROCESSING\n\n".to_vec();
    for i in 0..chunks {
        out.extend_from_slice(
            format!(
                "data: {{\"id\":\"gen-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"openai/gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token {i} \"}},\"finish_reason\":null}}]}}\n\n"
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

fn sse(c: &mut Criterion) {
    let bytes = stream(200);
    let mut group = c.benchmark_group("sse scan");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    // Whole events per read, as a fast upstream delivers them, and reads cut at arbitrary
    // points, as TCP may deliver them (events then span reads).
    for (name, read) in [("one event per read", 0), ("64-byte reads", 64)] {
        let reads: Vec<&[u8]> = if read == 0 {
            bytes
                .split_inclusive(|&b| b == b'\n')
                .collect::<Vec<_>>()
                .chunks(2)
                .map(|pair| {
                    let start = pair[0].as_ptr() as usize - bytes.as_ptr() as usize;
                    let len: usize = pair.iter().map(|l| l.len()).sum();
                    &bytes[start..start + len]
                })
                .collect()
        } else {
            bytes.chunks(read).collect()
        };
        group.bench_with_input(BenchmarkId::new("feed", name), &reads, |b, reads| {
            b.iter(|| {
                let mut scanner = SseScanner::new();
                let mut events = 0usize;
                for read in reads {
                    scanner.feed(black_box(read), &mut |_: &[u8]| events += 1);
                }
                events
            })
        });
    }
    group.finish();
}

criterion_group!(benches, auth, sse);
criterion_main!(benches);
