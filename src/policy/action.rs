//! What applying a policy did, for the log, the metrics and `orgate explain`.

use serde_json::Value;
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

/// One rule that changed or refused a request: one line of explanation, through `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The config path of the rule, e.g. `policy.models.deny` or `policies.strict.max_tokens`.
    pub rule: Arc<str>,
    pub outcome: Outcome,
    detail: Detail,
}

/// What an action says. A `provider` rewrite keeps its facts and is put into words only when
/// displayed: most requests go upstream with nobody reading why they changed, and a request
/// carries several such rewrites.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Detail {
    /// In words already: refusals (whose error says the same) and rewrites outside `provider`.
    Text(String),
    Provider(Box<ProviderRewrite>),
}

/// A `provider` field the merge rewrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProviderRewrite {
    /// `only`; or `max_price`, with the `member` rewritten (`prompt`).
    pub(crate) field: &'static str,
    pub(crate) member: Option<&'static str>,
    /// What the client had there (`None` or `null`: unset).
    pub(crate) before: Option<Value>,
    pub(crate) after: Value,
    pub(crate) how: How,
}

/// How a rewrite reads, with `rule` the action's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum How {
    /// `before → after by rule`.
    By,
    /// `before → after forced by rule`.
    ForcedBy,
    /// `before lowered to after by rule`.
    Lowered,
    /// `before ∩ rule [the policy's list] → after`, or `∪`.
    Combined { op: char, policy: Value },
}

impl Action {
    pub(crate) fn rewrite(rule: impl Into<Arc<str>>, detail: impl Into<String>) -> Self {
        Self {
            rule: rule.into(),
            outcome: Outcome::Rewrite,
            detail: Detail::Text(detail.into()),
        }
    }

    pub(crate) fn provider(rule: Arc<str>, rewrite: ProviderRewrite) -> Self {
        Self {
            rule,
            outcome: Outcome::Rewrite,
            detail: Detail::Provider(Box::new(rewrite)),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rewrite = match &self.detail {
            Detail::Text(text) => return f.write_str(text),
            Detail::Provider(rewrite) => rewrite,
        };
        let (rule, before, after) = (&self.rule, Shown(rewrite.before.as_ref()), &rewrite.after);
        write!(f, "provider.{}", rewrite.field)?;
        if let Some(member) = rewrite.member {
            write!(f, ".{member}")?;
        }
        match &rewrite.how {
            How::By => write!(f, ": {before} → {after} by {rule}"),
            How::ForcedBy => write!(f, ": {before} → {after} forced by {rule}"),
            How::Lowered => write!(f, ": {before} lowered to {after} by {rule}"),
            How::Combined { op, policy } => write!(f, ": {before} {op} {rule} {policy} → {after}"),
        }
    }
}

/// A client's value in an explanation: compact JSON, or `unset`.
pub(crate) struct Shown<'v>(pub(crate) Option<&'v Value>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None | Some(Value::Null) => f.write_str("unset"),
            Some(value) => write!(f, "{value}"),
        }
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
        detail: Detail::Text(message.clone()),
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
    /// What the provider that serves the request is checked against, when the policy binds
    /// `provider.only` or `provider.ignore` (`None`: nothing to check). Kept apart from the
    /// actions, which a stream need not hold until its provider is named.
    pub fn provider_check(&self) -> Option<ProviderCheck> {
        (!self.only.is_empty() || !self.ignore.is_empty()).then(|| ProviderCheck {
            only: Arc::clone(&self.only),
            ignore: Arc::clone(&self.ignore),
        })
    }
}

/// The providers a forwarded request allowed ([`Applied::provider_check`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderCheck {
    /// As [`Applied::only`].
    pub only: Arc<[String]>,
    /// As [`Applied::ignore`].
    pub ignore: Arc<[String]>,
}

impl ProviderCheck {
    /// Whether the provider a response reports (`"provider": "Azure"`) is one the forwarded
    /// request allowed. A display name is compared as its slug; a regional entry
    /// (`deepinfra/turbo`) admits its provider, since responses name only the provider.
    pub fn allows(&self, reported: &str) -> bool {
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
