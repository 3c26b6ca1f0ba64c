//! The limits check of one request, called by the API layer ([`crate::auth::admit`]) right
//! after authentication, so that auth and limits cost one layer, not two.
//!
//! A refusal is the 429 (counted by key and limit), or the 503 of a limits backend that cannot
//! be asked when `limits.on_backend_error` refuses. An admission's concurrency permit is
//! handed to the request's [`RequestFacts`], which live until the response body ends or the
//! client leaves, so a stream holds its slot exactly that long; its token account goes to the
//! handler, which debits the usage the response reports.

use axum::response::{IntoResponse, Response};

use super::{Admission, LimitKind, RateLimitHeaders, UsageAccount};
use crate::auth::Client;
use crate::metrics::Metrics;
use crate::state::Snapshot;
use crate::telemetry::RequestFacts;

/// Checks `client`'s limits: the response headers to write and the account to debit, or the
/// refusal to answer with.
pub async fn check_request(
    snapshot: &Snapshot,
    client: &Client,
    metrics: &Metrics,
    facts: Option<&RequestFacts>,
) -> Result<(RateLimitHeaders, Option<UsageAccount>), Response> {
    let Admission {
        permit,
        headers,
        account,
    } = match snapshot.limits.check(&client.id).await {
        Ok(admission) => admission,
        // The backend itself logs (rate-limited) and counts its failures.
        Err(refusal) if refusal.limit == LimitKind::Backend => return Err(refusal.into_response()),
        Err(refusal) => {
            metrics.ratelimited(&client.id, refusal.limit.as_str());
            tracing::info!(key = %client.id, limit = refusal.limit.as_str(), "request refused by a limit");
            return Err(refusal.into_response());
        }
    };
    if let Some(facts) = facts {
        facts.hold_permit(permit);
    }
    Ok((headers, account))
}
