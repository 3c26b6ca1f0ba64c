//! The `provider` object: the policy's side compiled once, then merged with the client's, field
//! by field, never looser (INTERFACE.md, "How a policy combines with what the client sent").
//!
//! | field | result |
//! | --- | --- |
//! | `ignore` | union |
//! | `only`, `quantizations` | intersection; the policy's if only it is set; empty → 403 |
//! | `data_collection` | `deny` wins |
//! | `zdr`, `require_parameters`, `enforce_distillable_text` | `true` wins |
//! | `max_price.*` | the lower, per field |
//! | `preferred_min_throughput` / `preferred_max_latency` | higher floor / lower ceiling, per percentile |
//! | `order`, `sort`, `allow_fallbacks` | the client's, else the policy's; `force` overrides the client |
//! | anything else | passed on untouched |
//!
//! The client's side is read once per request (`read`): every field above is type-checked
//! whether or not the policy binds it. "Stricter" itself is defined in [`super::strictness`].
//! The client's keys keep their order and spelling; a value is rewritten only when the policy's
//! side wins, and then as a number (prices, percentiles) or as the policy wrote it.

mod merge;
mod read;

#[cfg(test)]
pub(crate) use merge::merge;
pub(crate) use merge::merge_into;
pub(crate) use read::ClientProvider;
#[cfg(test)]
pub(crate) use read::StrictView;

use serde_json::{Map, Value};
use std::sync::Arc;

use crate::config::{DataCollection, Percentiles, ProviderPolicy, ProviderSort};

use super::strictness::{
    AllowList, Ceiling, DenyList, Each, Floor, Limit, Name, Required, Strict, Vocabulary,
};

/// Requirements that are on or unset, in the order they are applied.
const FLAGS: [&str; 3] = ["zdr", "require_parameters", "enforce_distillable_text"];
/// `max_price`'s fields, in OpenRouter's order.
const PRICES: [&str; 5] = ["prompt", "completion", "image", "audio", "request"];
/// Routing preferences: the client decides unless the policy forces them.
const PREFERENCES: [&str; 3] = ["order", "sort", "allow_fallbacks"];

/// A value the policy binds, and the rule (config path) it comes from.
#[derive(Debug, Clone, PartialEq)]
struct Bound<T> {
    value: T,
    rule: Arc<str>,
}

/// A routing preference: a default for clients that give none, or forced over theirs.
#[derive(Debug, Clone, PartialEq)]
struct Preference {
    value: Value,
    rule: Arc<str>,
    forced: bool,
}

/// The policy's side of `provider`, compiled: `None` everywhere is a policy that leaves the
/// client's `provider` alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ProviderRules {
    data_collection: Option<Bound<Required>>,
    flags: [Option<Bound<Required>>; 3],
    only: Option<Bound<AllowList>>,
    quantizations: Option<Bound<AllowList>>,
    ignore: Option<Bound<DenyList>>,
    max_price: [Option<Bound<Ceiling>>; 5],
    min_throughput: Option<Bound<Each<Floor, 4>>>,
    max_latency: Option<Bound<Each<Ceiling, 4>>>,
    preferences: [Option<Preference>; 3],
    /// `ignore` plus the service-tier endpoints of its base slugs (`openai/priority`, ...),
    /// built once here rather than per request; merged instead of `ignore` when a request can
    /// reach tier endpoints.
    ignore_with_tiers: Option<Bound<DenyList>>,
}

impl ProviderRules {
    /// Compiles one layer; `path` is `policy.provider` or `policies.NAME.provider`. Empty lists,
    /// `false`, `"allow"` and zero performance preferences are unset.
    pub(crate) fn from_policy(policy: &ProviderPolicy, path: &str) -> Self {
        Self::compile_one(policy, path).with_tier_ignore()
    }

    /// `ignore_with_tiers`, from `ignore`.
    fn with_tier_ignore(mut self) -> Self {
        self.ignore_with_tiers = self.ignore.as_ref().map(|rule| Bound {
            value: merge::with_tier_endpoints(&rule.value),
            rule: rule.rule.clone(),
        });
        self
    }

