//! The policy: what a client's chat request may ask for, applied before it goes upstream.
//!
//! Built once at start-up ([`CompiledPolicy::compile`]) from `[policy]` and, for the keys that
//! name one, a `[policies.NAME]` layered on it: a named policy can tighten the org's rules, never
//! loosen them. [`CompiledPolicy::apply`] is pure: it reads the few top-level fields it decides
//! on (never `messages`), edits the request in place only where a rule changes something (an
//! empty policy leaves the body byte for byte), and says what it did ([`Applied`]) or which rule
//! refused ([`Refusal`]). Fields are type-checked when a rule reads them, and the client's
//! `provider` whole, whatever the policy binds: a wrong type is a 400 that names the field.
//!
//! # Layout
//! - `models`: aliases, the allow/deny globs, router models.
//! - `caps`: the `max_tokens` ceiling.
//! - `plugins`: `deny_plugins`, and the side doors to plugins and to other models.
//! - `routing`: `service_tier`, `route` and tier variants, and why they are treated as they are.
//! - `provider`: the client's `provider` read and type-checked, and the merge; `strictness`:
//!   what "never looser" means, defined once.
//! - `fields`: reading top-level fields; `action`: what applying did.

mod action;
mod caps;
mod fields;
mod models;
mod plugins;
mod presets;
mod provider;
mod routing;
mod shape;
mod strictness;

#[cfg(test)]
mod tests;

pub(crate) use action::{Action, Applied, ProviderCheck, Refusal};
pub(crate) use shape::Cap;
pub use shape::RequestShape;

use serde_json::Value;
use std::sync::Arc;

use crate::config::{Config, PolicyConfig, Problem};
use crate::error::GatewayError;
use crate::request_body::RequestBody;

use models::ModelRules;
use plugins::PluginRules;
use presets::PresetRules;
use provider::{ClientProvider, ProviderRules};

/// `[policy]`, with a named policy layered on it or not, ready to apply.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    /// The named policy layered on `[policy]`, if any.
    name: Option<String>,
    models: ModelRules,
    /// The lowest non-zero ceiling of the layers, and its rule.
    max_tokens: Option<(u64, Arc<str>)>,
    plugins: PluginRules,
    presets: PresetRules,
    provider: ProviderRules,
}

/// A policy that cannot be compiled: every problem, with its config path.
#[derive(Debug, thiserror::Error)]
#[error("invalid policy: {}", .problems.join("; "))]
pub struct PolicyError {
    pub problems: Vec<String>,
}

impl CompiledPolicy {
    /// Compiles `[policy]` (`org`) and, if given, `[policies.NAME]` on top of it.
    pub fn compile(
        org: &PolicyConfig,
        named: Option<(&str, &PolicyConfig)>,
    ) -> Result<Self, PolicyError> {
        let named_path = named.map(|(name, _)| format!("policies.{name}"));
        let mut layers: Vec<(&str, &PolicyConfig)> = vec![("policy", org)];
        if let (Some(path), Some((_, policy))) = (&named_path, named) {
            layers.push((path.as_str(), policy));
        }

        let mut problems = Vec::new();
        let models = ModelRules::compile(&layers, &mut problems);
        let max_tokens = layers
            .iter()
            .filter(|(_, policy)| policy.max_tokens > 0)
            .map(|(path, policy)| (policy.max_tokens, format!("{path}.max_tokens").into()))
            .min_by_key(|(ceiling, _)| *ceiling);
        let mut provider = ProviderRules::from_policy(&org.provider, "policy.provider");
        if let (Some(path), Some((_, policy))) = (&named_path, named) {
            let named_rules =
                ProviderRules::from_policy(&policy.provider, &format!("{path}.provider"));
            match provider.clone().tightened_by(named_rules) {
                Ok(layered) => provider = layered,
                Err(problem) => problems.push(problem),
            }
        }
        if !problems.is_empty() {
            return Err(PolicyError { problems });
        }
        Ok(Self {
            name: named.map(|(name, _)| name.to_owned()),
            models,
            max_tokens,
            plugins: PluginRules::compile(&layers),
            presets: PresetRules::compile(&layers),
            provider,
        })
    }

    /// The policy for a key whose `policy` is `name` (`None`: `[policy]` alone).
    pub fn for_key(config: &Config, name: Option<&str>) -> Result<Self, PolicyError> {
        match name {
            None => Self::compile(&config.policy, None),
            Some(name) => match config.policies.get(name) {
                Some(named) => Self::compile(&config.policy, Some((name, named))),
                None => Err(PolicyError {
                    problems: vec![format!("no [policies.{name}] is defined")],
                }),
            },
        }
    }

    /// What compiling `config`'s policies meets that validating the config alone cannot see:
    /// a named policy whose rules cannot be layered on `[policy]` (lists that cannot meet).
    /// Each problem names the policy it is in.
    pub(crate) fn problems(config: &Config) -> Vec<Problem> {
        let names = std::iter::once(None).chain(config.policies.keys().map(|n| Some(n.as_str())));
        let mut out = Vec::new();
        for name in names {
            if let Err(e) = Self::for_key(config, name) {
                let at = name.map_or_else(|| "policy".to_owned(), |n| format!("policies.{n}"));
                out.extend(e.problems.into_iter().map(|p| Problem::at(&at, p)));
            }
        }
        out
    }

    /// The named policy layered on `[policy]`, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Applies the policy to `req`, a request of the door `shape` describes, in place, in this
    /// order: aliases, presets, model rules, the `max_tokens` ceiling, plugins, routing knobs,
    /// the `provider` merge.
    pub fn apply(
        &self,
        req: &mut RequestBody<'_>,
        shape: RequestShape,
    ) -> Result<Applied, Refusal> {
        let mut actions = Vec::new();
        match self.apply_rules(req, shape, &mut actions) {
            Ok(applied) => Ok(Applied { actions, ..applied }),
            Err(error) => Err(Refusal { error, actions }),
        }
    }

    fn apply_rules(
        &self,
        req: &mut RequestBody<'_>,
        shape: RequestShape,
        actions: &mut Vec<Action>,
    ) -> Result<Applied, GatewayError> {
        let requested = self.models.resolve(req, shape, &self.presets, actions)?;
        if let Some((ceiling, rule)) = &self.max_tokens {
            caps::cap(req, shape.cap, *ceiling, rule, actions)?;
        }
        let restricted_by = self.models.restricted_by();
        self.plugins
            .check(req, &requested, restricted_by, actions)?;
        let tier_endpoints = routing::check(req, &requested, &self.provider, actions)?;

        let mut applied = Applied {
            model: requested.primary().map(str::to_owned),
            ..Applied::default()
        };
        // Read even when the policy binds nothing in it: a `provider` of the wrong shape is
        // refused alike under every policy.
        let client = ClientProvider::parse(req.get("provider"))?;
        if self.provider.is_empty() {
            return Ok(applied);
        }
        let merged = provider::merge_into(
            client.unwrap_or_default(),
            &self.provider,
            tier_endpoints,
            actions,
        )?;
        if let Some(provider) = merged.provider {
            req.set("provider", &Value::Object(provider))?;
        }
        applied.only = merged.only.into();
        applied.ignore = merged.ignore.into();
        Ok(applied)
    }
}
