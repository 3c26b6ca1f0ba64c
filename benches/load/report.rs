//! The report: one Markdown table per scenario (absolute figures and ratios to direct), then
//! the targets, met or missed. Markdown so a run can be pasted into BENCHMARKS.md as is.
//!
//! With several rounds, every figure is the median over rounds, and anything compared with
//! direct (ratios, added latency) is computed within its own round first, then the median
//! taken: targets that ran back to back saw the same background load.

use std::fmt::Write as _;

use crate::spec::LoadResult;
use crate::{Kind, Scenario, Target};

/// What one target did in one scenario, one round.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    pub(crate) result: LoadResult,
    /// The proxy's resident memory (nginx: master + worker), KiB; none for direct.
    pub(crate) rss_peak_kib: Option<u64>,
    pub(crate) rss_after_kib: Option<u64>,
    /// CPU seconds the proxy used during the run.
    pub(crate) cpu_s: Option<f64>,
}

/// One scenario: per round, each target's outcome (an `Err` says why it did not run).
#[derive(Debug)]
pub(crate) struct ScenarioRun {
    pub(crate) scenario: Scenario,
    pub(crate) rounds: Vec<Vec<(Target, Result<Outcome, String>)>>,
}

/// A figure read from a target's outcome and, for comparisons, direct's in the same round.
type Metric = fn(&Outcome, Option<&Outcome>) -> Option<f64>;

impl ScenarioRun {
    /// Per round where `target` ran: its outcome and direct's.
    fn pairs(&self, target: Target) -> impl Iterator<Item = (&Outcome, Option<&Outcome>)> {
        self.rounds.iter().filter_map(move |round| {
            let find = |t: Target| {
                round
                    .iter()
                    .find(|(x, _)| *x == t)
                    .and_then(|(_, o)| o.as_ref().ok())
            };
            Some((find(target)?, find(Target::Direct)))
        })
    }

    /// The median over rounds of `metric` for `target`.
    pub(crate) fn median(&self, target: Target, metric: Metric) -> Option<f64> {
        self.median_of(target, metric)
    }

    fn median_of(
        &self,
        target: Target,
        f: impl Fn(&Outcome, Option<&Outcome>) -> Option<f64>,
    ) -> Option<f64> {
        let mut values: Vec<f64> = self.pairs(target).filter_map(|(o, d)| f(o, d)).collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        Some(if values.len() % 2 == 1 {
            values[mid]
        } else {
            (values[mid - 1] + values[mid]) / 2.0
        })
    }

    /// The median over rounds of `target`'s `metric` divided by direct's in the same round.
    fn ratio(&self, target: Target, metric: Metric) -> Option<f64> {
        self.median_of(target, |o, d| {
            let d = d?;
            let base = metric(d, Some(d))?;
            (base > 0.0).then_some(metric(o, Some(d))? / base)
        })
    }

    fn sum(&self, target: Target, metric: Metric) -> Option<f64> {
        let values: Vec<f64> = self
            .pairs(target)
            .filter_map(|(o, d)| metric(o, d))
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    /// Why a target did not run, and the first error each target hit.
    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for (i, round) in self.rounds.iter().enumerate() {
            for (t, outcome) in round {
                let note = match outcome {
                    Err(why) => format!("{} did not run (round {}): {why}", t.name(), i + 1),
                    Ok(o) => match &o.result.first_error {
                        Some(e) => format!("{} first error (round {}): {e}", t.name(), i + 1),
                        None => continue,
                    },
                };
                notes.push(note);
            }
        }
        notes
    }
}

#[derive(Clone, Copy)]
enum Agg {
    Median,
    Sum,
}

struct Row {
    label: &'static str,
    metric: Metric,
    agg: Agg,
    /// Whether "÷ direct" means anything for it.
    ratio: bool,
}

const fn row(label: &'static str, metric: Metric) -> Row {
    Row {
        label,
        metric,
        agg: Agg::Median,
        ratio: true,
    }
}

fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| k as f64 / 1024.0)
}

