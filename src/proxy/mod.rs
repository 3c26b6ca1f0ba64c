//! The pipeline every door runs, written once: route → admit → read → policy → forward →
//! observe.
//!
//! [`api`] finds the door a method and path lead to (`crate::doors`), or refuses the path;
//! [`gate::admit`] lets the request in and gives it its [`RequestContext`]; a model door's body
//! is read once (only the fields the policy decides on) and the client's policy applied as the
//! door's [`RequestShape`](crate::policy::RequestShape) says; the catalogue and allowed routes
//! pass as they came, and `count_tokens` and `/key` are answered here; [`forward`] sends the
//! result upstream and hands the answer back with its body wrapped ([`UpstreamBody`]), whose
//! [`Accounting`] charges what the response used. Every response after admission leaves
//! through the context ([`RequestContext::respond`]), so it carries the rate-limit headers and
//! the access log can read the context.
//!
//! # Layout
//! - `intake`: the request head's size, and the body read whole (size, time, encoding);
//! - `headers`: which headers cross, each way; `path`: keeping forwarded paths under the prefix.

mod headers;
mod intake;
mod path;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderMap, Method};
use percent_encoding::percent_decode_str;

pub(crate) use headers::{client_response_headers, upstream_request_headers};
pub(crate) use intake::MAX_HEAD_BYTES;
pub use path::api_suffix;

use intake::{check_head_size, read_body};

use crate::doors::{self, Door, EventStream, KeyFacts, ModelDoor};
use crate::error::GatewayError;
use crate::gate::{self, Accounting, Charging, RequestContext};
use crate::limits::KeyLimits;
use crate::metrics::Metrics;
use crate::policy::Applied;
use crate::request_body::RequestBody;
use crate::state::{AppState, Snapshot};
use crate::stream::{BodyKind, UpstreamBody};
use crate::upstream::{OutgoingBody, Upstream};

/// Every path under `/api/v1` and `/v1`: the door it leads to, or a refusal.
pub(crate) async fn api(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if let Err(too_large) = check_head_size(&parts) {
        return too_large.into_response();
    }
    let snapshot = state.snapshot();
    let (door, suffix) = match route(&parts, &snapshot) {
        Ok(route) => route,
        Err(refused) => return refuse(&snapshot, &parts.headers, refused),
    };
    let mut ctx = match gate::admit(&state, snapshot, &parts.headers, door).await {
        Ok(ctx) => ctx,
        Err(refused) => return refused,
    };
    let outgoing = match door {
        Door::Model(model) => read_model(&mut ctx, &parts, body, model).await,
        Door::Catalogue | Door::Allowed => read_as_is(&ctx, &parts, body, suffix).await,
        Door::CountTokens => {
            let answered = count_tokens(&mut ctx, &parts, body).await;
            return answer(ctx, answered);
        }
        Door::Key => {
            let answered = key_info(&ctx).await;
            return answer(ctx, answered);
        }
    };
    match outgoing {
        Ok(outgoing) => forward(ctx, &parts, outgoing).await,
        Err(error) => {
            let shape = door.errors();
            ctx.respond(error.respond(shape))
        }
    }
}

/// The door a request's method and path lead to, and its path under the API prefix as the
/// client wrote it (checked to stay under the prefix). Doors are found by the decoded path,
/// so an escaped letter is no way around one.
fn route<'p>(parts: &'p Parts, snapshot: &Snapshot) -> Result<(Door, &'p str), GatewayError> {
    let path = parts.uri.path();
    let prefix = if path.starts_with("/api/v1/") {
        "/api/v1"
    } else {
        "/v1"
    };
    let suffix = api_suffix(path, prefix)?;
    let decoded = percent_decode_str(suffix).decode_utf8().map_err(|_| {
        GatewayError::BadRequest(format!("path {path:?} refused: not UTF-8 once decoded"))
    })?;
    let door = Door::of(&parts.method, &decoded, &snapshot.routes)?;
    Ok((door, suffix))
}

/// A request no door takes: a caller without a known key learns only that (401), one with a
/// key why the path is refused.
fn refuse(snapshot: &Snapshot, headers: &HeaderMap, refused: GatewayError) -> Response {
    match snapshot.keys.authenticate(headers) {
        Ok(_) => refused.into_response(),
        Err(unknown) => unknown.into_response(),
    }
}

/// The gateway's own answer to an admitted request, as JSON.
fn answer(ctx: RequestContext, body: Result<serde_json::Value, GatewayError>) -> Response {
    let response = match body {
        Ok(json) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&json).unwrap_or_default(),
        )
            .into_response(),
        Err(error) => error.respond(ctx.door.errors()),
    };
    ctx.respond(response)
}

/// A request ready to go upstream, and how its answer is read and accounted for.
struct Outgoing<'r> {
    method: Method,
    /// The path under the upstream base URL (`/chat/completions`).
    suffix: &'r str,
    body: OutgoingBody,
    /// Reads the answer's event stream, if it is one.
    events: EventStream,
    charging: Charging,
}