    fn compile_one(policy: &ProviderPolicy, path: &str) -> Self {
        let flag = |field: &str, on: Option<bool>| {
            (on == Some(true)).then(|| bound(path, field, Required(true)))
        };
        let list = |field: &str, vocabulary, entries: &[String]| {
            (!entries.is_empty()).then(|| {
                let names = entries.iter().map(|e| Name::new(vocabulary, e)).collect();
                bound(
                    path,
                    field,
                    AllowList {
                        vocabulary,
                        entries: Some(names),
                    },
                )
            })
        };
        let price = |field: &str, value: Option<f64>| {
            value.map(|v| bound(path, &format!("max_price.{field}"), Ceiling(Some(v))))
        };
        let p = &policy.max_price;
        Self {
            data_collection: (policy.data_collection == Some(DataCollection::Deny))
                .then(|| bound(path, "data_collection", Required(true))),
            flags: [
                flag(FLAGS[0], policy.zdr),
                flag(FLAGS[1], policy.require_parameters),
                flag(FLAGS[2], policy.enforce_distillable_text),
            ],
            only: list("only", Vocabulary::Provider, &policy.only),
            quantizations: list(
                "quantizations",
                Vocabulary::Quantization,
                &policy.quantizations,
            ),
            ignore: (!policy.ignore.is_empty()).then(|| {
                let names = policy
                    .ignore
                    .iter()
                    .map(|e| Name::new(Vocabulary::Provider, e))
                    .collect();
                bound(
                    path,
                    "ignore",
                    DenyList {
                        vocabulary: Vocabulary::Provider,
                        entries: names,
                    },
                )
            }),
            max_price: [
                price(PRICES[0], p.prompt),
                price(PRICES[1], p.completion),
                price(PRICES[2], p.image),
                price(PRICES[3], p.audio),
                price(PRICES[4], p.request),
            ],
            min_throughput: percentiles(policy.preferred_min_throughput.as_ref())
                .map(|v| bound(path, "preferred_min_throughput", v)),
            max_latency: percentiles(policy.preferred_max_latency.as_ref())
                .map(|v| bound(path, "preferred_max_latency", v)),
            preferences: [
                preference(
                    path,
                    "order",
                    order_value(&policy.force.order),
                    order_value(&policy.order),
                ),
                preference(
                    path,
                    "sort",
                    policy.force.sort.as_ref().map(sort_value),
                    policy.sort.as_ref().map(sort_value),
                ),
                preference(
                    path,
                    "allow_fallbacks",
                    policy.force.allow_fallbacks.map(Value::Bool),
                    policy.allow_fallbacks.map(Value::Bool),
                ),
            ],
            ignore_with_tiers: None,
        }
    }

    /// Layers a named policy on this (the org's) one: the named side can only tighten, merged with
    /// the same rules as a client. Routing preferences: the org's `force` stands; otherwise the
    /// named policy's (forced or default) replace the org's. An empty intersection is a config error.
    pub(crate) fn tightened_by(self, named: Self) -> Result<Self, String> {
        let [f0, f1, f2] = self.flags;
        let [n0, n1, n2] = named.flags;
        let [p0, p1, p2, p3, p4] = self.max_price;
        let [m0, m1, m2, m3, m4] = named.max_price;
        let [o0, o1, o2] = self.preferences;
        let [r0, r1, r2] = named.preferences;
        Ok(Self {
            data_collection: layer(self.data_collection, named.data_collection)?,
            flags: [layer(f0, n0)?, layer(f1, n1)?, layer(f2, n2)?],
            only: layer(self.only, named.only)?,
            quantizations: layer(self.quantizations, named.quantizations)?,
            ignore: layer(self.ignore, named.ignore)?,
            max_price: [
                layer(p0, m0)?,
                layer(p1, m1)?,
                layer(p2, m2)?,
                layer(p3, m3)?,
                layer(p4, m4)?,
            ],
            min_throughput: layer(self.min_throughput, named.min_throughput)?,
            max_latency: layer(self.max_latency, named.max_latency)?,
            preferences: [prefer(o0, r0), prefer(o1, r1), prefer(o2, r2)],
            ignore_with_tiers: None,
        }
        .with_tier_ignore())
    }

    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The rule behind `ignore`, when the policy binds it.
    pub(crate) fn ignore_rule(&self) -> Option<&str> {
        self.ignore.as_ref().map(|b| &*b.rule)
    }

