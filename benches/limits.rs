//! The cost of the limit check the middleware makes per request: `Limits::check`, then dropping
//! the admission (which releases the concurrency slot). Alone, and under contention from threads
//! and tokio tasks, on one key and on a key each.
//!
//! Every limit is on (rate, concurrency, tokens, global) but set high enough that nothing is
//! refused, so the admit path is what is measured; one case measures the refusal path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::FutureExt;
use http::HeaderMap;
use orgate::config::{Config, KeyConfig, LimitsConfig};
use orgate::internals::Limits;

const KEYS: usize = 64;

/// Every limit on, none of them reached in a benchmark run.
fn metrics() -> Arc<orgate::internals::Metrics> {
    Arc::new(orgate::internals::Metrics::new())
}

fn config() -> Config {
    let mut config = Config {
        limits: LimitsConfig {
            requests_per_minute: u64::from(u32::MAX),
            burst: 1_000_000_000,
            max_concurrent: 1024,
            tokens_per_minute: 1_000_000_000_000,
            global_requests_per_second: u64::from(u32::MAX),
            ..LimitsConfig::default()
        },
        ..Config::default()
    };
    config.auth.keys = (0..KEYS)
        .map(|i| KeyConfig {
            id: format!("key-{i}"),
            ..KeyConfig::default()
        })
        .collect();
    config
}

fn key_ids() -> Vec<String> {
    (0..KEYS).map(|i| format!("key-{i}")).collect()
}

fn single_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("check/single");
    group.throughput(Throughput::Elements(1));

    let limits = Limits::build(&config(), &metrics()).unwrap();
    group.bench_function("admit+drop", |b| {
        b.iter(|| drop(limits.check("key-7").now_or_never().unwrap()));
    });
    group.bench_function("admit+headers+drop", |b| {
        let mut headers = HeaderMap::new();
        b.iter(|| {
            if let Ok(admission) = limits.check("key-7").now_or_never().unwrap() {
                admission.headers.write_to(&mut headers);
            }
        });
    });
    if let Ok(admission) = limits.check("key-7").now_or_never().unwrap() {
        let mut headers = HeaderMap::new();
        group.bench_function("headers-only", |b| {
            b.iter(|| admission.headers.write_to(&mut headers));
        });
        group.bench_function("format-reset-only", |b| {
            b.iter(|| {
                orgate::internals::format_reset(std::hint::black_box(Duration::from_millis(1500)))
            });
        });
    }
    group.bench_function("admit+debit+drop", |b| {
        b.iter(|| {
            if let Ok(admission) = limits.check("key-7").now_or_never().unwrap() {
                if let Some(tokens) = &admission.account {
                    tokens.charge(100, 0.0);
                }
            }
        });
    });

    let unlimited = Limits::build(
        &Config {
            limits: LimitsConfig {
                requests_per_minute: 0,
                max_concurrent: 0,
                ..LimitsConfig::default()
            },
            ..Config::default()
        },
        &metrics(),
    )
    .unwrap();
    group.bench_function("unlimited", |b| {
        b.iter(|| drop(unlimited.check("anonymous").now_or_never().unwrap()));
    });

    // A key whose burst is spent: every check is a refusal (message and headers built).
    let refusing = Limits::build(
        &Config {
            limits: LimitsConfig {
                requests_per_minute: 1,
                burst: 1,
                ..LimitsConfig::default()
            },
            ..Config::default()
        },
        &metrics(),
    )
    .unwrap();
    drop(refusing.check("anonymous").now_or_never().unwrap());
    group.bench_function("refuse", |b| {
        b.iter(|| drop(refusing.check("anonymous").now_or_never().unwrap()));
    });
    group.finish();
}

/// `iters` checks spread over `threads` OS threads; the time is wall-clock for all of them.
fn on_threads(
    limits: &Limits,
    ids: &[String],
    threads: usize,
    same_key: bool,
    iters: u64,
) -> Duration {
    let per_thread = iters.div_ceil(threads as u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let id = if same_key {
                &ids[0]
            } else {
                &ids[t % ids.len()]
            };
            s.spawn(move || {
                for _ in 0..per_thread {
                    drop(limits.check(id).now_or_never().unwrap());
                }
            });
        }
    });
    start.elapsed()
}

/// `iters` checks spread over `tasks` tokio tasks on a multi-threaded runtime, each holding its
/// admission across a yield, as a request holds it across its response.
fn on_tasks(
    rt: &tokio::runtime::Runtime,
    limits: &Limits,
    ids: &[String],
    tasks: usize,
    same_key: bool,
    iters: u64,
) -> Duration {
    let per_task = iters.div_ceil(tasks as u64);
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let limits = limits.clone();
                let id: Arc<str> = Arc::from(if same_key {
                    ids[0].as_str()
                } else {
                    ids[t % ids.len()].as_str()
                });
                tokio::spawn(async move {
                    for i in 0..per_task {
                        let admission = limits.check(&id).now_or_never().unwrap();
                        if i % 16 == 0 {
                            tokio::task::yield_now().await;
                        }
                        drop(admission);
                    }
                })
            })
            .collect();
        for handle in handles {
            let _ = handle.await;
        }
        start.elapsed()
    })
}

fn contention(c: &mut Criterion) {
    let limits = Limits::build(&config(), &metrics()).unwrap();
    let ids = key_ids();
    let mut group = c.benchmark_group("check/threads");
    group.throughput(Throughput::Elements(1));
    for threads in [2usize, 4, 8] {
        for (name, same_key) in [("same-key", true), ("own-key", false)] {
            group.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &threads| {
                b.iter_custom(|iters| on_threads(&limits, &ids, threads, same_key, iters));
            });
        }
    }
    group.finish();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
    let mut group = c.benchmark_group("check/tasks");
    group.throughput(Throughput::Elements(1));
    for tasks in [64usize] {
        for (name, same_key) in [("same-key", true), ("own-key", false)] {
            group.bench_with_input(BenchmarkId::new(name, tasks), &tasks, |b, &tasks| {
                b.iter_custom(|iters| on_tasks(&rt, &limits, &ids, tasks, same_key, iters));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, single_thread, contention);
criterion_main!(benches);
