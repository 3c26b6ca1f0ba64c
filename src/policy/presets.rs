//! Presets: `"model": "@preset/x"`, `"model": "author/slug@preset/x"` or `"preset": "x"` run a
//! configuration stored at OpenRouter (models, providers, prompts) that the gateway cannot see
//! inside. So none is allowed unless its slug is listed in `presets.allow`, by every layer that
//! lists any.

use std::sync::Arc;

use serde_json::Value;

use crate::config::PolicyConfig;
use crate::error::GatewayError;

use super::action::{deny, Action};
use super::fields;

/// Every layer's `presets.allow` that lists anything.
#[derive(Debug, Clone, Default)]
pub(crate) struct PresetRules {
    layers: Vec<Layer>,
}

#[derive(Debug, Clone)]
struct Layer {
    /// `policy.presets.allow` or `policies.NAME.presets.allow`.
    rule: Arc<str>,
    slugs: Vec<String>,
}

impl PresetRules {
    pub(crate) fn compile(layers: &[(&str, &PolicyConfig)]) -> Self {
        let layers = layers
            .iter()
            .filter(|(_, policy)| !policy.presets.allow.is_empty())
            .map(|(path, policy)| Layer {
                rule: format!("{path}.presets.allow").into(),
                slugs: policy.presets.allow.clone(),
            })
            .collect();
        Self { layers }
    }

    /// Refuses the preset `slug`, named by `field` (`model`, `preset`), unless every layer that
    /// lists presets lists it, and one does.
    pub(crate) fn check(
        &self,
        field: &str,
        slug: &str,
        actions: &mut Vec<Action>,
    ) -> Result<(), GatewayError> {
        let quoted = fields::render(&Value::String(slug.to_owned()));
        if self.layers.is_empty() {
            let message = format!(
                "`{field}` names the preset {quoted}, whose contents the gateway cannot check; \
                 presets are refused unless listed in policy.presets.allow"
            );
            return Err(deny(actions, "policy.presets.allow", message));
        }
        match self
            .layers
            .iter()
            .find(|l| !l.slugs.iter().any(|s| s == slug))
        {
            None => Ok(()),
            Some(layer) => {
                let rule = layer.rule.clone();
                let message =
                    format!("`{field}` names the preset {quoted}, which {rule} does not list");
                Err(deny(actions, rule, message))
            }
        }
    }
}

/// The preset slug a model id runs, if any: `@preset/x` and `author/slug@preset/x` run `x`.
pub(crate) fn preset_of(model: &str) -> Option<&str> {
    let at = model.find("@preset/")?;
    let slug = &model[at + "@preset/".len()..];
    Some(slug.split([':', '/']).next().unwrap_or(slug))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_slugs_are_found_in_model_ids() {
        assert_eq!(preset_of("@preset/email-writer"), Some("email-writer"));
        assert_eq!(preset_of("openai/gpt-4o@preset/x"), Some("x"));
        assert_eq!(preset_of("openai/gpt-4o"), None);
        assert_eq!(preset_of("@preset/"), Some(""));
    }
}