/// A model door's body, parsed once with the bulk left raw, and the policy applied to it.
async fn read_model(
    ctx: &mut RequestContext,
    parts: &Parts,
    body: Body,
    door: ModelDoor,
) -> Result<Outgoing<'static>, GatewayError> {
    let spec = door.spec();
    let bytes = read_body(body, &parts.headers, &ctx.snapshot.config.server).await?;
    let mut request = door.parse(&bytes)?;
    ctx.stream = request.stream();
    let applied = apply_policy(ctx, &mut request, door)?;
    let body = OutgoingBody::from_request(&request, &bytes);
    let prompt_estimate = crate::usage::estimate_tokens(body.len());
    Ok(Outgoing {
        method: Method::POST,
        suffix: spec.path,
        body,
        events: door.events(),
        charging: Charging {
            charged: true,
            settled: Some(prompt_estimate),
            provider_check: applied.provider_check(),
        },
    })
}

/// The client's policy applied to `request` as `door` reads it, counted and logged; the model
/// it names is noted in the context either way.
fn apply_policy(
    ctx: &mut RequestContext,
    request: &mut RequestBody<'_>,
    door: ModelDoor,
) -> Result<Applied, GatewayError> {
    match ctx.client.policy.apply(request, door.spec().shape) {
        Ok(applied) => {
            record_policy(&ctx.metrics, &applied.actions, "rewrote the request");
            ctx.model.clone_from(&applied.model);
            Ok(applied)
        }
        Err(refusal) => {
            ctx.model = request.model().ok().flatten();
            record_policy(&ctx.metrics, &refusal.actions, "refused the request");
            Err(refusal.into())
        }
    }
}

/// `POST /messages/count_tokens`, answered here: the Messages body with the model rules
/// applied, and the estimate of its input.
async fn count_tokens(
    ctx: &mut RequestContext,
    parts: &Parts,
    body: Body,
) -> Result<serde_json::Value, GatewayError> {
    let bytes = read_body(body, &parts.headers, &ctx.snapshot.config.server).await?;
    let mut request = ModelDoor::Messages.parse(&bytes)?;
    apply_policy(ctx, &mut request, ModelDoor::Messages)?;
    Ok(doors::count_tokens(&request))
}

/// `GET /key`, answered here from the caller's own limits and spend.
async fn key_info(ctx: &RequestContext) -> Result<serde_json::Value, GatewayError> {
    let limits = KeyLimits::of(&ctx.snapshot.config, ctx.key());
    let spent = match &ctx.account {
        Some(account) => account.spent().await,
        None => None,
    };
    Ok(doors::key_info(&KeyFacts {
        id: ctx.key(),
        usd_per_day: limits.usd_per_day,
        usd_per_month: limits.usd_per_month,
        spent_day: spent.map(|s| s.day_usd),
        spent_month: spent.map(|s| s.month_usd),
        requests_per_minute: limits.requests_per_minute,
    }))
}

/// The catalogue, or a route `[routes] allow` opened: the path as the client wrote it, the
/// body as it came; an allowed route's reported cost is charged.
async fn read_as_is<'r>(
    ctx: &RequestContext,
    parts: &Parts,
    body: Body,
    suffix: &'r str,
) -> Result<Outgoing<'r>, GatewayError> {
    let bytes = read_body(body, &parts.headers, &ctx.snapshot.config.server).await?;
    Ok(Outgoing {
        method: parts.method.clone(),
        suffix,
        body: bytes.into(),
        events: ModelDoor::Chat.events(),
        charging: Charging {
            charged: ctx.door == Door::Allowed,
            ..Charging::default()
        },
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
    let sent = async {
        let uri = upstream.uri(outgoing.suffix, parts.uri.query())?;
        upstream
            .send(&ctx.metrics, || {
                let headers =
                    upstream_request_headers(&parts.headers, &ctx.client.upstream_auth, upstream);
                let body = outgoing.body.clone();
                Upstream::request(outgoing.method.clone(), uri.clone(), headers, body)
            })
            .await
    };
    let answer = match sent.await {
        Ok(answer) => answer,
        Err(error) => {
            let shape = ctx.door.errors();
            return ctx.respond(error.respond(shape));
        }
    };
    let idle_timeout = upstream.idle_timeout;
    let route = ctx.door.route();
    ctx.metrics
        .upstream_answered(route, answer.time_to_headers, ctx.started.elapsed());
    if answer.response.status().is_server_error() {
        ctx.metrics.upstream_error("status_5xx");
    }
    let (head, body) = answer.response.into_parts();
    let content_type = head.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
    let kind = match content_type {
        Some(ct) if ct.starts_with(b"text/event-stream") => BodyKind::EventStream,
        // A charged answer's usage is read when the body ends.
        Some(ct) if ct.starts_with(b"application/json") && outgoing.charging.charged => {
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
    let body = UpstreamBody::new(body, kind, idle_timeout, accounting, outgoing.events);
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = head.status;
    *out.headers_mut() = client_response_headers(head.headers);
    ctx.respond_shared(out)
}
