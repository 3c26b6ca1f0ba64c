//! The load harness: `cargo bench --bench load -- [--quick] [--scenario NAME] [--duration SECS]`.
//!
//! It builds the release `orgate`, then for every scenario and every target (the mock itself
//! = "direct", nginx, orgate) starts a fresh mock upstream and a fresh proxy in front of it,
//! drives it from a separate load-generator process, samples the proxy's memory and CPU from
//! `/proc`, and prints Markdown tables of absolute figures and ratios to direct, then the
//! targets. See BENCHMARKS.md.
//!
//! The same executable plays every part: `--role mock` and `--role loadgen` re-run it (via
//! `current_exe`) so the orchestrator, the mock and the load generator never share a process.

mod floor;
mod loadgen;
mod mock;
mod nginx;
mod orgate;
mod procs;
mod report;
mod spec;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use report::{Outcome, ScenarioRun};
use spec::{Door, Load, LoadResult, LoadSpec};

const USAGE: &str = "\
usage: cargo bench --bench load -- [options]
  --quick              a few seconds in all, small counts (CI smoke); no targets judged
  --scenario NAME[,..] run only these: nonstream-c1 nonstream-c32 stream-100
                       stream-responses-100 stream-messages-100 stream-1000 body-1mb
                       idle-10k
  --duration SECS      measured time of the timed scenarios (default 5; idle-10k holds 2×)
  --targets LIST       any of direct,nginx,orgate,floor-hyper,floor-upstream (default
                       direct,nginx,orgate; the floors are orgate's stack with none of
                       its work, see benches/load/floor.rs)
  --rounds N           run every scenario N times, targets in rotating order, and report
                       medians (default 3; 1 with --quick)
  --orgate PATH        use this orgate binary instead of building one";

/// What sits between the load generator and the mock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Direct,
    Nginx,
    Orgate,
    /// orgate's server, threads and upstream client (`orgate::internals::Upstream`), doing
    /// nothing else.
    FloorUpstream,
    /// The same with a plain hyper-util client in place of orgate's upstream module.
    FloorHyper,
}

impl Target {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Nginx => "nginx",
            Target::Orgate => "orgate",
            Target::FloorUpstream => "floor-upstream",
            Target::FloorHyper => "floor-hyper",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Requests,
    Streams,
}

#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    /// One line for the report.
    pub(crate) what: String,
    pub(crate) load: Load,
    pub(crate) kind: Kind,
}

impl Scenario {
    pub(crate) fn streams(&self) -> usize {
        match self.load {
            Load::Streams { streams, .. } => streams,
            Load::Requests { .. } => 0,
        }
    }
}

