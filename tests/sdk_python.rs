//! The official OpenAI and Anthropic Python SDKs against the gateway
//! (tests/sdk/openai_sdk_check.py, tests/sdk/anthropic_sdk_check.py).
//!
//! Needs `python3` with the `openai` and `anthropic` packages (`.ci/run` installs them). Outside
//! CI a test is skipped, loudly, when they are missing; in CI (`CI` set) their absence fails it.

use crate::common::*;

/// Runs `tests/sdk/<script>` with `args` when `python3` can import `package`; it must succeed
/// and print `OK`. `false` when skipped.
async fn sdk_check(package: &str, script: &str, args: &[String]) -> bool {
    if !tool_present(
        std::process::Command::new("python3").args(["-c", &format!("import {package}")]),
        &format!("python3 with the `{package}` package (pip install {package})"),
    ) {
        return false;
    }
    let script = format!("{}/tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the {package} SDK check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("OK"), "{stdout}");
    true
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