    /// The rule behind `only`, when the policy binds it.
    pub(crate) fn only_rule(&self) -> Option<&str> {
        self.only.as_ref().map(|b| &*b.rule)
    }

    /// The partition a forced `sort = { partition = ... }` fixes, and its rule.
    pub(crate) fn forced_partition(&self) -> Option<(&str, &str)> {
        let sort = self.preferences[1].as_ref().filter(|p| p.forced)?;
        let partition = sort.value.get("partition")?.as_str()?;
        Some((partition, &*sort.rule))
    }
}

fn bound<T>(path: &str, field: &str, value: T) -> Bound<T> {
    Bound {
        value,
        rule: format!("{path}.{field}").into(),
    }
}

/// One strict field of two layers: the named side is merged like a client's.
fn layer<T: Strict + Clone>(
    org: Option<Bound<T>>,
    named: Option<Bound<T>>,
) -> Result<Option<Bound<T>>, String> {
    match (org, named) {
        (None, only_one) | (only_one, None) => Ok(only_one),
        (Some(org), Some(named)) => {
            let value = named.value.stricter(&org.value).ok_or_else(|| {
                format!(
                    "{} has nothing in common with {}, so no request could pass",
                    named.rule, org.rule
                )
            })?;
            let rule = if value == named.value {
                named.rule
            } else if value == org.value {
                org.rule
            } else {
                format!("{} + {}", org.rule, named.rule).into()
            };
            Ok(Some(Bound { value, rule }))
        }
    }
}

fn prefer(org: Option<Preference>, named: Option<Preference>) -> Option<Preference> {
    match (org, named) {
        (Some(org), _) if org.forced => Some(org),
        (org, None) => org,
        (_, named) => named,
    }
}

fn preference(
    path: &str,
    field: &str,
    forced: Option<Value>,
    default: Option<Value>,
) -> Option<Preference> {
    match (forced, default) {
        (Some(value), _) => Some(Preference {
            value,
            rule: format!("{path}.force.{field}").into(),
            forced: true,
        }),
        (None, Some(value)) => Some(Preference {
            value,
            rule: format!("{path}.{field}").into(),
            forced: false,
        }),
        (None, None) => None,
    }
}

fn order_value(order: &[String]) -> Option<Value> {
    (!order.is_empty()).then(|| Value::from(order.to_vec()))
}

fn sort_value(sort: &ProviderSort) -> Value {
    match sort {
        ProviderSort::By(by) => Value::String(by.clone()),
        ProviderSort::Detailed { by, partition } => {
            let mut object = Map::new();
            if let Some(by) = by {
                object.insert("by".to_owned(), Value::String(by.clone()));
            }
            if let Some(partition) = partition {
                object.insert("partition".to_owned(), Value::String(partition.clone()));
            }
            Value::Object(object)
        }
    }
}

/// A performance preference from the config; `0` means none.
fn percentiles<T: Limit>(config: Option<&Percentiles>) -> Option<Each<T, 4>> {
    let given = |v: Option<f64>| v.filter(|v| *v > 0.0);
    let slots = match config? {
        Percentiles::P50(v) => [given(Some(*v)), None, None, None],
        Percentiles::Each { p50, p75, p90, p99 } => {
            [given(*p50), given(*p75), given(*p90), given(*p99)]
        }
    };
    slots
        .iter()
        .any(Option::is_some)
        .then(|| Each(slots.map(T::of)))
}
