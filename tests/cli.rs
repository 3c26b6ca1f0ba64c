//! The `orgate` binary as a user runs it: commands, exit codes, signals, logs.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::process::{key_toml, ConfigFile, Served, BIN};
use crate::common::*;

fn orgate(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    command
}

/// Runs `orgate check` on a config file holding `toml`: it must exit 1, and its report must
/// hold each of `expected(file)` (the file's path given). Returns the report.
fn check_refuses(toml: &str, expected: impl Fn(&str) -> Vec<String>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orgate.toml");
    std::fs::write(&path, toml).unwrap();
    let output = orgate(&["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    for expected in expected(&path.display().to_string()) {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    stderr
}

#[test]
fn check_lists_every_problem_and_exits_1() {
    let stderr = check_refuses(
        "[server]\nmax_bdy = \"1MiB\"\n[upstream]\nfirst_byte_timeout = \"forever\"\n[[auth.keys]]\nid = \"a\"\nhash = \"plain-text-key\"\npolicy = \"missing\"\n",
        |file| {
            vec![
                format!("{file}: server.max_bdy: unknown key"),
                format!("{file}: upstream.first_byte_timeout: invalid duration \"forever\""),
                format!("{file}: auth.keys[0].hash: must be \"sha256:"),
                format!("{file}: auth.keys[0].policy: no [policies.missing] is defined"),
            ]
        },
    );
    assert!(stderr.contains("4 problem(s)"), "{stderr}");
}

#[test]
fn check_reports_everything_in_one_pass_whatever_the_type_errors() {
    // A type error inside a key, beside that key's bad hash, an unknown key, a policy that
    // cannot be layered and a bad glob: every one is reported, each once.
    let stderr = check_refuses(
        concat!(
            "[[auth.keys]]\nid = \"a\"\nhash = \"sha256:nothex\"\nrequests_per_minute = \"fast\"\n",
            "[policy]\nmax_tokens = \"lots\"\nmodels.allow = [\"[bad\"]\nbogus = 1\n",
            "[policy.provider]\nonly = [\"openai\"]\n",
            "[policies.team.provider]\nonly = [\"anthropic\"]\n",
        ),
        |file| {
            vec![
                format!("{file}: auth.keys[0].requests_per_minute: invalid type"),
                format!("{file}: auth.keys[0].hash: must be \"sha256:"),
                format!("{file}: policy.max_tokens: invalid type"),
                format!("{file}: policy.bogus: unknown key"),
                format!("{file}: policy.models.allow[0]: \"[bad\" is not a glob"),
                format!("{file}: policies.team: "),
            ]
        },
    );
    assert!(stderr.contains("6 problem(s)"), "{stderr}");
}

#[test]
fn check_fails_when_serve_would_refuse_for_an_unset_upstream_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orgate.toml");
    let toml = format!(
        "{}upstream_key_env = \"TEAM_A_KEY\"\n",
        key_toml("alice", ALICE_KEY)
    );
    std::fs::write(&path, toml).unwrap();
    let output = orgate(&["check", "--config", path.to_str().unwrap()])
        .env("OPENROUTER_API_KEY", UPSTREAM_KEY)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("$TEAM_A_KEY: NOT SET"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("serve would refuse to start: $TEAM_A_KEY"),
        "{stderr}"
    );
    // Set, the check passes.
    let output = orgate(&["check", "--config", path.to_str().unwrap()])
        .env("OPENROUTER_API_KEY", UPSTREAM_KEY)
        .env("TEAM_A_KEY", "sk-or-v1-team-a")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn check_reports_a_named_policy_that_cannot_be_layered_on_the_org_one() {
    check_refuses(
        "[policy.provider]\nonly = [\"openai\"]\n[policies.team.provider]\nonly = [\"anthropic\"]\n",
        |file| vec![format!("{file}: policies.team: ")],
    );
}

#[test]
fn check_prints_the_effective_config_without_secrets() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/orgate.example.toml");
    let output = orgate(&["check", "--config", example])
        .env("OPENROUTER_API_KEY", UPSTREAM_KEY)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("[server]") && stdout.contains("listen = \"127.0.0.1:8080\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("$OPENROUTER_API_KEY: set, [redacted]"),
        "{stdout}"
    );
    assert!(!stdout.contains(UPSTREAM_KEY));
    // Without any file: the built-in defaults, printed, and a failed check: serve would not
    // start without the upstream key.
    let dir = tempfile::tempdir().unwrap();
    let output = orgate(&["check"]).current_dir(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("built-in defaults") && stdout.contains("NOT SET"),
        "{stdout}"
    );
}

#[test]
fn config_orgate_toml_in_the_working_directory_is_read_when_no_path_is_given() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/orgate.toml"),
        "[server]\nlisten = \"127.0.0.1:9911\"\n",
    )
    .unwrap();
    let output = orgate(&["check"]).current_dir(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("from config/orgate.toml") && stdout.contains("127.0.0.1:9911"),
        "{stdout}"
    );
    // $ORGATE_CONFIG wins over it.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "[server]\nlisten = \"127.0.0.1:9922\"\n").unwrap();
    let output = orgate(&["check"])
        .current_dir(dir.path())
        .env("ORGATE_CONFIG", &other)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("127.0.0.1:9922"));
}

