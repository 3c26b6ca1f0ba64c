//! Unit tests: every row of the "never looser" table, aliases, caps, plugins, side doors, wrong
//! types, named layering (explain's are in `crate::explain`). The property tests live in `provider_props.rs`.

use bytes::Bytes;
use serde_json::{json, Value};

use super::action::Outcome;
use super::*;
use crate::config::parse_toml;

mod provider_props;

/// A config from TOML; panics on problems so a typo in a test is loud.
fn config(toml: &str) -> Config {
    let (config, problems) = parse_toml(toml);
    assert!(problems.is_empty(), "{problems:?}");
    config
}

/// `[policy]` (and `[policies.*]`) from TOML; `named` picks the layered policy.
fn policy_named(toml: &str, named: Option<&str>) -> CompiledPolicy {
    CompiledPolicy::for_key(&config(toml), named).unwrap()
}

fn policy(toml: &str) -> CompiledPolicy {
    policy_named(toml, None)
}

/// Applies `policy` to `body` as chat reads it: the outcome, and the body that would be
/// forwarded.
fn run(policy: &CompiledPolicy, body: &Value) -> (Result<Applied, Refusal>, Value) {
    run_as(policy, body, RequestShape::CHAT)
}

/// [`run`], for a door of another `shape`.
fn run_as(
    policy: &CompiledPolicy,
    body: &Value,
    shape: RequestShape,
) -> (Result<Applied, Refusal>, Value) {
    let text = Bytes::from(serde_json::to_vec(body).unwrap());
    let mut req = RequestBody::parse(&text).unwrap();
    let outcome = policy.apply(&mut req, shape);
    let forwarded = serde_json::from_slice(&req.to_body(&text)).unwrap();
    (outcome, forwarded)
}

fn forwarded(policy: &CompiledPolicy, body: Value) -> (Applied, Value) {
    let (outcome, out) = run(policy, &body);
    (
        outcome.unwrap_or_else(|r| panic!("refused: {} {:?}", r.error, r.actions)),
        out,
    )
}

fn refused(policy: &CompiledPolicy, body: Value) -> Refusal {
    match run(policy, &body).0 {
        Ok(applied) => panic!("forwarded: {applied:?}"),
        Err(refusal) => refusal,
    }
}

/// The 403 message, asserting it is a 403.
fn denied(policy: &CompiledPolicy, body: Value) -> String {
    let refusal = refused(policy, body);
    assert!(
        matches!(refusal.error, GatewayError::PolicyDenied(_)),
        "{:?}",
        refusal.error
    );
    let last = refusal
        .actions
        .last()
        .expect("the refusing rule is recorded");
    assert_eq!(last.outcome, Outcome::Deny);
    assert_eq!(last.to_string(), refusal.error.to_string());
    refusal.error.to_string()
}

/// The 400 message, asserting it is a 400.
fn bad_request(policy: &CompiledPolicy, body: Value) -> String {
    let refusal = refused(policy, body);
    assert!(
        matches!(refusal.error, GatewayError::BadRequest(_)),
        "{:?}",
        refusal.error
    );
    refusal.error.to_string()
}

fn lines(applied: &Applied) -> Vec<String> {
    applied.actions.iter().map(ToString::to_string).collect()
}

