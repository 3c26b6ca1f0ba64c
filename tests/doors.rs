//! Every door to a model (chat, Responses, Messages, completions, embeddings, rerank) is
//! governed as chat is: auth, the provider merge, model rules, caps, plugins and presets,
//! tokens and spend charged from its own usage, byte-exact streams ending by its own rule,
//! errors in its own shape, its own `route` in the metrics; and `count_tokens` is answered here.

use std::time::Duration;

use crate::common::doors::*;
use crate::common::*;
use serde_json::{json, Value};

/// A tweak: alice's daily budget is $0.00005, less than any door's answer costs.
fn tiny_daily_budget(config: &mut orgate::config::Config) {
    config.auth.keys[0].usd_per_day = Some(0.00005);
}

/// Sends `request` (as alice); it must be answered 200, its body read to the end. Returns
/// the generation id.
async fn answered(request: reqwest::RequestBuilder) -> String {
    let response = request.fetch().await;
    assert_eq!(response.status(), 200, "{}", response.url());
    let id = generation_id(&response);
    response.bytes().await.unwrap();
    id
}

/// Waits until `door` refuses alice with 429 for `why` (a word of the message). The probes
/// spend nothing: admitted, they get the upstream's 402, which carries no usage.
async fn refused_for(gw: &TestGateway, door: Door, why: &str) {
    eventually(&format!("alice refused on {door:?} ({why})"), async || {
        let probe = gw.door_request(door, ALICE_KEY).scenario("status-402");
        let response = probe.fetch().await;
        if response.status() != 429 {
            return Err(format!("status {}", response.status()));
        }
        let (_, message) = door_error_of(door, response).await;
        if message.contains(why) {
            Ok(())
        } else {
            Err(message)
        }
    })
    .await;
}

// ---- auth ----

