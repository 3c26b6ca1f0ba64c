//! Which models a request may name: aliases first, then each layer's allow and deny globs,
//! checked against `model` and every entry of `models`.

use std::collections::BTreeMap;
use std::sync::Arc;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde_json::Value;

use crate::config::PolicyConfig;
use crate::error::GatewayError;
use crate::request_body::RequestBody;

use super::action::{deny, Action};
use super::fields;
use super::presets::{preset_of, PresetRules};
use super::shape::RequestShape;

/// The models a request names, after aliases: `model`, then the fallbacks (`models`, and
/// Messages' `fallbacks[].model`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RequestedModels {
    pub(crate) model: Option<String>,
    pub(crate) fallbacks: Vec<String>,
}

impl RequestedModels {
    pub(crate) fn all(&self) -> impl Iterator<Item = &str> {
        self.model.iter().chain(&self.fallbacks).map(String::as_str)
    }

    /// The model tried first: `model`, else `models[0]`.
    pub(crate) fn primary(&self) -> Option<&str> {
        self.all().next()
    }

    /// The first model carrying the variant suffix (`:online`, `:nitro`, ...).
    pub(crate) fn with_variant(&self, variant: &str) -> Option<&str> {
        self.all().find(|id| has_variant(id, variant))
    }
}

/// Whether `id` (`author/slug[:variant]...`) carries `variant`.
pub(crate) fn has_variant(id: &str, variant: &str) -> bool {
    id.split(':')
        .skip(1)
        .any(|v| v.eq_ignore_ascii_case(variant))
}

/// Router models choose the model themselves, so no allow pattern can bind what they pick.
fn is_router(id: &str) -> bool {
    id.get(..11)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("openrouter/"))
}

/// The compiled model rules of the org policy and, after it, a named policy.
#[derive(Debug, Clone)]
pub(crate) struct ModelRules {
    layers: Vec<ModelLayer>,
    aliases: BTreeMap<String, Alias>,
    /// The allow rule of the first layer that limits models at all, if any does.
    restricted_by: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
struct Alias {
    target: String,
    /// `policy.aliases` or `policies.NAME.aliases`.
    rule: Arc<str>,
}

/// One layer's `models.allow` / `models.deny`; a model must pass every layer.
#[derive(Debug, Clone)]
struct ModelLayer {
    allow: Patterns,
    deny: Patterns,
}

#[derive(Debug, Clone)]
struct Patterns {
    /// `policy.models.allow` or `policies.NAME.models.deny`: the rule in messages.
    rule: Arc<str>,
    list: Vec<String>,
    set: GlobSet,
}

impl Patterns {
    /// `*` matches `/` too (`"*:free"` must catch `"meta/llama:free"`); case never matters, so
    /// `OpenAI/GPT-4o` cannot slip past a deny on `openai/*`.
    fn compile(path: &str, list: &[String], problems: &mut Vec<String>) -> Self {
        let mut builder = GlobSetBuilder::new();
        // Only the patterns that compiled, so a match index still names its pattern.
        let mut compiled = Vec::with_capacity(list.len());
        for (i, pattern) in list.iter().enumerate() {
            match GlobBuilder::new(pattern)
                .case_insensitive(true)
                .literal_separator(false)
                .build()
            {
                Ok(glob) => {
                    builder.add(glob);
                    compiled.push(pattern.clone());
                }
                Err(e) => problems.push(format!(
                    "{path}[{i}]: {pattern:?} is not a glob: {}",
                    e.kind()
                )),
            }
        }
        let set = builder.build().unwrap_or_else(|e| {
            problems.push(format!("{path}: cannot compile the globs: {e}"));
            GlobSet::empty()
        });
        Self {
            rule: path.into(),
            list: compiled,
            set,
        }
    }

    fn first_match(&self, id: &str) -> Option<&str> {
        let index = self.set.matches(id).into_iter().min()?;
        self.list.get(index).map(String::as_str)
    }

    /// A pattern without wildcards equal to `id`: the admin named this very model.
    fn names_literally(&self, id: &str) -> bool {
        self.list.iter().any(|p| {
            !p.contains(['*', '?', '[', ']', '{', '}', '\\']) && p.eq_ignore_ascii_case(id)
        })
    }
}

impl ModelLayer {
    /// `allow` has `"*"` and nothing is denied: this layer does not limit models at all.
    fn unrestricted(&self) -> bool {
        self.allow.list.iter().any(|p| p == "*") && self.deny.list.is_empty()
    }
}

impl ModelRules {
    /// `layers` in order: `("policy", org)`, then `("policies.NAME", named)`. Bad globs are
    /// collected in `problems`.
    pub(crate) fn compile(layers: &[(&str, &PolicyConfig)], problems: &mut Vec<String>) -> Self {
        let mut aliases = BTreeMap::new();
        let mut compiled = Vec::with_capacity(layers.len());
        for (path, policy) in layers {
            compiled.push(ModelLayer {
                allow: Patterns::compile(
                    &format!("{path}.models.allow"),
                    &policy.models.allow,
                    problems,
                ),
                deny: Patterns::compile(
                    &format!("{path}.models.deny"),
                    &policy.models.deny,
                    problems,
                ),
            });
            // A later layer's alias replaces an earlier one for the same name.
            for (from, to) in &policy.aliases {
                let alias = Alias {
                    target: to.clone(),
                    rule: format!("{path}.aliases").into(),
                };
                aliases.insert(from.clone(), alias);
            }
        }
        let restricted_by = compiled
            .iter()
            .find(|l| !l.unrestricted())
            .map(|l| l.allow.rule.clone());
        Self {
            layers: compiled,
            aliases,
            restricted_by,
        }
    }

