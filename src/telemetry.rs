//! Logging: `ORGATE_LOG` / `ORGATE_LOG_FORMAT`, and the access log.
//!
//! The access log writes one line per request when its response body is finished (or dropped
//! because the client left), so a stream's line carries its real duration and byte count.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::header::HeaderName;
use http::HeaderValue;
use http_body::{Body as _, Frame, SizeHint};
use tracing::instrument::Instrumented;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::config::ANONYMOUS;
use crate::doors::ModelDoor;
use crate::error::{ErrorDetail, ErrorKind};
use crate::gate::RequestContext;
use crate::metrics::Metrics;

/// Sets up the global subscriber: filter from `ORGATE_LOG` (default `info`), format from
/// `ORGATE_LOG_FORMAT` (`json`, or `pretty`, the default on a terminal). Logs go to stderr so
/// that stdout stays clean for command output.
pub(crate) fn init(filter: Option<&str>, format: Option<&str>) -> Result<(), String> {
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

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids, the access log and the request metrics, as one layer around the router:
/// - `x-request-id` is the client's, else a new one written into the request (so it reaches
///   the upstream), and is copied onto every response that has none, errors included;
/// - the request's span carries the id, for every log line of the request;
/// - one access-log line, and the request counted, when the response body ends or the client
///   goes. What the line says of the request (key, model, door) it reads from the
///   [`RequestContext`] the response carries; the log holds nothing the request needs.
///
/// One hand-written layer with a concrete future rather than tower-http's two request-id
/// layers and an axum `from_fn`: those box the future, clone the router into a boxed service
/// and keep the id in request and response extensions, allocations the request pays for
/// (BENCHMARKS.md), and the access log would still need its own body wrapper.
#[derive(Debug, Clone)]
pub(crate) struct AccessLogLayer {
    metrics: Arc<Metrics>,
    ids: NewRequestId,
}

impl AccessLogLayer {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            ids: NewRequestId::default(),
        }
    }
}

impl<S> tower::Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog {
            inner,
            metrics: self.metrics.clone(),
            ids: self.ids.clone(),
        }
    }
}

/// See [`AccessLogLayer`].
#[derive(Debug, Clone)]
pub(crate) struct AccessLog<S> {
    inner: S,
    metrics: Arc<Metrics>,
    ids: NewRequestId,
}

impl<S> tower::Service<Request> for AccessLog<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = http::Response<LoggedBody>;
    type Error = Infallible;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        let request_id = match request.headers().get(&X_REQUEST_ID) {
            Some(id) if is_request_id(id.as_bytes()) => id.clone(),
            // None, or not a token: a fresh one replaces it, here and upstream.
            _ => {
                let id = self.ids.next();
                request
                    .headers_mut()
                    .insert(X_REQUEST_ID.clone(), id.clone());
                id
            }
        };
        // Kept as they came (shared with the request, not copied): read only if the access log
        // is on.
        let method = request.method().clone();
        let uri = request.uri().clone();
        let request_id = RequestId(request_id);
        let span = tracing::info_span!("request", id = %request_id);
        // The router's own work happens when its future is polled, but whatever it does on
        // the call is inside the request's span too.
        let inner = span.in_scope(|| self.inner.call(request));
        AccessLogFuture {
            inner: inner.instrument(span.clone()),
            open: Some(RequestRecord {
                started,
                request_id,
                method,
                uri,
                span,
                metrics: self.metrics.clone(),
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// The router's future, then the response with its id and its logged body.
    pub(crate) struct AccessLogFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        open: Option<RequestRecord>,
    }
}

/// What the access record knows before the response.
struct RequestRecord {
    started: Instant,
    request_id: RequestId,
    method: http::Method,
    uri: http::Uri,
    span: tracing::Span,
    metrics: Arc<Metrics>,
}

impl<F> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<http::Response<LoggedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.inner.poll(cx));
        let Some(open) = this.open.take() else {
            panic!("AccessLogFuture polled after it completed");
        };
        let (mut parts, body) = response.into_parts();
        // A response that names its own id (none of ours does) keeps it.
        if !parts.headers.contains_key(&X_REQUEST_ID) {
            parts
                .headers
                .insert(X_REQUEST_ID.clone(), open.request_id.0.clone());
        }
        let record = AccessRecord {
            request: open,
            context: parts.extensions.remove::<Arc<RequestContext>>(),
            status: parts.status.as_u16(),
            error_kind: parts.extensions.get::<ErrorKind>().map(|k| k.0),
            error_detail: parts.extensions.get::<ErrorDetail>().map(|d| d.0.clone()),
            bytes: 0,
            ended: false,
        };
        Poll::Ready(Ok(http::Response::from_parts(
            parts,
            LoggedBody {
                inner: body,
                record,
            },
        )))
    }
}

/// The longest client request id kept.
const MAX_REQUEST_ID: usize = 128;