#[derive(Debug)]
struct Options {
    quick: bool,
    scenarios: Option<Vec<String>>,
    duration_s: Option<f64>,
    targets: Vec<Target>,
    rounds: Option<usize>,
    orgate: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The roles first: they are this executable re-run by the orchestrator.
    if let Some(i) = args.iter().position(|a| a == "--role") {
        return match args.get(i + 1).map(String::as_str) {
            Some("mock") => mock::run(),
            Some("floor") => match (
                value_of(&args, "--upstream").and_then(|p| p.parse().ok()),
                value_of(&args, "--client"),
            ) {
                (Some(port), Some(client)) => floor::run(port, client),
                _ => fail("floor: --upstream PORT and --client upstream|hyper are required"),
            },
            Some("loadgen") => match value_of(&args, "--spec") {
                Some(spec) => loadgen::run(spec),
                None => fail("loadgen: --spec JSON is required"),
            },
            other => fail(&format!("unknown role {other:?}")),
        };
    }
    // `cargo test --all-targets` runs bench targets too, unoptimised and without `--bench`: a
    // load run there would take minutes and measure a debug build. Say so and step aside.
    if cfg!(debug_assertions) && !args.iter().any(|a| a == "--bench") {
        eprintln!("load: a debug build; run the harness with `cargo bench --bench load`");
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse(&args) {
        Ok(o) => o,
        Err(e) => return fail(&format!("{e}\n{USAGE}")),
    };
    match orchestrate(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("load: {message}");
    ExitCode::FAILURE
}

fn value_of<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).map(String::as_str)
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        quick: false,
        scenarios: None,
        duration_s: None,
        targets: vec![Target::Direct, Target::Nginx, Target::Orgate],
        rounds: None,
        orgate: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            // cargo bench passes --bench to every bench target.
            "--bench" => {}
            "--quick" => options.quick = true,
            "--scenario" => {
                options.scenarios = Some(value()?.split(',').map(str::to_owned).collect());
            }
            "--duration" => {
                let v = value()?;
                let secs: f64 = v
                    .parse()
                    .map_err(|_| format!("--duration {v}: not a number"))?;
                if !(secs > 0.0 && secs <= 3600.0) {
                    return Err(format!("--duration {v}: between 0 and 3600 seconds"));
                }
                options.duration_s = Some(secs);
            }
            "--targets" => {
                options.targets = value()?
                    .split(',')
                    .map(|t| match t {
                        "direct" => Ok(Target::Direct),
                        "nginx" => Ok(Target::Nginx),
                        "orgate" => Ok(Target::Orgate),
                        "floor-upstream" => Ok(Target::FloorUpstream),
                        "floor-hyper" => Ok(Target::FloorHyper),
                        other => Err(format!("unknown target {other:?}")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--rounds" => {
                let v = value()?;
                match v.parse() {
                    Ok(n) if (1..=100).contains(&n) => options.rounds = Some(n),
                    _ => return Err(format!("--rounds {v}: a count from 1 to 100")),
                }
            }
            "--orgate" => options.orgate = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

/// The scenarios, full size or `--quick` size. `max_streams` is what the open-files limit
/// allows (a proxy holds two descriptors per stream).
fn scenarios(options: &Options, max_streams: usize) -> Vec<Scenario> {
    let quick = options.quick;
    let secs = options.duration_s.unwrap_or(if quick { 0.5 } else { 5.0 });
    let duration_ms = (secs * 1000.0) as u64;
    let warmup_ms = if quick { 200 } else { 1000 };
    let requests = |name, concurrency, body_bytes, what: &str| Scenario {
        name,
        what: format!("{what}, {concurrency} connection(s), {secs} s after {warmup_ms} ms warm-up"),
        load: Load::Requests {
            concurrency,
            warmup_ms,
            duration_ms,
            body_bytes,
        },
        kind: Kind::Requests,
    };
    let streams = |name, door: Door, wanted: usize, chunks: u32, interval_ms: u64| {
        let n = wanted.min(max_streams);
        let mut what = format!("{n} concurrent streams × {chunks} chunks every {interval_ms} ms");
        if door != Door::Chat {
            what.push_str(&format!(" on `POST {}`", door.path()));
        }
        if n < wanted {
            what.push_str(&format!(
                " ({wanted} asked; the open-files limit allows {max_streams} through a proxy)"
            ));
        }
        Scenario {
            name,
            what,
            load: Load::Streams {
                streams: n,
                chunks,
                interval_ms,
                door,
            },
            kind: Kind::Streams,
        }
    };
    let idle_chunks = ((secs * 2.0).round() as u32).max(2);
    let all = if quick {
        vec![
            requests("nonstream-c1", 1, 0, "non-streaming"),
            requests("nonstream-c32", 32, 0, "non-streaming"),
            streams("stream-100", Door::Chat, 50, 5, 20),
            streams("stream-responses-100", Door::Responses, 50, 5, 20),
            streams("stream-messages-100", Door::Messages, 50, 5, 20),
            streams("stream-1000", Door::Chat, 200, 5, 20),
            requests("body-1mb", 8, 1 << 20, "1 MiB chat bodies, non-streaming"),
            streams("idle-10k", Door::Chat, 300, 3, 200),
        ]
    } else {
        vec![
            requests("nonstream-c1", 1, 0, "non-streaming"),
            requests("nonstream-c32", 32, 0, "non-streaming"),
            streams("stream-100", Door::Chat, 100, 20, 50),
            streams("stream-responses-100", Door::Responses, 100, 20, 50),
            streams("stream-messages-100", Door::Messages, 100, 20, 50),
            streams("stream-1000", Door::Chat, 1000, 20, 100),
            requests("body-1mb", 8, 1 << 20, "1 MiB chat bodies, non-streaming"),
            streams("idle-10k", Door::Chat, 10_000, idle_chunks, 1000),
        ]
    };
    match &options.scenarios {
        None => all,
        Some(names) => all
            .into_iter()
            .filter(|s| names.iter().any(|n| n == s.name))
            .collect(),
    }
}

/// The scenario names `--scenario` accepts.
const SCENARIOS: [&str; 8] = [
    "nonstream-c1",
    "nonstream-c32",
    "stream-100",
    "stream-responses-100",
    "stream-messages-100",
    "stream-1000",
    "body-1mb",
    "idle-10k",
];

/// Raises the soft open-files limit to the hard one (children inherit it) and returns it.
/// The hard limit itself can only be raised with privileges the harness should not need.
fn raise_open_files() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("load: cannot raise the open-files limit: {e}");
            rlimit::Resource::NOFILE
                .get()
                .map_or(1024, |(soft, _)| soft)
        }
    }
}

fn orchestrate(options: &Options) -> Result<(), String> {
    let files = raise_open_files();
    // A proxy holds a client and an upstream descriptor per stream, plus a few of its own.
    let max_streams = (files.saturating_sub(100) / 2) as usize;
    if let Some(unknown) = options
        .scenarios
        .iter()
        .flatten()
        .find(|n| !SCENARIOS.contains(&n.as_str()))
    {
        return Err(format!("unknown scenario {unknown:?}\n{USAGE}"));
    }
    let runs = scenarios(options, max_streams);
    let mut notices = Vec::new();
    let mut targets = options.targets.clone();
    let orgate_bin = if targets.contains(&Target::Orgate) {
        Some(match &options.orgate {
            Some(path) => path.clone(),
            None => {
                eprintln!("load: building the release orgate (cargo build --release --bin orgate)");
                orgate::build()?
            }
        })
    } else {
        None
    };
    let nginx_bin = if targets.contains(&Target::Nginx) {
        let found = nginx::find();
        if found.is_none() {
            let notice = "notice: nginx is not installed (or NGINX_BIN is not a file); the nginx \
                          column is skipped. `apt-get install -y nginx` adds it.";
            eprintln!("load: {notice}");
            notices.push(notice.to_owned());
            targets.retain(|t| *t != Target::Nginx);
        }
        found
    } else {
        None
    };

    let rounds = options.rounds.unwrap_or(if options.quick { 1 } else { 3 });
    let header = machine(files, options, rounds);
    eprintln!("{header}");
    let ticks = procs::clock_ticks_per_s();
    let mut done = Vec::new();
    for scenario in runs {
        let mut results = Vec::new();
        for round in 0..rounds {
            // Rotating the order spreads slow drifts of the background load over all targets.
            let mut order = targets.clone();
            let shift = round % order.len().max(1);
            order.rotate_left(shift);
            let mut outcomes = Vec::new();
            for target in order {
                eprint!(
                    "load: {} / {} (round {}/{rounds}) … ",
                    scenario.name,
                    target.name(),
                    round + 1
                );
                let outcome = run_one(
                    &scenario,
                    target,
                    orgate_bin.as_deref(),
                    nginx_bin.as_deref(),
                    files,
                    ticks,
                );
                match &outcome {
                    Ok(o) => eprintln!("{} ok, {} errors", o.result.ok, o.result.errors),
                    Err(e) => eprintln!("failed: {e}"),
                }
                outcomes.push((target, outcome));
            }
            results.push(outcomes);
        }
        done.push(ScenarioRun {
            scenario,
            rounds: results,
        });
    }
    println!("{header}");
    for notice in &notices {
        println!("\n{notice}");
    }
    println!("{}", report::tables(&done, &targets));
    if options.quick {
        println!("(--quick: smoke run with small counts; targets are not judged)");
    } else {
        println!("{}", report::targets(&done));
    }
    // nginx is only the yardstick: its trouble is reported, not fatal. A gateway (or direct
    // path) that did not run or answered with errors fails the run, so the smoke test means
    // something.
    let broken = done
        .iter()
        .flat_map(|r| r.rounds.iter().flatten())
        .any(|(t, o)| *t != Target::Nginx && o.as_ref().map_or(true, |o| o.result.errors > 0));
    if broken {
        return Err("some runs failed or saw errors: see the notes under the tables".into());
    }
    Ok(())
}

/// The machine and the run, for the report's head: figures mean little without them.
fn machine(files: u64, options: &Options, rounds: usize) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let mode = if options.quick { "quick" } else { "full" };
    format!(
        "## Load run ({mode}, {rounds} round(s))\n\n{cores} CPUs ({cpu}), Linux {}, load average {} at start, \
         open-files limit {files}",
        kernel.trim(),
        load.join(" ")
    )
}

