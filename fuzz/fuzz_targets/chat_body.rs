//! The chat body through parse → policy → forwarded bytes, under a set of real policies.
//!
//! - an untouched body is forwarded as the very bytes sent;
//! - whenever a policy lets a body through, the forwarded body is valid JSON that the gateway
//!   itself would parse again (an object, no duplicate keys, `messages` an array), with
//!   `messages` byte for byte and the surviving keys in their original order;
//! - a body the policy forwarded unedited is the original bytes;
//! - the forwarded body passes the same policy again, unchanged;
//! - the pieces a large body is sent in join into the forwarded body.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use orgate::internals::RequestBody;
use orgate::config::parse_toml;
use orgate::internals::{CompiledPolicy, RequestShape};

/// `[policy]` (and a named policy layered on it) in the shapes the tests and docs use.
const POLICIES: &[(&str, Option<&str>)] = &[
    ("", None),
    (
        r#"[policy]
models.allow = ["openai/*", "anthropic/*", "openrouter/auto"]
models.deny = ["*:free", "openai/o1*"]
aliases = { "gpt-4o" = "openai/gpt-4o", "claude" = "anthropic/claude-sonnet-4", fast = "openai/gpt-4o-mini" }
max_tokens = 1000
deny_plugins = ["web"]"#,
        None,
    ),
    (
        r#"[policy.provider]
data_collection = "deny"
zdr = true
enforce_distillable_text = true
require_parameters = true
ignore = ["DeepInfra", "together", "deepinfra/turbo"]
only = ["OpenAI", "Azure", "anthropic"]
quantizations = ["fp8", "fp16", "bf16"]
order = ["openai"]
sort = "price"
allow_fallbacks = false
max_price = { prompt = 5, completion = 15.5, request = 0.01 }
preferred_min_throughput = 50
preferred_max_latency = { p50 = 2, p90 = 5 }"#,
        None,
    ),
    (
        r#"[policy.provider.force]
order = ["azure", "openai"]
sort = { by = "price", partition = "model" }
allow_fallbacks = false"#,
        None,
    ),
    (
        r#"[policy]
models.allow = ["openai/*", "anthropic/*", "google/*"]
max_tokens = 4096
[policy.provider]
ignore = ["OpenAI"]
max_price = { prompt = 10 }
[policies.strict]
models.allow = ["openai/*", "google/*"]
models.deny = ["*:free", "*:online"]
aliases = { fast = "openai/gpt-4o-mini" }
max_tokens = 256
deny_plugins = ["web", "file-parser"]
[policies.strict.provider]
zdr = true
only = ["azure", "google-vertex"]
quantizations = ["fp16"]
preferred_min_throughput = { p90 = 20 }
[policies.strict.provider.force]
sort = "throughput""#,
        Some("strict"),
    ),
];

fn policies() -> &'static [CompiledPolicy] {
    static COMPILED: OnceLock<Vec<CompiledPolicy>> = OnceLock::new();
    COMPILED.get_or_init(|| {
        POLICIES
            .iter()
            .map(|(toml, named)| {
                let (config, problems) = parse_toml(toml);
                assert!(problems.is_empty(), "{problems:?}");
                CompiledPolicy::for_key(&config, *named).expect("the policy compiles")
            })
            .collect()
    })
}

fn keys(req: &RequestBody<'_>) -> Vec<String> {
    req.keys().map(str::to_owned).collect()
}

fn messages(req: &RequestBody<'_>) -> String {
    req.get("messages").expect("messages").to_owned()
}

fuzz_target!(|bytes: &[u8]| {
    let original = Bytes::copy_from_slice(bytes);
    let Ok(req) = RequestBody::parse_chat(&original) else {
        return;
    };
    assert!(!req.is_edited());
    assert_eq!(req.to_body(&original), original, "untouched body changed");
    let original_keys = keys(&req);
    let original_messages = messages(&req);
    let original_is_tree = serde_json::from_slice::<serde_json::Value>(bytes).is_ok();
    // The reads a handler does must not panic either.
    let _ = req.model();
    let _ = req.stream();

    for policy in policies() {
        let mut req = RequestBody::parse_chat(&original).expect("parsed once already");
        let Ok(_applied) = policy.apply(&mut req, RequestShape::CHAT) else {
            continue;
        };
        let body = req.to_body(&original);
        // The pieces a large body is sent in join into that very body, whatever is shared.
        for shared_from in [0, 16] {
            let joined = req.to_pieces(&original, shared_from).concat();
            assert_eq!(joined, body.to_vec(), "pieces (shared from {shared_from}) differ");
        }
        if !req.is_edited() {
            assert_eq!(body, original, "an unedited body was not forwarded as sent");
            continue;
        }
        // JSON by the grammar (what the gateway itself accepts: escapes such as lone surrogates
        // are the client's, passed through as sent), and a valid tree whenever the client's was.
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
            panic!(
                "forwarded body is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            );
        }
        if original_is_tree {
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!(
                    "forwarded body is not a JSON tree ({e}): {}",
                    String::from_utf8_lossy(&body)
                )
            });
            assert!(value.is_object());
        }
        let again = RequestBody::parse_chat(&body).unwrap_or_else(|e| {
            panic!(
                "forwarded body does not parse again ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        assert_eq!(
            messages(&again),
            original_messages,
            "`messages` was not forwarded byte for byte"
        );
        // Keys that survived keep their relative order; new keys come after them.
        let forwarded_keys = keys(&again);
        let kept: Vec<&String> = forwarded_keys
            .iter()
            .filter(|k| original_keys.contains(k))
            .collect();
        let expected: Vec<&String> = original_keys
            .iter()
            .filter(|k| forwarded_keys.contains(k))
            .collect();
        assert_eq!(kept, expected, "key order changed");
        assert_eq!(
            &forwarded_keys[..kept.len()],
            &kept.iter().map(|k| (*k).clone()).collect::<Vec<_>>()[..],
            "a new key came before an original one"
        );

        // What the policy forwarded, it forwards again as it is.
        let mut again = again;
        match policy.apply(&mut again, RequestShape::CHAT) {
            Ok(_) => {
                assert_eq!(
                    again.to_body(&body),
                    body,
                    "the policy is not idempotent on its own output"
                );
            }
            Err(refusal) => panic!(
                "the policy refuses its own output ({}): {}",
                refusal.error,
                String::from_utf8_lossy(&body)
            ),
        }
    }
});
