//! The gate: who may come in, and the home a request lives in until its response is done.
//!
//! [`admit`] is the first step of every door: the client key (401), the limits (429, or 503 when
//! the shared limits backend cannot be asked), then a [`RequestContext`] that owns what the
//! request holds. At the other end, [`Accounting`] hears what the response body shows and
//! charges it: tokens and spend, metrics, the provider check, and a settlement from
//! `/generation` when a response ends without reporting its usage.
//!
//! # Layout
//! - `context`: the [`RequestContext`];
//! - `accounting`: what a response used, charged as the body passes and when it is gone;
//! - `settlement`: asking the upstream what a response without usage cost.

mod accounting;
mod context;
mod settlement;

use std::sync::Arc;

use axum::response::Response;
use http::HeaderMap;

pub(crate) use accounting::{Accounting, Charging};
pub(crate) use context::RequestContext;

use crate::doors::Door;
use crate::error::GatewayError;
use crate::limits::LimitKind;
use crate::state::{AppState, Snapshot};

/// Admits a request that came through `door` with `headers`, on the config `snapshot`, or
/// answers it in the door's error shape: 503 while shutting down, 401 without a known key, 429
/// (or 503) when a limit refuses. The context a refusal by a limit was built with travels with
/// its response, so the access log names the key.
pub(crate) async fn admit(
    state: &AppState,
    snapshot: Arc<Snapshot>,
    headers: &HeaderMap,
    door: Door,
) -> Result<RequestContext, Response> {
    let shape = door.errors();
    if !state.is_ready() {
        return Err(GatewayError::ShuttingDown.respond(shape));
    }
    let client = snapshot
        .keys
        .authenticate(headers)
        .map_err(|e| e.respond(shape))?;
    let mut ctx = RequestContext::new(client, snapshot, state.metrics().clone(), door, headers);
    match ctx.snapshot.limits.check(ctx.key()).await {
        Ok(admission) => {
            ctx.hold(admission);
            Ok(ctx)
        }
        Err(refusal) => {
            // The backend logs (rate-limited) and counts its own failures.
            if refusal.limit != LimitKind::Backend {
                let limit = refusal.limit.as_str();
                ctx.metrics.ratelimited(ctx.key(), limit);
                tracing::info!(key = %ctx.key(), limit, "request refused by a limit");
            }
            Err(ctx.respond(refusal.respond(shape)))
        }
    }
}
