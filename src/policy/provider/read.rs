//! Reading the client's `provider`, once per request. Every field the interface knows is
//! type-checked whether or not the policy binds it (a wrong type is a 400 that names the field:
//! what a client sends must mean the same with or without a policy); the fields a policy can bind
//! are read into the strictness types the merge works on. `null` is unset everywhere (the spec
//! makes every field nullable); unknown fields pass unread.

use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::policy::fields::{self, render, strings_at, wrong_type};
use crate::policy::strictness::{
    AllowList, Ceiling, DenyList, Each, Floor, Limit, Name, Required, Vocabulary, PERCENTILES,
};

use super::{FLAGS, PRICES};

/// The client's `provider`, read: the object as sent, which the merge rewrites in place (its
/// unknown keys and key order stay), and its bindable fields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClientProvider {
    pub(crate) object: Map<String, Value>,
    pub(crate) strict: StrictView,
}

impl Default for ClientProvider {
    fn default() -> Self {
        Self {
            object: Map::new(),
            strict: StrictView::unset(),
        }
    }
}

impl ClientProvider {
    /// The request's `provider` as sent (raw JSON, if present): `None` when absent or `null`.
    pub(crate) fn parse(raw: Option<&str>) -> Result<Option<Self>, GatewayError> {
        match fields::parse("provider", raw)? {
            None => Ok(None),
            Some(Value::Object(object)) => Self::read(object).map(Some),
            Some(other) => Err(wrong_type("provider", "an object", &other)),
        }
    }

    /// Type-checks every known field of `object` and reads the bindable ones.
    pub(crate) fn read(object: Map<String, Value>) -> Result<Self, GatewayError> {
        let strict = StrictView::of_provider(&object)?;
        routing(&object)?;
        Ok(Self { object, strict })
    }
}

/// Every field a policy can bind, read from a client's `provider` (or, in tests, from compiled
/// rules): what the merge works on, and what the "never looser" properties are stated on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StrictView {
    pub(super) data_collection: Required,
    pub(super) flags: [Required; 3],
    pub(super) only: AllowList,
    pub(super) quantizations: AllowList,
    pub(super) ignore: DenyList,
    pub(super) max_price: Each<Ceiling, 5>,
    pub(super) min_throughput: Each<Floor, 4>,
    pub(super) max_latency: Each<Ceiling, 4>,
}

impl StrictView {
    /// Nothing bound: a client that sent no `provider`.
    pub(crate) fn unset() -> Self {
        let unset_list = |vocabulary| AllowList {
            vocabulary,
            entries: None,
        };
        Self {
            data_collection: Required(false),
            flags: [Required(false); 3],
            only: unset_list(Vocabulary::Provider),
            quantizations: unset_list(Vocabulary::Quantization),
            ignore: DenyList {
                vocabulary: Vocabulary::Provider,
                entries: Vec::new(),
            },
            max_price: Each::default(),
            min_throughput: Each::default(),
            max_latency: Each::default(),
        }
    }

    pub(crate) fn of_provider(provider: &Map<String, Value>) -> Result<Self, GatewayError> {
        let list = |field: &str, vocabulary| -> Result<AllowList, GatewayError> {
            Ok(AllowList {
                vocabulary,
                entries: names(provider.get(field), field, vocabulary)?,
            })
        };
        let prices = prices(provider.get("max_price"))?;
        let mut max_price = [Ceiling(None); 5];
        for (slot, field) in max_price.iter_mut().zip(PRICES) {
            *slot = Ceiling(price(prices.and_then(|p| p.get(field)), || {
                format!("provider.max_price.{field}")
            })?);
        }
        Ok(Self {
            data_collection: data_collection(provider.get("data_collection"))?,
            flags: [
                flag(provider.get(FLAGS[0]), FLAGS[0])?,
                flag(provider.get(FLAGS[1]), FLAGS[1])?,
                flag(provider.get(FLAGS[2]), FLAGS[2])?,
            ],
            only: list("only", Vocabulary::Provider)?,
            quantizations: list("quantizations", Vocabulary::Quantization)?,
            ignore: DenyList {
                vocabulary: Vocabulary::Provider,
                entries: names(provider.get("ignore"), "ignore", Vocabulary::Provider)?
                    .unwrap_or_default(),
            },
            max_price: Each(max_price),
            min_throughput: percentiles(
                provider.get("preferred_min_throughput"),
                "preferred_min_throughput",
            )?,
            max_latency: percentiles(
                provider.get("preferred_max_latency"),
                "preferred_max_latency",
            )?,
        })
    }
}

