//! Merging the client's `provider` with the compiled policy side, field by field.

use serde_json::{Map, Value};
use std::sync::Arc;

use crate::error::GatewayError;
use crate::policy::action::{deny, Action, How, ProviderRewrite, Shown};
use crate::policy::fields::number;
use crate::policy::strictness::{
    AllowList, Ceiling, DenyList, Each, Limit, Name, Required, Strict, Vocabulary, PERCENTILES,
    TIER_SUFFIXES,
};

use super::read::{ClientProvider, StrictView};
use super::{Bound, Preference, ProviderRules, FLAGS, PREFERENCES, PRICES};

/// What the merge leaves behind besides the actions.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Merged {
    /// The new `provider` object; `None` when the client's stands as sent.
    pub(crate) provider: Option<Map<String, Value>>,
    /// The forwarded `only` / `ignore` as slugs, where the policy binds them.
    pub(crate) only: Vec<String>,
    pub(crate) ignore: Vec<String>,
}

/// Merges the client's `provider`, read, with the policy's. `tier_endpoints`: the request can
/// reach service-tier endpoints, which base slugs in `ignore` do not cover, so the ignore list
/// also names their tier endpoints.
pub(crate) fn merge_into(
    client: ClientProvider,
    rules: &ProviderRules,
    tier_endpoints: bool,
    actions: &mut Vec<Action>,
) -> Result<Merged, GatewayError> {
    let StrictView {
        data_collection,
        flags,
        only,
        quantizations,
        ignore,
        max_price,
        min_throughput,
        max_latency,
    } = client.strict;
    let mut merge = Merge {
        out: client.object,
        changed: false,
        actions,
    };
    let mut merged = Merged::default();

    for (field, rule) in PREFERENCES.iter().zip(&rules.preferences) {
        if let Some(preference) = rule {
            merge.preference(field, preference);
        }
    }
    if let Some(rule) = &rules.data_collection {
        merge.data_collection(data_collection, rule);
    }
    for ((field, rule), client) in FLAGS.iter().zip(&rules.flags).zip(flags) {
        if let Some(rule) = rule {
            merge.flag(field, client, rule);
        }
    }
    if let Some(rule) = &rules.only {
        merged.only = merge.allow_list("only", "provider", only, rule)?;
    }
    if let Some(rule) = &rules.quantizations {
        merge.allow_list("quantizations", "quantization", quantizations, rule)?;
    }
    let ignore_rule = if tier_endpoints {
        &rules.ignore_with_tiers
    } else {
        &rules.ignore
    };
    if let Some(rule) = ignore_rule {
        merged.ignore = merge.ignore(ignore, rule);
    }
    if rules.max_price.iter().any(Option::is_some) {
        merge.max_price(max_price, &rules.max_price);
    }
    if let Some(rule) = &rules.min_throughput {
        merge.percentiles("preferred_min_throughput", min_throughput, rule);
    }
    if let Some(rule) = &rules.max_latency {
        merge.percentiles("preferred_max_latency", max_latency, rule);
    }

    merged.provider = merge.changed.then_some(merge.out);
    Ok(merged)
}

/// Merges a client's `provider` with one policy's, as `[policy.provider]` would: the merged
/// object, or the refusal (an empty `only`/`quantizations` intersection, a field of the wrong
/// type) with the actions up to it. The building block; requests go through
/// [`CompiledPolicy::apply`](crate::policy::CompiledPolicy::apply). The properties are stated
/// on it.
#[cfg(test)]
pub(crate) fn merge(
    client: Option<&Map<String, Value>>,
    policy: &crate::config::ProviderPolicy,
) -> Result<Map<String, Value>, crate::policy::Refusal> {
    let rules = ProviderRules::from_policy(policy, "policy.provider");
    let mut actions = Vec::new();
    let merged = client
        .cloned()
        .map(ClientProvider::read)
        .transpose()
        .and_then(|read| merge_into(read.unwrap_or_default(), &rules, false, &mut actions));
    match merged {
        Ok(merged) => Ok(merged
            .provider
            .unwrap_or_else(|| client.cloned().unwrap_or_default())),
        Err(error) => Err(crate::policy::Refusal { error, actions }),
    }
}

/// `ignore = ["openai"]` must also keep out `openai/priority` and `openai/flex`.
pub(super) fn with_tier_endpoints(ignore: &DenyList) -> DenyList {
    let mut out = ignore.clone();
    for name in &ignore.entries {
        if name.key.contains('/') {
            continue;
        }
        for tier in TIER_SUFFIXES {
            let tier_endpoint = format!("{}/{tier}", name.key);
            if !out.entries.iter().any(|e| e.key == tier_endpoint) {
                out.entries
                    .push(Name::new(Vocabulary::Provider, &tier_endpoint));
            }
        }
    }
    out
}

/// The client's `provider`, being rewritten in place.
struct Merge<'a> {
    out: Map<String, Value>,
    changed: bool,
    actions: &'a mut Vec<Action>,
}

