//! Forwarding: the chat handler, the generic pass-through, and the shared road upstream.

mod headers;
mod path;
mod upstream;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::Extension;
use bytes::Bytes;
use http::{header, HeaderMap, Method};

pub use headers::{client_response_headers, upstream_request_headers};
pub use path::api_suffix;
pub use upstream::{Upstream, UpstreamResponse};

use crate::auth::Client;
use crate::chat_request::ChatRequest;
use crate::error::GatewayError;
use crate::state::Snapshot;
use crate::stream::UpstreamBody;
use crate::telemetry::RequestFacts;

/// `POST /api/v1/chat/completions` and `POST /v1/chat/completions`.
pub async fn chat(
    Extension(snapshot): Extension<Arc<Snapshot>>,
    Extension(client): Extension<Arc<Client>>,
    Extension(facts): Extension<Arc<RequestFacts>>,
    request: Request,
) -> Result<Response, GatewayError> {
    let (parts, body) = request.into_parts();
    let bytes = read_body(
        body,
        &parts.headers,
        snapshot.config.server.max_body.bytes(),
    )
    .await?;
    let chat = ChatRequest::parse(&bytes)?;
    let model = chat.model()?;
    facts.set_model(model.as_deref());
    facts.set_stream(chat.stream());
    let body = chat.to_body(&bytes);
    forward(
        &snapshot,
        &client,
        Method::POST,
        &parts.headers,
        "/chat/completions",
        parts.uri.query(),
        body,
        model,
    )
    .await
}

/// Any other `/api/v1/*` or `/v1/*`: the same path under the upstream base URL.
pub async fn passthrough(
    Extension(snapshot): Extension<Arc<Snapshot>>,
    Extension(client): Extension<Arc<Client>>,
    request: Request,
) -> Result<Response, GatewayError> {
    let (parts, body) = request.into_parts();
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
    forward(
        &snapshot,
        &client,
        parts.method.clone(),
        &parts.headers,
        suffix,
        parts.uri.query(),
        bytes,
        None,
    )
    .await
}

/// Sends the request upstream and turns the answer into the client's response: same status,
/// same headers (hop-by-hop ones aside), same body, passed on as it arrives.
#[allow(clippy::too_many_arguments)]
async fn forward(
    snapshot: &Snapshot,
    client: &Client,
    method: Method,
    client_headers: &HeaderMap,
    suffix: &str,
    query: Option<&str>,
    body: Bytes,
    requested_model: Option<String>,
) -> Result<Response, GatewayError> {
    let upstream = &snapshot.upstream;
    let headers = upstream_request_headers(client_headers, &client.upstream_auth, upstream);
    let url = upstream.url(suffix, query);
    let answer = upstream.send(method, &url, headers, body).await?;
    let response: http::Response<reqwest::Body> = answer.response.into();
    let (parts, body) = response.into_parts();
    let is_event_stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let body = UpstreamBody::new(
        body,
        is_event_stream,
        upstream.idle_timeout,
        requested_model,
    );
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = parts.status;
    *out.headers_mut() = client_response_headers(&parts.headers);
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