/// `order`, `sort`, `allow_fallbacks`: the merge keeps or replaces each whole, so they are
/// checked, not read.
fn routing(provider: &Map<String, Value>) -> Result<(), GatewayError> {
    strings_at(
        provider.get("order"),
        || "provider.order".to_owned(),
        |_| (),
    )?;
    sort(provider.get("sort"))?;
    boolean(provider.get("allow_fallbacks"), "allow_fallbacks")?;
    Ok(())
}

/// `sort`: a strategy (`"price"`), or an object whose `by` and `partition` are strings.
fn sort(value: Option<&Value>) -> Result<(), GatewayError> {
    match value {
        None | Some(Value::Null | Value::String(_)) => Ok(()),
        Some(Value::Object(sort)) => {
            for key in ["by", "partition"] {
                match sort.get(key) {
                    None | Some(Value::Null | Value::String(_)) => {}
                    Some(other) => {
                        return Err(wrong_type(
                            &format!("provider.sort.{key}"),
                            "a string",
                            other,
                        ))
                    }
                }
            }
            Ok(())
        }
        Some(other) => Err(wrong_type(
            "provider.sort",
            "a string or an object (by, partition)",
            other,
        )),
    }
}

/// `data_collection`: `"deny"` is on, `"allow"` and unset are off.
fn data_collection(value: Option<&Value>) -> Result<Required, GatewayError> {
    match value {
        None | Some(Value::Null) => Ok(Required(false)),
        Some(Value::String(s)) if s == "deny" => Ok(Required(true)),
        Some(Value::String(s)) if s == "allow" => Ok(Required(false)),
        Some(other) => Err(GatewayError::BadRequest(format!(
            "`provider.data_collection` must be \"allow\" or \"deny\", found {}",
            render(other)
        ))),
    }
}

/// A boolean, or unset.
fn boolean(value: Option<&Value>, field: &str) -> Result<Option<bool>, GatewayError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(on)) => Ok(Some(*on)),
        Some(other) => Err(wrong_type(&format!("provider.{field}"), "a boolean", other)),
    }
}

/// `zdr`, `require_parameters`, `enforce_distillable_text`: `true` is on.
fn flag(value: Option<&Value>, field: &str) -> Result<Required, GatewayError> {
    Ok(Required(boolean(value, field)? == Some(true)))
}

/// `only`, `ignore`, `quantizations`; an empty list is unset, as OpenRouter reads it.
fn names(
    value: Option<&Value>,
    field: &str,
    vocabulary: Vocabulary,
) -> Result<Option<Vec<Name>>, GatewayError> {
    let names = strings_at(
        value,
        || format!("provider.{field}"),
        |n| Name::new(vocabulary, n),
    )?;
    Ok(names.filter(|names| !names.is_empty()))
}

/// `max_price`: an object (unknown keys included), or unset.
fn prices(value: Option<&Value>) -> Result<Option<&Map<String, Value>>, GatewayError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(prices)) => Ok(Some(prices)),
        Some(other) => Err(wrong_type("provider.max_price", "an object", other)),
    }
}

