//! The official OpenAI and Anthropic Python SDKs against the gateway
//! (tests/sdk/openai_sdk_check.py, tests/sdk/anthropic_sdk_check.py).
//!
//! Needs `python3`. The `openai` and `anthropic` packages are used where Python has them
//! (`.ci/run` installs them); where it does not, the test installs them with pip into its own
//! directory under the target dir, never into the user's Python. A test never passes without
//! running its check: if they cannot be had, it fails and says what to install.

use std::path::PathBuf;

use crate::common::*;

/// The packages the checks import, with the versions they were written against.
const PACKAGES: [&str; 2] = ["openai>=1.40", "anthropic>=0.40"];

/// Whether `python3`, with `python_path` in `PYTHONPATH` if given, imports `package`.
fn imports(package: &str, python_path: Option<&PathBuf>) -> bool {
    let mut command = std::process::Command::new("python3");
    command.args(["-c", &format!("import {package}")]);
    if let Some(dir) = python_path {
        command.env("PYTHONPATH", dir);
    }
    command.output().is_ok_and(|out| out.status.success())
}

/// Where `package` can be imported from: Python's own site (`None`), or the test's directory,
/// installed there first if needed.
fn python_path_for(package: &str) -> Option<PathBuf> {
    // The tests run at once: one pip at a time into the shared directory.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if imports(package, None) {
        return None;
    }
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sdk-python");
    if !imports(package, Some(&dir)) {
        let installed = std::process::Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&dir)
            .args(PACKAGES)
            .output()
            .unwrap_or_else(|e| panic!("python3 is needed for the SDK checks: {e}"));
        assert!(
            installed.status.success() && imports(package, Some(&dir)),
            "the `{package}` Python package is missing and could not be installed \
             (pip install {}): {}",
            PACKAGES.join(" "),
            String::from_utf8_lossy(&installed.stderr)
        );
    }
    Some(dir)
}

/// Runs `tests/sdk/<script>` with `args`, `package` importable; it must succeed and print `OK`.
async fn sdk_check(package: &str, script: &str, args: &[String]) {
    let python_path = python_path_for(package);
    let script = format!("{}/tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut command = tokio::process::Command::new("python3");
    command.arg(script).args(args);
    if let Some(dir) = &python_path {
        command.env("PYTHONPATH", dir);
    }
    let output = command.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the {package} SDK check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("OK"), "{stdout}");
}

#[tokio::test]
async fn the_official_python_sdk_works_through_the_gateway() {
    let (_mock, gw) = start_gateway_with(|config| {
        config.upstream.retries = 0;
        let mut limited = key("limited", "sk-orgate-limited");
        key_rate(&mut limited, 1, 1);
        config.auth.keys.push(limited);
    })
    .await;
    let args = [gw.url("/v1"), ALICE_KEY.into(), "sk-orgate-limited".into()];
    sdk_check("openai", "openai_sdk_check.py", &args).await;
}

#[tokio::test]
async fn the_official_anthropic_sdk_works_through_the_gateway() {
    let (_mock, gw) = start_gateway_with(|config| {
        config.upstream.retries = 0;
        config.policy.models.deny = vec!["*:free".into()];
    })
    .await;
    // The SDK's base URL is the root: it appends /v1/messages itself.
    let args = [gw.base_url(), ALICE_KEY.into()];
    sdk_check("anthropic", "anthropic_sdk_check.py", &args).await;
}