/// One scenario against one target, with a fresh mock (and proxy) so no run inherits another's
/// connections, pools or memory.
fn run_one(
    scenario: &Scenario,
    target: Target,
    orgate_bin: Option<&std::path::Path>,
    nginx_bin: Option<&std::path::Path>,
    files: u64,
    ticks: f64,
) -> Result<Outcome, String> {
    let (mock, mock_port) = procs::start_mock()?;
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let (proxy, addr): (Option<procs::Guard>, SocketAddr) = match target {
        Target::Direct => (None, ([127, 0, 0, 1], mock_port).into()),
        Target::Nginx => {
            let bin = nginx_bin.ok_or("nginx not found")?;
            let (g, a) =
                nginx::start(bin, dir.path(), mock_port, files, scenario.streams() as u64)?;
            (Some(g), a)
        }
        Target::Orgate => {
            let bin = orgate_bin.ok_or("orgate not built")?;
            let (g, a) = orgate::start(bin, dir.path(), mock_port)?;
            (Some(g), a)
        }
        Target::FloorUpstream | Target::FloorHyper => {
            let client = if target == Target::FloorHyper {
                "hyper"
            } else {
                "upstream"
            };
            let args = [
                "--upstream".to_owned(),
                mock_port.to_string(),
                "--client".to_owned(),
                client.to_owned(),
            ];
            // Profiled like orgate when asked (see BENCHMARKS.md).
            let wrap = std::env::var("ORGATE_BENCH_WRAP").ok();
            let wrap = wrap.as_deref().filter(|w| !w.trim().is_empty());
            let (g, port) = procs::start_listening_role("floor", &args, wrap)?;
            (Some(g), ([127, 0, 0, 1], port).into())
        }
    };
    let pid = proxy.as_ref().map(procs::Guard::pid);
    let cpu_before = pid.map(procs::family_cpu_ticks);
    let sampler = pid.map(procs::RssSampler::start);

    let spec = LoadSpec {
        addr,
        key: orgate::CLIENT_KEY.to_owned(),
        load: scenario.load.clone(),
    };
    let result = run_loadgen(&spec);

    let rss_peak_kib = sampler.map(procs::RssSampler::finish);
    let cpu_s = pid
        .zip(cpu_before)
        .map(|(p, before)| procs::family_cpu_ticks(p).saturating_sub(before) as f64 / ticks);
    // Memory once the load is gone: what the proxy keeps (pools, caches, allocator slack).
    std::thread::sleep(Duration::from_millis(300));
    let rss_after_kib = pid.map(procs::family_rss_kib);
    drop(proxy);
    drop(mock);
    Ok(Outcome {
        result: result?,
        rss_peak_kib,
        rss_after_kib,
        cpu_s,
    })
}

fn run_loadgen(spec: &LoadSpec) -> Result<LoadResult, String> {
    let json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    let child = procs::spawn_role("loadgen", &["--spec".to_owned(), json])
        .map_err(|e| format!("cannot start the load generator: {e}"))?;
    let output = child
        .wait_with_output()
        .map_err(|e| format!("load generator: {e}"))?;
    if !output.status.success() {
        return Err(format!("the load generator failed ({})", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("load generator output {line:?}: {e}"))
}