#[tokio::test]
async fn every_door_needs_a_key_and_takes_it_from_bearer_or_x_api_key() {
    let (mock, gw) = start_gateway().await;
    for door in MODEL_DOORS {
        for prefix in PREFIXES {
            let body = door.body(MODEL);
            let bare = gw.door_at(prefix, door).json(&body).fetch().await;
            let (status, _) = door_error_of(door, bare).await;
            assert_eq!(status, 401, "{prefix} {door:?} without a key");
            assert!(mock.forwarded_nothing(Duration::from_millis(20)).await);

            let bearer = gw.door_at(prefix, door).bearer_auth(ALICE_KEY).json(&body);
            let x_api_key = gw
                .door_at(prefix, door)
                .header("x-api-key", ALICE_KEY)
                .json(&body);
            for request in [bearer, x_api_key] {
                let seen = forwarded(&mock, request).await;
                assert_eq!(seen.path, format!("/api/v1{}", door.path()), "{prefix}");
                assert_eq!(
                    seen.bearer(),
                    Some(UPSTREAM_KEY),
                    "{door:?}: the org key upstream"
                );
                assert_eq!(
                    seen.header("x-api-key"),
                    None,
                    "{door:?}: no x-api-key upstream"
                );
                for (name, value) in &seen.headers {
                    assert!(
                        !value
                            .as_bytes()
                            .windows(ALICE_KEY.len())
                            .any(|w| w == ALICE_KEY.as_bytes()),
                        "{door:?}: the client's key went upstream in {name}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn anthropic_version_and_beta_headers_reach_the_upstream_unchanged() {
    let (mock, gw) = start_gateway().await;
    let beta = "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14";
    let request = gw
        .door_without_key(Door::Messages)
        .header("x-api-key", ALICE_KEY)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", beta)
        .json(&Door::Messages.body(MODEL));
    let seen = forwarded(&mock, request).await;
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(seen.header("anthropic-beta"), Some(beta));
}

// ---- policy ----

#[tokio::test]
async fn the_provider_policy_is_merged_on_every_door() {
    let org =
        Org::start("[policy.provider]\ndata_collection = \"deny\"\nignore = [\"deepinfra\"]\n")
            .await;
    for door in MODEL_DOORS {
        let client = json!({"provider": {"data_collection": "allow", "sort": "price"}});
        let sent = org
            .sent(door, ALICE_KEY, door.body_with(MODEL, client))
            .await;
        assert_eq!(
            sent["provider"]["data_collection"], "deny",
            "{door:?}: {sent}"
        );
        assert_eq!(
            sent["provider"]["sort"], "price",
            "{door:?}: the client's own choices stay"
        );
        assert_eq!(sent["provider"]["ignore"], json!(["deepinfra"]), "{door:?}");
        let sent = org.sent(door, ALICE_KEY, door.body(MODEL)).await;
        assert_eq!(
            sent["provider"]["data_collection"], "deny",
            "{door:?} without provider"
        );
    }
}

#[tokio::test]
async fn denied_models_are_refused_on_every_selector_of_every_door() {
    let org = Org::start("[policy]\nmodels.deny = [\"*:free\"]\n").await;
    let free = "meta-llama/llama-3.3-70b-instruct:free";
    for door in MODEL_DOORS {
        let mut bodies = vec![
            door.body(free),
            door.body_with(MODEL, json!({"models": [MODEL, free]})),
        ];
        if door == Door::Messages {
            bodies.push(door.body_with(
                MODEL,
                json!({"fallbacks": [{"model": "openai/gpt-4o-mini"}, {"model": free}]}),
            ));
        }
        for body in bodies {
            let (status, message) = org.refused(door, ALICE_KEY, body.clone()).await;
            assert_eq!(status, 403, "{door:?}: {body}");
            assert!(
                message.contains("policy.models.deny"),
                "{door:?}: {message}"
            );
        }
        org.sent(door, ALICE_KEY, door.body(MODEL)).await;
    }
}

#[tokio::test]
async fn max_tokens_caps_each_doors_own_field() {
    let org = Org::start("[policy]\nmax_tokens = 1000\n").await;
    for (door, field) in [
        (Door::Responses, "max_output_tokens"),
        (Door::Messages, "max_tokens"),
        (Door::Completions, "max_tokens"),
    ] {
        let sent = org
            .sent(door, ALICE_KEY, door.body_with(MODEL, json!({field: 5000})))
            .await;
        assert_eq!(sent[field], 1000, "{door:?}: {sent}");
        let sent = org
            .sent(door, ALICE_KEY, door.body_with(MODEL, json!({field: 10})))
            .await;
        assert_eq!(sent[field], 10, "{door:?}: a lower value stays");
    }
}

#[tokio::test]
async fn a_lowered_max_tokens_lowers_the_thinking_budget_under_it() {
    let org = Org::start("[policy]\nmax_tokens = 4096\n").await;
    // What Claude Code sends.
    let body = Door::Messages.body_with(
        MODEL,
        json!({"max_tokens": 32000, "thinking": {"type": "enabled", "budget_tokens": 31999}}),
    );
    let sent = org.sent(Door::Messages, ALICE_KEY, body).await;
    assert_eq!(sent["max_tokens"], 4096);
    assert_eq!(sent["thinking"]["type"], "enabled");
    let budget = sent["thinking"]["budget_tokens"]
        .as_u64()
        .expect("budget_tokens");
    assert!(
        (1024..4096).contains(&budget),
        "Anthropic's bounds: {budget}"
    );
    // A budget already under the cap is left alone.
    let body = Door::Messages.body_with(
        MODEL,
        json!({"max_tokens": 32000, "thinking": {"type": "enabled", "budget_tokens": 2000}}),
    );
    let sent = org.sent(Door::Messages, ALICE_KEY, body).await;
    assert_eq!(sent["thinking"]["budget_tokens"], 2000);
}

#[tokio::test]
async fn deny_plugins_web_refuses_the_responses_web_search_tool() {
    let org = Org::start("[policy]\ndeny_plugins = [\"web\"]\n").await;
    for tool in [
        json!({"type": "web_search"}),
        json!({"type": "web_search_preview"}),
    ] {
        let body = Door::Responses.body_with(MODEL, json!({"tools": [tool]}));
        let (status, message) = org.refused(Door::Responses, ALICE_KEY, body).await;
        assert_eq!(status, 403, "{tool}");
        assert!(message.contains("deny_plugins"), "{message}");
    }
    let function =
        json!({"type": "function", "name": "get_weather", "parameters": {"type": "object"}});
    let body = Door::Responses.body_with(MODEL, json!({"tools": [function]}));
    org.sent(Door::Responses, ALICE_KEY, body).await;
}

/// The three ways a request names the preset `slug`, on `door`.
fn preset_bodies(door: Door, slug: &str) -> [Value; 3] {
    [
        door.body(&format!("@preset/{slug}")),
        door.body(&format!("{MODEL}@preset/{slug}")),
        door.body_with(MODEL, json!({"preset": slug})),
    ]
}

#[tokio::test]
async fn presets_are_refused_unless_the_policy_allows_them() {
    let closed = Org::start("").await;
    let open = Org::start("[policy]\npresets.allow = [\"foo\"]\n").await;
    for door in [
        Door::Chat,
        Door::Responses,
        Door::Messages,
        Door::Completions,
    ] {
        for body in preset_bodies(door, "foo") {
            let (status, message) = closed.refused(door, ALICE_KEY, body.clone()).await;
            assert_eq!(status, 403, "{door:?}: {body}");
            assert!(message.contains("preset"), "{message}");
            open.sent(door, ALICE_KEY, body).await;
        }
        for body in preset_bodies(door, "bar") {
            let (status, _) = open.refused(door, ALICE_KEY, body.clone()).await;
            assert_eq!(status, 403, "{door:?}: only the listed slug: {body}");
        }
    }
}

// ---- tokens and spend ----

#[tokio::test]
async fn spend_reported_by_any_doors_json_exhausts_the_budget_of_every_door() {
    for (i, door) in MODEL_DOORS.into_iter().enumerate() {
        let (_mock, gw) = start_gateway_with(tiny_daily_budget).await;
        answered(gw.door_request(door, ALICE_KEY)).await;
        // Spent through one door, refused at the next one (Messages' cost comes from
        // /generation, a little later).
        let next = MODEL_DOORS[(i + 1) % MODEL_DOORS.len()];
        refused_for(&gw, next, "budget").await;
        refused_for(&gw, door, "budget").await;
    }
}

#[tokio::test]
async fn spend_reported_by_responses_and_messages_streams_is_charged() {
    for door in STREAM_DOORS {
        let (mock, gw) = start_gateway_with(tiny_daily_budget).await;
        let id = answered(gw.door_stream(door, ALICE_KEY)).await;
        if door == Door::Messages {
            // No cost in an Anthropic stream: the gateway asks /generation.
            let lookup = mock.next_internal_request().await;
            assert_eq!(lookup.path, "/api/v1/generation");
            assert_eq!(lookup.query, Some(format!("id={id}")));
            assert_eq!(lookup.bearer(), Some(UPSTREAM_KEY));
        }
        refused_for(&gw, Door::Chat, "budget").await;
    }
}

/// The ways a door reports usage: its JSON answer, or its stream (10 prompt tokens and 2
/// streamed ones in the mock's streams).
fn usage_cases() -> Vec<(Door, bool, u64)> {
    let mut cases: Vec<(Door, bool, u64)> = MODEL_DOORS
        .into_iter()
        .map(|door| (door, false, door.json_usage().tokens))
        .collect();
    cases.extend(STREAM_DOORS.into_iter().map(|door| (door, true, 12)));
    cases
}

#[tokio::test]
async fn each_door_charges_exactly_the_tokens_it_reported() {
    for (door, stream, tokens) in usage_cases() {
        // A bucket of `tokens`: emptied by the first answer. One more: room is left.
        for (limit, second) in [(tokens, 429), (tokens + 1, 200)] {
            let (_mock, gw) =
                start_gateway_with(|config| config.limits.tokens_per_minute = limit).await;
            let first = if stream {
                gw.door_stream(door, ALICE_KEY)
            } else {
                gw.door_request(door, ALICE_KEY)
            };
            answered(first).await;
            let response = gw.door_request(door, ALICE_KEY).fetch().await;
            let what =
                format!("{door:?} (stream: {stream}) reported {tokens} tokens; limit {limit}");
            assert_eq!(response.status(), second, "{what}");
            if second == 429 {
                let (_, message) = door_error_of(door, response).await;
                assert!(message.contains("token"), "{what}: {message}");
            }
        }
    }
}

// ---- streams ----

/// Streams from `door` in `scenario` through a gateway of its own (tweaked by `tweak`), read to
/// the end: the mock, the gateway, the generation id and the bytes received.
async fn read_door_stream(
    door: Door,
    scenario: &str,
    tweak: impl FnOnce(&mut orgate::config::Config),
) -> (MockOpenRouter, TestGateway, String, Vec<u8>) {
    let (mock, gw) = start_gateway_with(tweak).await;
    let response = gw
        .door_stream(door, ALICE_KEY)
        .scenario(scenario)
        .fetch()
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let id = generation_id(&response);
    let received = tokio::time::timeout(Duration::from_secs(10), response.bytes())
        .await
        .expect("the stream ended")
        .map_or_else(
            |e| panic!("the client-side stream ended cleanly: {e}"),
            |b| b.to_vec(),
        );
    (mock, gw, id, received)
}

#[tokio::test]
async fn complete_responses_and_messages_streams_arrive_byte_for_byte_with_nothing_added() {
    for (door, last) in [
        (Door::Responses, "response.completed"),
        (Door::Messages, "message_stop"),
    ] {
        let (mock, _gw, id, received) = read_door_stream(door, "stream", |_| {}).await;
        assert_eq!(
            String::from_utf8_lossy(&received),
            String::from_utf8_lossy(&mock.sent_stream(&id)),
            "{door:?}: byte for byte, nothing appended"
        );
        let events = sse_events(&received);
        assert_eq!(events.last().unwrap().event.as_deref(), Some(last));
        assert!(!events
            .iter()
            .any(|e| e.data == "[DONE]" || e.event.as_deref() == Some("error")));
    }
}

/// The events the client received past what the mock sent before the cut.
fn events_added(mock: &MockOpenRouter, id: &str, received: &[u8]) -> Vec<SseEvent> {
    let sent = mock.sent_stream(id);
    assert!(
        received.starts_with(&sent),
        "everything sent before the cut is passed on"
    );
    sse_events(&received[sent.len()..])
}

#[tokio::test]
async fn a_messages_stream_cut_before_message_stop_ends_with_an_anthropic_error_event() {
    let (mock, _gw, id, received) = read_door_stream(Door::Messages, "stream-cut", |_| {}).await;
    let added = events_added(&mock, &id, &received);
    assert_eq!(added.len(), 1, "one error event: {added:?}");
    assert_eq!(added[0].event.as_deref(), Some("error"));
    let data = added[0].json();
    assert_eq!(data["type"], "error");
    assert_eq!(data["error"]["type"], "api_error");
    assert!(
        data["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{data}"
    );
}

#[tokio::test]
async fn a_responses_stream_cut_before_its_terminal_event_ends_with_a_responses_error_event() {
    let (mock, _gw, id, received) = read_door_stream(Door::Responses, "stream-cut", |_| {}).await;
    let added = events_added(&mock, &id, &received);
    assert_eq!(added.len(), 1, "one error event: {added:?}");
    assert_eq!(added[0].event.as_deref(), Some("error"));
    let data = added[0].json();
    assert_eq!(data["type"], "error");
    assert!(
        data["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{data}"
    );
    assert!(!String::from_utf8_lossy(&received).contains("[DONE]"));
}

#[tokio::test]
async fn a_responses_terminal_event_over_2_mib_passes_intact_and_is_charged() {
    // The mock takes a while to write ~10 MB of events in a debug build under load: patience.
    let tweak = |config: &mut orgate::config::Config| {
        tiny_daily_budget(config);
        config.upstream.first_byte_timeout = "20s".parse().unwrap();
    };
    let (mock, gw, id, received) = read_door_stream(Door::Responses, "stream-large", tweak).await;
    assert!(received.len() > 2 * 1024 * 1024, "{} bytes", received.len());
    assert!(
        received == mock.sent_stream(&id),
        "byte for byte ({} bytes)",
        received.len()
    );
    let last = sse_events(&received).pop().unwrap();
    assert_eq!(last.event.as_deref(), Some("response.completed"));
    assert_eq!(
        last.json()["response"]["output"][0]["content"][0]["text"]
            .as_str()
            .map(str::len),
        Some(LARGE_TEXT)
    );
    refused_for(&gw, Door::Responses, "budget").await;
}

#[tokio::test]
async fn a_client_that_hangs_up_on_a_responses_stream_cancels_it_and_is_charged() {
    let (mock, gw) = start_gateway_with(|config| config.limits.tokens_per_minute = 10).await;
    let response = gw
        .door_stream(Door::Responses, ALICE_KEY)
        .paced(100, 20)
        .fetch()
        .await;
    let id = generation_id(&response);
    leave_after_first_piece(response).await;
    assert_eq!(mock.next_abandoned().await, id);
    // What it used is settled from /generation (14 tokens): the bucket of 10 is overdrawn.
    refused_for(&gw, Door::Responses, "token").await;
}

// ---- errors ----

#[tokio::test]
async fn the_gateways_errors_on_messages_are_anthropic_shaped() {
    let org = Org::start_with("[policy]\nmodels.deny = [\"*:free\"]\n", |config| {
        config.server.max_body = "4KiB".parse().unwrap();
        first_byte_timeout_300ms(config);
        config.upstream.retries = 0;
        let mut limited = key("limited", "sk-orgate-limited");
        key_rate(&mut limited, 1, 1);
        config.auth.keys.push(limited);
    })
    .await;
    let gw = &org.gw;
    let messages = || {
        gw.door_without_key(Door::Messages)
            .header("anthropic-version", "2023-06-01")
    };
    let ok_body = Door::Messages.body(MODEL);
    let big = Door::Messages.body_with(MODEL, json!({"system": "x".repeat(8192)}));
    let cases = [
        (401, messages().json(&ok_body)),
        (
            401,
            messages()
                .header("x-api-key", "sk-orgate-wrong")
                .json(&ok_body),
        ),
        (
            403,
            messages()
                .header("x-api-key", ALICE_KEY)
                .json(&Door::Messages.body("x/y:free")),
        ),
        (
            400,
            messages().header("x-api-key", ALICE_KEY).body("{not json"),
        ),
        (413, messages().header("x-api-key", ALICE_KEY).json(&big)),
        (
            504,
            messages()
                .header("x-api-key", ALICE_KEY)
                .scenario("hang")
                .json(&ok_body),
        ),
    ];
    for (status, request) in cases {
        let (got, _, message) = anthropic_error_of(request.fetch().await).await;
        assert_eq!(got, status, "{message}");
    }
    // The gateway's own rate limit: the second request of a one-a-minute key.
    let limited = || {
        messages()
            .header("x-api-key", "sk-orgate-limited")
            .json(&ok_body)
    };
    assert_eq!(limited().fetch_status().await, 200);
    let refused = limited().fetch().await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(anthropic_error_of(refused).await.0, 429);
}

#[tokio::test]
async fn an_unreachable_upstream_is_an_anthropic_api_error_on_messages() {
    let (_mock, gw) = start_gateway_with(|config| {
        config.upstream.base_url = format!("http://127.0.0.1:{}/api/v1", unused_port());
        config.upstream.retries = 0;
    })
    .await;
    let response = gw.door_request(Door::Messages, ALICE_KEY).fetch().await;
    assert_eq!(anthropic_error_of(response).await.0, 502);
}

#[tokio::test]
async fn the_gateways_errors_on_the_other_doors_are_openrouter_shaped() {
    let org = Org::start("[policy]\nmodels.deny = [\"*:free\"]\n").await;
    for door in [
        Door::Responses,
        Door::Completions,
        Door::Embeddings,
        Door::Rerank,
    ] {
        let gw = &org.gw;
        let cases = [
            (401, gw.door_without_key(door).json(&door.body(MODEL))),
            (403, gw.door(door, ALICE_KEY).json(&door.body("x/y:free"))),
            (400, gw.door(door, ALICE_KEY).body("{not json")),
        ];
        for (status, request) in cases {
            let (got, message) = error_of(request.fetch().await).await;
            assert_eq!(got, status, "{door:?}: {message}");
        }
    }
}

#[tokio::test]
async fn upstream_errors_pass_unchanged_on_every_door() {
    let (_mock, gw) = start_gateway_with(|config| config.upstream.retries = 0).await;
    for door in MODEL_DOORS {
        let response = gw
            .door_request(door, ALICE_KEY)
            .scenario("status-402")
            .fetch()
            .await;
        assert_eq!(response.status(), 402, "{door:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], 402, "{door:?}: {body}");
        assert_eq!(
            body["user_id"], "user_mock",
            "{door:?}: the upstream's body, not ours"
        );
    }
}

// ---- metrics ----

#[tokio::test]
async fn every_door_is_counted_under_its_own_route() {
    let (_mock, gw) = start_gateway().await;
    for door in MODEL_DOORS {
        answered(gw.door_request(door, ALICE_KEY)).await;
        let route = door.route();
        eventually(&format!("a request counted on route={route}"), async || {
            requests_on_route(&gw.metrics_text().await, "alice", route, 200) == 1.0
        })
        .await;
    }
}

// ---- count_tokens ----

/// `POST <prefix>/messages/count_tokens`, without credentials.
fn count_tokens(gw: &TestGateway, prefix: &str) -> reqwest::RequestBuilder {
    gw.post(&format!("{prefix}/messages/count_tokens"))
        .header("anthropic-version", "2023-06-01")
}

fn count_body(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// The `input_tokens` the gateway counted for `text`.
async fn counted(gw: &TestGateway, prefix: &str, text: &str) -> u64 {
    let response = count_tokens(gw, prefix)
        .header("x-api-key", ALICE_KEY)
        .json(&count_body(MODEL, text))
        .fetch()
        .await;
    assert_eq!(response.status(), 200, "{prefix}");
    let body: Value = response.json().await.unwrap();
    body["input_tokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("{body}"))
}

#[tokio::test]
async fn count_tokens_is_answered_by_the_gateway_and_never_forwarded() {
    let (mock, gw) = start_gateway().await;
    for prefix in PREFIXES {
        let short = counted(&gw, prefix, "Hello, Claude").await;
        assert!(short > 0, "{prefix}");
        let long = counted(&gw, prefix, &"Hello, Claude. ".repeat(200)).await;
        assert!(
            long > short,
            "{prefix}: {long} for a longer text vs {short}"
        );
    }
    assert!(
        mock.forwarded_nothing(Duration::from_millis(100)).await,
        "answered here"
    );
}

#[tokio::test]
async fn count_tokens_needs_a_key_and_refuses_denied_models_in_anthropics_shape() {
    let org = Org::start("[policy]\nmodels.deny = [\"*:free\"]\n").await;
    let gw = &org.gw;
    let bare = count_tokens(gw, "/v1")
        .json(&count_body(MODEL, "Hi"))
        .fetch()
        .await;
    assert_eq!(anthropic_error_of(bare).await.0, 401);
    let denied = count_tokens(gw, "/v1")
        .header("x-api-key", ALICE_KEY)
        .json(&count_body("x/y:free", "Hi"))
        .fetch()
        .await;
    let (status, _, message) = anthropic_error_of(denied).await;
    assert_eq!(status, 403);
    assert!(message.contains("policy.models.deny"), "{message}");
    assert!(org.mock.forwarded_nothing(Duration::from_millis(100)).await);
}
