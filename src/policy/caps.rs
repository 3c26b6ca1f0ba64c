//! `max_tokens`: a ceiling on what a request may ask the model to write, in whichever field the
//! door's request has for it.

use serde_json::Value;
use std::sync::Arc;

use crate::error::GatewayError;
use crate::request_body::RequestBody;

use super::action::Action;
use super::fields;
use super::shape::Cap;

/// Applies the ceiling where `cap` says the door keeps its output length.
pub(crate) fn cap(
    req: &mut RequestBody<'_>,
    cap: Cap,
    ceiling: u64,
    rule: &Arc<str>,
    actions: &mut Vec<Action>,
) -> Result<(), GatewayError> {
    match cap {
        Cap::None => return Ok(()),
        Cap::Chat => cap_max_tokens(req, ceiling, rule, actions)?,
        Cap::Field(field) => {
            cap_field(req, field, ceiling, rule, actions)?;
        }
        Cap::Messages => {
            let max_tokens = cap_field(req, "max_tokens", ceiling, rule, actions)?;
            keep_thinking_below(req, max_tokens, rule, actions)?;
        }
    }
    cap_reasoning(req, ceiling, rule, actions)
}

/// OpenRouter's `reasoning.max_tokens` asks for that many thinking tokens, billed as output:
/// held to the same ceiling (only when sent: no reasoning is asked for on the client's behalf).
fn cap_reasoning(
    req: &mut RequestBody<'_>,
    ceiling: u64,
    rule: &Arc<str>,
    actions: &mut Vec<Action>,
) -> Result<(), GatewayError> {
    let path = "reasoning.max_tokens";
    let Some((mut reasoning, asked)) = nested_count(req, "reasoning", "max_tokens")? else {
        return Ok(());
    };
    if asked <= ceiling {
        return Ok(());
    }
    reasoning.insert("max_tokens".to_owned(), Value::from(ceiling));
    req.set("reasoning", &reasoning)?;
    actions.push(Action::rewrite(
        rule.clone(),
        format!("{path}: {asked} capped to {ceiling} by {rule}"),
    ));
    Ok(())
}

/// Caps `field` at `ceiling`, or sets it when missing; returns its value after.
fn cap_field(
    req: &mut RequestBody<'_>,
    field: &str,
    ceiling: u64,
    rule: &Arc<str>,
    actions: &mut Vec<Action>,
) -> Result<u64, GatewayError> {
    match fields::token_count(fields::read(req, field)?.as_ref(), field)? {
        Some(asked) if asked <= ceiling => Ok(asked),
        asked => {
            req.set(field, &ceiling)?;
            let before = asked.map_or_else(|| "unset →".to_owned(), |n| format!("{n} capped to"));
            actions.push(Action::rewrite(
                rule.clone(),
                format!("{field}: {before} {ceiling} by {rule}"),
            ));
            Ok(ceiling)
        }
    }
}

type JsonObject = serde_json::Map<String, Value>;

/// `object.key` as a token count, with the object to edit and write back; `None` when either
/// is absent. An `object` that is not one is a 400 naming it.
fn nested_count(
    req: &RequestBody<'_>,
    object: &str,
    key: &str,
) -> Result<Option<(JsonObject, u64)>, GatewayError> {
    let Some(value) = fields::read(req, object)? else {
        return Ok(None);
    };
    let Value::Object(settings) = value else {
        return Err(fields::wrong_type(object, "an object", &value));
    };
    let count = fields::token_count(settings.get(key), &format!("{object}.{key}"))?;
    Ok(count.map(|count| (settings, count)))
}

/// The smallest thinking budget Anthropic accepts.
const MIN_THINKING_BUDGET: u64 = 1024;

/// Anthropic answers 400 when `thinking.budget_tokens >= max_tokens`: when the ceiling lowered
/// `max_tokens` under the budget (Claude Code sends 32000 with a budget of 31999), the budget is
/// lowered with it, to one token under.
fn keep_thinking_below(
    req: &mut RequestBody<'_>,
    max_tokens: u64,
    rule: &Arc<str>,
    actions: &mut Vec<Action>,
) -> Result<(), GatewayError> {
    let path = "thinking.budget_tokens";
    let Some((mut thinking, budget)) = nested_count(req, "thinking", "budget_tokens")? else {
        return Ok(());
    };
    if budget < max_tokens {
        return Ok(());
    }
    let lowered = max_tokens.saturating_sub(1);
    let what = if lowered < MIN_THINKING_BUDGET {
        // No budget Anthropic accepts fits under the cap: thinking is turned off instead.
        thinking = JsonObject::from_iter([("type".to_owned(), Value::from("disabled"))]);
        format!("{path}: {budget} leaves no room under max_tokens {max_tokens}: thinking disabled ({rule})")
    } else {
        thinking.insert("budget_tokens".to_owned(), Value::from(lowered));
        format!("{path}: {budget} lowered to {lowered}, under max_tokens {max_tokens} ({rule})")
    };
    req.set("thinking", &thinking)?;
    actions.push(Action::rewrite(rule.clone(), what));
    Ok(())
}

/// Caps `max_tokens` and `max_completion_tokens` at `ceiling`. A request with neither gets
/// `max_tokens = ceiling` (a missing limit means the model's own, which is what the cap is for);
/// one with only `max_completion_tokens` keeps that spelling alone.
pub(crate) fn cap_max_tokens(
    req: &mut RequestBody<'_>,
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
