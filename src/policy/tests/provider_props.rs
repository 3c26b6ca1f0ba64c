//! Property tests of the provider merge over generated client objects and policies, stated on
//! the one definition of "stricter" (`strictness.rs`, read through `StrictView`).

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};

use bytes::Bytes;

use crate::config::{
    DataCollection, ForcedRouting, MaxPrice, Percentiles, PolicyConfig, ProviderPolicy,
    ProviderSort,
};
use crate::error::GatewayError;
use crate::policy::fields::number;
use crate::policy::provider::{merge, merge_into, ClientProvider, ProviderRules, StrictView};
use crate::policy::strictness::Strict;
use crate::policy::{Cap, CompiledPolicy, RequestShape};
use crate::request_body::RequestBody;

/// Every door's shape, and more: the merge must not depend on the door (`crate::doors` names
/// each door's; the policy knows none of them).
fn request_shape() -> impl Strategy<Value = RequestShape> {
    let caps = vec![
        Cap::None,
        Cap::Chat,
        Cap::Field("max_output_tokens"),
        Cap::Field("max_tokens"),
        Cap::Messages,
    ];
    (any::<bool>(), select(caps)).prop_map(|(fallback_models, cap)| RequestShape {
        fallback_models,
        cap,
    })
}

/// Display names, slugs, case variants, a regional and a tier endpoint.
const PROVIDERS: &[&str] = &[
    "OpenAI",
    "openai",
    "Azure",
    "azure",
    "Together",
    "Google Vertex",
    "google-vertex",
    "google-vertex/us-east5",
    "DeepInfra",
    "deepinfra/turbo",
    "openai/priority",
    "Groq",
];
const QUANTIZATIONS: &[&str] = &["fp8", "mxfp8", "fp4", "nvfp4", "bf16", "FP16", "int8"];
const AMOUNTS: &[f64] = &[0.0, 0.25, 1.0, 2.5, 5.0, 10.0, 100.0];
const SORTS: &[&str] = &["price", "throughput", "latency"];

// === policies ===

fn names(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    vec(select(pool).prop_map(str::to_owned), 0..4)
}

fn amount() -> impl Strategy<Value = f64> {
    select(AMOUNTS)
}

fn sort() -> impl Strategy<Value = ProviderSort> {
    prop_oneof![
        select(SORTS).prop_map(|by| ProviderSort::By(by.to_owned())),
        (
            option::of(select(SORTS)),
            option::of(select(&["model", "none"][..]))
        )
            .prop_map(|(by, partition)| {
                ProviderSort::Detailed {
                    by: by.map(str::to_owned),
                    partition: partition.map(str::to_owned),
                }
            }),
    ]
}

fn config_percentiles() -> impl Strategy<Value = Percentiles> {
    prop_oneof![
        amount().prop_map(Percentiles::P50),
        (
            option::of(amount()),
            option::of(amount()),
            option::of(amount()),
            option::of(amount())
        )
            .prop_map(|(p50, p75, p90, p99)| Percentiles::Each { p50, p75, p90, p99 }),
    ]
}

fn provider_policy() -> impl Strategy<Value = ProviderPolicy> {
    let requirements = (
        option::of(select(&[DataCollection::Allow, DataCollection::Deny][..])),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
    );
    let lists = (names(PROVIDERS), names(PROVIDERS), names(QUANTIZATIONS));
    let prices = (
        option::of(amount()),
        option::of(amount()),
        option::of(amount()),
        option::of(amount()),
        option::of(amount()),
    );
    let performance = (
        option::of(config_percentiles()),
        option::of(config_percentiles()),
    );
    let routing = (
        names(PROVIDERS),
        option::of(sort()),
        option::of(any::<bool>()),
        prop_oneof![3 => Just(Vec::new()), 1 => names(PROVIDERS)],
        option::of(sort()),
        option::of(any::<bool>()),
    );
    (requirements, lists, prices, performance, routing).prop_map(
        |(
            (data_collection, zdr, require_parameters, enforce_distillable_text),
            (ignore, only, quantizations),
            (prompt, completion, image, audio, request),
            (preferred_min_throughput, preferred_max_latency),
            (order, sort, allow_fallbacks, forced_order, forced_sort, forced_fallbacks),
        )| ProviderPolicy {
            data_collection,
            zdr,
            enforce_distillable_text,
            require_parameters,
            ignore,
            only,
            quantizations,
            order,
            sort,
            allow_fallbacks,
            max_price: MaxPrice {
                prompt,
                completion,
                image,
                audio,
                request,
            },
            preferred_min_throughput,
            preferred_max_latency,
            force: ForcedRouting {
                order: forced_order,
                sort: forced_sort,
                allow_fallbacks: forced_fallbacks,
            },
        },
    )
}

