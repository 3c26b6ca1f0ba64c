//! Reading the client's `provider` fields into the strictness types, with a 400 that names the
//! field when a value has the wrong type. `null` is unset everywhere (the spec makes every field
//! nullable).

use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::policy::fields::{render, strings_at, wrong_type};
use crate::policy::strictness::{Each, Limit, Name, Required, Vocabulary, PERCENTILES};

/// `data_collection`: `"deny"` is on, `"allow"` and unset are off.
pub(super) fn data_collection(value: Option<&Value>) -> Result<Required, GatewayError> {
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

/// `zdr`, `require_parameters`, `enforce_distillable_text`.
pub(super) fn flag(value: Option<&Value>, field: &str) -> Result<Required, GatewayError> {
    match value {
        None | Some(Value::Null) => Ok(Required(false)),
        Some(Value::Bool(on)) => Ok(Required(*on)),
        Some(other) => Err(wrong_type(&format!("provider.{field}"), "a boolean", other)),
    }
}

/// `only`, `ignore`, `quantizations`; an empty list is unset, as OpenRouter reads it.
pub(super) fn names(
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
pub(super) fn prices(value: Option<&Value>) -> Result<Option<&Map<String, Value>>, GatewayError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(prices)) => Ok(Some(prices)),
        Some(other) => Err(wrong_type("provider.max_price", "an object", other)),
    }
}

/// One price: a number or a numeric string (OpenRouter's spec has said both).
/// `path` names it in the error, and is only built for one.
pub(super) fn price(
    value: Option<&Value>,
    path: impl Fn() -> String,
) -> Result<Option<f64>, GatewayError> {
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

/// A client's performance preference: its bounds, and the object it came as (whose other keys
/// a rewrite keeps), if it came as one.
pub(super) struct ClientPercentiles<T> {
    pub(super) bounds: Each<T, 4>,
    pub(super) object: Option<Map<String, Value>>,
}

/// `preferred_min_throughput` / `preferred_max_latency`: a number (p50) or an object of
/// percentiles.
pub(super) fn percentiles<T: Limit>(
    value: Option<&Value>,
    field: &str,
) -> Result<ClientPercentiles<T>, GatewayError> {
    let path = format!("provider.{field}");
    let mut slots = [T::default(); 4];
    let object = match value {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            slots[0] = T::of(n.as_f64());
            None
        }
        Some(Value::Object(object)) => {
            for (slot, key) in slots.iter_mut().zip(PERCENTILES) {
                *slot = T::of(percentile(object.get(key), &format!("{path}.{key}"))?);
            }
            Some(object.clone())
        }
        Some(other) => {
            return Err(wrong_type(
                &path,
                "a number or an object of percentiles (p50, p75, p90, p99)",
                other,
            ))
        }
    };
    Ok(ClientPercentiles {
        bounds: Each(slots),
        object,
    })
}

fn percentile(value: Option<&Value>, path: &str) -> Result<Option<f64>, GatewayError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(other) => Err(wrong_type(path, "a number", other)),
    }
}

/// Every field a policy binds, read from a `provider` object or from compiled rules: what the
/// "never looser" properties are stated on, with the same readers and the same order as the merge.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StrictView {
    data_collection: Required,
    flags: [Required; 3],
    only: crate::policy::strictness::AllowList,
    quantizations: crate::policy::strictness::AllowList,
    ignore: crate::policy::strictness::DenyList,
    max_price: Each<crate::policy::strictness::Ceiling, 5>,
    min_throughput: Each<crate::policy::strictness::Floor, 4>,
    max_latency: Each<crate::policy::strictness::Ceiling, 4>,
}

#[cfg(test)]
impl StrictView {
    pub(crate) fn of_provider(provider: &Map<String, Value>) -> Result<Self, GatewayError> {
        use crate::policy::strictness::{AllowList, Ceiling, DenyList};
        let list = |field: &str, vocabulary| -> Result<AllowList, GatewayError> {
            Ok(AllowList {
                vocabulary,
                entries: names(provider.get(field), field, vocabulary)?,
            })
        };
        let prices = prices(provider.get("max_price"))?;
        let mut max_price = [Ceiling(None); 5];
        for (slot, field) in max_price.iter_mut().zip(super::PRICES) {
            *slot = Ceiling(price(prices.and_then(|p| p.get(field)), || {
                field.to_owned()
            })?);
        }
        Ok(Self {
            data_collection: data_collection(provider.get("data_collection"))?,
            flags: [
                flag(provider.get(super::FLAGS[0]), super::FLAGS[0])?,
                flag(provider.get(super::FLAGS[1]), super::FLAGS[1])?,
                flag(provider.get(super::FLAGS[2]), super::FLAGS[2])?,
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
            )?
            .bounds,
            max_latency: percentiles(
                provider.get("preferred_max_latency"),
                "preferred_max_latency",
            )?
            .bounds,
        })
    }

    pub(crate) fn of_rules(rules: &super::ProviderRules) -> Self {
        use crate::policy::strictness::{AllowList, DenyList};
        fn value<T: Clone>(bound: &Option<super::Bound<T>>, unset: T) -> T {
            bound.as_ref().map_or(unset, |b| b.value.clone())
        }
        let unset_list = |vocabulary| AllowList {
            vocabulary,
            entries: None,
        };
        Self {
            data_collection: value(&rules.data_collection, Required(false)),
            flags: rules.flags.clone().map(|f| value(&f, Required(false))),
            only: value(&rules.only, unset_list(Vocabulary::Provider)),
            quantizations: value(&rules.quantizations, unset_list(Vocabulary::Quantization)),
            ignore: value(
                &rules.ignore,
                DenyList {
                    vocabulary: Vocabulary::Provider,
                    entries: Vec::new(),
                },
            ),
            max_price: Each(
                rules
                    .max_price
                    .clone()
                    .map(|p| value(&p, Default::default())),
            ),
            min_throughput: value(&rules.min_throughput, Each::default()),
            max_latency: value(&rules.max_latency, Each::default()),
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
