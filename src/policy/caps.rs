//! `max_tokens`: a ceiling on what a request may ask the model to write.

use crate::chat_request::ChatRequest;
use crate::error::GatewayError;
use std::sync::Arc;

use super::action::Action;
use super::fields;

/// Caps `max_tokens` and `max_completion_tokens` at `ceiling`. A request with neither gets
/// `max_tokens = ceiling` (a missing limit means the model's own, which is what the cap is for);
/// one with only `max_completion_tokens` keeps that spelling alone.
pub(crate) fn cap_max_tokens(
    req: &mut ChatRequest<'_>,
    ceiling: u64,
    rule: &Arc<str>,
    actions: &mut Vec<Action>,
) -> Result<(), GatewayError> {
    let max_tokens = fields::token_count(fields::read(req, "max_tokens")?.as_ref(), "max_tokens")?;
    let max_completion_tokens = fields::token_count(
        fields::read(req, "max_completion_tokens")?.as_ref(),
        "max_completion_tokens",
    )?;
    for (field, asked) in [
        ("max_tokens", max_tokens),
        ("max_completion_tokens", max_completion_tokens),
    ] {
        if let Some(asked) = asked.filter(|asked| *asked > ceiling) {
            req.set(field, &ceiling)?;
            actions.push(Action::rewrite(
                rule.clone(),
                format!("{field}: {asked} capped to {ceiling} by {rule}"),
            ));
        }
    }
    if max_tokens.is_none() && max_completion_tokens.is_none() {
        req.set("max_tokens", &ceiling)?;
        actions.push(Action::rewrite(
            rule.clone(),
            format!("max_tokens: unset → {ceiling} by {rule}"),
        ));
    }
    Ok(())
}