fn rows(kind: Kind) -> Vec<Row> {
    let mut rows = match kind {
        Kind::Requests => vec![
            row("requests/s", |o, _| Some(o.result.requests_per_s())),
            row("latency p50 (µs)", |o, _| o.result.latency.map(|s| s.p50)),
            row("latency p99 (µs)", |o, _| o.result.latency.map(|s| s.p99)),
            Row {
                ratio: false,
                ..row("added p50 vs direct (µs)", |o, d| {
                    Some(o.result.latency?.p50 - d?.result.latency?.p50)
                })
            },
            row("proxy CPU per request (µs)", |o, _| {
                let n = o.result.ok as f64;
                o.cpu_s.filter(|_| n > 0.0).map(|s| s * 1e6 / n)
            }),
        ],
        Kind::Streams => vec![
            row("streams completed", |o, _| Some(o.result.ok as f64)),
            row("chunk delay p50, all chunks (µs)", |o, _| {
                o.result.chunk_delay.map(|s| s.p50)
            }),
            row("chunk delay p99, all chunks (µs)", |o, _| {
                o.result.chunk_delay.map(|s| s.p99)
            }),
            row("chunk delay max, all chunks (µs)", |o, _| {
                o.result.chunk_delay.map(|s| s.max)
            }),
            row("chunk delay p50, steady (µs)", |o, _| {
                o.result.chunk_delay_steady.map(|s| s.p50)
            }),
            row("chunk delay p99, steady (µs)", |o, _| {
                o.result.chunk_delay_steady.map(|s| s.p99)
            }),
            row("first chunk p50 (µs)", |o, _| {
                o.result.first_chunk.map(|s| s.p50)
            }),
            row("first chunk p99 (µs)", |o, _| {
                o.result.first_chunk.map(|s| s.p99)
            }),
            row("proxy RSS peak (MiB)", |o, _| mib(o.rss_peak_kib)),
            row("proxy RSS after (MiB)", |o, _| mib(o.rss_after_kib)),
            row("proxy CPU (s)", |o, _| o.cpu_s),
        ],
    };
    rows.push(Row {
        agg: Agg::Sum,
        ratio: false,
        ..row("errors (all rounds)", |o, _| Some(o.result.errors as f64))
    });
    rows
}

fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn show(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), number)
}

