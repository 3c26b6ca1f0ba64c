//! The official OpenAI Python SDK against the gateway (tests/sdk/openai_sdk_check.py).
//!
//! Needs `python3` with the `openai` package (`.ci/run` installs it). Outside CI the test is
//! skipped, loudly, when they are missing; in CI (`CI` set) their absence fails it.

use crate::common::*;

#[tokio::test]
async fn the_official_python_sdk_works_through_the_gateway() {
    if !tool_present(
        std::process::Command::new("python3").args(["-c", "import openai"]),
        "python3 with the `openai` package (pip install openai)",
    ) {
        return;
    }
    let (_mock, gw) = start_gateway_with(|config| {
        config.upstream.retries = 0;
        let mut limited = key("limited", "sk-orgate-limited");
        key_rate(&mut limited, 1, 1);
        config.auth.keys.push(limited);
    })
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_sdk_check.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(gw.url("/v1"))
        .arg(ALICE_KEY)
        .arg("sk-orgate-limited")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the SDK check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("OK"), "{stdout}");
}