/// One price: a number or a numeric string (OpenRouter's spec has said both).
/// `path` names it in the error, and is only built for one.
fn price(value: Option<&Value>, path: impl Fn() -> String) -> Result<Option<f64>, GatewayError> {
    let parsed = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(other) => return Err(wrong_type(&path(), "a number or a numeric string", other)),
    };
    match parsed {
        Some(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(GatewayError::BadRequest(format!(
            "`{}` must be a number or a numeric string, found {}",
            path(),
            value.map_or_else(String::new, render)
        ))),
    }
}

/// `preferred_min_throughput` / `preferred_max_latency`: a number (p50) or an object of
/// percentiles.
fn percentiles<T: Limit>(value: Option<&Value>, field: &str) -> Result<Each<T, 4>, GatewayError> {
    let mut slots = [T::default(); 4];
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => slots[0] = T::of(n.as_f64()),
        Some(Value::Object(object)) => {
            for (slot, key) in slots.iter_mut().zip(PERCENTILES) {
                *slot = T::of(match object.get(key) {
                    None | Some(Value::Null) => None,
                    Some(Value::Number(n)) => n.as_f64(),
                    Some(other) => {
                        return Err(wrong_type(
                            &format!("provider.{field}.{key}"),
                            "a number",
                            other,
                        ))
                    }
                });
            }
        }
        Some(other) => {
            return Err(wrong_type(
                &format!("provider.{field}"),
                "a number or an object of percentiles (p50, p75, p90, p99)",
                other,
            ))
        }
    }
    Ok(Each(slots))
}

#[cfg(test)]
impl StrictView {
    /// What compiled rules bind, as the same types.
    pub(crate) fn of_rules(rules: &super::ProviderRules) -> Self {
        fn value<T: Clone>(bound: &Option<super::Bound<T>>, unset: T) -> T {
            bound.as_ref().map_or(unset, |b| b.value.clone())
        }
        let unset = Self::unset();
        Self {
            data_collection: value(&rules.data_collection, unset.data_collection),
            flags: rules.flags.clone().map(|f| value(&f, Required(false))),
            only: value(&rules.only, unset.only),
            quantizations: value(&rules.quantizations, unset.quantizations),
            ignore: value(&rules.ignore, unset.ignore),
            max_price: Each(rules.max_price.clone().map(|p| value(&p, Ceiling(None)))),
            min_throughput: value(&rules.min_throughput, unset.min_throughput),
            max_latency: value(&rules.max_latency, unset.max_latency),
        }
    }
}

/// The whole object is as strict as its fields: the product order.
#[cfg(test)]
impl crate::policy::strictness::Strict for StrictView {
    fn at_least_as_strict_as(&self, other: &Self) -> bool {
        self.data_collection
            .at_least_as_strict_as(&other.data_collection)
            && self
                .flags
                .iter()
                .zip(&other.flags)
                .all(|(a, b)| a.at_least_as_strict_as(b))
            && self.only.at_least_as_strict_as(&other.only)
            && self
                .quantizations
                .at_least_as_strict_as(&other.quantizations)
            && self.ignore.at_least_as_strict_as(&other.ignore)
            && self.max_price.at_least_as_strict_as(&other.max_price)
            && self
                .min_throughput
                .at_least_as_strict_as(&other.min_throughput)
            && self.max_latency.at_least_as_strict_as(&other.max_latency)
    }

    fn stricter(&self, policy: &Self) -> Option<Self> {
        Some(Self {
            data_collection: self.data_collection.stricter(&policy.data_collection)?,
            flags: [
                self.flags[0].stricter(&policy.flags[0])?,
                self.flags[1].stricter(&policy.flags[1])?,
                self.flags[2].stricter(&policy.flags[2])?,
            ],
            only: self.only.stricter(&policy.only)?,
            quantizations: self.quantizations.stricter(&policy.quantizations)?,
            ignore: self.ignore.stricter(&policy.ignore)?,
            max_price: self.max_price.stricter(&policy.max_price)?,
            min_throughput: self.min_throughput.stricter(&policy.min_throughput)?,
            max_latency: self.max_latency.stricter(&policy.max_latency)?,
        })
    }
}
