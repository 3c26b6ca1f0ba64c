//! The limits layer: one check per request, after auth.
//!
//! A refusal is the 429 (counted by key and limit), or the 503 of a limits backend that cannot
//! be asked when `limits.on_backend_error` refuses. An admission's concurrency permit is
//! handed to the request's [`RequestFacts`], which live until the response body ends or the
//! client leaves, so a stream holds its slot exactly that long; its token account goes to the
//! handler, which debits the usage the response reports.

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::{Admission, LimitKind};
use crate::auth::Client;
use crate::metrics::Metrics;
use crate::state::Snapshot;
use crate::telemetry::RequestFacts;

pub async fn enforce(
    Extension(snapshot): Extension<Arc<Snapshot>>,
    Extension(client): Extension<Arc<Client>>,
    Extension(metrics): Extension<Arc<Metrics>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Admission {
        permit,
        headers,
        account,
    } = match snapshot.limits.check(&client.id).await {
        Ok(admission) => admission,
        // The backend itself logs (rate-limited) and counts its failures.
        Err(refusal) if refusal.limit == LimitKind::Backend => return refusal.into_response(),
        Err(refusal) => {
            metrics.ratelimited(&client.id, refusal.limit.as_str());
            tracing::info!(key = %client.id, limit = refusal.limit.as_str(), "request refused by a limit");
            return refusal.into_response();
        }
    };
    if let Some(facts) = request.extensions().get::<Arc<RequestFacts>>() {
        facts.hold_permit(permit);
    }
    if let Some(account) = account {
        request.extensions_mut().insert(account);
    }
    let mut response = next.run(request).await;
    headers.write_to(response.headers_mut());
    response
}
