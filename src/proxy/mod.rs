//! Forwarding: the chat handler, the generic pass-through, and the shared road upstream.

mod generation;
mod headers;
mod outgoing;
mod path;
mod upstream;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::Extension;
use bytes::Bytes;
use http::{header, HeaderMap, Method};

pub use generation::Settlement;
pub use headers::{client_response_headers, upstream_request_headers};
pub use outgoing::OutgoingBody;
pub use path::api_suffix;
pub use upstream::{Upstream, UpstreamResponse};

use crate::auth::{Admitted, Client};
use crate::chat_request::ChatRequest;
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::state::Snapshot;
use crate::stream::{Billing, BodyKind, ResponseObserver, UpstreamBody};
use crate::telemetry::RequestFacts;

/// `POST /api/v1/chat/completions` and `POST /v1/chat/completions`.
pub async fn chat(
    Extension(facts): Extension<Arc<RequestFacts>>,
    request: Request,
) -> Result<Response, GatewayError> {
    let (mut parts, body) = request.into_parts();
    let Admitted {
        metrics,
        client,
        snapshot,
        account,
    } = admitted(&mut parts)?;
    let bytes = read_body(
        body,
        &parts.headers,
        snapshot.config.server.max_body.bytes(),
    )
    .await?;
    let mut chat = ChatRequest::parse(&bytes)?;
    facts.set_stream(chat.stream());
    // The policy's explanation is rendered only when a debug log line will show it.
    let applied = if tracing::enabled!(tracing::Level::DEBUG) {
        client.policy.apply(&mut chat)
    } else {
        client.policy.apply_quietly(&mut chat)
    };
    let applied = match applied {
        Ok(applied) => applied,
        Err(refusal) => {
            facts.set_model(chat.model().ok().flatten().as_deref());
            record_policy(&metrics, &refusal.actions, "refused the request");
            return Err(refusal.into());
        }
    };
    record_policy(&metrics, &applied.actions, "rewrote the request");
    let model = applied.model.clone();
    facts.set_model(model.as_deref());
    let body = OutgoingBody::chat(&chat, &bytes);
    let billing = Billing {
        account,
        snapshot: snapshot.clone(),
        upstream_auth: client.upstream_auth.clone(),
        generation_id: None,
        prompt_estimate: crate::usage::estimate_tokens(body.len()),
    };
    let observer = ResponseObserver::new(metrics.clone(), client.id.clone(), model)
        .with_billing(billing)
        .with_provider_check(applied);
    let target = Target {
        method: Method::POST,
        suffix: upstream::CHAT_SUFFIX,
        query: parts.uri.query(),
        route: "chat",
    };
    forward(
        &snapshot,
        &metrics,
        &client,
        &facts,
        &parts.headers,
        target,
        body,
        observer,
    )
    .await
}

/// Any other `/api/v1/*` or `/v1/*`: the same path under the upstream base URL.
pub async fn passthrough(
    Extension(facts): Extension<Arc<RequestFacts>>,
    request: Request,
) -> Result<Response, GatewayError> {
    let (mut parts, body) = request.into_parts();
    let Admitted {
        metrics,
        client,
        snapshot,
        ..
    } = admitted(&mut parts)?;
    let path = parts.uri.path();
    let prefix = if path.starts_with("/api/v1/") {
        "/api/v1"
    } else {
        "/v1"
    };
    let suffix = api_suffix(path, prefix)?;
    let bytes = read_body(
        body,
        &parts.headers,
        snapshot.config.server.max_body.bytes(),
    )
    .await?;
    let observer = ResponseObserver::new(metrics.clone(), client.id.clone(), None);
    let target = Target {
        method: parts.method.clone(),
        suffix,
        query: parts.uri.query(),
        route: "passthrough",
    };
    forward(
        &snapshot,
        &metrics,
        &client,
        &facts,
        &parts.headers,
        target,
        bytes.into(),
        observer,
    )
    .await
}

/// What the API layer ([`crate::auth::admit`]) learned, moved out of the request.
fn admitted(parts: &mut http::request::Parts) -> Result<Admitted, GatewayError> {
    parts.extensions.remove::<Admitted>().ok_or_else(|| {
        GatewayError::Internal("an API route was reached without the admission layer".into())
    })
}

/// Counts what the policy did and logs it, compact, at debug.
fn record_policy(metrics: &Metrics, actions: &[crate::policy::Action], what: &str) {
    if actions.is_empty() {
        return;
    }
    for action in actions {
        metrics.policy_action(&action.rule, action.outcome.as_str());
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        let explanation: Vec<String> = actions.iter().map(ToString::to_string).collect();
        tracing::debug!(policy = %explanation.join(" | "), "policy {what}");
    }
}

/// Where a request goes upstream.
struct Target<'a> {
    method: Method,
    /// The path under the upstream base URL (`/chat/completions`).
    suffix: &'a str,
    query: Option<&'a str>,
    /// The metrics label.
    route: &'static str,
}

/// Sends the request upstream and turns the answer into the client's response: same status,
/// same headers (hop-by-hop ones aside), same body, passed on as it arrives.
#[allow(clippy::too_many_arguments)]
async fn forward(
    snapshot: &Snapshot,
    metrics: &Metrics,
    client: &Client,
    facts: &RequestFacts,
    client_headers: &HeaderMap,
    target: Target<'_>,
    body: OutgoingBody,
    mut observer: ResponseObserver,
) -> Result<Response, GatewayError> {
    let upstream = &snapshot.upstream;
    let answer = upstream
        .send(metrics, || {
            let headers = upstream_request_headers(client_headers, &client.upstream_auth, upstream);
            upstream.request(
                target.method.clone(),
                target.suffix,
                target.query,
                headers,
                body.clone(),
            )
        })
        .await?;
    metrics.upstream_answered(target.route, answer.time_to_headers, facts.elapsed());
    if answer.response.status().is_server_error() {
        metrics.upstream_error("status_5xx");
    }
    let response: http::Response<reqwest::Body> = answer.response.into();
    let (parts, body) = response.into_parts();
    observer.answered(parts.status, &parts.headers);
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes());
    let kind = match content_type {
        Some(ct) if ct.starts_with(b"text/event-stream") => BodyKind::EventStream,
        Some(ct) if ct.starts_with(b"application/json") && target.route == "chat" => BodyKind::Json,
        _ => BodyKind::Opaque,
    };
    let body = UpstreamBody::new(body, kind, upstream.idle_timeout, observer);
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = parts.status;
    *out.headers_mut() = client_response_headers(parts.headers);
    Ok(out)
}

/// Reads a request body whole, refusing more than `limit` bytes (413) before reading it when
/// `Content-Length` already says so.
async fn read_body(body: Body, headers: &HeaderMap, limit: u64) -> Result<Bytes, GatewayError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit_usize).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            GatewayError::PayloadTooLarge { limit }
        } else {
            GatewayError::BadRequest(format!("could not read the request body: {e}"))
        }
    })
}
