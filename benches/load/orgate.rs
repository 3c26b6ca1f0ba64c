//! orgate as a target: the release build, a realistic config, start and readiness.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::procs::{self, Guard};

/// The client key the load generator presents (one of several configured, as in a real org).
pub(crate) const CLIENT_KEY: &str = "sk-orgate-bench-0000000000000000000000000000000000000000";

/// Builds `orgate` in release (`cargo build --release --bin orgate`, honouring
/// `CARGO_TARGET_DIR`) and returns the binary's path, read from cargo's own JSON messages so
/// the target directory never has to be guessed.
pub(crate) fn build() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    // `cargo bench` runs us with the package's own variables set (CARGO_PKG_NAME, OUT_DIR…).
    // Build scripts that watch them (ring's does) would see a change and rebuild every time,
    // here and again in the next plain `cargo build`: hand the inner cargo a clean slate.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                &*name,
                "OUT_DIR"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
            )
        {
            command.env_remove(&*name);
        }
    }
    let output = command
        .args([
            "build",
            "--release",
            "--bin",
            "orgate",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build --release --bin orgate: {}",
            output.status
        ));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "orgate")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "cargo built no orgate executable".to_owned())
}

/// The `hash` value for a key, from the binary itself (`orgate hash-key`).
fn hash_key(bin: &Path, key: &str) -> Result<String, String> {
    let out = Command::new(bin)
        .args(["hash-key", key])
        .output()
        .map_err(|e| format!("orgate hash-key: {e}"))?;
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() && hash.starts_with("sha256:") {
        Ok(hash)
    } else {
        Err(format!("orgate hash-key printed {hash:?}"))
    }
}

/// The config: client keys, limits high enough never to refuse (but switched on, so their
/// bookkeeping is measured), and an org policy that rewrites every request's `provider`.
fn config(bin: &Path, listen: SocketAddr, upstream_port: u16) -> Result<String, String> {
    let mut keys = String::new();
    for (i, key) in [
        CLIENT_KEY,
        "sk-orgate-bench-team-a-11111111111111111111111111111111",
        "sk-orgate-bench-team-b-22222222222222222222222222222222",
        "sk-orgate-bench-ci-333333333333333333333333333333333333",
    ]
    .iter()
    .enumerate()
    {
        keys.push_str(&format!(
            "[[auth.keys]]\nid = \"bench-{i}\"\nhash = \"{}\"\n\n",
            hash_key(bin, key)?
        ));
    }
    // ORGATE_BENCH_REDIS=redis://127.0.0.1:PORT measures the shared limits backend instead of
    // the in-memory one (start that redis-server yourself; BENCHMARKS.md shows how).
    let backend = match std::env::var("ORGATE_BENCH_REDIS") {
        Ok(url) if !url.is_empty() => format!("backend = \"redis\"\nredis_url = \"{url}\"\n"),
        _ => String::new(),
    };
    // ORGATE_BENCH_WORKERS=N sets server.workers (unset: orgate's default, one I/O thread per
    // CPU; the key is then left out, so binaries older than it still run).
    let workers = match std::env::var("ORGATE_BENCH_WORKERS") {
        Ok(n) => match n.parse::<u32>() {
            Ok(n) => format!("workers = {n}\n"),
            Err(_) => return Err(format!("ORGATE_BENCH_WORKERS={n}: not a number")),
        },
        Err(_) => String::new(),
    };
    Ok(format!(
        r#"# Written by benches/load: the configuration orgate is measured with.
[server]
listen = "{listen}"
max_body = "10MiB"
# The streaming scenarios open every connection before the first request is written; opening
# 9,950 takes longer than the default 10 s a silent connection is kept. nginx's
# client_header_timeout is 60 s by default: the same here.
header_read_timeout = "60s"
{workers}
[upstream]
base_url = "http://127.0.0.1:{upstream_port}/api/v1"

[auth]
allow_anonymous = false

{keys}[limits]
requests_per_minute = 100000000
burst = 1000000
max_concurrent = 0
{backend}
[policy]
models.allow = ["openai/*", "anthropic/*", "google/*", "meta-llama/*"]
models.deny = ["*:free"]
max_tokens = 4096

[policy.provider]
data_collection = "deny"
ignore = ["ProviderX"]
max_price = {{ prompt = 5, completion = 15 }}
"#
    ))
}

/// Starts orgate in front of `upstream_port` with the harness config in `dir`; returns it
/// once `/healthz` answers.
pub(crate) fn start(
    bin: &Path,
    dir: &Path,
    upstream_port: u16,
) -> Result<(Guard, SocketAddr), String> {
    let listen: SocketAddr = ([127, 0, 0, 1], procs::free_port()?).into();
    let path = dir.join("orgate.toml");
    std::fs::write(&path, config(bin, listen, upstream_port)?)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    let env = [
        ("OPENROUTER_API_KEY", "sk-or-v1-bench-upstream-key"),
        ("ORGATE_LOG", "warn"),
    ];
    // `orgate check` first: a config the build no longer accepts is reported as such, with
    // orgate's own list of problems, rather than as a gateway that never came up.
    let check = Command::new(bin)
        .args(["check", "--config"])
        .arg(&path)
        .envs(env)
        .output()
        .map_err(|e| format!("orgate check: {e}"))?;
    if !check.status.success() {
        return Err(format!(
            "orgate check rejected the harness config:\n{}",
            String::from_utf8_lossy(&check.stderr)
        ));
    }
    // A profiling aid: ORGATE_BENCH_WRAP="valgrind --tool=callgrind" runs orgate under that
    // command (stopped with SIGTERM so the tool can write its output).
    let wrap = std::env::var("ORGATE_BENCH_WRAP").unwrap_or_default();
    let mut wrap = wrap.split_whitespace();
    let mut command = match wrap.next() {
        Some(tool) => {
            let mut c = Command::new(tool);
            c.args(wrap).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let wrapped = std::env::var_os("ORGATE_BENCH_WRAP").is_some_and(|w| !w.is_empty());
    let child = command
        .args(["serve", "--config"])
        .arg(&path)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start orgate: {e}"))?;
    let mut guard = Guard {
        child,
        term_first: wrapped,
    };
    procs::wait_ready(listen, "/healthz", &mut guard).map_err(|e| format!("orgate {e}"))?;
    Ok((guard, listen))
}