/// The tables, for the targets that were asked for.
pub(crate) fn tables(runs: &[ScenarioRun], targets: &[Target]) -> String {
    let mut out = String::new();
    let with_direct = targets.contains(&Target::Direct);
    let compared: Vec<Target> = targets
        .iter()
        .copied()
        .filter(|t| *t != Target::Direct)
        .collect();
    for run in runs {
        let rounds = run.rounds.len();
        let _ = writeln!(
            out,
            "\n### `{}`: {}{}\n",
            run.scenario.name,
            run.scenario.what,
            if rounds > 1 {
                format!(" (median of {rounds} rounds)")
            } else {
                String::new()
            }
        );
        let mut header = String::from("| metric |");
        let mut rule = String::from("| --- |");
        for t in targets {
            let _ = write!(header, " {} |", t.name());
            rule.push_str(" ---: |");
        }
        if with_direct {
            for t in &compared {
                let _ = write!(header, " {} ÷ direct |", t.name());
                rule.push_str(" ---: |");
            }
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for row in rows(run.scenario.kind) {
            let value = |t: Target| match row.agg {
                Agg::Median => run.median(t, row.metric),
                Agg::Sum => run.sum(t, row.metric),
            };
            let mut line = format!("| {} |", row.label);
            for t in targets {
                let _ = write!(line, " {} |", show(value(*t)));
            }
            if with_direct {
                for t in &compared {
                    let ratio = run.ratio(*t, row.metric).filter(|_| row.ratio);
                    let _ = write!(
                        line,
                        " {} |",
                        ratio.map_or("–".into(), |r| format!("{r:.2}×"))
                    );
                }
            }
            let _ = writeln!(out, "{line}");
        }
        for note in run.notes() {
            let _ = writeln!(out, "\n{note}");
        }
    }
    out
}

/// Issue 21's targets, each met, missed or not measured in this run (medians over rounds).
/// They are set against floor-hyper, the cheapest proxy of orgate's own stack, run beside it;
/// nginx is the reference a user would pick instead. callgrind's instructions and the Redis
/// backend are measured apart (BENCHMARKS.md).
pub(crate) fn targets(runs: &[ScenarioRun]) -> String {
    let value = |name: &str, t: Target, metric: Metric| {
        runs.iter()
            .find(|r| r.scenario.name == name)
            .and_then(|r| r.median(t, metric))
    };
    let mut lines = Vec::new();
    let mut check = |what: String, verdict: Option<bool>| {
        let mark = match verdict {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        lines.push(format!("| {what} | {mark} |"));
    };
    let rps: Metric = |o, _| Some(o.result.requests_per_s());
    let added: Metric = |o, d| Some(o.result.latency?.p50 - d?.result.latency?.p50);
    let steady_p99: Metric = |o, _| o.result.chunk_delay_steady.map(|s| s.p99);
    let first_p50: Metric = |o, _| o.result.first_chunk.map(|s| s.p50);
    let peak: Metric = |o, _| mib(o.rss_peak_kib);
    let errors: Metric = |o, _| Some(o.result.errors as f64);
    // `orgate` and `reference` in one scenario, and whether they meet `rule`.
    let mut against = |what: &str,
                       unit: &str,
                       scenario: &str,
                       metric: Metric,
                       reference: Target,
                       rule: &dyn Fn(f64, f64) -> bool| {
        let (o, r) = (
            value(scenario, Target::Orgate, metric),
            value(scenario, reference, metric),
        );
        check(
            format!(
                "{what} ({} vs {} {}{unit})",
                show(o),
                reference.name(),
                show(r)
            ),
            o.zip(r).map(|(o, r)| rule(o, r)),
        );
    };

    against(
        "c=32 non-streaming: orgate ≥ 0.85× floor-hyper's requests/s",
        "",
        "nonstream-c32",
        rps,
        Target::FloorHyper,
        &|o, f| o >= 0.85 * f,
    );
    against(
        "c=32 non-streaming (stretch): orgate ≥ nginx's requests/s",
        "",
        "nonstream-c32",
        rps,
        Target::Nginx,
        &|o, n| o >= n,
    );
    against(
        "c=1: orgate's added p50 ≤ floor-hyper's + 15 µs",
        " µs",
        "nonstream-c1",
        added,
        Target::FloorHyper,
        &|o, f| o <= f + 15.0,
    );
    against(
        "1,000 streams: steady chunk-delay p99 ≤ nginx's",
        " µs",
        "stream-1000",
        steady_p99,
        Target::Nginx,
        &|o, n| o <= n,
    );
    against(
        "1,000 streams opened at once: first-chunk p50 ≤ floor-hyper's",
        " µs",
        "stream-1000",
        first_p50,
        Target::FloorHyper,
        &|o, f| o <= f,
    );
    against(
        "1,000 streams opened at once (stretch): first-chunk p50 ≤ nginx's",
        " µs",
        "stream-1000",
        first_p50,
        Target::Nginx,
        &|o, n| o <= n,
    );
    against(
        "1,000 streams: RSS peak ≤ floor-hyper's + 5 MiB",
        " MiB",
        "stream-1000",
        peak,
        Target::FloorHyper,
        &|o, f| o <= f + 5.0,
    );

    let idle = runs.iter().find(|r| r.scenario.name == "idle-10k");
    let streams = idle.map_or(10_000, |r| r.scenario.streams());
    let (p, n) = (
        value("idle-10k", Target::Orgate, peak),
        value("idle-10k", Target::Nginx, peak),
    );
    let e = idle.and_then(|r| r.sum(Target::Orgate, errors));
    check(
        format!(
            "{streams} held streams: RSS peak ≤ nginx's, 0 errors ({} vs {} MiB, {} errors)",
            show(p),
            show(n),
            show(e)
        ),
        p.zip(n).zip(e).map(|((p, n), e)| p <= n && e == 0.0),
    );
    check(
        format!(
            "{streams} held streams (stretch): RSS peak ≤ 120 MB (is {} MiB)",
            show(p)
        ),
        p.map(|m| m * 1.048_576 <= 120.0),
    );

    let a = value("body-1mb", Target::Orgate, added);
    check(
        format!("1 MB body: orgate's added p50 ≤ 2 ms (is {} µs)", show(a)),
        a.map(|a| a <= 2000.0),
    );

    // No door slower than chat by more than noise: a quarter, the spread of identical runs
    // of stream-100 (BENCHMARKS.md).
    for door in ["stream-responses-100", "stream-messages-100"] {
        for (what, metric) in [
            ("steady chunk-delay p99", steady_p99),
            ("first-chunk p50", first_p50),
        ] {
            let (d, c) = (
                value(door, Target::Orgate, metric),
                value("stream-100", Target::Orgate, metric),
            );
            check(
                format!(
                    "{door}: orgate's {what} ≤ chat's (stream-100) + 25 % ({} vs {} µs)",
                    show(d),
                    show(c)
                ),
                d.zip(c).map(|(d, c)| d <= c * 1.25),
            );
        }
    }

    let mut out = String::from("\n### Targets\n\n| target | verdict |\n| --- | --- |\n");
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out
}
