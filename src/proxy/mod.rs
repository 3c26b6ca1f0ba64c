//! The pipeline every door runs, written once: admit → read → policy → forward → observe.
//!
//! [`gate::admit`] lets the request in and gives it its [`RequestContext`]; the door reads the
//! body (only the fields it decides on) and applies the client's policy; [`forward`] sends the
//! result upstream and hands the answer back with its body wrapped ([`UpstreamBody`]), whose
//! [`Accounting`] charges what the response used. Every response after admission leaves
//! through the context ([`RequestContext::respond`]), so it carries the rate-limit headers and
//! the access log can read the context.

mod headers;
mod path;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, Method};
use std::sync::Arc;

pub(crate) use headers::{client_response_headers, upstream_request_headers};
pub use path::api_suffix;

use crate::chat_request::ChatRequest;
use crate::error::GatewayError;
use crate::gate::{self, Accounting, Charging, Door, RequestContext};
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::stream::{BodyKind, UpstreamBody};
use crate::upstream::{OutgoingBody, CHAT_SUFFIX};

/// `POST /api/v1/chat/completions` and `POST /v1/chat/completions`.
pub(crate) async fn chat(State(state): State<AppState>, request: Request) -> Response {
    pipeline(&state, Door::Chat, request).await
}

/// Any other `/api/v1/*` or `/v1/*`: the same path under the upstream base URL.
pub(crate) async fn passthrough(State(state): State<AppState>, request: Request) -> Response {
    pipeline(&state, Door::Passthrough, request).await
}

/// A request ready to go upstream, and how its answer is accounted for.
struct Outgoing<'r> {
    method: Method,
    /// The path under the upstream base URL (`/chat/completions`).
    suffix: &'r str,
    body: OutgoingBody,
    charging: Charging,
}

async fn pipeline(state: &AppState, door: Door, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut ctx = match gate::admit(state, &parts.headers, door).await {
        Ok(ctx) => ctx,
        Err(refused) => return refused,
    };
    let outgoing = match door {
        Door::Chat => read_chat(&mut ctx, &parts, body).await,
        Door::Passthrough => read_passthrough(&ctx, &parts, body).await,
    };
    match outgoing {
        Ok(outgoing) => forward(ctx, &parts, outgoing).await,
        Err(error) => ctx.respond(error.into_response()),
    }
}

/// The chat body, parsed once with `messages` left raw, and the policy applied to it.
async fn read_chat(
    ctx: &mut RequestContext,
    parts: &Parts,
    body: Body,
) -> Result<Outgoing<'static>, GatewayError> {
    let max_body = ctx.snapshot.config.server.max_body.bytes();
    let bytes = read_body(body, &parts.headers, max_body).await?;
    let mut chat = ChatRequest::parse(&bytes)?;
    ctx.stream = chat.stream();
    let applied = match ctx.client.policy.apply(&mut chat) {
        Ok(applied) => applied,
        Err(refusal) => {
            ctx.model = chat.model().ok().flatten();
            record_policy(&ctx.metrics, &refusal.actions, "refused the request");
            return Err(refusal.into());
        }
    };
    record_policy(&ctx.metrics, &applied.actions, "rewrote the request");
    ctx.model.clone_from(&applied.model);
    let body = OutgoingBody::chat(&chat, &bytes);
    let prompt_estimate = crate::usage::estimate_tokens(body.len());
    Ok(Outgoing {
        method: Method::POST,
        suffix: CHAT_SUFFIX,
        body,
        charging: Charging {
            billed: Some(prompt_estimate),
            provider_check: Some(applied),
        },
    })
}

/// Any other path, checked to stay under the API prefix, its body passed on as it came.
async fn read_passthrough<'r>(
    ctx: &RequestContext,
    parts: &'r Parts,
    body: Body,
) -> Result<Outgoing<'r>, GatewayError> {
    let path = parts.uri.path();
    let prefix = if path.starts_with("/api/v1/") {
        "/api/v1"
    } else {
        "/v1"
    };
    let suffix = api_suffix(path, prefix)?;
    let max_body = ctx.snapshot.config.server.max_body.bytes();
    let bytes = read_body(body, &parts.headers, max_body).await?;
    Ok(Outgoing {
        method: parts.method.clone(),
        suffix,
        body: bytes.into(),
        charging: Charging::default(),
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

/// Sends the request upstream and turns the answer into the client's response: same status,
/// same headers (hop-by-hop ones aside), same body, passed on as it arrives.
async fn forward(ctx: RequestContext, parts: &Parts, outgoing: Outgoing<'_>) -> Response {
    let upstream = &ctx.snapshot.upstream;
    let sent = upstream
        .send(&ctx.metrics, || {
            let headers =
                upstream_request_headers(&parts.headers, &ctx.client.upstream_auth, upstream);
            upstream.request(
                outgoing.method.clone(),
                outgoing.suffix,
                parts.uri.query(),
                headers,
                outgoing.body.clone(),
            )
        })
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(error) => return ctx.respond(error.into_response()),
    };
    let idle_timeout = upstream.idle_timeout;
    let route = ctx.door.route();
    ctx.metrics
        .upstream_answered(route, answer.time_to_headers, ctx.started.elapsed());
    if answer.response.status().is_server_error() {
        ctx.metrics.upstream_error("status_5xx");
    }
    let response: http::Response<reqwest::Body> = answer.response.into();
    let (head, body) = response.into_parts();
    let content_type = head.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
    let kind = match content_type {
        Some(ct) if ct.starts_with(b"text/event-stream") => BodyKind::EventStream,
        // A billed answer's usage is read when the body ends.
        Some(ct) if ct.starts_with(b"application/json") && outgoing.charging.billed.is_some() => {
            BodyKind::Json
        }
        _ => BodyKind::Opaque,
    };
    let ctx = Arc::new(ctx);
    let accounting = Accounting::new(
        ctx.clone(),
        head.status,
        &head.headers,
        kind == BodyKind::EventStream,
        outgoing.charging,
    );
    let body = UpstreamBody::new(body, kind, idle_timeout, accounting);
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = head.status;
    *out.headers_mut() = client_response_headers(head.headers);
    ctx.respond_shared(out)
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