    /// The allow rule of the first layer that limits models (`policy.models.allow`), if any
    /// does: while one does, routers and model-picking plugins need an explicit allow.
    pub(crate) fn restricted_by(&self) -> Option<&str> {
        self.restricted_by.as_deref()
    }

    /// Rewrites aliases in `model`, `models` (and `fallbacks[].model` where the door has them),
    /// then checks every model the request names, and every preset it names.
    pub(crate) fn resolve(
        &self,
        req: &mut RequestBody<'_>,
        shape: RequestShape,
        presets: &PresetRules,
        actions: &mut Vec<Action>,
    ) -> Result<RequestedModels, GatewayError> {
        let mut model = fields::string(fields::read(req, "model")?.as_ref(), "model")?;
        let mut fallbacks = fields::strings(fields::read(req, "models")?.as_ref(), "models")?;
        if let Some(id) = &model {
            fields::model_id(id, "model")?;
        }
        for (i, id) in fallbacks.iter().flatten().enumerate() {
            fields::model_id(id, &format!("models[{i}]"))?;
        }

        if let Some(id) = model.as_mut() {
            if self.rewrite_alias("model", id, actions) {
                req.set("model", id.as_str())?;
            }
        }
        if let Some(list) = fallbacks.as_mut() {
            let mut changed = false;
            for (i, id) in list.iter_mut().enumerate() {
                changed |= self.rewrite_alias(&format!("models[{i}]"), id, actions);
            }
            if changed {
                req.set("models", list)?;
            }
        }
        let mut fallbacks = fallbacks.unwrap_or_default();
        if shape.fallback_models {
            self.resolve_fallback_entries(req, &mut fallbacks, actions)?;
        }
        let requested = RequestedModels { model, fallbacks };

        if requested.all().next().is_none() {
            if let Some(rule) = self.restricted_by() {
                return Err(deny(
                    actions,
                    rule,
                    format!(
                        "the request names no model, so OpenRouter would use the account's default model, \
                         which {rule} cannot check; send `model`"
                    ),
                ));
            }
        }
        for id in requested.all() {
            if let Some(slug) = preset_of(id) {
                presets.check("model", slug, actions)?;
            }
        }
        let preset = fields::string(fields::read(req, "preset")?.as_ref(), "preset")?;
        if let Some(slug) = preset {
            presets.check("preset", &slug, actions)?;
        }
        for id in requested.all() {
            // `author/slug@preset/x` is checked as `author/slug`; `@preset/x` alone names no
            // model, and its preset passed above.
            let model = id.split("@preset/").next().unwrap_or(id);
            if !model.is_empty() {
                self.check(model, actions)?;
            }
        }
        Ok(requested)
    }

    /// Messages' `fallbacks: [{"model": ...}, ...]`: aliases rewritten in place, the models
    /// added to `out`.
    fn resolve_fallback_entries(
        &self,
        req: &mut RequestBody<'_>,
        out: &mut Vec<String>,
        actions: &mut Vec<Action>,
    ) -> Result<(), GatewayError> {
        let Some(mut value) = fields::read(req, "fallbacks")? else {
            return Ok(());
        };
        let Value::Array(entries) = &mut value else {
            return Err(fields::wrong_type(
                "fallbacks",
                "an array of {\"model\": ...} objects",
                &value,
            ));
        };
        let mut changed = false;
        for (i, entry) in entries.iter_mut().enumerate() {
            let Value::Object(fallback) = entry else {
                return Err(fields::wrong_type(
                    &format!("fallbacks[{i}]"),
                    "an object",
                    entry,
                ));
            };
            let path = format!("fallbacks[{i}].model");
            let Some(mut id) = fields::string(fallback.get("model"), &path)? else {
                continue;
            };
            fields::model_id(&id, &path)?;
            if self.rewrite_alias(&path, &mut id, actions) {
                fallback.insert("model".to_owned(), Value::String(id.clone()));
                changed = true;
            }
            out.push(id);
        }
        if changed {
            req.set("fallbacks", &value)?;
        }
        Ok(())
    }

    fn rewrite_alias(&self, field: &str, id: &mut String, actions: &mut Vec<Action>) -> bool {
        let Some(alias) = self.aliases.get(id.as_str()) else {
            return false;
        };
        if alias.target == *id {
            return false;
        }
        actions.push(Action::rewrite(
            alias.rule.clone(),
            format!(
                "{field}: alias {} → {} ({})",
                quoted(id),
                quoted(&alias.target),
                alias.rule
            ),
        ));
        id.clone_from(&alias.target);
        true
    }

    /// Deny lists first (the message names the matching pattern), then every layer's allow list.
    fn check(&self, id: &str, actions: &mut Vec<Action>) -> Result<(), GatewayError> {
        for layer in &self.layers {
            if let Some(pattern) = layer.deny.first_match(id) {
                let rule = &layer.deny.rule;
                let message = format!(
                    "model {} is denied by {rule} {}",
                    quoted(id),
                    quoted(pattern)
                );
                return Err(deny(actions, rule.clone(), message));
            }
        }
        for layer in &self.layers {
            let rule = &layer.allow.rule;
            if is_router(id) {
                if !(layer.allow.names_literally(id) || layer.unrestricted()) {
                    let message = format!(
                        "model {} is a router that picks the model itself, which {rule} cannot check; \
                         it is allowed only if {rule} names it literally",
                        quoted(id)
                    );
                    return Err(deny(actions, rule.clone(), message));
                }
            } else if !layer.allow.set.is_match(id) {
                let message = format!("model {} is not allowed by {rule}", quoted(id));
                return Err(deny(actions, rule.clone(), message));
            }
        }
        Ok(())
    }
}

/// `"x/y:free"`, JSON-quoted so odd characters in ids stay visible.
fn quoted(text: &str) -> String {
    fields::render(&Value::String(text.to_owned()))
}
