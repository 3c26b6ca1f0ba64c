//! `Usage::from_json` and `ResponseSummary::from_json`: never panic, agree on the usage, and
//! what they report is what the JSON says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgate::internals::{ResponseSummary, Usage};
use serde_json::Value;

fuzz_target!(|bytes: &[u8]| {
    let summary = ResponseSummary::from_json(bytes);
    assert_eq!(
        summary.usage,
        Usage::from_json(bytes),
        "one pass reads the same usage"
    );
    // Skipped fields are not decoded, so the body may still fail to parse as a `Value`; and
    // derived structs read arrays positionally (see below), so objects only.
    if let (Some(provider), Ok(Value::Object(object))) =
        (&summary.provider, serde_json::from_slice::<Value>(bytes))
    {
        let sent = object.get("provider").and_then(Value::as_str);
        assert_eq!(sent, Some(provider.as_ref()));
    }
    let Some(usage) = Usage::from_json(bytes) else {
        return;
    };
    assert_ne!(
        usage,
        Usage::default(),
        "an empty usage is reported as None"
    );
    let _ = usage.tokens();
    // It read JSON by the grammar (fields it skips, such as `choices`, are not decoded, so a
    // lone surrogate escape in them passes): an object carrying the fields, or carrying them
    // under `usage`.
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).expect("from_json accepted non-JSON");
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    // serde's derived structs also read a JSON array, field by field in declaration order
    // (`"completion_tokens_details": [1]` is `reasoning_tokens: 1`). Upstream never sends
    // arrays there and nothing breaks if one did, so the comparison covers objects only.
    let Value::Object(outer) = &value else {
        return;
    };
    let source = match outer.get("usage") {
        Some(Value::Object(nested)) => nested,
        Some(Value::Array(_)) => return,
        _ => outer,
    };
    let details = ["prompt_tokens_details", "completion_tokens_details"];
    if details
        .iter()
        .any(|d| source.get(*d).is_some_and(Value::is_array))
    {
        return;
    }
    let int = |key: &str| source.get(key).and_then(Value::as_u64);
    let detail = |key: &str, field: &str| {
        source
            .get(key)
            .and_then(|d| d.get(field))
            .and_then(Value::as_u64)
    };
    assert_eq!(usage.prompt_tokens, int("prompt_tokens"));
    assert_eq!(usage.completion_tokens, int("completion_tokens"));
    assert_eq!(usage.total_tokens, int("total_tokens"));
    assert_eq!(usage.cost, source.get("cost").and_then(Value::as_f64));
    assert_eq!(
        usage.cached_tokens,
        detail("prompt_tokens_details", "cached_tokens")
    );
    assert_eq!(
        usage.reasoning_tokens,
        detail("completion_tokens_details", "reasoning_tokens")
    );
    if let Some(total) = usage.total_tokens {
        assert_eq!(usage.tokens(), total);
    }
});
