//! The org's policy through the real gateway: what reaches the upstream, and what is refused.

use std::time::Duration;

use crate::common::process::{key_toml, serve_command, ConfigFile, Served};
use crate::common::*;
use serde_json::{json, Value};

/// The mock, and a gateway in front of it with the org's rules.
struct Org {
    mock: MockOpenRouter,
    gw: TestGateway,
}

impl Org {
    /// Starts a gateway whose `[policy]`/`[policies.*]` come from `policy_toml`; alice has the
    /// named policy `strict` if one is defined.
    async fn start(policy_toml: &str) -> Self {
        let (parsed, problems) = orgate::config::parse_toml(policy_toml);
        assert!(problems.is_empty(), "{problems:?}");
        let (mock, gw) = start_gateway_with(|config| {
            config.policy = parsed.policy;
            config.policies = parsed.policies;
            if config.policies.contains_key("strict") {
                config.auth.keys[0].policy = Some("strict".into());
            }
        })
        .await;
        Self { mock, gw }
    }

    /// Sends `body` as `key`; returns the body the upstream received, or the gateway's refusal.
    async fn forwarded(&self, key: &str, body: &Value) -> Result<Value, (u16, String)> {
        let response = self.gw.chat(key).json(body).fetch().await;
        if response.status() != 200 {
            let refusal = error_of(response).await;
            assert!(
                self.mock.forwarded_nothing(Duration::from_millis(50)).await,
                "a refused request reaches nobody"
            );
            return Err(refusal);
        }
        response.bytes().await.unwrap();
        Ok(self.mock.next_request().await.json())
    }

    /// The body the upstream received for `body`, sent as alice; it must not be refused.
    async fn sent(&self, body: Value) -> Value {
        self.forwarded(ALICE_KEY, &body).await.unwrap()
    }

    /// The gateway's refusal of `body`, sent as alice; it must not be forwarded.
    async fn refused(&self, body: Value) -> (u16, String) {
        self.forwarded(ALICE_KEY, &body).await.unwrap_err()
    }
}

