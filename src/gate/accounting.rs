//! What a response used, charged as its body passes: tokens and spend to the key's account,
//! token and cost metrics, and the check that the provider that served it is one the policy
//! allowed. A billed response that ends without reporting its usage is settled afterwards
//! (`settlement`).
//!
//! [`Accounting`] is the [`BodyListener`] of every forwarded response: the body wrapper
//! (`crate::stream`) tells it what it saw, and it holds the request's context until the body
//! is gone, so the concurrency slot is released exactly then.

use std::sync::Arc;

use http::{HeaderMap, StatusCode};

use super::context::RequestContext;
use super::settlement::{Settle, Settlement};
use crate::metrics::{GaugeGuard, TokenCounts};
use crate::policy::ProviderCheck;
use crate::stream::{BodyListener, StreamFacts};
use crate::usage::Usage;

/// What a door asks of the accounting of its responses.
#[derive(Debug, Default)]
pub(crate) struct Charging {
    /// Charge the usage a successful response reports to the key's account.
    pub charged: bool,
    /// Settle from `/generation` what a successful response did not report (its usage, or
    /// only its cost): `Some(the request's size in tokens, roughly)`, the estimate's share for
    /// the prompt when the lookup fails.
    pub settled: Option<u64>,
    /// The providers the forwarded request allowed, checked against the one that served it.
    pub provider_check: Option<ProviderCheck>,
}

/// Hears one response body; see the module doc.
#[derive(Debug)]
pub(crate) struct Accounting {
    ctx: Arc<RequestContext>,
    /// The response's usage is charged: only a successful answer of a charged door's is.
    charged: bool,
    /// Present while what the response does not report is to be settled.
    bill: Option<Bill>,
    /// Present until the serving provider has been checked, when the policy bound
    /// `provider.only` or `provider.ignore`.
    provider_check: Option<ProviderCheck>,
    usage_reported: bool,
    /// The usage reported had no `cost` (Messages, often): the spend is settled afterwards.
    cost_missing: bool,
    /// Counts an event stream in `orgate_inflight_streams` until the body is gone.
    _stream: Option<GaugeGuard>,
}

#[derive(Debug)]
struct Bill {
    prompt_estimate: u64,
    /// From `X-Generation-Id`, or as the body names it: the record to look up.
    generation_id: Option<String>,
}

impl Accounting {
    /// The accounting of the response `status`/`headers` to `ctx`'s request; `event_stream`
    /// says whether its body is one.
    pub(crate) fn new(
        ctx: Arc<RequestContext>,
        status: StatusCode,
        headers: &HeaderMap,
        event_stream: bool,
        charging: Charging,
    ) -> Self {
        let bill = charging
            .settled
            .filter(|_| status.is_success())
            .map(|prompt_estimate| Bill {
                prompt_estimate,
                generation_id: headers
                    .get("x-generation-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            });
        let stream = event_stream.then(|| ctx.metrics.stream(ctx.key()));
        Self {
            ctx,
            charged: charging.charged && status.is_success(),
            bill,
            provider_check: charging.provider_check,
            usage_reported: false,
            cost_missing: false,
            _stream: stream,
        }
    }
}

impl BodyListener for Accounting {
    fn usage(&mut self, usage: &Usage, model: Option<&str>, generation: Option<&str>) {
        if std::mem::replace(&mut self.usage_reported, true) {
            return;
        }
        let counts = TokenCounts {
            prompt: usage.prompt_tokens.unwrap_or(0),
            completion: usage.completion_tokens.unwrap_or(0),
            reasoning: usage.reasoning_tokens.unwrap_or(0),
            cached: usage.cached_tokens.unwrap_or(0),
            cost_usd: usage.cost.unwrap_or(0.0),
        };
        let ctx = &self.ctx;
        let model = model.or(ctx.model.as_deref());
        ctx.metrics.usage(ctx.key(), model, &counts);
        if let (true, Some(account)) = (self.charged, &ctx.account) {
            account.charge(usage.tokens(), counts.cost_usd);
        }
        self.cost_missing = usage.cost.is_none();
        // The record the spend is settled from (a stream's facts name it too; a JSON body's id
        // is only here).
        if let (true, Some(bill), Some(id)) = (self.cost_missing, &mut self.bill, generation) {
            bill.generation_id = Some(id.to_owned());
        }
    }

    /// Trust, but verify: warns and counts when the provider OpenRouter reports is one the
    /// request's policy excluded.
    fn provider(&mut self, provider: &str) {
        let Some(allowed) = self.provider_check.take() else {
            return;
        };
        if !allowed.allows(provider) {
            let ctx = &self.ctx;
            let request_id = ctx.request_id.as_ref().and_then(|id| id.to_str().ok());
            tracing::warn!(
                key = %ctx.key(),
                request_id = request_id.unwrap_or("-"),
                provider,
                only = ?allowed.only,
                ignore = ?allowed.ignore,
                "the upstream served the request with a provider the policy excludes"
            );
            ctx.metrics.provider_violation(ctx.key(), provider);
        }
    }

    fn failed(&mut self, kind: &'static str) {
        self.ctx.metrics.upstream_error(kind);
    }

    /// What a body did not report is settled in the background: all of it when it reported
    /// no usage, the spend when its usage had no cost and a budget could need it.
    fn gone(&mut self, stream: Option<&StreamFacts>) {
        let settle = match (self.usage_reported, self.cost_missing) {
            (false, _) => Settle::All,
            (true, true) if self.ctx.account.is_some() => Settle::SpendOnly,
            (true, _) => return,
        };
        let Some(bill) = self.bill.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let ctx = &self.ctx;
        let settlement = Settlement {
            upstream: ctx.snapshot.upstream.clone(),
            upstream_auth: ctx.client.upstream_auth.clone(),
            metrics: ctx.metrics.clone(),
            key: ctx.key().clone(),
            model: stream
                .and_then(|s| s.model.clone())
                .or_else(|| ctx.model.clone()),
            account: ctx.account.clone(),
            generation_id: stream
                .and_then(|s| s.generation_id.clone())
                .or(bill.generation_id),
            estimate: bill.prompt_estimate + stream.map_or(0, |s| s.events),
            settle,
        };
        runtime.spawn(settlement.run());
    }

    fn requested_model(&self) -> Option<&str> {
        self.ctx.model.as_deref()
    }
}
