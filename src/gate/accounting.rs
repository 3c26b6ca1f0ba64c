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
use super::settlement::Settlement;
use crate::metrics::{GaugeGuard, TokenCounts};
use crate::policy::Applied;
use crate::stream::{BodyListener, StreamFacts};
use crate::usage::Usage;

/// What a door asks of the accounting of its responses.
#[derive(Debug, Default)]
pub(crate) struct Charging {
    /// Charge the response to the key's account, and settle it when it reports no usage:
    /// `Some(the request's size in tokens, roughly)`, the estimate's share for the prompt.
    pub billed: Option<u64>,
    /// The providers the forwarded request allowed, checked against the one that served it.
    pub provider_check: Option<Applied>,
}

/// Hears one response body; see the module doc.
#[derive(Debug)]
pub(crate) struct Accounting {
    ctx: Arc<RequestContext>,
    /// Present while the response is charged: only a successful answer of a billed door is.
    bill: Option<Bill>,
    /// Present until the serving provider has been checked, when the policy bound
    /// `provider.only` or `provider.ignore`.
    provider_check: Option<Applied>,
    usage_reported: bool,
    /// Counts an event stream in `orgate_inflight_streams` until the body is gone.
    _stream: Option<GaugeGuard>,
}

#[derive(Debug)]
struct Bill {
    prompt_estimate: u64,
    /// From `X-Generation-Id`, for the lookup when the body never names its generation.
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
            .billed
            .filter(|_| status.is_success())
            .map(|prompt_estimate| Bill {
                prompt_estimate,
                generation_id: headers
                    .get("x-generation-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            });
        let provider_check = charging
            .provider_check
            .filter(|applied| !applied.only.is_empty() || !applied.ignore.is_empty());
        let stream = event_stream.then(|| ctx.metrics.stream(ctx.key()));
        Self {
            ctx,
            bill,
            provider_check,
            usage_reported: false,
            _stream: stream,
        }
    }
}

impl BodyListener for Accounting {
    fn usage(&mut self, usage: &Usage, model: Option<&str>) {
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
        if let (Some(_), Some(account)) = (&self.bill, &ctx.account) {
            account.charge(usage.tokens(), counts.cost_usd);
        }
    }

    /// Trust, but verify: warns and counts when the provider OpenRouter reports is one the
    /// request's policy excluded.
    fn provider(&mut self, provider: &str) {
        let Some(applied) = self.provider_check.take() else {
            return;
        };
        if !applied.provider_allowed(provider) {
            let ctx = &self.ctx;
            let request_id = ctx.request_id.as_ref().and_then(|id| id.to_str().ok());
            tracing::warn!(
                key = %ctx.key(),
                request_id = request_id.unwrap_or("-"),
                provider,
                only = ?applied.only,
                ignore = ?applied.ignore,
                "the upstream served the request with a provider the policy excludes"
            );
            ctx.metrics.provider_violation(ctx.key(), provider);
        }
    }

    fn failed(&mut self, kind: &'static str) {
        self.ctx.metrics.upstream_error(kind);
    }

    /// A billed body gone without usage is settled in the background: what it must have cost.
    fn gone(&mut self, stream: Option<&StreamFacts>) {
        if self.usage_reported {
            return;
        }
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
        };
        runtime.spawn(settlement.run());
    }

    fn requested_model(&self) -> Option<&str> {
        self.ctx.model.as_deref()
    }
}