fn chat(extra: Value) -> Value {
    let mut body =
        json!({ "model": "openai/gpt-4o", "messages": [{ "role": "user", "content": "hi" }] });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

// === an empty policy ===

#[test]
fn an_empty_policy_forwards_the_very_bytes() {
    let policy = policy("");
    let text = br#"{"model":"x/y:free","messages":[{"role":"user","content":"h\u00e9"}],"provider":{"only":["a"],"zz":1},"max_tokens":99999,"plugins":[{"id":"web"}]}"#;
    let original = Bytes::from_static(text);
    let mut req = RequestBody::parse(&original).unwrap();
    let applied = policy.apply(&mut req, RequestShape::CHAT).unwrap();
    assert!(applied.actions.is_empty());
    assert!(!req.is_edited());
    assert_eq!(req.to_body(&original), original);
}

#[test]
fn messages_stay_byte_for_byte_when_other_fields_change() {
    let policy = policy("[policy]\nmax_tokens = 10\naliases = { fast = \"openai/gpt-4o-mini\" }");
    let text = br#"{"model":"fast","messages":[{"role":"user","content":"h\u00e9 \ud83d\ude00  1.0e2"}],"max_tokens":50}"#;
    let original = Bytes::from_static(text);
    let mut req = RequestBody::parse(&original).unwrap();
    policy.apply(&mut req, RequestShape::CHAT).unwrap();
    assert_eq!(
        req.to_body(&original),
        &br#"{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"h\u00e9 \ud83d\ude00  1.0e2"}],"max_tokens":10}"#[..]
    );
}

// === aliases and model rules ===

#[test]
fn aliases_rewrite_model_and_models_before_the_rules() {
    let policy = policy(
        r#"[policy]
models.allow = ["openai/*", "anthropic/*"]
aliases = { "gpt-4o" = "openai/gpt-4o", "claude" = "anthropic/claude-sonnet-4" }"#,
    );
    let (applied, out) = forwarded(
        &policy,
        chat(json!({ "model": "gpt-4o", "models": ["claude", "openai/o3"] })),
    );
    assert_eq!(out["model"], "openai/gpt-4o");
    assert_eq!(
        out["models"],
        json!(["anthropic/claude-sonnet-4", "openai/o3"])
    );
    assert_eq!(
        lines(&applied),
        [
            r#"model: alias "gpt-4o" → "openai/gpt-4o" (policy.aliases)"#,
            r#"models[0]: alias "claude" → "anthropic/claude-sonnet-4" (policy.aliases)"#,
        ]
    );
    assert_eq!(applied.model.as_deref(), Some("openai/gpt-4o"));
    // An alias can point at a denied model: the rules see the target.
    let err = denied(&policy, chat(json!({ "model": "x-ai/grok" })));
    assert_eq!(
        err,
        r#"model "x-ai/grok" is not allowed by policy.models.allow"#
    );
}

#[test]
fn a_named_alias_overrides_the_orgs() {
    let toml = r#"[policy]
aliases = { fast = "openai/gpt-4o-mini" }
[policies.team]
aliases = { fast = "anthropic/claude-haiku" }"#;
    let (applied, out) = forwarded(
        &policy_named(toml, Some("team")),
        chat(json!({ "model": "fast" })),
    );
    assert_eq!(out["model"], "anthropic/claude-haiku");
    assert_eq!(&*applied.actions[0].rule, "policies.team.aliases");
    let (_, out) = forwarded(&policy(toml), chat(json!({ "model": "fast" })));
    assert_eq!(out["model"], "openai/gpt-4o-mini");
}

#[test]
fn a_denied_model_names_the_model_and_the_rule() {
    let policy = policy("[policy]\nmodels.deny = [\"*:free\"]");
    let err = denied(&policy, chat(json!({ "model": "x/y:free" })));
    assert_eq!(
        err,
        r#"model "x/y:free" is denied by policy.models.deny "*:free""#
    );
    // `*` crosses `/`, and case does not matter.
    denied(&policy, chat(json!({ "model": "Meta-Llama/Llama-3:FREE" })));
    forwarded(&policy, chat(json!({ "model": "meta-llama/llama-3" })));
}

#[test]
fn every_entry_of_models_is_checked() {
    let policy = policy("[policy]\nmodels.allow = [\"openai/*\"]");
    let err = denied(
        &policy,
        chat(json!({ "models": ["openai/o3", "google/gemini-2.5-pro"] })),
    );
    assert_eq!(
        err,
        r#"model "google/gemini-2.5-pro" is not allowed by policy.models.allow"#
    );
}

#[test]
fn variants_are_part_of_the_id() {
    let policy = policy("[policy]\nmodels.allow = [\"openai/gpt-4o\"]");
    denied(&policy, chat(json!({ "model": "openai/gpt-4o:nitro" })));
    let policy = super::tests::policy("[policy]\nmodels.allow = [\"openai/gpt-4o*\"]");
    forwarded(&policy, chat(json!({ "model": "openai/gpt-4o:floor" })));
}

#[test]
fn a_named_policy_must_pass_both_allow_lists_and_either_deny_list() {
    let toml = r#"[policy]
models.allow = ["openai/*", "anthropic/*"]
models.deny = ["openai/o1*"]
[policies.strict]
models.allow = ["openai/*", "google/*"]
models.deny = ["*:free"]"#;
    let strict = policy_named(toml, Some("strict"));
    forwarded(&strict, chat(json!({ "model": "openai/gpt-4o" })));
    assert_eq!(
        denied(&strict, chat(json!({ "model": "anthropic/claude" }))),
        r#"model "anthropic/claude" is not allowed by policies.strict.models.allow"#
    );
    assert_eq!(
        denied(&strict, chat(json!({ "model": "google/gemini" }))),
        r#"model "google/gemini" is not allowed by policy.models.allow"#
    );
    assert_eq!(
        denied(&strict, chat(json!({ "model": "openai/gpt-4o:free" }))),
        r#"model "openai/gpt-4o:free" is denied by policies.strict.models.deny "*:free""#
    );
    assert_eq!(
        denied(&strict, chat(json!({ "model": "openai/o1-pro" }))),
        r#"model "openai/o1-pro" is denied by policy.models.deny "openai/o1*""#
    );
}

#[test]
fn router_models_need_a_literal_allow_unless_models_are_unrestricted() {
    forwarded(&policy(""), chat(json!({ "model": "openrouter/auto" })));
    let globbed = policy("[policy]\nmodels.allow = [\"openai/*\", \"openrouter/*\"]");
    let err = denied(&globbed, chat(json!({ "model": "openrouter/auto" })));
    assert!(
        err.starts_with(r#"model "openrouter/auto" is a router"#),
        "{err}"
    );
    assert!(
        err.contains("policy.models.allow names it literally"),
        "{err}"
    );
    let literal = policy("[policy]\nmodels.allow = [\"openai/*\", \"openrouter/auto\"]");
    forwarded(&literal, chat(json!({ "model": "openrouter/auto" })));
    denied(&literal, chat(json!({ "model": "openrouter/free" })));
    // `*` with a deny list still restricts: a router could pick a denied model.
    let denying = policy("[policy]\nmodels.deny = [\"*:free\"]");
    denied(&denying, chat(json!({ "model": "openrouter/free" })));
}

#[test]
fn no_model_means_the_account_default_which_a_restricted_policy_refuses() {
    let body = json!({ "messages": [] });
    forwarded(&policy(""), body.clone());
    let err = denied(&policy("[policy]\nmodels.allow = [\"openai/*\"]"), body);
    assert!(err.contains("account's default model"), "{err}");
}

#[test]
fn model_fields_of_the_wrong_type_are_400s() {
    let policy = policy("");
    assert_eq!(
        bad_request(&policy, chat(json!({ "model": 4 }))),
        "`model` must be a string, found a number"
    );
    assert_eq!(
        bad_request(&policy, chat(json!({ "models": "openai/o3" }))),
        "`models` must be an array of strings, found a string"
    );
    assert_eq!(
        bad_request(&policy, chat(json!({ "models": ["a/b", {}] }))),
        "`models[1]` must be a string, found an object"
    );
}

// === max_tokens ===

const MESSAGES: RequestShape = RequestShape {
    fallback_models: true,
    cap: Cap::Messages,
};

#[test]
fn reasoning_max_tokens_is_capped_with_max_tokens() {
    let policy = policy("[policy]\nmax_tokens = 4096");
    let (applied, out) = forwarded(
        &policy,
        chat(json!({ "max_tokens": 100, "reasoning": { "max_tokens": 9000 } })),
    );
    assert_eq!(out["reasoning"]["max_tokens"], 4096);
    assert_eq!(
        lines(&applied),
        ["reasoning.max_tokens: 9000 capped to 4096 by policy.max_tokens"]
    );
    assert_eq!(
        refused(&policy, chat(json!({ "reasoning": "high" })))
            .error
            .to_string(),
        "`reasoning` must be an object, found a string"
    );
}

#[test]
fn model_ids_with_whitespace_or_controls_are_refused_naming_the_field() {
    let policy = policy("[policy]\nmodels.deny = [\"*:free\"]");
    for (body, path) in [
        (json!({ "model": "meta/llama:free " }), "model"),
        (json!({ "model": "meta/llama:free\u{0}" }), "model"),
        (
            json!({ "model": "openai/gpt-4o", "models": ["a/b", "c/d\t"] }),
            "models[1]",
        ),
    ] {
        let refusal = refused(&policy, body);
        assert!(matches!(refusal.error, GatewayError::BadRequest(_)));
        let message = refusal.error.to_string();
        assert!(
            message.starts_with(&format!("`{path}` must be a model id")),
            "{message}"
        );
    }
    let (outcome, _) = run_as(
        &policy,
        &json!({ "model": "openai/gpt-4o", "fallbacks": [{ "model": "x/y\u{a0}" }] }),
        MESSAGES,
    );
    let message = outcome.unwrap_err().error.to_string();
    assert!(
        message.starts_with("`fallbacks[0].model` must be a model id"),
        "{message}"
    );
}

/// A Messages body as Claude Code sends it: 32000 tokens, thinking on with 31999 of them.
fn claude_code() -> Value {
    json!({
        "model": "anthropic/claude-sonnet-4", "max_tokens": 32000,
        "thinking": { "type": "enabled", "budget_tokens": 31999 },
        "messages": [{ "role": "user", "content": "hi" }],
    })
}

#[test]
fn a_capped_messages_request_keeps_its_thinking_budget_under_max_tokens() {
    let (outcome, out) = run_as(
        &policy("[policy]\nmax_tokens = 4096"),
        &claude_code(),
        MESSAGES,
    );
    let applied = outcome.unwrap();
    assert_eq!(out["max_tokens"], 4096);
    assert_eq!(
        out["thinking"],
        json!({ "type": "enabled", "budget_tokens": 4095 })
    );
    assert_eq!(
        lines(&applied),
        [
            "max_tokens: 32000 capped to 4096 by policy.max_tokens",
            "thinking.budget_tokens: 31999 lowered to 4095, under max_tokens 4096 (policy.max_tokens)"
        ]
    );
    // A budget already under the cap is left alone.
    let mut small = claude_code();
    small["thinking"]["budget_tokens"] = json!(2000);
    let (_, out) = run_as(&policy("[policy]\nmax_tokens = 4096"), &small, MESSAGES);
    assert_eq!(out["thinking"]["budget_tokens"], 2000);
    // Under Anthropic's smallest budget, thinking is turned off rather than refused upstream.
    let (_, out) = run_as(
        &policy("[policy]\nmax_tokens = 1000"),
        &claude_code(),
        MESSAGES,
    );
    assert_eq!(out["thinking"], json!({ "type": "disabled" }));
    // Chat has no thinking budget to keep: the field is not read there.
    let (_, out) = run(&policy("[policy]\nmax_tokens = 4096"), &claude_code());
    assert_eq!(out["thinking"]["budget_tokens"], 31999);
}

#[test]
fn max_tokens_is_capped_and_explained() {
    let policy = policy("[policy]\nmax_tokens = 4096");
    let (applied, out) = forwarded(
        &policy,
        chat(json!({ "max_tokens": 8000, "max_completion_tokens": 9000 })),
    );
    assert_eq!(
        (
            out["max_tokens"].clone(),
            out["max_completion_tokens"].clone()
        ),
        (json!(4096), json!(4096))
    );
    assert_eq!(
        lines(&applied),
        [
            "max_tokens: 8000 capped to 4096 by policy.max_tokens",
            "max_completion_tokens: 9000 capped to 4096 by policy.max_tokens"
        ]
    );
}

#[test]
fn a_missing_max_tokens_is_set_to_the_ceiling() {
    let policy = policy("[policy]\nmax_tokens = 4096");
    let (applied, out) = forwarded(&policy, chat(json!({})));
    assert_eq!(out["max_tokens"], 4096);
    assert_eq!(
        lines(&applied),
        ["max_tokens: unset → 4096 by policy.max_tokens"]
    );
    // Only max_completion_tokens: capped, and no max_tokens added.
    let (_, out) = forwarded(&policy, chat(json!({ "max_completion_tokens": 5000 })));
    assert_eq!(out["max_completion_tokens"], 4096);
    assert!(out.get("max_tokens").is_none());
    // Already under the ceiling: untouched.
    let (applied, out) = forwarded(&policy, chat(json!({ "max_completion_tokens": 100 })));
    assert!(applied.actions.is_empty());
    assert!(out.get("max_tokens").is_none());
}

#[test]
fn the_lower_non_zero_max_tokens_of_the_layers_wins() {
    let toml = "[policy]\nmax_tokens = 4096\n[policies.a]\nmax_tokens = 1000\n[policies.b]\nmax_tokens = 0\n[policies.c]\nmax_tokens = 9000";
    let (applied, _) = forwarded(
        &policy_named(toml, Some("a")),
        chat(json!({ "max_tokens": 2000 })),
    );
    assert_eq!(
        lines(&applied),
        ["max_tokens: 2000 capped to 1000 by policies.a.max_tokens"]
    );
    for name in ["b", "c"] {
        let (applied, _) = forwarded(
            &policy_named(toml, Some(name)),
            chat(json!({ "max_tokens": 5000 })),
        );
        assert_eq!(&*applied.actions[0].rule, "policy.max_tokens");
    }
    let only_named = "[policies.a]\nmax_tokens = 500";
    let (_, out) = forwarded(&policy_named(only_named, Some("a")), chat(json!({})));
    assert_eq!(out["max_tokens"], 500);
}

#[test]
fn max_tokens_of_the_wrong_type_is_a_400() {
    let policy = policy("[policy]\nmax_tokens = 10");
    assert_eq!(
        bad_request(&policy, chat(json!({ "max_tokens": -5 }))),
        "`max_tokens` must be a non-negative integer, found -5"
    );
    assert_eq!(
        bad_request(&policy, chat(json!({ "max_completion_tokens": 1.5 }))),
        "`max_completion_tokens` must be a non-negative integer, found 1.5"
    );
    assert_eq!(
        bad_request(&policy, chat(json!({ "max_tokens": "100" }))),
        "`max_tokens` must be a non-negative integer, found a string"
    );
    // null reads as absent.
    let (_, out) = forwarded(&policy, chat(json!({ "max_tokens": null })));
    assert_eq!(out["max_tokens"], 10);
}

// === plugins and side doors ===

#[test]
fn a_denied_plugin_is_refused_unless_disabled() {
    let policy = policy("[policy]\ndeny_plugins = [\"web\", \"file-parser\"]");
    assert_eq!(
        denied(
            &policy,
            chat(
                json!({ "plugins": [{ "id": "response-healing" }, { "id": "web", "max_results": 3 }] })
            )
        ),
        r#"plugin "web" is denied by policy.deny_plugins"#
    );
    denied(
        &policy,
        chat(json!({ "plugins": [{ "id": "file-parser", "pdf": {} }] })),
    );
    let (applied, _) = forwarded(
        &policy,
        chat(json!({ "plugins": [{ "id": "web", "enabled": false }] })),
    );
    assert!(applied.actions.is_empty());
}

#[test]
fn the_web_plugin_has_other_doors() {
    let policy = policy("[policy]\ndeny_plugins = [\"web\"]");
    let err = denied(&policy, chat(json!({ "model": "openai/gpt-4o:online" })));
    assert_eq!(
        err,
        r#"model "openai/gpt-4o:online" uses the web plugin (the ":online" variant), which policy.deny_plugins denies"#
    );
    denied(
        &policy,
        chat(json!({ "models": ["openai/gpt-4o", "x/y:free:online"] })),
    );
    for kind in ["openrouter:web_search", "web_search_preview"] {
        let err = denied(
            &policy,
            chat(json!({ "tools": [{ "type": "function", "function": {} }, { "type": kind }] })),
        );
        assert!(err.starts_with("`tools[1]`"), "{err}");
    }
    denied(
        &policy,
        chat(json!({ "web_search_options": { "search_context_size": "low" } })),
    );
    // Other server tools and function tools pass.
    forwarded(
        &policy,
        chat(json!({ "tools": [{ "type": "openrouter:datetime" }, { "type": "function" }] })),
    );
    // Without the web rule, all of that passes.
    forwarded(
        &super::tests::policy(""),
        chat(
            json!({ "model": "openai/gpt-4o:online", "tools": [{ "type": "openrouter:web_search" }] }),
        ),
    );
}

#[test]
fn model_picking_plugins_are_refused_while_models_are_restricted() {
    let body = chat(json!({ "plugins": [{ "id": "auto-router", "allowed_models": ["*"] }] }));
    forwarded(&policy(""), body.clone());
    let restricted = policy("[policy]\nmodels.allow = [\"openai/*\"]");
    let err = denied(&restricted, body);
    assert!(
        err.starts_with(
            r#"plugin "auto-router" picks models itself, which policy.models.allow cannot check"#
        ),
        "{err}"
    );
    for id in ["pareto-router", "fusion", "auto-beta-router"] {
        denied(&restricted, chat(json!({ "plugins": [{ "id": id }] })));
    }
    denied(
        &policy("[policy]\nmodels.deny = [\"*:free\"]"),
        chat(json!({ "plugins": [{ "id": "fusion" }] })),
    );
    forwarded(
        &restricted,
        chat(json!({ "plugins": [{ "id": "auto-router", "enabled": false }] })),
    );
}

#[test]
fn deny_plugins_of_the_layers_are_joined() {
    let toml = "[policy]\ndeny_plugins = [\"web\"]\n[policies.x]\ndeny_plugins = [\"file-parser\"]";
    let x = policy_named(toml, Some("x"));
    denied(&x, chat(json!({ "plugins": [{ "id": "web" }] })));
    assert_eq!(
        denied(&x, chat(json!({ "plugins": [{ "id": "file-parser" }] }))),
        r#"plugin "file-parser" is denied by policies.x.deny_plugins"#
    );
}

#[test]
fn plugin_fields_of_the_wrong_type_are_400s() {
    let policy = policy("[policy]\ndeny_plugins = [\"web\"]");
    assert_eq!(
        bad_request(&policy, chat(json!({ "plugins": {} }))),
        "`plugins` must be an array, found an object"
    );
    assert_eq!(
        bad_request(&policy, chat(json!({ "plugins": ["web"] }))),
        "`plugins[0]` must be an object, found a string"
    );
    assert_eq!(
        bad_request(&policy, chat(json!({ "plugins": [{ "id": 1 }] }))),
        "`plugins[0].id` must be a string, found a number"
    );
    assert_eq!(
        bad_request(&policy, chat(json!({ "tools": "web" }))),
        "`tools` must be an array, found a string"
    );
}

// === routing knobs outside `provider` ===

#[test]
fn tier_service_tiers_are_refused_while_only_is_bound() {
    let only = policy("[policy.provider]\nonly = [\"OpenAI\"]");
    let err = denied(&only, chat(json!({ "service_tier": "priority" })));
    assert!(
        err.starts_with(r#"`service_tier` "priority" routes to service-tier endpoints"#),
        "{err}"
    );
    assert!(err.contains("policy.provider.only"), "{err}");
    denied(&only, chat(json!({ "service_tier": "flex" })));
    denied(&only, chat(json!({ "model": "openai/gpt-4o:nitro" })));
    forwarded(&only, chat(json!({ "service_tier": "auto" })));
    forwarded(&policy(""), chat(json!({ "service_tier": "priority" })));
}

#[test]
fn ignored_providers_also_lose_their_tier_endpoints_when_a_request_can_reach_them() {
    let ignore = policy("[policy.provider]\nignore = [\"OpenAI\", \"deepinfra/turbo\"]");
    let (_, out) = forwarded(&ignore, chat(json!({ "service_tier": "fast" })));
    assert_eq!(
        out["provider"]["ignore"],
        json!([
            "OpenAI",
            "deepinfra/turbo",
            "openai/priority",
            "openai/flex"
        ])
    );
    let (_, out) = forwarded(&ignore, chat(json!({})));
    assert_eq!(
        out["provider"]["ignore"],
        json!(["OpenAI", "deepinfra/turbo"])
    );
}

#[test]
fn a_route_that_contradicts_a_forced_partition_is_removed() {
    let forced =
        policy("[policy.provider.force]\nsort = { by = \"price\", partition = \"model\" }");
    let (applied, out) = forwarded(&forced, chat(json!({ "route": "sort" })));
    assert!(out.get("route").is_none());
    assert_eq!(
        out["provider"]["sort"],
        json!({ "by": "price", "partition": "model" })
    );
    assert!(
        lines(&applied)
            .iter()
            .any(|l| l.starts_with(r#"route: "sort" removed"#)),
        "{applied:?}"
    );
    let (_, out) = forwarded(&forced, chat(json!({ "route": "fallback" })));
    assert_eq!(out["route"], "fallback");
    let (_, out) = forwarded(
        &policy("[policy.provider]\nsort = \"price\""),
        chat(json!({ "route": "sort" })),
    );
    assert_eq!(out["route"], "sort");
}

// === the provider table, row by row ===

fn provider_of(policy: &CompiledPolicy, client: Value) -> (Applied, Value) {
    let (applied, out) = forwarded(policy, chat(json!({ "provider": client })));
    (applied, out["provider"].clone())
}

#[test]
fn ignore_is_the_union() {
    let policy = policy("[policy.provider]\nignore = [\"DeepInfra\", \"together\"]");
    let (applied, out) = provider_of(&policy, json!({ "ignore": ["Together", "azure"] }));
    assert_eq!(out["ignore"], json!(["Together", "azure", "DeepInfra"]));
    assert_eq!(
        lines(&applied),
        [
            r#"provider.ignore: ["Together","azure"] ∪ policy.provider.ignore ["DeepInfra","together"] → ["Together","azure","DeepInfra"]"#
        ]
    );
}

#[test]
fn only_is_the_intersection_in_the_clients_spelling() {
    let policy = policy("[policy.provider]\nonly = [\"OpenAI\", \"Azure\"]");
    let (applied, out) = provider_of(&policy, json!({ "only": ["Azure", "Together"] }));
    assert_eq!(out["only"], json!(["Azure"]));
    assert_eq!(
        lines(&applied),
        [
            r#"provider.only: ["Azure","Together"] ∩ policy.provider.only ["OpenAI","Azure"] → ["Azure"]"#
        ]
    );
    assert_eq!(*applied.only, ["azure"]);
    let (applied, out) = provider_of(&policy, json!({ "only": ["azure"] }));
    assert_eq!(out["only"], json!(["azure"]));
    assert!(applied.actions.is_empty());
}

#[test]
fn only_set_by_the_policy_alone_is_the_policys() {
    let policy = policy("[policy.provider]\nonly = [\"OpenAI\", \"Azure\"]");
    for client in [json!({}), json!({ "only": [] }), json!({ "only": null })] {
        let (_, out) = provider_of(&policy, client);
        assert_eq!(out["only"], json!(["OpenAI", "Azure"]));
    }
    // No `provider` at all: the policy still applies.
    let (applied, out) = forwarded(&policy, chat(json!({})));
    assert_eq!(out["provider"], json!({ "only": ["OpenAI", "Azure"] }));
    assert_eq!(
        lines(&applied),
        [r#"provider.only: unset → ["OpenAI","Azure"] by policy.provider.only"#]
    );
}

#[test]
fn an_empty_intersection_is_a_403_naming_the_field() {
    let policy =
        policy("[policy.provider]\nonly = [\"OpenAI\", \"Azure\"]\nquantizations = [\"fp8\"]");
    assert_eq!(
        denied(
            &policy,
            chat(json!({ "provider": { "only": ["Together"] } }))
        ),
        r#"`provider.only` ["Together"] has no provider in common with policy.provider.only ["OpenAI","Azure"]"#
    );
    assert_eq!(
        denied(
            &policy,
            chat(json!({ "provider": { "quantizations": ["bf16"] } }))
        ),
        r#"`provider.quantizations` ["bf16"] has no quantization in common with policy.provider.quantizations ["fp8"]"#
    );
}

#[test]
fn quantizations_are_intersected_with_families() {
    let policy = policy("[policy.provider]\nquantizations = [\"fp8\", \"bf16\"]");
    let (_, out) = provider_of(
        &policy,
        json!({ "quantizations": ["mxfp8", "int4", "BF16"] }),
    );
    assert_eq!(out["quantizations"], json!(["mxfp8", "BF16"]));
    let (_, out) = provider_of(&policy, json!({}));
    assert_eq!(out["quantizations"], json!(["fp8", "bf16"]));
}

#[test]
fn data_collection_deny_wins() {
    let deny = policy("[policy.provider]\ndata_collection = \"deny\"");
    let (applied, out) = provider_of(&deny, json!({ "data_collection": "allow" }));
    assert_eq!(out["data_collection"], "deny");
    assert_eq!(
        lines(&applied),
        [r#"provider.data_collection: "allow" → "deny" by policy.provider.data_collection"#]
    );
    let (applied, _) = provider_of(&deny, json!({ "data_collection": "deny" }));
    assert!(applied.actions.is_empty());
    // A policy that allows leaves a client's deny (and no provider) alone.
    let allow = policy("[policy.provider]\ndata_collection = \"allow\"");
    let (_, out) = provider_of(&allow, json!({ "data_collection": "deny" }));
    assert_eq!(out["data_collection"], "deny");
    let (_, out) = forwarded(&allow, chat(json!({})));
    assert!(out.get("provider").is_none());
}

#[test]
fn required_flags_true_wins() {
    let policy = policy(
        "[policy.provider]\nzdr = true\nrequire_parameters = true\nenforce_distillable_text = true",
    );
    let (applied, out) = provider_of(&policy, json!({ "zdr": false, "require_parameters": true }));
    assert_eq!(
        out,
        json!({ "zdr": true, "require_parameters": true, "enforce_distillable_text": true })
    );
    assert_eq!(
        lines(&applied),
        [
            "provider.zdr: false → true by policy.provider.zdr",
            "provider.enforce_distillable_text: unset → true by policy.provider.enforce_distillable_text"
        ]
    );
    // `false` in the policy binds nothing.
    let loose = super::tests::policy("[policy.provider]\nzdr = false");
    let (_, out) = forwarded(&loose, chat(json!({})));
    assert!(out.get("provider").is_none());
}

#[test]
fn each_max_price_is_the_lower() {
    let policy =
        policy("[policy.provider]\nmax_price = { prompt = 5, completion = 15, request = 0.5 }");
    let (applied, out) = provider_of(
        &policy,
        json!({ "max_price": { "completion": "1.5", "prompt": 10, "image": 3 } }),
    );
    // The client's lower completion stays a string; the policy's prompt is written as a number.
    assert_eq!(
        out["max_price"],
        json!({ "completion": "1.5", "prompt": 5, "image": 3, "request": 0.5 })
    );
    assert_eq!(
        lines(&applied),
        [
            "provider.max_price.prompt: 10 lowered to 5 by policy.provider.max_price.prompt",
            "provider.max_price.request: unset → 0.5 by policy.provider.max_price.request",
        ]
    );
    let (_, out) = provider_of(&policy, json!({ "max_price": { "prompt": "20" } }));
    assert_eq!(out["max_price"]["prompt"], 5);
}

#[test]
fn performance_preferences_are_the_stricter_per_percentile() {
    let policy = policy(
        "[policy.provider]\npreferred_min_throughput = 50\npreferred_max_latency = { p50 = 2, p90 = 5 }",
    );
    // Numbers are p50.
    let (_, out) = provider_of(
        &policy,
        json!({ "preferred_min_throughput": 20, "preferred_max_latency": 1 }),
    );
    assert_eq!(out["preferred_min_throughput"], 50);
    assert_eq!(out["preferred_max_latency"], json!({ "p50": 1, "p90": 5 }));
    // Objects keep the client's keys and stricter values.
    let (_, out) = provider_of(
        &policy,
        json!({ "preferred_min_throughput": { "p90": 10, "p50": 80 }, "preferred_max_latency": { "p99": 9, "p90": 10 } }),
    );
    assert_eq!(
        out["preferred_min_throughput"],
        json!({ "p90": 10, "p50": 80 })
    );
    assert_eq!(
        out["preferred_max_latency"],
        json!({ "p99": 9, "p90": 5, "p50": 2 })
    );
    // Already stricter: untouched.
    let (applied, _) = provider_of(
        &policy,
        json!({ "preferred_min_throughput": 60, "preferred_max_latency": { "p50": 1, "p90": 1 } }),
    );
    assert!(applied.actions.is_empty(), "{applied:?}");
}

#[test]
fn routing_preferences_are_the_clients_else_the_policys_unless_forced() {
    let defaults = policy(
        "[policy.provider]\norder = [\"openai\"]\nsort = \"price\"\nallow_fallbacks = false",
    );
    let (_, out) = provider_of(&defaults, json!({ "sort": "latency" }));
    assert_eq!(
        out,
        json!({ "sort": "latency", "order": ["openai"], "allow_fallbacks": false })
    );
    let (_, out) = provider_of(
        &defaults,
        json!({ "order": ["azure"], "sort": null, "allow_fallbacks": true }),
    );
    assert_eq!(
        out,
        json!({ "order": ["azure"], "sort": "price", "allow_fallbacks": true })
    );

    let forced = policy("[policy.provider.force]\nsort = \"price\"\nallow_fallbacks = false");
    let (applied, out) = provider_of(&forced, json!({ "sort": "throughput" }));
    assert_eq!(out, json!({ "sort": "price", "allow_fallbacks": false }));
    assert_eq!(
        lines(&applied)[0],
        r#"provider.sort: "throughput" → "price" forced by policy.provider.force.sort"#
    );
}

#[test]
fn unknown_provider_keys_pass_and_key_order_holds() {
    let policy = policy("[policy.provider]\nzdr = true\nonly = [\"azure\"]");
    let text = br#"{"messages":[],"provider":{"future_knob":{"a":[1,2]},"zdr":false,"only":["Azure"],"sort":"price"}}"#;
    let original = Bytes::from_static(text);
    let mut req = RequestBody::parse(&original).unwrap();
    policy.apply(&mut req, RequestShape::CHAT).unwrap();
    assert_eq!(
        req.to_body(&original),
        &br#"{"messages":[],"provider":{"future_knob":{"a":[1,2]},"zdr":true,"only":["Azure"],"sort":"price"}}"#[..]
    );
}

#[test]
fn a_client_already_inside_the_policy_is_not_edited() {
    let policy = policy(
        "[policy.provider]\nzdr = true\nonly = [\"OpenAI\", \"Azure\"]\nmax_price = { prompt = 5 }\nignore = [\"x\"]",
    );
    let text = br#"{"messages":[],"provider":{"zdr":true,"only":["azure"],"max_price":{"prompt":"1"},"ignore":["X","y"]}}"#;
    let original = Bytes::from_static(text);
    let mut req = RequestBody::parse(&original).unwrap();
    let applied = policy.apply(&mut req, RequestShape::CHAT).unwrap();
    assert!(applied.actions.is_empty());
    assert!(!req.is_edited());
}

#[test]
fn provider_fields_of_the_wrong_type_are_400s() {
    let policy = policy(
        "[policy.provider]\nonly = [\"a\"]\nzdr = true\ndata_collection = \"deny\"\nmax_price = { prompt = 1 }\npreferred_max_latency = 3",
    );
    let cases = [
        (json!({ "provider": "openai" }), "`provider` must be an object, found a string"),
        (json!({ "provider": { "only": "a" } }), "`provider.only` must be an array of strings, found a string"),
        (json!({ "provider": { "only": ["a", 1] } }), "`provider.only[1]` must be a string, found a number"),
        (json!({ "provider": { "zdr": "yes" } }), "`provider.zdr` must be a boolean, found a string"),
        (
            json!({ "provider": { "data_collection": "maybe" } }),
            "`provider.data_collection` must be \"allow\" or \"deny\", found \"maybe\"",
        ),
        (json!({ "provider": { "max_price": 3 } }), "`provider.max_price` must be an object, found a number"),
        (
            json!({ "provider": { "max_price": { "prompt": "cheap" } } }),
            "`provider.max_price.prompt` must be a number or a numeric string, found \"cheap\"",
        ),
        (
            json!({ "provider": { "preferred_max_latency": [1] } }),
            "`provider.preferred_max_latency` must be a number or an object of percentiles (p50, p75, p90, p99), found an array",
        ),
        (
            json!({ "provider": { "preferred_max_latency": { "p90": "1" } } }),
            "`provider.preferred_max_latency.p90` must be a number, found a string",
        ),
    ];
    for (extra, message) in cases {
        assert_eq!(bad_request(&policy, chat(extra)), message);
    }
}

#[test]
fn provider_null_is_no_provider() {
    let policy = policy("[policy.provider]\nzdr = true");
    let (_, out) = forwarded(&policy, chat(json!({ "provider": null })));
    assert_eq!(out["provider"], json!({ "zdr": true }));
    let (applied, out) = forwarded(&super::tests::policy(""), chat(json!({ "provider": null })));
    assert!(applied.actions.is_empty());
    assert!(out["provider"].is_null());
}

// === every known `provider` field is type-checked, whatever the policy binds ===

/// A policy that binds every known `provider` field but `field`.
fn binding_all_but(field: &str) -> CompiledPolicy {
    let bindings = [
        ("data_collection", "data_collection = \"deny\""),
        ("zdr", "zdr = true"),
        ("require_parameters", "require_parameters = true"),
        (
            "enforce_distillable_text",
            "enforce_distillable_text = true",
        ),
        ("only", "only = [\"OpenAI\", \"Azure\"]"),
        ("ignore", "ignore = [\"DeepInfra\"]"),
        ("quantizations", "quantizations = [\"fp8\"]"),
        ("max_price", "max_price = { prompt = 5 }"),
        ("preferred_min_throughput", "preferred_min_throughput = 10"),
        ("preferred_max_latency", "preferred_max_latency = 5"),
        ("order", "order = [\"Azure\"]"),
        ("sort", "sort = \"price\""),
        ("allow_fallbacks", "allow_fallbacks = false"),
    ];
    let lines: Vec<&str> = bindings
        .iter()
        .filter(|(bound, _)| *bound != field)
        .map(|(_, line)| *line)
        .collect();
    policy(&format!("[policy.provider]\n{}", lines.join("\n")))
}

/// `provider.<field>`: each `wrong` value is a 400 with its message, under an empty policy and
/// under one that binds every other field; each `right` value passes, as the very bytes sent
/// under the empty policy, and as sent under the other.
fn check_provider_field<S: AsRef<str>>(field: &str, wrong: &[(Value, S)], right: &[Value]) {
    let empty = policy("");
    let others = binding_all_but(field);
    for (value, message) in wrong {
        for policy in [&empty, &others] {
            assert_eq!(
                bad_request(policy, chat(json!({ "provider": { field: value } }))),
                message.as_ref(),
                "{field}: {value}"
            );
        }
    }
    for value in right {
        let body = chat(json!({ "provider": { field: value, "future_knob": [1] } }));
        let original = Bytes::from(serde_json::to_vec(&body).unwrap());
        let mut req = RequestBody::parse(&original).unwrap();
        let applied = empty.apply(&mut req, RequestShape::CHAT).unwrap();
        assert!(applied.actions.is_empty(), "{field}: {value}");
        assert_eq!(req.to_body(&original), original, "{field}: {value}");
        let (_, out) = forwarded(&others, body);
        assert_eq!(out["provider"][field], *value, "{field}: {value}");
        assert_eq!(
            out["provider"]["future_knob"],
            json!([1]),
            "{field}: {value}"
        );
    }
}

/// The wrong values of a list of names, and their messages.
fn wrong_lists(field: &str) -> Vec<(Value, String)> {
    vec![
        (
            json!("OpenAI"),
            format!("`provider.{field}` must be an array of strings, found a string"),
        ),
        (
            json!({ "0": "OpenAI" }),
            format!("`provider.{field}` must be an array of strings, found an object"),
        ),
        (
            json!(["OpenAI", 2]),
            format!("`provider.{field}[1]` must be a string, found a number"),
        ),
    ]
}

/// The wrong values of a boolean, and their messages.
fn wrong_booleans(field: &str) -> Vec<(Value, String)> {
    [
        ("\"true\"", "a string"),
        ("1", "a number"),
        ("{}", "an object"),
        ("[]", "an array"),
    ]
    .into_iter()
    .map(|(value, found)| {
        (
            serde_json::from_str(value).unwrap(),
            format!("`provider.{field}` must be a boolean, found {found}"),
        )
    })
    .collect()
}

/// The wrong values of a performance preference, and their messages.
fn wrong_percentiles(field: &str) -> Vec<(Value, String)> {
    let whole = |found: &str| {
        format!("`provider.{field}` must be a number or an object of percentiles (p50, p75, p90, p99), found {found}")
    };
    vec![
        (json!("10"), whole("a string")),
        (json!([10]), whole("an array")),
        (
            json!({ "p90": "1" }),
            format!("`provider.{field}.p90` must be a number, found a string"),
        ),
        (
            json!({ "p50": 1, "p99": true }),
            format!("`provider.{field}.p99` must be a number, found a boolean"),
        ),
    ]
}

const BOOLEANS: [Value; 3] = [Value::Bool(true), Value::Bool(false), Value::Null];

#[test]
fn provider_must_be_an_object() {
    for policy in [policy(""), binding_all_but("")] {
        for (value, found) in [
            (json!("openai"), "a string"),
            (json!(["openai"]), "an array"),
            (json!(true), "a boolean"),
            (json!(1), "a number"),
        ] {
            assert_eq!(
                bad_request(&policy, chat(json!({ "provider": value }))),
                format!("`provider` must be an object, found {found}")
            );
        }
    }
    for text in [
        &br#"{"messages":[],"provider":{}}"#[..],
        br#"{"messages":[],"provider":null}"#,
    ] {
        let original = Bytes::from_static(text);
        let mut req = RequestBody::parse(&original).unwrap();
        policy("").apply(&mut req, RequestShape::CHAT).unwrap();
        assert_eq!(req.to_body(&original), original);
    }
}

#[test]
fn provider_only_is_type_checked() {
    check_provider_field(
        "only",
        &wrong_lists("only"),
        &[json!(["OpenAI", "azure"]), json!([]), Value::Null],
    );
}

#[test]
fn provider_ignore_is_type_checked() {
    check_provider_field(
        "ignore",
        &wrong_lists("ignore"),
        &[json!(["OpenAI", "azure"]), json!([]), Value::Null],
    );
}

#[test]
fn provider_order_is_type_checked() {
    check_provider_field(
        "order",
        &wrong_lists("order"),
        &[json!(["OpenAI", "azure"]), json!([]), Value::Null],
    );
}

#[test]
fn provider_quantizations_is_type_checked() {
    check_provider_field(
        "quantizations",
        &wrong_lists("quantizations"),
        &[json!(["fp8", "int4"]), json!([]), Value::Null],
    );
}

#[test]
fn provider_data_collection_is_type_checked() {
    check_provider_field(
        "data_collection",
        &[
            (
                json!("maybe"),
                r#"`provider.data_collection` must be "allow" or "deny", found "maybe""#,
            ),
            (
                json!(true),
                r#"`provider.data_collection` must be "allow" or "deny", found true"#,
            ),
            (
                json!(["deny"]),
                r#"`provider.data_collection` must be "allow" or "deny", found ["deny"]"#,
            ),
        ],
        &[json!("allow"), json!("deny"), Value::Null],
    );
}

#[test]
fn provider_zdr_is_type_checked() {
    check_provider_field("zdr", &wrong_booleans("zdr"), &BOOLEANS);
}

#[test]
fn provider_require_parameters_is_type_checked() {
    check_provider_field(
        "require_parameters",
        &wrong_booleans("require_parameters"),
        &BOOLEANS,
    );
}

#[test]
fn provider_enforce_distillable_text_is_type_checked() {
    check_provider_field(
        "enforce_distillable_text",
        &wrong_booleans("enforce_distillable_text"),
        &BOOLEANS,
    );
}

#[test]
fn provider_allow_fallbacks_is_type_checked() {
    check_provider_field(
        "allow_fallbacks",
        &wrong_booleans("allow_fallbacks"),
        &BOOLEANS,
    );
}

#[test]
fn provider_sort_is_type_checked() {
    check_provider_field(
        "sort",
        &[
            (
                json!(1),
                "`provider.sort` must be a string or an object (by, partition), found a number",
            ),
            (
                json!(["price"]),
                "`provider.sort` must be a string or an object (by, partition), found an array",
            ),
            (
                json!({ "by": 1 }),
                "`provider.sort.by` must be a string, found a number",
            ),
            (
                json!({ "by": "price", "partition": false }),
                "`provider.sort.partition` must be a string, found a boolean",
            ),
        ],
        &[
            json!("price"),
            json!("exacto"),
            json!({ "by": "latency", "partition": "none" }),
            json!({ "by": null, "partition": "model", "future_member": 1 }),
            json!({}),
            Value::Null,
        ],
    );
}

#[test]
fn provider_max_price_is_type_checked() {
    check_provider_field(
        "max_price",
        &[
            (
                json!(3),
                "`provider.max_price` must be an object, found a number",
            ),
            (
                json!("5"),
                "`provider.max_price` must be an object, found a string",
            ),
            (
                json!({ "prompt": "cheap" }),
                r#"`provider.max_price.prompt` must be a number or a numeric string, found "cheap""#,
            ),
            (
                json!({ "completion": true }),
                "`provider.max_price.completion` must be a number or a numeric string, found a boolean",
            ),
            (
                json!({ "image": [] }),
                "`provider.max_price.image` must be a number or a numeric string, found an array",
            ),
            (
                json!({ "audio": null, "request": {} }),
                "`provider.max_price.request` must be a number or a numeric string, found an object",
            ),
        ],
        &[
            json!({ "prompt": 1, "completion": "0.5", "image": null, "video": "anything" }),
            json!({ "audio": 0.25, "request": "2" }),
            json!({}),
            Value::Null,
        ],
    );
}

#[test]
fn provider_preferred_min_throughput_is_type_checked() {
    check_provider_field(
        "preferred_min_throughput",
        &wrong_percentiles("preferred_min_throughput"),
        &[
            json!(100),
            json!(2.5),
            json!({ "p50": 1, "p99": null, "p95": "x" }),
            json!({}),
            Value::Null,
        ],
    );
}

#[test]
fn provider_preferred_max_latency_is_type_checked() {
    check_provider_field(
        "preferred_max_latency",
        &wrong_percentiles("preferred_max_latency"),
        &[
            json!(1),
            json!(0.5),
            json!({ "p75": 2, "p90": null, "p95": "x" }),
            json!({}),
            Value::Null,
        ],
    );
}

// === named layering of provider rules ===

#[test]
fn a_named_provider_policy_tightens_the_orgs() {
    let toml = r#"[policy.provider]
only = ["OpenAI", "Azure", "Together"]
ignore = ["x"]
max_price = { prompt = 5, completion = 10 }
sort = "price"
[policy.provider.force]
allow_fallbacks = false
[policies.team.provider]
only = ["azure", "together", "groq"]
ignore = ["y"]
max_price = { prompt = 8, completion = 2 }
sort = "latency"
force = { allow_fallbacks = true, order = ["azure"] }"#;
    let (applied, out) = forwarded(&policy_named(toml, Some("team")), chat(json!({})));
    assert_eq!(
        out["provider"],
        json!({
            "order": ["azure"], "sort": "latency", "allow_fallbacks": false,
            "only": ["azure", "together"], "ignore": ["y", "x"],
            "max_price": { "prompt": 5, "completion": 2 }
        })
    );
    let rules: Vec<&str> = applied.actions.iter().map(|a| &*a.rule).collect();
    assert_eq!(
        rules,
        [
            "policies.team.provider.force.order",
            "policies.team.provider.sort",
            "policy.provider.force.allow_fallbacks",
            "policy.provider.only + policies.team.provider.only",
            "policy.provider.ignore + policies.team.provider.ignore",
            "policy.provider.max_price.prompt",
            "policies.team.provider.max_price.completion",
        ]
    );
}

#[test]
fn a_named_policy_that_leaves_nothing_is_a_compile_error() {
    let toml =
        "[policy.provider]\nonly = [\"OpenAI\"]\n[policies.team.provider]\nonly = [\"Azure\"]";
    let err = CompiledPolicy::for_key(&config(toml), Some("team")).unwrap_err();
    assert!(
        err.to_string().contains(
            "policies.team.provider.only has nothing in common with policy.provider.only"
        ),
        "{err}"
    );
    assert!(CompiledPolicy::for_key(&config(toml), Some("nope")).is_err());
}

#[test]
fn bad_globs_are_listed_not_panicked_on() {
    let org = PolicyConfig {
        models: crate::config::ModelRules {
            allow: vec!["openai/[".to_owned(), "ok/*".to_owned()],
            deny: vec!["{a".to_owned()],
        },
        ..PolicyConfig::default()
    };
    let err = CompiledPolicy::compile(&org, None).unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    assert!(
        err.problems[0].starts_with("policy.models.allow[0]: \"openai/[\""),
        "{err}"
    );
    assert!(
        err.problems[1].starts_with("policy.models.deny[0]"),
        "{err}"
    );
}

// === what applying reports ===

#[test]
fn a_refusal_carries_the_actions_before_it() {
    let policy = policy("[policy]\nmax_tokens = 100\naliases = { cheap = \"x/y:free\" }\nmodels.deny = [\"*:free\"]");
    let refusal = refused(&policy, chat(json!({ "model": "cheap" })));
    let shown: Vec<String> = refusal.actions.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            r#"model: alias "cheap" → "x/y:free" (policy.aliases)"#,
            r#"model "x/y:free" is denied by policy.models.deny "*:free""#,
        ]
    );
    let error: GatewayError = refusal.into();
    assert_eq!(error.status(), http::StatusCode::FORBIDDEN);
}

#[test]
fn the_reported_provider_is_checked_against_the_forwarded_lists() {
    let policy = policy("[policy.provider]\nonly = [\"Google Vertex\", \"deepinfra/turbo\", \"OpenAI\"]\nignore = [\"Azure\"]");
    let (applied, _) = provider_of(
        &policy,
        json!({ "only": ["google-vertex", "DeepInfra", "azure"] }),
    );
    assert_eq!(*applied.only, ["google-vertex", "deepinfra/turbo"]);
    let check = applied
        .provider_check()
        .expect("the policy binds only and ignore");
    assert!(check.allows("Google Vertex"));
    assert!(check.allows("DeepInfra"));
    assert!(!check.allows("OpenAI"));
    assert!(!check.allows("Azure"));
    // Nothing bound: nothing to check, and empty lists allow anything.
    assert!(Applied::default().provider_check().is_none());
    let unbound = ProviderCheck {
        only: Arc::from([]),
        ignore: Arc::from([]),
    };
    assert!(unbound.allows("Anything"));
}
