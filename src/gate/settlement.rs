//! Settling what a response used when it ended without reporting usage, or reported it
//! without its cost.
//!
//! A client that hangs up mid-stream, or an upstream that breaks, leaves no usage event; the
//! generation was still (partly) billed. The Messages API reports tokens but often no `cost`,
//! which a spend budget needs. So the gateway asks OpenRouter
//! (`GET /generation?id=`), retrying for a few seconds because the record appears with a
//! delay, and falls back to an estimate from what was sent and streamed. It runs in the
//! background: cancelling the upstream promptly and billing accurately are both kept.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde::Deserialize;

use crate::limits::UsageAccount;
use crate::metrics::{Metrics, TokenCounts};
use crate::upstream::Upstream;

/// Pauses between lookups: OpenRouter may take a moment to have the record.
const LOOKUP_PAUSES: [Duration; 5] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// What is left to charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settle {
    /// Nothing was reported: tokens and spend, from the record or an estimate.
    All,
    /// The tokens were charged as reported; only the spend is left (none when the record
    /// cannot be had: a cost is never guessed).
    SpendOnly,
}

/// What is needed to account for a response after the fact.
#[derive(Debug)]
pub(super) struct Settlement {
    pub(super) upstream: Arc<Upstream>,
    pub(super) upstream_auth: HeaderValue,
    pub(super) metrics: Arc<Metrics>,
    pub(super) key: Arc<str>,
    pub(super) model: Option<String>,
    /// Where the usage is charged (token limit, spend budgets), if anywhere.
    pub(super) account: Option<UsageAccount>,
    pub(super) generation_id: Option<String>,
    /// Tokens to debit when the lookup fails: the request's size and the events streamed.
    pub(super) estimate: u64,
    pub(super) settle: Settle,
}

impl Settlement {
    pub(super) async fn run(self) {
        let counts = match &self.generation_id {
            Some(id) => self.lookup(id).await,
            None => None,
        };
        if self.settle == Settle::SpendOnly {
            let cost_usd = counts.map_or(0.0, |c| c.cost_usd);
            tracing::debug!(key = %self.key, generation = self.generation_id.as_deref().unwrap_or("-"), cost_usd, "settled the cost of a response that reported none");
            if let Some(account) = &self.account {
                account.charge(0, cost_usd);
            }
            let counts = TokenCounts {
                cost_usd,
                ..TokenCounts::default()
            };
            self.metrics
                .usage(&self.key, self.model.as_deref(), &counts);
            return;
        }
        let (tokens, how) = match &counts {
            Some(c) => (c.prompt + c.completion, "generation record"),
            None => (self.estimate, "estimate"),
        };
        tracing::info!(key = %self.key, generation = self.generation_id.as_deref().unwrap_or("-"), tokens, how, "settled a response that ended without usage");
        if let Some(account) = &self.account {
            // Without a generation record the cost is unknown: only tokens are estimated.
            account.charge(tokens, counts.map_or(0.0, |c| c.cost_usd));
        }
        let counts = counts.unwrap_or(TokenCounts {
            completion: tokens,
            ..TokenCounts::default()
        });
        self.metrics
            .usage(&self.key, self.model.as_deref(), &counts);
    }

    async fn lookup(&self, id: &str) -> Option<TokenCounts> {
        let upstream = &self.upstream;
        let query = format!("id={}", percent_encode(id));
        let uri = upstream.uri("/generation", Some(&query)).ok()?;
        for pause in LOOKUP_PAUSES {
            tokio::time::sleep(pause).await;
            let sent = upstream
                .send(&self.metrics, || {
                    Upstream::own_get(uri.clone(), &self.upstream_auth)
                })
                .await;
            let Ok(answer) = sent else {
                continue;
            };
            if !answer.response.status().is_success() {
                continue;
            }
            let Ok(body) = answer.bytes().await else {
                continue;
            };
            if let Some(counts) = parse_generation(&body) {
                return Some(counts);
            }
        }
        None
    }
}

/// The token counts of a `GET /generation` answer (native counts preferred: they are what
/// the usage object reports).
fn parse_generation(body: &[u8]) -> Option<TokenCounts> {
    #[derive(Deserialize)]
    struct Envelope {
        data: Generation,
    }
    #[derive(Deserialize)]
    struct Generation {
        tokens_prompt: Option<u64>,
        tokens_completion: Option<u64>,
        native_tokens_prompt: Option<u64>,
        native_tokens_completion: Option<u64>,
        native_tokens_reasoning: Option<u64>,
        native_tokens_cached: Option<u64>,
        total_cost: Option<f64>,
    }
    let g = serde_json::from_slice::<Envelope>(body).ok()?.data;
    let prompt = g.native_tokens_prompt.or(g.tokens_prompt)?;
    let completion = g.native_tokens_completion.or(g.tokens_completion)?;
    Some(TokenCounts {
        prompt,
        completion,
        reasoning: g.native_tokens_reasoning.unwrap_or(0),
        cached: g.native_tokens_cached.unwrap_or(0),
        cost_usd: g.total_cost.unwrap_or(0.0),
    })
}

/// Generation ids are `gen-…` tokens; anything else is escaped rather than trusted.
fn percent_encode(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_native_counts_first() {
        let body = br#"{"data":{"id":"gen-1","tokens_prompt":9,"tokens_completion":3,"native_tokens_prompt":10,"native_tokens_completion":4,"total_cost":0.5}}"#;
        let c = parse_generation(body).unwrap();
        assert_eq!((c.prompt, c.completion, c.cost_usd), (10, 4, 0.5));
        assert!(parse_generation(br#"{"data":{}}"#).is_none());
        assert_eq!(percent_encode("gen-1&x=y"), "gen-1%26x%3Dy");
    }
}
