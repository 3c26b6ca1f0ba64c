//! Logging: `ORGATE_LOG` / `ORGATE_LOG_FORMAT`, and the access log.
//!
//! The access log writes one line per request when its response body is finished (or dropped
//! because the client left), so a stream's line carries its real duration and byte count.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::auth::ANONYMOUS;
use crate::error::{ErrorDetail, ErrorKind};
use crate::metrics::{GaugeGuard, Metrics};
use crate::state::AppState;

/// Sets up the global subscriber: filter from `ORGATE_LOG` (default `info`), format from
/// `ORGATE_LOG_FORMAT` (`json`, or `pretty`, the default on a terminal). Logs go to stderr so
/// that stdout stays clean for command output.
pub fn init(filter: Option<&str>, format: Option<&str>) -> Result<(), String> {
    let filter =
        EnvFilter::try_new(filter.unwrap_or("info")).map_err(|e| format!("ORGATE_LOG: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        Some("json") => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        Some("pretty") | None => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            builder.with_ansi(ansi).try_init()
        }
        Some(other) => {
            return Err(format!(
                "ORGATE_LOG_FORMAT: {other:?} is neither \"pretty\" nor \"json\""
            ))
        }
    };
    result.map_err(|e| e.to_string())
}

/// The key id of requests without one, allocated once rather than per request.
static ANONYMOUS_ID: std::sync::LazyLock<Arc<str>> =
    std::sync::LazyLock::new(|| Arc::from(ANONYMOUS));

/// What inner layers learn about a request, for its access-log line and metrics.
#[derive(Debug)]
pub struct RequestFacts {
    started: Instant,
    key_id: OnceLock<Arc<str>>,
    model: OnceLock<String>,
    stream: AtomicBool,
    /// Counts the request in flight until its response body is done (this struct outlives the
    /// request: the access record holds it until then).
    inflight: OnceLock<GaugeGuard>,
    /// The concurrency slot, released with this struct: when the body ends or the client goes.
    permit: OnceLock<crate::limits::Permit>,
}

impl RequestFacts {
    fn new(started: Instant) -> Self {
        Self {
            started,
            key_id: OnceLock::new(),
            model: OnceLock::new(),
            stream: AtomicBool::new(false),
            inflight: OnceLock::new(),
            permit: OnceLock::new(),
        }
    }

    /// Time since the request arrived.
    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    pub fn hold_inflight(&self, guard: GaugeGuard) {
        let _ = self.inflight.set(guard);
    }

    pub fn hold_permit(&self, permit: crate::limits::Permit) {
        let _ = self.permit.set(permit);
    }

    pub fn set_key_id(&self, id: Arc<str>) {
        let _ = self.key_id.set(id);
    }

    pub fn set_model(&self, model: Option<&str>) {
        if let Some(model) = model {
            let _ = self.model.set(model.to_owned());
        }
    }

    pub fn set_stream(&self, stream: bool) {
        self.stream.store(stream, Ordering::Relaxed);
    }
}

/// The access-log middleware: opens the request's span and wraps the response body so the
/// line is written, and the request counted, when the body is done.
pub async fn access_log(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let facts = Arc::new(RequestFacts::new(started));
    request.extensions_mut().insert(facts.clone());
    // Both are kept as they came (shared with the request, not copied): they are read only
    // if the access log is on.
    let request_id = RequestId(request.headers().get("x-request-id").cloned());
    let method = request.method().clone();
    let uri = request.uri().clone();
    let route = route_label(uri.path());
    let span = tracing::info_span!("request", id = %request_id);
    let response = next.run(request).instrument(span.clone()).await;
    let (parts, body) = response.into_parts();
    let record = AccessRecord {
        started,
        request_id,
        method,
        uri,
        status: parts.status.as_u16(),
        error_kind: parts.extensions.get::<ErrorKind>().map(|k| k.0),
        error_detail: parts.extensions.get::<ErrorDetail>().map(|d| d.0.clone()),
        facts,
        bytes: 0,
        ended: false,
        span,
        route,
        metrics: state.metrics().clone(),
    };
    Response::from_parts(
        parts,
        Body::new(LoggedBody {
            inner: body,
            record,
        }),
    )
}

struct AccessRecord {
    started: Instant,
    request_id: RequestId,
    method: http::Method,
    uri: http::Uri,
    status: u16,
    error_kind: Option<&'static str>,
    error_detail: Option<String>,
    facts: Arc<RequestFacts>,
    bytes: u64,
    ended: bool,
    span: tracing::Span,
    route: &'static str,
    metrics: Arc<Metrics>,
}

impl Drop for AccessRecord {
    fn drop(&mut self) {
        let _entered = self.span.enter();
        let key_id = self.facts.key_id.get().unwrap_or(&ANONYMOUS_ID);
        let model = self.facts.model.get().map(String::as_str);
        let total = self.started.elapsed();
        self.metrics
            .request_done(key_id, self.route, model, self.status, total);
        let key: &str = key_id;
        let model = model.unwrap_or("-");
        let outcome = if self.ended {
            "complete"
        } else {
            "client_gone"
        };
        tracing::info!(
            target: "orgate::access",
            request_id = %self.request_id,
            key,
            method = %self.method,
            path = %self.uri.path(),
            model,
            status = self.status,
            duration_ms = total.as_secs_f64() * 1e3,
            bytes = self.bytes,
            stream = self.facts.stream.load(Ordering::Relaxed),
            outcome,
            error = self.error_kind.unwrap_or("-"),
            detail = self.error_detail.as_deref().unwrap_or(""),
            "request"
        );
    }
}

/// The request's `x-request-id` as logged: empty when absent or not text.
struct RequestId(Option<http::HeaderValue>);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.0.as_ref().and_then(|v| v.to_str().ok());
        f.write_str(id.unwrap_or(""))
    }
}

/// The `route` label: a fixed vocabulary, whatever path the client sent.
fn route_label(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" | "/api/v1/chat/completions" => "chat",
        "/healthz" | "/readyz" => "health",
        "/metrics" => "metrics",
        p if p.starts_with("/v1/") || p.starts_with("/api/v1/") => "passthrough",
        _ => "other",
    }
}

/// A response body that counts bytes and marks the record complete at its end.
struct LoggedBody {
    inner: Body,
    record: AccessRecord,
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // A body hyper never had to poll (empty, or ended by its headers) is complete too.
        self.record.ended |= self.inner.is_end_stream();
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        // Logs from the body (an upstream that broke, a provider check) carry the request id.
        let _entered = this.record.span.enter();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.record.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => this.record.ended = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