#[test]
fn hash_key_and_keygen_agree() {
    let output = orgate(&["hash-key", "abc"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let mut child = orgate(&["hash-key"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"abc\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("sha256:ba7816bf"),
        "stdin works, newline trimmed"
    );

    let output = orgate(&["keygen"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("key:  "))
        .unwrap();
    let hash = stdout
        .lines()
        .find_map(|l| l.strip_prefix("hash: "))
        .unwrap();
    assert!(
        key.starts_with("sk-orgate-") && key.len() >= 10 + 64,
        "{key}"
    );
    let rehashed = orgate(&["hash-key", key]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&rehashed.stdout).trim(), hash);
    let custom = orgate(&["keygen", "--prefix", "team-"]).output().unwrap();
    assert!(String::from_utf8_lossy(&custom.stdout).contains("key:  team-"));
}

#[test]
fn serve_refuses_an_open_gateway_on_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let output = orgate(&["serve"])
        .current_dir(dir.path())
        .env("ORGATE_LISTEN", "0.0.0.0:0")
        .env("OPENROUTER_API_KEY", UPSTREAM_KEY)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("server.listen: 0.0.0.0:0 is not a loopback address"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_to_start_without_the_upstream_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = orgate(&["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("set OPENROUTER_API_KEY (or OPENROUTER_API_KEY_FILE"));
}

#[tokio::test]
async fn serve_like_the_container_and_drain_a_stream_on_sigterm() {
    let mock = MockOpenRouter::start().await;
    let config = ConfigFile::for_mock(
        &mock,
        "[server]\nshutdown_grace = \"10s\"\n",
        ("alice", ALICE_KEY),
    );
    let mut command = tokio::process::Command::new(BIN);
    command
        .env_clear()
        .env("ORGATE_LISTEN", "127.0.0.1:0")
        .env("ORGATE_CONFIG", &config.path)
        .env("OPENROUTER_API_KEY_FILE", config.upstream_key_file())
        .env("ORGATE_LOG_FORMAT", "json")
        .env("ORGATE_LOG", "trace");
    let mut served = Served::start(&mut command).await;

    // A stream that takes ~1 s; SIGTERM arrives while it runs.
    let response = served
        .stream(ALICE_KEY)
        .paced(4, 150)
        .header("x-request-id", "drain-test-1")
        .fetch()
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(mock.next_request().await.bearer(), Some(UPSTREAM_KEY));
    let stream = Streamed::first_piece(response).await;
    served.terminate();
    served.wait_for("SIGTERM received").await;
    // New connections are refused while the stream drains.
    let refused = served.get("/healthz").send().await;
    assert!(refused.is_err(), "the listener is closed during the drain");
    let received = stream.read_to_end().await;
    assert!(
        received.ends_with(b"data: [DONE]\n\n"),
        "the in-flight stream finished"
    );
    // Unauthenticated attempts earlier would have shown in logs; check what we have.
    let (code, log) = served.finish().await;
    assert_eq!(code, Some(0), "{log}");

    let access = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|j| j["target"] == "orgate::access" && j["request_id"] == "drain-test-1")
        .unwrap_or_else(|| panic!("no access line for the stream:\n{log}"));
    assert_eq!(access["key"], "alice");
    assert_eq!(access["model"], MODEL);
    assert_eq!(access["status"], 200);
    assert_eq!(access["stream"], true);
    assert_eq!(access["outcome"], "complete");
    assert_eq!(access["bytes"], received.len());
    assert!(access["duration_ms"].as_f64().unwrap() > 500.0, "{access}");
    for secret in [UPSTREAM_KEY, ALICE_KEY] {
        assert!(
            !log.contains(secret),
            "a key leaked into the trace-level log"
        );
    }
}

/// A bare `orgate` is `serve`, with serve's options.
#[tokio::test]
async fn a_bare_orgate_takes_serves_options() {
    let mock = MockOpenRouter::start().await;
    let config = ConfigFile::for_mock(&mock, "", ("alice", ALICE_KEY));
    let mut command = tokio::process::Command::new(BIN);
    command
        .env_clear()
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&config.path)
        .env("OPENROUTER_API_KEY", UPSTREAM_KEY)
        .env("ORGATE_LOG_FORMAT", "json");
    let served = Served::start(&mut command).await;
    assert_eq!(served.completion(ALICE_KEY).fetch_status().await, 200);
    served.terminate();
    let (code, _) = served.finish().await;
    assert_eq!(code, Some(0));
    // A subcommand's own options stay its own.
    let out = orgate(&["--config", "x.toml", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
