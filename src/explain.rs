//! `orgate explain`: what the gateway would forward for a key through a door, or why it would
//! refuse, with no network. It runs the same parse-compile-and-apply path as a live request.

use std::fmt::Write as _;

use bytes::Bytes;
use serde_json::Value;

use crate::config::Config;
use crate::doors::ModelDoor;
use crate::error::GatewayError;
use crate::policy::{Action, CompiledPolicy};

/// Exit code: the request would be forwarded.
pub(crate) const EXIT_FORWARDED: u8 = 0;
/// Exit code: bad input (not a chat request, a field of the wrong type, an unknown key id).
pub(crate) const EXIT_BAD_INPUT: u8 = 1;
/// Exit code: the policy would refuse the request.
pub(crate) const EXIT_REFUSED: u8 = 3;

/// What `orgate explain` prints, and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Explanation {
    /// [`EXIT_FORWARDED`], [`EXIT_REFUSED`] or [`EXIT_BAD_INPUT`].
    pub exit_code: u8,
    /// The forwarded body (pretty JSON) or the refusal, then every rule that changed or refused
    /// it, one per line.
    pub text: String,
}

/// Explains `body` as sent to `door` with the key `key_id` (`"anonymous"`: no key, `[policy]`
/// alone).
pub(crate) fn explain(config: &Config, key_id: &str, door: ModelDoor, body: &[u8]) -> Explanation {
    let policy_name = if key_id == "anonymous" {
        None
    } else {
        match config.auth.keys.iter().find(|key| key.id == key_id) {
            Some(key) => key.policy.as_deref(),
            None => {
                return bad_input(format!(
                    "unknown key id {key_id:?}: no [[auth.keys]] entry has it (\"anonymous\" explains a request sent without a key)"
                ))
            }
        }
    };
    let policy = match CompiledPolicy::for_key(config, policy_name) {
        Ok(policy) => policy,
        Err(e) => return bad_input(e.to_string()),
    };
    let original = Bytes::copy_from_slice(body);
    let mut req = match door.parse(&original) {
        Ok(req) => req,
        Err(e) => return bad_input(format!("{} {e}", e.status().as_u16())),
    };
    let who = match policy.name() {
        Some(name) => format!("key {key_id:?} ([policy], then [policies.{name}])"),
        None => format!("key {key_id:?} ([policy])"),
    };

    match policy.apply(&mut req, door.spec().shape) {
        Ok(applied) => {
            let forwarded = req.to_body(&original);
            let how = if req.is_edited() {
                "rewritten by policy"
            } else {
                "unchanged, byte for byte"
            };
            let mut text = format!("forwarded for {who}, {how}:\n{}\n", pretty(&forwarded));
            write_rules(&mut text, &applied.actions);
            Explanation {
                exit_code: EXIT_FORWARDED,
                text,
            }
        }
        Err(refusal) => {
            let exit_code = match refusal.error {
                GatewayError::PolicyDenied(_) => EXIT_REFUSED,
                _ => EXIT_BAD_INPUT,
            };
            let verdict = if exit_code == EXIT_REFUSED {
                "refused"
            } else {
                "bad input"
            };
            let status = refusal.error.status().as_u16();
            let mut text = format!("{verdict} for {who}: {status} {}\n", refusal.error);
            write_rules(&mut text, &refusal.actions);
            Explanation { exit_code, text }
        }
    }
}

fn bad_input(message: String) -> Explanation {
    Explanation {
        exit_code: EXIT_BAD_INPUT,
        text: format!("bad input: {message}\n"),
    }
}

fn write_rules(text: &mut String, actions: &[Action]) {
    if actions.is_empty() {
        text.push_str("\nno rule changed it\n");
        return;
    }
    text.push_str("\nrules:\n");
    for action in actions {
        let _ = writeln!(text, "  [{}] {action}", action.outcome.as_str());
    }
}

/// The body as indented JSON, keys in their order.
fn pretty(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_toml;

    fn config(toml: &str) -> Config {
        let (config, problems) = parse_toml(toml);
        assert!(problems.is_empty(), "{problems:?}");
        config
    }

    const EXPLAIN_CONFIG: &str = r#"
    [[auth.keys]]
    id = "alice"
    hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
    policy = "strict"
    [policy]
    max_tokens = 1000
    [policies.strict]
    models.allow = ["openai/*"]
    "#;

    #[test]
    fn explain_shows_the_forwarded_body_and_the_rules() {
        let config = config(EXPLAIN_CONFIG);
        let out = explain(
            &config,
            "alice",
            ModelDoor::Chat,
            br#"{"model":"openai/gpt-4o","messages":[],"max_tokens":5000}"#,
        );
        assert_eq!(out.exit_code, EXIT_FORWARDED, "{}", out.text);
        assert!(out.text.contains("\"max_tokens\": 1000"), "{}", out.text);
        assert!(
            out.text
                .contains("[rewrite] max_tokens: 5000 capped to 1000 by policy.max_tokens"),
            "{}",
            out.text
        );

        let out = explain(
            &config,
            "anonymous",
            ModelDoor::Chat,
            br#"{"model":"openai/gpt-4o","messages":[],"max_tokens":10}"#,
        );
        assert_eq!(out.exit_code, 0);
        assert!(
            out.text.contains("unchanged, byte for byte"),
            "{}",
            out.text
        );
        assert!(out.text.contains("no rule changed it"), "{}", out.text);
    }

    #[test]
    fn explain_shows_a_refusal_and_exits_3() {
        let config = config(EXPLAIN_CONFIG);
        let out = explain(
            &config,
            "alice",
            ModelDoor::Chat,
            br#"{"model":"google/gemini","messages":[]}"#,
        );
        assert_eq!(out.exit_code, EXIT_REFUSED, "{}", out.text);
        assert!(
            out.text.contains(
                r#"403 model "google/gemini" is not allowed by policies.strict.models.allow"#
            ),
            "{}",
            out.text
        );
        assert!(
            out.text.contains(r#"[deny] model "google/gemini""#),
            "{}",
            out.text
        );
        // Anonymous has no named policy.
        assert_eq!(
            explain(
                &config,
                "anonymous",
                ModelDoor::Chat,
                br#"{"model":"google/gemini","messages":[]}"#
            )
            .exit_code,
            0
        );
    }

    #[test]
    fn explain_exits_1_on_bad_input() {
        let config = config(EXPLAIN_CONFIG);
        for (key, body) in [
            ("alice", &b"{not json"[..]),
            ("alice", br#"{"model":"openai/gpt-4o"}"#),
            (
                "alice",
                br#"{"model":"openai/gpt-4o","messages":[],"max_tokens":-1}"#,
            ),
            ("bob", br#"{"messages":[]}"#),
        ] {
            let out = explain(&config, key, ModelDoor::Chat, body);
            assert_eq!(out.exit_code, EXIT_BAD_INPUT, "{}", out.text);
        }
        assert!(explain(&config, "bob", ModelDoor::Chat, b"{}")
            .text
            .contains("unknown key id \"bob\""));
    }

    #[test]
    fn explain_says_the_thinking_budget_came_down_with_the_cap() {
        let config = config(EXPLAIN_CONFIG);
        let out = explain(
            &config,
            "alice",
            ModelDoor::Messages,
            br#"{"model":"openai/gpt-4o","max_tokens":32000,"thinking":{"type":"enabled","budget_tokens":31999},"messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(out.exit_code, EXIT_FORWARDED, "{}", out.text);
        assert!(out.text.contains("\"max_tokens\": 1000"), "{}", out.text);
        assert!(out.text.contains("thinking.budget_tokens"), "{}", out.text);
    }
}