impl Merge<'_> {
    /// Sets `field` to `value`, recording what the client had there.
    fn write(&mut self, field: &'static str, value: Value, rule: &Arc<str>, how: How) {
        let before = self.out.insert(field.to_owned(), value.clone());
        self.changed = true;
        let rewrite = ProviderRewrite {
            field,
            member: None,
            before,
            after: value,
            how,
        };
        self.actions.push(Action::provider(rule.clone(), rewrite));
    }

    fn preference(&mut self, field: &'static str, preference: &Preference) {
        let client = self.out.get(field).filter(|v| !v.is_null());
        let replace = if preference.forced {
            client != Some(&preference.value)
        } else {
            client.is_none()
        };
        if replace {
            let how = if preference.forced {
                How::ForcedBy
            } else {
                How::By
            };
            self.write(field, preference.value.clone(), &preference.rule, how);
        }
    }

    fn data_collection(&mut self, client: Required, rule: &Bound<Required>) {
        if client.stricter(&rule.value) != Some(client) {
            self.write("data_collection", Value::from("deny"), &rule.rule, How::By);
        }
    }

    fn flag(&mut self, field: &'static str, client: Required, rule: &Bound<Required>) {
        if client.stricter(&rule.value) != Some(client) {
            self.write(field, Value::Bool(true), &rule.rule, How::By);
        }
    }

    /// `only` / `quantizations`: the intersection; returns the forwarded entries as keys.
    fn allow_list(
        &mut self,
        field: &'static str,
        noun: &str,
        client: AllowList,
        rule: &Bound<AllowList>,
    ) -> Result<Vec<String>, GatewayError> {
        let policy_side = || names_value(rule.value.entries.iter().flatten());
        let Some(merged) = client.stricter(&rule.value) else {
            let message = format!(
                "`provider.{field}` {} has no {noun} in common with {} {}",
                Shown(self.out.get(field)),
                rule.rule,
                policy_side()
            );
            return Err(deny(self.actions, rule.rule.clone(), message));
        };
        if merged != client {
            let how = match client.entries {
                Some(_) => How::Combined {
                    op: '∩',
                    policy: policy_side(),
                },
                None => How::By,
            };
            let result = names_value(merged.entries.iter().flatten());
            self.write(field, result, &rule.rule, how);
        }
        Ok(merged
            .entries
            .iter()
            .flatten()
            .map(|n| n.key.clone())
            .collect())
    }

    /// `ignore`: the union; returns the forwarded entries as keys.
    fn ignore(&mut self, client: DenyList, rule: &Bound<DenyList>) -> Vec<String> {
        let added = client.additions(&rule.value);
        if !added.is_empty() {
            let how = if client.entries.is_empty() {
                How::By
            } else {
                How::Combined {
                    op: '∪',
                    policy: names_value(rule.value.entries.iter()),
                }
            };
            let result = names_value(client.entries.iter().chain(added.iter().copied()));
            self.write("ignore", result, &rule.rule, how);
        }
        let added_keys = added.iter().map(|n| n.key.clone());
        let client_keys = client.entries.into_iter().map(|n| n.key);
        client_keys.chain(added_keys).collect()
    }

    /// Each bound price: the lower of the two. A client's lower price stays as it was sent
    /// (number or numeric string); a policy's is written as a number.
    fn max_price(&mut self, client: Each<Ceiling, 5>, rules: &[Option<Bound<Ceiling>>; 5]) {
        let sent = match self.out.get("max_price") {
            Some(Value::Object(prices)) => Some(prices),
            _ => None,
        };
        let mut lowered = Vec::new();
        let mut lowered_actions = Vec::new();
        for ((field, rule), client) in PRICES.iter().zip(rules).zip(client.0) {
            let Some(rule) = rule else { continue };
            let Some(merged) = client.stricter(&rule.value).filter(|m| *m != client) else {
                continue;
            };
            let value = number(merged.0.unwrap_or_default());
            let rewrite = ProviderRewrite {
                field: "max_price",
                member: Some(field),
                before: sent.and_then(|p| p.get(*field)).cloned(),
                after: value.clone(),
                how: if client.0.is_some() {
                    How::Lowered
                } else {
                    How::By
                },
            };
            lowered.push(((*field).to_owned(), value));
            lowered_actions.push(Action::provider(rule.rule.clone(), rewrite));
        }
        if lowered.is_empty() {
            return;
        }
        // The client's object is rewritten in place: its other keys, and their order, stay.
        match self.out.get_mut("max_price") {
            Some(Value::Object(prices)) => prices.extend(lowered),
            _ => {
                let prices = Value::Object(lowered.into_iter().collect());
                self.out.insert("max_price".to_owned(), prices);
            }
        }
        self.changed = true;
        self.actions.append(&mut lowered_actions);
    }

    /// A performance preference: per percentile, the stricter bound. Written as a number when
    /// only p50 is bound and the client did not send an object, else as an object that keeps the
    /// client's own keys.
    fn percentiles<T: Limit>(
        &mut self,
        field: &'static str,
        client: Each<T, 4>,
        rule: &Bound<Each<T, 4>>,
    ) {
        let Some(merged) = client.stricter(&rule.value).filter(|m| *m != client) else {
            return;
        };
        let client_object = match self.out.get(field) {
            Some(Value::Object(object)) => Some(object.clone()),
            _ => None,
        };
        let only_p50 = merged.0[1..].iter().all(|slot| slot.value().is_none());
        let value = match (client_object, only_p50) {
            (None, true) => number(merged.0[0].value().unwrap_or_default()),
            (object, _) => {
                // A client's object keeps its keys and values where they stand; a client's
                // number (p50) becomes an object holding every bound percentile.
                let from_number = object.is_none();
                let mut object = object.unwrap_or_default();
                for ((slot, before), key) in merged.0.iter().zip(&client.0).zip(PERCENTILES) {
                    if let Some(v) = slot.value().filter(|_| slot != before || from_number) {
                        object.insert(key.to_owned(), number(v));
                    }
                }
                Value::Object(object)
            }
        };
        self.write(field, value, &rule.rule, How::By);
    }
}

fn names_value<'n>(names: impl Iterator<Item = &'n Name>) -> Value {
    Value::Array(names.map(|n| Value::String(n.spelling.clone())).collect())
}
