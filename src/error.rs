//! `GatewayError`: every error orgate itself answers with, and the one place that turns it into
//! an HTTP response: in OpenRouter's shape, `{"error":{"code","message","metadata"}}`, or on
//! the doors Anthropic's clients use, in theirs (`{"type":"error","error":{"type","message"}}`).
//!
//! `Display` is the message the client reads: it says what and where, and never holds a secret.
//! Upstream errors are not gateway errors: they pass through with their own status and body.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The body is not JSON; `line`/`column` point at the first bad byte.
    #[error("request body is not valid JSON at line {line}, column {column}: {reason}")]
    BadJson {
        line: usize,
        column: usize,
        reason: String,
    },

    /// JSON, but not a request this route accepts (missing `messages`, wrong type, ...).
    #[error("{0}")]
    BadRequest(String),

    #[error("missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`")]
    MissingKey,

    #[error("invalid API key")]
    UnknownKey,

    /// Refused by policy; the message names the rule.
    #[error("{0}")]
    PolicyDenied(String),

    #[error("no route for {method} {path}")]
    NotFound { method: String, path: String },

    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },

    /// Not one of the doors, and not opened by `[routes] allow`: never forwarded.
    #[error("{method} {path} is not a route orgate forwards (route_not_allowed); an org opens it with `[routes] allow`")]
    RouteNotAllowed { method: String, path: String },

    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },

    #[error("request head (target and header fields) is larger than the limit of {limit} bytes")]
    HeadTooLarge { limit: usize },

    /// A `Content-Encoding` the gateway does not decode.
    #[error("request body encoding {0:?} is not supported: send it as is, or in gzip, br or zstd")]
    UnsupportedEncoding(String),

    /// The body did not arrive whole within `server.body_read_timeout`.
    #[error("the request body was not received within {}", humantime::format_duration(*.0))]
    BodyTimeout(Duration),

    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Duration,
    },

    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),

    #[error("upstream sent no response headers within {0:?}")]
    UpstreamTimeout(Duration),

    #[error("the gateway is shutting down")]
    ShuttingDown,

    /// The shared limits backend (Redis) cannot be reached and `limits.on_backend_error`
    /// refuses rather than admit unchecked; answered with `Retry-After: 1`.
    #[error("the limits backend is unavailable, so this request cannot be checked against its limits; retry shortly")]
    LimitsUnavailable,

    #[error("internal error in the gateway")]
    Internal(String),
}

impl GatewayError {
    /// The only place a gateway error's status is decided.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadJson { .. } | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::MissingKey | Self::UnknownKey => StatusCode::UNAUTHORIZED,
            Self::PolicyDenied(_) | Self::RouteNotAllowed { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::HeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::ShuttingDown | Self::LimitsUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A low-cardinality name for logs and metrics; also `metadata.error_type` (OpenRouter's
    /// vocabulary where one fits).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadJson { .. } | Self::BadRequest(_) => "invalid_request",
            Self::MissingKey | Self::UnknownKey => "authentication",
            Self::PolicyDenied(_) => "permission_denied",
            Self::NotFound { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::RouteNotAllowed { .. } => "route_not_allowed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::BodyTimeout(_) => "request_timeout",
            Self::HeadTooLarge { .. } => "request_header_fields_too_large",
            Self::UnsupportedEncoding(_) => "unsupported_media_type",
            Self::RateLimited { .. } => "rate_limit_exceeded",
            Self::UpstreamUnreachable(_) => "provider_unavailable",
            Self::UpstreamTimeout(_) => "timeout",
            Self::ShuttingDown => "shutting_down",
            Self::LimitsUnavailable => "limits_unavailable",
            Self::Internal(_) => "server",
        }
    }

    /// The response body in OpenRouter's shape, as bytes.
    pub fn body(&self) -> Vec<u8> {
        let mut metadata = json!({ "error_type": self.kind(), "source": "orgate" });
        if let Self::BadJson { line, column, .. } = self {
            metadata["line"] = json!(line);
            metadata["column"] = json!(column);
        }
        let body = json!({
            "error": {
                "code": self.status().as_u16(),
                "message": self.to_string(),
                "metadata": metadata,
            }
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The response body in Anthropic's shape: `{"type":"error","error":{"type","message"}}`,
    /// the error types Anthropic's SDKs map to their exception classes.
    fn anthropic_body(&self) -> Vec<u8> {
        let kind = match self.status() {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::SERVICE_UNAVAILABLE => "overloaded_error",
            StatusCode::GATEWAY_TIMEOUT => "timeout_error",
            status if status.is_client_error() => "invalid_request_error",
            _ => "api_error",
        };
        let body = json!({
            "type": "error",
            "error": { "type": kind, "message": self.to_string() },
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The response, its body in `shape`.
    pub(crate) fn respond(self, shape: ErrorShape) -> Response {
        let body = match shape {
            ErrorShape::OpenRouter => self.body(),
            ErrorShape::Anthropic => self.anthropic_body(),
        };
        self.with_body(body)
    }

    fn with_body(self, body: Vec<u8>) -> Response {
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match &self {
            Self::RateLimited { retry_after, .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*retry_after)),
                );
            }
            Self::LimitsUnavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        // The access log reads the kind from here; building the response logs nothing itself.
        response.extensions_mut().insert(ErrorKind(self.kind()));
        if let Self::Internal(detail) | Self::UpstreamUnreachable(detail) = &self {
            response
                .extensions_mut()
                .insert(ErrorDetail(detail.clone()));
        }
        response
    }
}

/// How the gateway's own errors are written on a door: OpenRouter's shape, or, where the
/// clients are Anthropic's (`/messages`), Anthropic's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorShape {
    OpenRouter,
    Anthropic,
}

impl IntoResponse for GatewayError {
    /// In OpenRouter's shape; [`GatewayError::respond`] chooses.
    fn into_response(self) -> Response {
        self.respond(ErrorShape::OpenRouter)
    }
}

/// `Retry-After` in whole seconds, rounded up and never 0 (a client retrying at once would be
/// refused again).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// Response extension: the kind of the gateway error this response carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorKind(pub &'static str);

/// Response extension: detail for the log that the client is not shown.
#[derive(Debug, Clone)]
pub(crate) struct ErrorDetail(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_the_openrouter_shape() {
        let e = GatewayError::BadJson {
            line: 2,
            column: 7,
            reason: "expected `:`".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["code"], 400);
        assert_eq!(v["error"]["metadata"]["line"], 2);
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 2, column 7"));
    }

    #[test]
    fn anthropic_clients_get_anthropics_shape() {
        let response = GatewayError::RateLimited {
            message: "slow down".into(),
            retry_after: Duration::from_secs(2),
        }
        .respond(ErrorShape::Anthropic);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let body = GatewayError::UnknownKey.anthropic_body();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v["error"]["message"], "invalid API key");
        let refused = GatewayError::RouteNotAllowed {
            method: "GET".into(),
            path: "/credits".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&refused.anthropic_body()).unwrap();
        assert_eq!(v["error"]["type"], "permission_error");
    }

    #[test]
    fn retry_after_is_whole_seconds_and_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }

    #[test]
    fn an_unavailable_limits_backend_is_a_503_with_retry_after() {
        let response = GatewayError::LimitsUnavailable.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body = GatewayError::LimitsUnavailable.body();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], 503);
        assert_eq!(v["error"]["metadata"]["error_type"], "limits_unavailable");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits backend is unavailable"));
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<GatewayError>() <= 64);
    }
}
