//! `GET /key`: what the caller's own key may spend and has spent, in the shape of OpenRouter's
//! `GET /key`, so that tools which show "credits left" work. Answered by the gateway: the
//! upstream's answer would describe the org's key, which a client must never see.

use serde_json::{json, Value};

pub(super) const PATH: &str = "/key";

/// What `GET /key` tells about a key: its limits and spend, as the gateway counts them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct KeyFacts<'a> {
    /// The key id from the config (never the key).
    pub id: &'a str,
    /// USD budgets per UTC day and month; 0 = none.
    pub usd_per_day: f64,
    pub usd_per_month: f64,
    /// USD spent in the current day and month, when the limits store can say.
    pub spent_day: Option<f64>,
    pub spent_month: Option<f64>,
    pub requests_per_minute: u64,
}

/// The answer to `GET /key`. `limit` is the day's budget where there is one, else the
/// month's (OpenRouter's key has one limit, with a reset period).
pub(crate) fn key_info(facts: &KeyFacts<'_>) -> Value {
    let (limit, spent, reset) = if facts.usd_per_day > 0.0 {
        (Some(facts.usd_per_day), facts.spent_day, Some("daily"))
    } else if facts.usd_per_month > 0.0 {
        (
            Some(facts.usd_per_month),
            facts.spent_month,
            Some("monthly"),
        )
    } else {
        (None, facts.spent_month, None)
    };
    let remaining = limit.map(|limit| (limit - spent.unwrap_or(0.0)).max(0.0));
    let rate_limit = (facts.requests_per_minute > 0)
        .then(|| json!({ "requests": facts.requests_per_minute, "interval": "1m" }));
    json!({
        "data": {
            "label": facts.id,
            "limit": limit,
            "limit_remaining": remaining,
            "limit_reset": reset,
            "usage": facts.spent_month.unwrap_or(0.0),
            "usage_daily": facts.spent_day.unwrap_or(0.0),
            "usage_monthly": facts.spent_month.unwrap_or(0.0),
            "is_free_tier": false,
            "rate_limit": rate_limit,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_days_budget_is_the_limit_where_there_is_one() {
        let facts = KeyFacts {
            id: "alice",
            usd_per_day: 5.0,
            usd_per_month: 50.0,
            spent_day: Some(1.5),
            spent_month: Some(20.0),
            requests_per_minute: 60,
        };
        let data = &key_info(&facts)["data"];
        assert_eq!(data["label"], "alice");
        assert_eq!(data["limit"], 5.0);
        assert_eq!(data["limit_remaining"], 3.5);
        assert_eq!(data["limit_reset"], "daily");
        assert_eq!(data["usage"], 20.0);
        assert_eq!(data["rate_limit"]["requests"], 60);
    }

    #[test]
    fn no_budget_no_limit() {
        let facts = KeyFacts {
            id: "bob",
            usd_per_day: 0.0,
            usd_per_month: 0.0,
            spent_day: None,
            spent_month: None,
            requests_per_minute: 0,
        };
        let data = &key_info(&facts)["data"];
        assert!(data["limit"].is_null() && data["limit_remaining"].is_null());
        assert_eq!(data["usage"], 0.0);
    }
}