fn request(extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

#[tokio::test]
async fn the_provider_merge_is_never_looser_field_by_field() {
    let org = Org::start(
        r#"
[policy.provider]
data_collection = "deny"
zdr = true
require_parameters = true
ignore = ["deepinfra"]
only = ["openai", "azure"]
quantizations = ["fp16", "bf16"]
max_price = { prompt = 5, completion = 15 }
preferred_min_throughput = { p90 = 50 }
preferred_max_latency = { p90 = 3 }
sort = "price"
"#,
    )
    .await;
    let client = json!({"provider": {
        "data_collection": "allow", "zdr": false, "require_parameters": false,
        "ignore": ["together"], "only": ["azure", "together"], "quantizations": ["bf16", "fp8"],
        "max_price": {"prompt": 10, "completion": 2}, "preferred_min_throughput": {"p90": 20},
        "preferred_max_latency": {"p90": 10}, "sort": "throughput", "experimental_knob": {"x": 1}
    }});
    let sent = org.sent(request(client)).await;
    let p = &sent["provider"];
    assert_eq!(p["data_collection"], "deny");
    assert_eq!(p["zdr"], true);
    assert_eq!(p["require_parameters"], true);
    let ignore: Vec<&str> = p["ignore"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        ignore.contains(&"together") && ignore.contains(&"deepinfra"),
        "union: {ignore:?}"
    );
    assert_eq!(p["only"], json!(["azure"]), "intersection");
    assert_eq!(p["quantizations"], json!(["bf16"]));
    assert_eq!(
        p["max_price"]["prompt"].as_f64(),
        Some(5.0),
        "the lower, per field"
    );
    assert_eq!(p["max_price"]["completion"].as_f64(), Some(2.0));
    assert_eq!(
        p["preferred_min_throughput"]["p90"].as_f64(),
        Some(50.0),
        "the higher floor"
    );
    assert_eq!(
        p["preferred_max_latency"]["p90"].as_f64(),
        Some(3.0),
        "the lower ceiling"
    );
    assert_eq!(p["sort"], "throughput", "the client's sort when given");
    assert_eq!(
        p["experimental_knob"],
        json!({"x": 1}),
        "unknown fields pass untouched"
    );
    assert_eq!(sent["messages"], json!([{"role": "user", "content": "Hi"}]));
}

#[tokio::test]
async fn the_policy_applies_without_a_client_provider_and_force_overrides_the_client() {
    let org = Org::start(
        r#"
[policy.provider]
data_collection = "deny"
order = ["azure"]
allow_fallbacks = true
[policy.provider.force]
sort = "latency"
allow_fallbacks = false
"#,
    )
    .await;
    let sent = org.sent(request(json!({}))).await;
    assert_eq!(sent["provider"]["data_collection"], "deny");
    assert_eq!(
        sent["provider"]["order"],
        json!(["azure"]),
        "the policy's order when the client gave none"
    );
    assert_eq!(sent["provider"]["sort"], "latency");
    assert_eq!(sent["provider"]["allow_fallbacks"], false);
    let client =
        json!({"provider": {"order": ["openai"], "sort": "price", "allow_fallbacks": true}});
    let sent = org.sent(request(client)).await;
    assert_eq!(
        sent["provider"]["order"],
        json!(["openai"]),
        "the client's order wins without force"
    );
    assert_eq!(
        sent["provider"]["sort"], "latency",
        "force beats the client"
    );
    assert_eq!(sent["provider"]["allow_fallbacks"], false);
}

#[tokio::test]
async fn an_empty_intersection_is_refused_and_nothing_is_forwarded() {
    let org = Org::start("[policy.provider]\nonly = [\"openai\"]\n").await;
    let (code, message) = org
        .refused(request(json!({"provider": {"only": ["together"]}})))
        .await;
    assert_eq!(code, 403);
    assert!(message.contains("provider.only"), "{message}");
}

#[tokio::test]
async fn a_rewrite_keeps_the_clients_key_order() {
    let org = Org::start("[policy.provider]\ndata_collection = \"deny\"\n").await;
    let body = r#"{"zeta":1,"provider":{"sort":"price"},"model":"openai/gpt-4o","messages":[{"role":"user","content":"Hi"}],"alpha":2}"#;
    org.gw.chat(ALICE_KEY).body(body).fetch_status().await;
    let sent = org.mock.next_request().await;
    let text = String::from_utf8(sent.body.to_vec()).unwrap();
    let positions: Vec<usize> = [
        "\"zeta\"",
        "\"provider\"",
        "\"model\"",
        "\"messages\"",
        "\"alpha\"",
    ]
    .iter()
    .map(|k| text.find(k).unwrap())
    .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(
        text.contains(r#""messages":[{"role":"user","content":"Hi"}]"#),
        "messages untouched, byte for byte: {text}"
    );
}

#[tokio::test]
async fn aliases_rewrite_models_before_the_rules() {
    let org = Org::start(
        r#"
[policy]
aliases = { "gpt-4o" = "openai/gpt-4o", "fast" = "openai/gpt-4o-mini" }
models.allow = ["openai/*"]
"#,
    )
    .await;
    let sent = org
        .sent(json!({"model": "gpt-4o", "models": ["fast", "openai/o3"], "messages": []}))
        .await;
    assert_eq!(sent["model"], "openai/gpt-4o");
    assert_eq!(sent["models"], json!(["openai/gpt-4o-mini", "openai/o3"]));
}

#[tokio::test]
async fn model_ids_with_stray_bytes_are_a_400_naming_the_field() {
    let org = Org::start("[policy]\nmodels.deny = [\"*:free\"]\n").await;
    for (body, field) in [
        (
            json!({"model": "meta/llama:free ", "messages": []}),
            "`model`",
        ),
        (
            json!({"model": "meta/llama:free\n", "messages": []}),
            "`model`",
        ),
        (
            json!({"model": "meta/llama:free\u{0}", "messages": []}),
            "`model`",
        ),
        (
            json!({"model": "openai/gpt-4o", "models": ["openai/o3", " meta/llama:free"], "messages": []}),
            "`models[1]`",
        ),
    ] {
        let (code, message) = org.refused(body).await;
        assert_eq!(code, 400, "{message}");
        assert!(
            message.contains(field) && message.contains("whitespace"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn reasoning_max_tokens_is_held_to_the_max_tokens_ceiling() {
    let org = Org::start("[policy]\nmax_tokens = 1000\n").await;
    let sent = org
        .sent(request(
            json!({"max_tokens": 500, "reasoning": {"max_tokens": 8000, "exclude": true}}),
        ))
        .await;
    assert_eq!(
        sent["reasoning"],
        json!({"max_tokens": 1000, "exclude": true})
    );
    assert_eq!(sent["max_tokens"], 500);
    let sent = org
        .sent(request(json!({"reasoning": {"effort": "high"}})))
        .await;
    assert_eq!(sent["reasoning"], json!({"effort": "high"}));
}

#[tokio::test]
async fn denied_models_get_403_naming_the_model_and_the_rule() {
    let org = Org::start(
        "[policy]\nmodels.allow = [\"openai/*\", \"anthropic/*\"]\nmodels.deny = [\"*:free\"]\n",
    )
    .await;
    let (code, message) = org
        .refused(json!({"model": "openai/gpt-4o:free", "messages": []}))
        .await;
    assert_eq!(code, 403);
    assert!(
        message.contains("openai/gpt-4o:free") && message.contains("policy.models.deny \"*:free\""),
        "{message}"
    );
    let (code, message) = org
        .refused(json!({"model": "meta/llama", "messages": []}))
        .await;
    assert_eq!(code, 403);
    assert!(message.contains("policy.models.allow"), "{message}");
    // Every entry of `models` is checked too.
    let (code, _) = org
        .refused(json!({"model": MODEL, "models": ["x/y:free"], "messages": []}))
        .await;
    assert_eq!(code, 403);
    // Router models cannot be bound by an allow list.
    let (code, message) = org
        .refused(json!({"model": "openrouter/auto", "messages": []}))
        .await;
    assert_eq!(code, 403, "{message}");
    assert!(org
        .forwarded(
            ALICE_KEY,
            &json!({"model": "anthropic/claude-sonnet-4", "messages": []})
        )
        .await
        .is_ok());
}

#[tokio::test]
async fn max_tokens_is_capped_and_set() {
    let org = Org::start("[policy]\nmax_tokens = 1000\n").await;
    let sent = org.sent(request(json!({"max_tokens": 5000}))).await;
    assert_eq!(sent["max_tokens"], 1000);
    let sent = org.sent(request(json!({}))).await;
    assert_eq!(
        sent["max_tokens"], 1000,
        "a missing value is set to the ceiling"
    );
    let sent = org
        .sent(request(json!({"max_completion_tokens": 4000})))
        .await;
    assert_eq!(sent["max_completion_tokens"], 1000);
    let sent = org.sent(request(json!({"max_tokens": 10}))).await;
    assert_eq!(sent["max_tokens"], 10, "a lower value stays");
}

#[tokio::test]
async fn denied_plugins_are_refused_whatever_door_they_use() {
    let org = Org::start("[policy]\ndeny_plugins = [\"web\"]\n").await;
    for body in [
        request(json!({"plugins": [{"id": "web", "max_results": 3}]})),
        json!({"model": "openai/gpt-4o:online", "messages": []}),
        request(json!({"tools": [{"type": "openrouter:web_search"}]})),
    ] {
        let (code, message) = org.refused(body.clone()).await;
        assert_eq!(code, 403, "{body}");
        assert!(message.contains("deny_plugins"), "{message}");
    }
    // A disabled plugin is not a use of it; other plugins pass.
    assert!(org
        .forwarded(
            ALICE_KEY,
            &request(json!({"plugins": [{"id": "web", "enabled": false}, {"id": "file-parser"}]}))
        )
        .await
        .is_ok());
}

#[tokio::test]
async fn a_named_policy_tightens_the_orgs_rules_for_its_keys() {
    let org = Org::start(
        r#"
[policy]
models.allow = ["*"]
[policy.provider]
ignore = ["deepinfra"]
[policies.strict]
models.allow = ["anthropic/*"]
[policies.strict.provider]
data_collection = "deny"
"#,
    )
    .await;
    // alice has `strict`; bob has the org's rules only.
    let (code, message) = org.refused(request(json!({}))).await;
    assert_eq!(code, 403);
    assert!(
        message.contains("policies.strict.models.allow"),
        "{message}"
    );
    let sent = org
        .sent(json!({"model": "anthropic/claude-sonnet-4", "messages": []}))
        .await;
    assert_eq!(sent["provider"]["data_collection"], "deny");
    assert_eq!(
        sent["provider"]["ignore"],
        json!(["deepinfra"]),
        "the org's rules still hold"
    );
    let sent = org.forwarded(BOB_KEY, &request(json!({}))).await.unwrap();
    assert!(sent["provider"].get("data_collection").is_none());
}

#[tokio::test]
async fn fields_of_the_wrong_type_get_400_naming_the_field() {
    let org = Org::start(
        "[policy]\nmax_tokens = 100\ndeny_plugins = [\"web\"]\nmodels.allow = [\"openai/*\"]\n[policy.provider]\nonly = [\"openai\"]\n",
    )
    .await;
    for (extra, field) in [
        (json!({"provider": "openai"}), "provider"),
        (json!({"provider": {"only": "openai"}}), "provider.only"),
        (json!({"plugins": {"id": "web"}}), "plugins"),
        (json!({"models": "openai/gpt-4o"}), "models"),
        (json!({"max_tokens": "lots"}), "max_tokens"),
    ] {
        let (code, message) = org.refused(request(extra.clone())).await;
        assert_eq!(code, 400, "{extra}: {message}");
        assert!(
            message.contains(&format!("`{field}`")),
            "{extra}: {message}"
        );
    }
}

#[tokio::test]
async fn policy_actions_and_provider_violations_are_counted() {
    let org =
        Org::start("[policy]\nmodels.deny = [\"*:free\"]\n[policy.provider]\nonly = [\"azure\"]\n")
            .await;
    // The mock answers as served by "OpenAI", which the forwarded `only` excludes.
    org.sent(request(json!({}))).await;
    org.refused(json!({"model": "x/y:free", "messages": []}))
        .await;
    let stream = json!({"model": MODEL, "messages": [], "stream": true});
    org.gw.chat(ALICE_KEY).json(&stream).fetch_status().await;
    let text = org.gw.metrics_text().await;
    assert!(
        text.contains(r#"orgate_policy_actions_total{rule="policy.models.deny",action="deny"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"rule="policy.provider.only",action="rewrite"}"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"orgate_provider_policy_violations_total{key="alice",provider="OpenAI"} 2"#
        ),
        "JSON and stream: {text}"
    );
}

#[tokio::test]
async fn explain_shows_the_forwarded_body_and_each_rule_without_network() {
    let config = ConfigFile::new(&format!(
        "[policy]\naliases = {{ \"gpt\" = \"openai/gpt-4o\" }}\nmodels.deny = [\"*:free\"]\n[policy.provider]\nonly = [\"openai\", \"azure\"]\n{}",
        key_toml("alice", ALICE_KEY)
    ));
    let explain = |body: &str| {
        let file = config.beside("request.json", body);
        let output = std::process::Command::new(crate::common::process::BIN)
            .args([
                "explain",
                "--key",
                "alice",
                "--config",
                config.path.to_str().unwrap(),
                file.to_str().unwrap(),
            ])
            .env_clear()
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).to_string(),
        )
    };
    let (code, text) =
        explain(r#"{"model":"gpt","messages":[],"provider":{"only":["azure","together"]}}"#);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("\"openai/gpt-4o\""), "{text}");
    assert!(text.contains("provider.only"), "{text}");
    assert!(text.contains("alias"), "{text}");
    let (code, text) = explain(r#"{"model":"x/y:free","messages":[]}"#);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("policy.models.deny"), "{text}");
    let (code, _) = explain("{not json");
    assert_eq!(code, Some(1));
}

#[tokio::test]
async fn a_large_rewritten_body_arrives_whole_with_its_length_and_messages_untouched() {
    let org = Org::start("[policy.provider]\ndata_collection = \"deny\"\n").await;
    // Big enough for the messages to be sent as the client's own bytes (proxy::outgoing),
    // with escapes and non-ASCII in them, spelled the way a client might.
    let content = "line \\\"quoted\\\" café 🚀\\n".repeat(8_000);
    let messages = format!(r#"[{{"role":"user","content":"{content}"}}]"#);
    let body = format!(
        r#"{{"model":"{MODEL}","messages":{messages},"provider":{{"sort":"price"}},"stream":false}}"#
    );
    let status = org
        .gw
        .chat(ALICE_KEY)
        .body(body.clone())
        .fetch_status()
        .await;
    assert_eq!(status, 200);
    let sent = org.mock.next_request().await;
    assert_eq!(
        sent.header("content-length"),
        Some(sent.body.len().to_string().as_str()),
        "a length, not chunked"
    );
    assert_eq!(sent.header("transfer-encoding"), None);
    let text = std::str::from_utf8(&sent.body).unwrap();
    assert!(
        text.starts_with(&format!(
            r#"{{"model":"{MODEL}","messages":{messages},"provider":"#
        )),
        "the messages byte for byte, in place"
    );
    let sent = sent.json();
    assert_eq!(sent["provider"]["data_collection"], "deny");
    assert_eq!(sent["provider"]["sort"], "price");
    assert_eq!(sent["stream"], false);
}

#[tokio::test]
async fn a_wrong_typed_provider_field_is_a_400_whatever_the_policy_binds() {
    // `only` as a string, where a list is meant: under no policy at all, and under one that
    // binds other provider fields but not `only`.
    for policy in ["", "[policy.provider]\ndata_collection = \"deny\"\n"] {
        let org = Org::start(policy).await;
        let (status, message) = org
            .refused(request(json!({"provider": {"only": "OpenAI"}})))
            .await;
        assert_eq!(status, 400, "{policy:?}");
        assert!(message.contains("`provider.only`"), "{policy:?}: {message}");
    }
}

/// The provider-mismatch warning names the request, so an operator can find the request it is
/// about (README: "logged at warn with the request id").
#[tokio::test]
async fn the_provider_mismatch_warning_carries_the_request_id() {
    let mock = MockOpenRouter::start().await;
    let config = ConfigFile::for_mock(
        &mock,
        "[policy.provider]\nonly = [\"azure\"]\n",
        ("alice", ALICE_KEY),
    );
    let mut served = Served::start(&mut serve_command(&config.path)).await;
    // The mock answers as served by "OpenAI", which the forwarded `only` excludes.
    let response = served
        .completion(ALICE_KEY)
        .header("x-request-id", "mismatch-1")
        .fetch()
        .await;
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    let line = served.wait_for("a provider the policy excludes").await;
    let warning: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(warning["request_id"], "mismatch-1", "{line}");
    served.terminate();
}