// === client objects ===

/// Absent, `null`, or a value.
fn nullable(value: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    prop_oneof![3 => value.prop_map(Some), 1 => Just(Some(Value::Null)), 3 => Just(None)].boxed()
}

fn json_names(pool: &'static [&'static str]) -> impl Strategy<Value = Value> {
    names(pool).prop_map(Value::from)
}

/// A price as a number or as a numeric string.
fn json_price() -> impl Strategy<Value = Value> {
    prop_oneof![
        amount().prop_map(number),
        amount().prop_map(|a| Value::String(a.to_string()))
    ]
}

fn json_prices() -> impl Strategy<Value = Value> {
    (vec(option::of(json_price()), 5), any::<bool>()).prop_map(|(prices, unknown)| {
        let mut object = Map::new();
        for (field, price) in ["prompt", "completion", "image", "audio", "request"]
            .iter()
            .zip(prices)
        {
            if let Some(price) = price {
                object.insert((*field).to_owned(), price);
            }
        }
        if unknown {
            object.insert("video".to_owned(), json!(7));
        }
        Value::Object(object)
    })
}

fn json_percentiles() -> impl Strategy<Value = Value> {
    prop_oneof![
        amount().prop_map(number),
        (vec(option::of(amount()), 4), any::<bool>()).prop_map(|(slots, unknown)| {
            let mut object = Map::new();
            for (key, slot) in ["p50", "p75", "p90", "p99"].iter().zip(slots) {
                if let Some(v) = slot {
                    object.insert((*key).to_owned(), number(v));
                }
            }
            if unknown {
                object.insert("p95".to_owned(), json!(1));
            }
            Value::Object(object)
        }),
    ]
}

fn json_sort() -> impl Strategy<Value = Value> {
    sort().prop_map(|s| serde_json::to_value(s).unwrap_or_default())
}

fn client_provider() -> impl Strategy<Value = Map<String, Value>> {
    let bool_value = || any::<bool>().prop_map(Value::Bool);
    let entries = vec![
        (
            "data_collection",
            nullable(select(&["allow", "deny"][..]).prop_map(Value::from)),
        ),
        ("zdr", nullable(bool_value())),
        ("require_parameters", nullable(bool_value())),
        ("enforce_distillable_text", nullable(bool_value())),
        ("only", nullable(json_names(PROVIDERS))),
        ("ignore", nullable(json_names(PROVIDERS))),
        ("quantizations", nullable(json_names(QUANTIZATIONS))),
        ("order", nullable(json_names(PROVIDERS))),
        ("sort", nullable(json_sort())),
        ("allow_fallbacks", nullable(bool_value())),
        ("max_price", nullable(json_prices())),
        ("preferred_min_throughput", nullable(json_percentiles())),
        ("preferred_max_latency", nullable(json_percentiles())),
        ("future", nullable(Just(json!({ "x": [1, "two"] })))),
    ];
    let (keys, values): (Vec<&str>, Vec<_>) = entries.into_iter().unzip();
    values
        .prop_map(move |values| {
            keys.iter()
                .zip(values)
                .filter_map(|(k, v)| Some(((*k).to_owned(), v?)))
                .collect::<Vec<_>>()
        })
        .prop_shuffle()
        .prop_map(|entries| entries.into_iter().collect())
}

