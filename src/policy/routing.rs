//! Routing knobs outside `provider` (`service_tier`, `route`, the `:nitro` / `:floor` variants)
//! and whether they loosen what the policy binds inside it.
//!
//! - `service_tier` = `priority` / `fast` / `flex`, and the `:nitro` / `:floor` variants, make
//!   service-tier endpoints (`openai/priority`, `google-vertex/flex`) eligible, and OpenRouter does
//!   not match those by their base slug. So a policy's `only` cannot be relied on to bind them:
//!   refused (403) while `only` is bound. And a policy's `ignore = ["openai"]` would not keep out
//!   `openai/priority`: the provider merge then also ignores each ignored provider's tier endpoints
//!   (never looser, and no refusal needed). Other tiers (`auto`, `default`, `scale`) pass.
//! - `route` is the deprecated spelling of `provider.sort.partition` (`fallback` = `model`,
//!   `sort` = `none`). A partition only orders endpoints of models that already passed the model
//!   rules, so it loosens no restriction; but when the policy forces a `sort` with a partition, a
//!   conflicting `route` contradicts the forced value, and is removed (the forced `provider.sort`
//!   says the same thing in the current spelling). Otherwise `route` passes untouched.
//! - A forced `sort` / `order` and the variants' own sorting (`:nitro` by throughput, `:floor` by
//!   price): neither widens the set of endpoints beyond the tier eligibility handled above, and
//!   which one OpenRouter follows when both are given is not documented, so they pass.

use serde_json::Value;

use crate::error::GatewayError;
use crate::request_body::RequestBody;

use super::action::{deny, Action};
use super::fields;
use super::models::RequestedModels;
use super::provider::ProviderRules;

/// Service tiers that route to tier endpoints (`fast` is `priority`).
const TIER_SERVICE_TIERS: [&str; 3] = ["priority", "fast", "flex"];
/// Model variants that make tier endpoints eligible.
const TIER_VARIANTS: [&str; 2] = ["nitro", "floor"];

/// Checks the routing knobs; returns whether the request can reach service-tier endpoints.
pub(crate) fn check(
    req: &mut RequestBody<'_>,
    models: &RequestedModels,
    rules: &ProviderRules,
    actions: &mut Vec<Action>,
) -> Result<bool, GatewayError> {
    let tier_endpoints = if rules.only_rule().is_some() || rules.ignore_rule().is_some() {
        check_tiers(req, models, rules, actions)?
    } else {
        false
    };
    if let Some((partition, rule)) = rules.forced_partition() {
        let route = fields::string(fields::read(req, "route")?.as_ref(), "route")?;
        if let Some(route) = route {
            let implied = match route.as_str() {
                "fallback" => "model",
                "sort" => "none",
                _ => {
                    return Err(GatewayError::BadRequest(format!(
                        "`route` must be \"fallback\" or \"sort\", found {}",
                        fields::render(&Value::String(route))
                    )))
                }
            };
            if implied != partition {
                req.remove("route");
                actions.push(Action::rewrite(
                    rule,
                    format!(
                        "route: {} removed, {rule} fixes the partition to {partition:?}",
                        fields::render(&Value::String(route))
                    ),
                ));
            }
        }
    }
    Ok(tier_endpoints)
}

fn check_tiers(
    req: &RequestBody<'_>,
    models: &RequestedModels,
    rules: &ProviderRules,
    actions: &mut Vec<Action>,
) -> Result<bool, GatewayError> {
    let service_tier = fields::string(fields::read(req, "service_tier")?.as_ref(), "service_tier")?
        .filter(|tier| {
            TIER_SERVICE_TIERS
                .iter()
                .any(|t| t.eq_ignore_ascii_case(tier))
        });
    let variant_model = TIER_VARIANTS.iter().find_map(|v| models.with_variant(v));
    let asked_by = match (&service_tier, variant_model) {
        (Some(tier), _) => format!(
            "`service_tier` {}",
            fields::render(&Value::String(tier.clone()))
        ),
        (None, Some(model)) => {
            format!("model {}", fields::render(&Value::String(model.to_owned())))
        }
        (None, None) => return Ok(false),
    };
    if let Some(rule) = rules.only_rule() {
        let message = format!(
            "{asked_by} routes to service-tier endpoints (such as openai/priority), which {rule} \
             cannot bind; it is refused while {rule} is set"
        );
        return Err(deny(actions, rule, message));
    }
    Ok(true)
}
