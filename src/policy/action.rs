//! What applying a policy did, for the log, the metrics and `orgate explain`.

use std::fmt;
use std::sync::Arc;

use crate::error::GatewayError;

use super::strictness::{covers, normalise, Vocabulary};

/// Whether a rule changed the request or refused it (`orgate_policy_actions_total{action}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Rewrite,
    Deny,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Rewrite => "rewrite",
            Outcome::Deny => "deny",
        }
    }
}

/// One rule that changed or refused a request: one line of explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The config path of the rule, e.g. `policy.models.deny` or `policies.strict.max_tokens`.
    pub rule: Arc<str>,
    pub outcome: Outcome,
    /// For people: what changed, or why the request was refused.
    pub detail: String,
}

impl Action {
    pub(crate) fn rewrite(rule: impl Into<Arc<str>>, detail: impl Into<String>) -> Self {
        Self {
            rule: rule.into(),
            outcome: Outcome::Rewrite,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// Records a refusal as the last action and returns the 403 that carries the same message.
pub(crate) fn deny(
    actions: &mut Vec<Action>,
    rule: impl Into<Arc<str>>,
    message: String,
) -> GatewayError {
    actions.push(Action {
        rule: rule.into(),
        outcome: Outcome::Deny,
        detail: message.clone(),
    });
    GatewayError::PolicyDenied(message)
}

/// A request the policy let through, and how.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// Every rule that changed the request, in the order applied. Empty: forwarded as sent.
    pub actions: Vec<Action>,
    /// The model tried first, after aliases: `model`, else `models[0]` (`None`: the account's
    /// default model).
    pub model: Option<String>,
    /// The forwarded `provider.only`, as slugs, where the policy binds `only` (else empty).
    pub only: Arc<[String]>,
    /// The forwarded `provider.ignore`, as slugs, where the policy binds `ignore` (else empty).
    pub ignore: Arc<[String]>,
}

impl Applied {
    /// Whether the provider a response reports (`"provider": "Azure"`) is one the forwarded
    /// request allowed. A display name is compared as its slug; a regional entry
    /// (`deepinfra/turbo`) admits its provider, since responses name only the provider.
    pub fn provider_allowed(&self, reported: &str) -> bool {
        let reported = normalise(Vocabulary::Provider, reported);
        let base = |entry: &str| entry.split('/').next().unwrap_or(entry).to_owned();
        let ignored = self
            .ignore
            .iter()
            .any(|e| covers(Vocabulary::Provider, e, &reported));
        let listed = self.only.is_empty() || self.only.iter().any(|e| base(e) == reported);
        listed && !ignored
    }
}

/// A request the policy refused or could not read: the error to answer with, and the actions
/// recorded up to and including the refusing rule (so a refusal explains itself like a rewrite).
///
/// `?` turns it into the [`GatewayError`] a handler returns.
#[derive(Debug)]
pub struct Refusal {
    /// `PolicyDenied` (403) or `BadRequest` (400, a field of the wrong type).
    pub error: GatewayError,
    pub actions: Vec<Action>,
}

impl From<Refusal> for GatewayError {
    fn from(refusal: Refusal) -> Self {
        refusal.error
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Refusal {}