/// A known field and a value of a type it does not take.
fn wrong_field() -> impl Strategy<Value = (&'static str, Value)> {
    let of = |fields: &[&'static str], values: Vec<Value>| {
        (select(fields.to_vec()), select(values)).boxed()
    };
    prop_oneof![
        of(
            &["only", "ignore", "order", "quantizations"],
            vec![
                json!("OpenAI"),
                json!(1),
                json!({}),
                json!(true),
                json!(["a", 2])
            ],
        ),
        of(
            &["data_collection"],
            vec![json!("maybe"), json!(true), json!(["deny"]), json!({})],
        ),
        of(
            &[
                "zdr",
                "require_parameters",
                "enforce_distillable_text",
                "allow_fallbacks"
            ],
            vec![json!("true"), json!(1), json!([]), json!({})],
        ),
        of(
            &["sort"],
            vec![
                json!(1),
                json!(true),
                json!(["price"]),
                json!({ "by": 1 }),
                json!({ "partition": false })
            ],
        ),
        of(
            &["max_price"],
            vec![
                json!(3),
                json!("1"),
                json!([]),
                json!({ "prompt": "cheap" }),
                json!({ "audio": true }),
                json!({ "request": "NaN" })
            ],
        ),
        of(
            &["preferred_min_throughput", "preferred_max_latency"],
            vec![
                json!("1"),
                json!([1]),
                json!(true),
                json!({ "p90": "1" }),
                json!({ "p50": [] })
            ],
        ),
    ]
}

// === clients already inside the policy ===

/// Deterministic choices from generated bytes.
struct Dice(std::vec::IntoIter<u8>);

impl Dice {
    fn roll(&mut self, sides: usize) -> usize {
        self.0.next().map_or(0, |b| usize::from(b) % sides)
    }
    fn coin(&mut self) -> bool {
        self.roll(2) == 1
    }
    fn recase(&mut self, name: &str) -> String {
        match self.roll(3) {
            0 => name.to_uppercase(),
            1 => name.to_lowercase(),
            _ => name.to_owned(),
        }
    }
    fn pick<'a>(&mut self, pool: &[&'a str]) -> &'a str {
        pool[self.roll(pool.len())]
    }
}

