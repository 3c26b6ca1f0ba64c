//! `deny_plugins`, and the other ways a request can reach a plugin: the `:online` variant, server
//! tools in `tools`, `web_search_options`; plus the plugins that pick models themselves.

use serde_json::Value;
use std::sync::Arc;

use crate::config::PolicyConfig;
use crate::error::GatewayError;
use crate::request_body::RequestBody;

use super::action::{deny, Action};
use super::fields;
use super::models::RequestedModels;

/// Plugins that choose other models: side doors around the model allow list.
const MODEL_PICKING_PLUGINS: [&str; 4] =
    ["auto-router", "pareto-router", "fusion", "auto-beta-router"];

/// The union of every layer's `deny_plugins`.
#[derive(Debug, Clone, Default)]
pub(crate) struct PluginRules {
    denied: Vec<DeniedPlugin>,
}

#[derive(Debug, Clone)]
struct DeniedPlugin {
    /// Lowercase plugin id.
    id: String,
    /// `policy.deny_plugins` or `policies.NAME.deny_plugins`: the first layer that lists it.
    rule: Arc<str>,
}

impl PluginRules {
    pub(crate) fn compile(layers: &[(&str, &PolicyConfig)]) -> Self {
        let mut denied: Vec<DeniedPlugin> = Vec::new();
        for (path, policy) in layers {
            for id in &policy.deny_plugins {
                let id = id.trim().to_lowercase();
                if !denied.iter().any(|d| d.id == id) {
                    denied.push(DeniedPlugin {
                        id,
                        rule: format!("{path}.deny_plugins").into(),
                    });
                }
            }
        }
        Self { denied }
    }

    fn rule_denying(&self, id: &str) -> Option<&str> {
        self.denied
            .iter()
            .find(|d| d.id.eq_ignore_ascii_case(id))
            .map(|d| &*d.rule)
    }

    /// Refuses a request that would use a denied plugin, or a model-picking plugin while the
    /// model rules restrict anything (`models_restricted_by` names that rule).
    pub(crate) fn check(
        &self,
        req: &RequestBody<'_>,
        models: &RequestedModels,
        models_restricted_by: Option<&str>,
        actions: &mut Vec<Action>,
    ) -> Result<(), GatewayError> {
        if let Some(rule) = self.rule_denying("web") {
            if let Some(id) = models.with_variant("online") {
                let message = format!(
                    "model {} uses the web plugin (the \":online\" variant), which {rule} denies",
                    fields::render(&Value::String(id.to_owned()))
                );
                return Err(deny(actions, rule, message));
            }
        }
        if self.denied.is_empty() && models_restricted_by.is_none() {
            return Ok(());
        }
        self.check_plugins(req, models_restricted_by, actions)?;
        if self.denied.is_empty() {
            return Ok(());
        }
        self.check_server_tools(req, actions)?;
        if let Some(rule) = self.rule_denying("web") {
            if fields::read(req, "web_search_options")?.is_some() {
                let message =
                    format!("`web_search_options` asks for the model's own web search, which {rule} denies (\"web\")");
                return Err(deny(actions, rule, message));
            }
        }
        Ok(())
    }

    fn check_plugins(
        &self,
        req: &RequestBody<'_>,
        models_restricted_by: Option<&str>,
        actions: &mut Vec<Action>,
    ) -> Result<(), GatewayError> {
        let plugins = fields::read(req, "plugins")?;
        for (i, entry) in fields::array(plugins.as_ref(), "plugins")?
            .iter()
            .enumerate()
        {
            let Value::Object(plugin) = entry else {
                return Err(fields::wrong_type(
                    &format!("plugins[{i}]"),
                    "an object",
                    entry,
                ));
            };
            let id = match plugin.get("id") {
                Some(Value::String(id)) => id.as_str(),
                None | Some(Value::Null) => continue,
                Some(other) => {
                    return Err(fields::wrong_type(
                        &format!("plugins[{i}].id"),
                        "a string",
                        other,
                    ))
                }
            };
            // `{"id": "web", "enabled": false}` turns an account default off: that is allowed.
            if plugin.get("enabled") == Some(&Value::Bool(false)) {
                continue;
            }
            let quoted = || fields::render(&Value::String(id.to_owned()));
            if let Some(rule) = self.rule_denying(id) {
                return Err(deny(
                    actions,
                    rule,
                    format!("plugin {} is denied by {rule}", quoted()),
                ));
            }
            if let Some(rule) = models_restricted_by {
                if MODEL_PICKING_PLUGINS
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(id))
                {
                    let message = format!(
                        "plugin {} picks models itself, which {rule} cannot check; \
                         it is refused while the model rules restrict anything",
                        quoted()
                    );
                    return Err(deny(actions, rule, message));
                }
            }
        }
        Ok(())
    }

    /// OpenRouter's server tools (`{"type": "openrouter:web_search"}`) run plugins by another
    /// name; OpenAI's `web_search_preview` is converted to the web search.
    fn check_server_tools(
        &self,
        req: &RequestBody<'_>,
        actions: &mut Vec<Action>,
    ) -> Result<(), GatewayError> {
        let tools = fields::read(req, "tools")?;
        for (i, tool) in fields::array(tools.as_ref(), "tools")?.iter().enumerate() {
            let Some(kind) = tool.get("type").and_then(Value::as_str) else {
                continue;
            };
            let Some(plugin) = plugin_of_tool(kind) else {
                continue;
            };
            if let Some(rule) = self.rule_denying(&plugin) {
                let message = format!(
                    "`tools[{i}]` ({}) uses the {plugin} plugin, which {rule} denies",
                    fields::render(&serde_json::json!({ "type": kind }))
                );
                return Err(deny(actions, rule, message));
            }
        }
        Ok(())
    }
}

/// The plugin id a server tool amounts to: web search tools are `web`, other
/// `openrouter:some_tool` tools are `some-tool` (`openrouter:web_fetch` is `web-fetch`).
fn plugin_of_tool(kind: &str) -> Option<String> {
    let lower = kind.to_ascii_lowercase();
    if lower == "openrouter:web_search" || lower.starts_with("web_search") {
        return Some("web".to_owned());
    }
    lower
        .strip_prefix("openrouter:")
        .map(|name| name.replace('_', "-"))
}