/// A client's `x-request-id` is kept when it is a bounded token of the characters ids are made
/// of (UUIDs, ULIDs, `req_…`, trace ids), so that it can be written into any log format as it
/// is: a space, a quote or a control byte could forge fields in the pretty log.
fn is_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b))
}

/// Request ids: a random per-process prefix and a counter. Unique and cheap: no syscall, no
/// lock per request.
#[derive(Clone, Debug)]
struct NewRequestId {
    prefix: u32,
    counter: Arc<AtomicU64>,
}

impl Default for NewRequestId {
    fn default() -> Self {
        let mut seed = [0u8; 4];
        // A fixed prefix only makes ids of different runs alike; it is not a failure.
        let _ = getrandom::fill(&mut seed);
        Self {
            prefix: u32::from_le_bytes(seed),
            counter: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl NewRequestId {
    /// `req-` and 20 hex digits, written in place: one allocation (the header's) per id.
    fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = *b"req-00000000000000000000";
        write_hex(&mut id[4..12], u64::from(self.prefix));
        write_hex(&mut id[12..], n);
        HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("req-"))
    }
}

/// Writes the low `out.len()` hex digits of `value` into `out`, zero-padded.
fn write_hex(out: &mut [u8], mut value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in out.iter_mut().rev() {
        *byte = DIGITS[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// The request's record with what its response added: written out when dropped.
struct AccessRecord {
    request: RequestRecord,
    /// The request's context, for an admitted request (or one a limit refused).
    context: Option<Arc<RequestContext>>,
    status: u16,
    error_kind: Option<&'static str>,
    error_detail: Option<String>,
    bytes: u64,
    ended: bool,
}

impl Drop for AccessRecord {
    fn drop(&mut self) {
        let request = &self.request;
        let _entered = request.span.enter();
        let context = self.context.as_deref();
        let key_id = context.map_or(&*ANONYMOUS_ID, RequestContext::key);
        let model = context.and_then(|c| c.model.as_deref());
        let route = match context {
            Some(context) => context.door.route(),
            None => route_label(request.uri.path()),
        };
        let total = request.started.elapsed();
        request
            .metrics
            .request_done(key_id, route, model, self.status, total);
        let key: &str = key_id;
        let model = model.unwrap_or("-");
        let outcome = if self.ended {
            "complete"
        } else {
            "client_gone"
        };
        tracing::info!(
            target: "orgate::access",
            request_id = %request.request_id,
            key,
            method = %request.method,
            path = %request.uri.path(),
            model,
            status = self.status,
            duration_ms = total.as_secs_f64() * 1e3,
            bytes = self.bytes,
            stream = context.is_some_and(|c| c.stream),
            outcome,
            error = self.error_kind.unwrap_or("-"),
            detail = self.error_detail.as_deref().unwrap_or(""),
            "request"
        );
    }
}

/// The request's `x-request-id` as logged: a token ([`is_request_id`], or one of ours), so
/// written as it is.
struct RequestId(HeaderValue);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.to_str().unwrap_or(""))
    }
}

/// The `route` label of a request that got no context (refused before its key was known, or
/// not through a door): a fixed vocabulary, whatever path the client sent.
fn route_label(path: &str) -> &'static str {
    match path {
        "/healthz" | "/readyz" => "health",
        "/metrics" => "metrics",
        _ => ModelDoor::at(path).map_or("other", |door| door.spec().route),
    }
}

/// A response body that counts bytes and marks the record complete at its end.
pub(crate) struct LoggedBody {
    inner: Body,
    record: AccessRecord,
}

impl fmt::Debug for LoggedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoggedBody")
            .field("path", &self.record.request.uri.path())
            .field("bytes", &self.record.bytes)
            .finish_non_exhaustive()
    }
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
        let _entered = this.record.request.span.enter();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bounded_tokens_are_kept_as_request_ids() {
        for kept in [
            "client-chosen-id",
            "3f2b8c1e-9d4a-4b6e-8f1a-2c3d4e5f6a7b",
            "01HZX3Y4Z5A6B7C8D9E0F1G2H3",
            "req_abc.def:1/2+3=@x",
        ] {
            assert!(is_request_id(kept.as_bytes()), "{kept}");
        }
        for refused in [
            "",
            "evil id key=\"admin\" status=200",
            "a\tb",
            "a\u{7f}",
            "caf\u{e9}",
            &"x".repeat(MAX_REQUEST_ID + 1),
        ] {
            assert!(!is_request_id(refused.as_bytes()), "{refused:?}");
        }
    }

    #[test]
    fn request_ids_are_the_prefix_and_a_counter_in_fixed_width_hex() {
        let ids = NewRequestId {
            prefix: 0x00c0_ffee,
            counter: Arc::new(AtomicU64::new(0xabc)),
        };
        assert_eq!(ids.next(), "req-00c0ffee000000000abc");
        assert_eq!(ids.next(), "req-00c0ffee000000000abd");
    }
}