/// A client object at least as strict as `policy` on every bound field that gives every routing
/// preference the policy has (the forced one where forced): nothing for the merge to change.
fn stricter_client(policy: &ProviderPolicy, dice: &mut Dice) -> Map<String, Value> {
    let mut out = Map::new();
    let mut put = |key: &str, value: Value| {
        out.insert(key.to_owned(), value);
    };
    let some_names = |dice: &mut Dice, pool: &[&str]| -> Value {
        let n = 1 + dice.roll(3);
        Value::from(
            (0..n)
                .map(|_| dice.pick(pool).to_owned())
                .collect::<Vec<_>>(),
        )
    };

    // Routing preferences.
    if !policy.force.order.is_empty() {
        put("order", Value::from(policy.force.order.clone()));
    } else if !policy.order.is_empty() || dice.coin() {
        put("order", some_names(dice, PROVIDERS));
    }
    let sort_json = |s: &ProviderSort| serde_json::to_value(s).unwrap_or_default();
    match (&policy.force.sort, &policy.sort) {
        (Some(forced), _) => put("sort", sort_json(forced)),
        (None, Some(_)) => put("sort", Value::from(dice.pick(SORTS))),
        (None, None) => {}
    }
    match (policy.force.allow_fallbacks, policy.allow_fallbacks) {
        (Some(forced), _) => put("allow_fallbacks", Value::Bool(forced)),
        (None, Some(_)) => put("allow_fallbacks", Value::Bool(dice.coin())),
        (None, None) => {}
    }

    // Requirements: on where the policy turns them on.
    if policy.data_collection == Some(DataCollection::Deny) || dice.coin() {
        put("data_collection", Value::from("deny"));
    }
    for (field, on) in [
        ("zdr", policy.zdr),
        ("require_parameters", policy.require_parameters),
        ("enforce_distillable_text", policy.enforce_distillable_text),
    ] {
        if on == Some(true) {
            put(field, Value::Bool(true));
        } else if dice.coin() {
            put(field, Value::Bool(dice.coin()));
        }
    }

    // Allow-lists: a re-cased non-empty subset of the policy's; deny-lists: a superset.
    for (field, list, pool) in [
        ("only", &policy.only, PROVIDERS),
        ("quantizations", &policy.quantizations, QUANTIZATIONS),
    ] {
        if list.is_empty() {
            if dice.coin() {
                put(field, some_names(dice, pool));
            }
            continue;
        }
        let mut subset = Vec::new();
        for name in list {
            if dice.coin() {
                subset.push(dice.recase(name));
            }
        }
        if subset.is_empty() {
            subset.push(dice.recase(&list[0]));
        }
        put(field, Value::from(subset));
    }
    let mut ignore: Vec<String> = policy.ignore.iter().map(|n| dice.recase(n)).collect();
    if dice.coin() {
        ignore.push(dice.pick(PROVIDERS).to_owned());
    }
    if !ignore.is_empty() {
        put("ignore", Value::from(ignore));
    }

    // Bounds: at or below each ceiling, at or above each floor; numbers or numeric strings.
    let mut prices = Map::new();
    let p = &policy.max_price;
    for (field, bound) in [
        ("prompt", p.prompt),
        ("completion", p.completion),
        ("image", p.image),
        ("audio", p.audio),
        ("request", p.request),
    ] {
        let Some(bound) = bound else { continue };
        let lowered = bound * [0.0, 0.5, 1.0][dice.roll(3)];
        let value = if dice.coin() {
            number(lowered)
        } else {
            Value::String(lowered.to_string())
        };
        prices.insert(field.to_owned(), value);
    }
    if !prices.is_empty() {
        put("max_price", Value::Object(prices));
    }
    if let Some(value) = tightened(policy.preferred_min_throughput.as_ref(), dice, |v, d| {
        v + [0.0, 1.0, 50.0][d.roll(3)]
    }) {
        put("preferred_min_throughput", value);
    }
    if let Some(value) = tightened(policy.preferred_max_latency.as_ref(), dice, |v, d| {
        v * [0.0, 0.5, 1.0][d.roll(3)]
    }) {
        put("preferred_max_latency", value);
    }
    put("future", json!({ "kept": true }));
    out
}

/// A performance preference at least as strict as the policy's (which binds only values > 0).
fn tightened(
    policy: Option<&Percentiles>,
    dice: &mut Dice,
    tighten: impl Fn(f64, &mut Dice) -> f64,
) -> Option<Value> {
    let slots = match policy? {
        Percentiles::P50(v) => [Some(*v), None, None, None],
        Percentiles::Each { p50, p75, p90, p99 } => [*p50, *p75, *p90, *p99],
    };
    let bound: Vec<(usize, f64)> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.filter(|v| *v > 0.0).map(|v| (i, v)))
        .collect();
    if bound.is_empty() {
        return None;
    }
    if bound.len() == 1 && bound[0].0 == 0 && dice.coin() {
        return Some(number(tighten(bound[0].1, dice)));
    }
    let mut object = Map::new();
    for (i, v) in bound {
        object.insert(
            ["p50", "p75", "p90", "p99"][i].to_owned(),
            number(tighten(v, dice)),
        );
    }
    Some(Value::Object(object))
}

fn policy_and_stricter_client() -> impl Strategy<Value = (ProviderPolicy, Map<String, Value>)> {
    (provider_policy(), vec(any::<u8>(), 96)).prop_map(|(policy, bytes)| {
        let client = stricter_client(&policy, &mut Dice(bytes.into_iter()));
        (policy, client)
    })
}

fn view_of_policy(policy: &ProviderPolicy) -> StrictView {
    StrictView::of_rules(&ProviderRules::from_policy(policy, "policy.provider"))
}

/// What a routing preference must be after the merge: forced, else the client's, else the
/// policy's default.
fn expected_preference(
    client: &Map<String, Value>,
    field: &str,
    forced: Option<Value>,
    default: Option<Value>,
) -> Option<Value> {
    let given = client.get(field).filter(|v| !v.is_null()).cloned();
    forced
        .or(given)
        .or(default)
        .or_else(|| client.get(field).cloned())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_merge_is_never_looser_than_the_policy_or_the_client(
        client in client_provider(),
        policy in provider_policy(),
    ) {
        let policy_view = view_of_policy(&policy);
        let client_view = StrictView::of_provider(&client).unwrap();
        match merge(Some(&client), &policy) {
            Ok(merged) => {
                let merged_view = StrictView::of_provider(&merged).unwrap();
                prop_assert!(merged_view.at_least_as_strict_as(&policy_view), "{merged_view:?}\nvs policy {policy_view:?}");
                prop_assert!(merged_view.at_least_as_strict_as(&client_view), "{merged_view:?}\nvs client {client_view:?}");
                // Unknown keys pass untouched, and the client's keys keep their order.
                prop_assert_eq!(merged.get("future"), client.get("future"));
                let client_keys: Vec<&String> = client.keys().collect();
                let merged_keys: Vec<&String> = merged.keys().take(client.len()).collect();
                prop_assert_eq!(client_keys, merged_keys);
                let order = |list: &[String]| (!list.is_empty()).then(|| Value::from(list.to_vec()));
                let sort = |s: &Option<ProviderSort>| s.as_ref().map(|s| serde_json::to_value(s).unwrap_or_default());
                let fallbacks = |b: Option<bool>| b.map(Value::Bool);
                for (field, forced, default) in [
                    ("order", order(&policy.force.order), order(&policy.order)),
                    ("sort", sort(&policy.force.sort), sort(&policy.sort)),
                    ("allow_fallbacks", fallbacks(policy.force.allow_fallbacks), fallbacks(policy.allow_fallbacks)),
                ] {
                    prop_assert_eq!(merged.get(field).cloned(), expected_preference(&client, field, forced, default), "{}", field);
                }
            }
            Err(refusal) => {
                prop_assert!(matches!(refusal.error, GatewayError::PolicyDenied(_)), "{:?}", refusal.error);
                prop_assert!(client_view.stricter(&policy_view).is_none());
                prop_assert_eq!(refusal.actions.len(), refusal.actions.iter().position(|a| a.outcome == crate::policy::action::Outcome::Deny).map_or(0, |i| i + 1));
            }
        }
    }

    #[test]
    fn a_request_gets_what_the_merge_makes(
        policy in provider_policy(),
        requests in vec((option::of(client_provider()), any::<bool>()), 1..8),
        shape in request_shape(),
    ) {
        // One compiled policy serves every request, as a key's does; each request is checked
        // against the merge of its own `provider` alone: the raw text read, the object written
        // back, the forwarded lists and every action, in words, as `orgate explain` shows them.
        let org = PolicyConfig { provider: policy.clone(), ..PolicyConfig::default() };
        let compiled = CompiledPolicy::compile(&org, None).unwrap();
        let rules = ProviderRules::from_policy(&policy, "policy.provider");
        for (client, nitro) in requests {
            let mut body = json!({
                "model": if nitro { "openai/gpt-4o:nitro" } else { "openai/gpt-4o" },
                "messages": [],
            });
            if let Some(client) = &client {
                body["provider"] = Value::Object(client.clone());
            }
            let original = Bytes::from(serde_json::to_vec(&body).unwrap());
            let mut req = RequestBody::parse(&original).unwrap();
            let outcome = compiled.apply(&mut req, shape);
            if nitro && !policy.only.is_empty() {
                // `:nitro` reaches tier endpoints, which `only` cannot bind: refused first.
                let refusal = outcome.unwrap_err();
                prop_assert_eq!(refusal.actions.len(), 1);
                prop_assert_eq!(&*refusal.actions[0].rule, "policy.provider.only");
                continue;
            }
            let read = client.clone().map(ClientProvider::read).transpose().unwrap();
            let mut actions = Vec::new();
            let expected = merge_into(read.unwrap_or_default(), &rules, nitro, &mut actions);
            match (outcome, expected) {
                (Ok(applied), Ok(merged)) => {
                    let forwarded: Value = serde_json::from_slice(&req.to_body(&original)).unwrap();
                    let provider = merged.provider.map(Value::Object).or_else(|| client.map(Value::Object));
                    prop_assert_eq!(forwarded.get("provider"), provider.as_ref());
                    prop_assert_eq!(&*applied.only, &merged.only[..]);
                    prop_assert_eq!(&*applied.ignore, &merged.ignore[..]);
                    prop_assert_eq!(&applied.actions, &actions);
                    for action in &applied.actions {
                        prop_assert_eq!(action.outcome, crate::policy::action::Outcome::Rewrite);
                        let line = action.to_string();
                        prop_assert!(line.starts_with("provider.") && line.contains(&*action.rule), "{}", line);
                    }
                }
                (Err(refusal), Err(error)) => {
                    prop_assert_eq!(refusal.error.to_string(), error.to_string());
                    prop_assert_eq!(&refusal.actions, &actions);
                }
                (a, b) => prop_assert!(false, "applied {:?} but merged {:?}", a, b),
            }
        }
    }

    #[test]
    fn a_known_field_of_the_wrong_type_is_a_400_naming_it_whatever_the_policy(
        client in client_provider(),
        (field, wrong) in wrong_field(),
        policy in option::of(provider_policy()),
    ) {
        let mut client = client;
        client.insert(field.to_owned(), wrong);
        let org = PolicyConfig { provider: policy.unwrap_or_default(), ..PolicyConfig::default() };
        let compiled = CompiledPolicy::compile(&org, None).unwrap();
        let body = json!({ "model": "openai/gpt-4o", "messages": [], "provider": client });
        let original = Bytes::from(serde_json::to_vec(&body).unwrap());
        let mut req = RequestBody::parse(&original).unwrap();
        match compiled.apply(&mut req, RequestShape::CHAT) {
            Ok(applied) => prop_assert!(false, "forwarded: {:?}", applied),
            Err(refusal) => {
                prop_assert!(matches!(refusal.error, GatewayError::BadRequest(_)), "{:?}", refusal.error);
                let message = refusal.error.to_string();
                prop_assert!(message.starts_with(&format!("`provider.{field}")), "{}", message);
                prop_assert!(refusal.actions.is_empty(), "{:?}", refusal.actions);
            }
        }
    }

    #[test]
    fn merging_again_changes_nothing(client in client_provider(), policy in provider_policy()) {
        if let Ok(merged) = merge(Some(&client), &policy) {
            prop_assert_eq!(merge(Some(&merged), &policy).unwrap(), merged);
        }
    }

    #[test]
    fn a_client_already_stricter_than_the_policy_passes_unchanged((policy, client) in policy_and_stricter_client()) {
        // The generator's promise, checked with the same order the merge uses.
        prop_assert!(StrictView::of_provider(&client).unwrap().at_least_as_strict_as(&view_of_policy(&policy)));
        prop_assert_eq!(merge(Some(&client), &policy).unwrap(), client);
    }

    #[test]
    fn the_policy_applies_without_a_client_provider(policy in provider_policy()) {
        let merged = merge(None, &policy).unwrap();
        prop_assert!(StrictView::of_provider(&merged).unwrap().at_least_as_strict_as(&view_of_policy(&policy)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_named_policy_layered_on_the_orgs_is_never_looser_than_either(
        org in provider_policy(),
        named in provider_policy(),
    ) {
        let org_rules = ProviderRules::from_policy(&org, "policy.provider");
        let named_rules = ProviderRules::from_policy(&named, "policies.team.provider");
        let (org_view, named_view) = (StrictView::of_rules(&org_rules), StrictView::of_rules(&named_rules));
        match org_rules.tightened_by(named_rules) {
            Ok(layered) => {
                let layered_view = StrictView::of_rules(&layered);
                prop_assert!(layered_view.at_least_as_strict_as(&org_view));
                prop_assert!(layered_view.at_least_as_strict_as(&named_view));
            }
            Err(_) => prop_assert!(named_view.stricter(&org_view).is_none()),
        }
    }
}
