//! The upstream: one pooled client per I/O thread, the URLs under `upstream.base_url`, the
//! outgoing body, and the retry rule (connect errors and 502/503 only, only before anything
//! reached the client).
//!
//! Shared state, not a handler: built once per snapshot (and kept across reloads that leave
//! `[upstream]` alone), used by the request pipeline and by the gateway's own calls (the model
//! list, `/generation` settlements).

mod client;
mod outgoing;

pub use outgoing::{OutgoingBody, SendBody};

use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

pub use self::client::Client;
use crate::config::UpstreamConfig;
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::workers::PerThread;

/// The `User-Agent` of requests orgate makes on its own behalf.
pub(crate) const USER_AGENT: &str = concat!("orgate/", env!("CARGO_PKG_VERSION"));

/// A request as it goes upstream.
pub type UpstreamRequest = Request<SendBody>;

/// Where requests go, and how patiently.
#[derive(Debug)]
pub struct Upstream {
    /// One client (one connection pool) per I/O thread: an upstream connection is a task on
    /// the runtime that opened it, so a shared pool would wake another thread for every
    /// response.
    clients: PerThread<Client>,
    /// `upstream.base_url`'s scheme and authority, parsed once: every request URI is these
    /// with a longer path.
    scheme: Scheme,
    authority: Authority,
    /// The base's path without a trailing slash (`/api/v1`).
    base_path: String,
    /// The URI of [`CHAT_SUFFIX`], built once: nearly every request goes there.
    chat_uri: Uri,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    retries: u32,
    /// `HTTP-Referer` to send when the client sent none.
    pub referer: Option<HeaderValue>,
    /// `X-OpenRouter-Title` / `X-Title` to send when the client sent neither.
    pub title: Option<HeaderValue>,
}

/// The API path of chat completions, under the base URL.
pub(crate) const CHAT_SUFFIX: &str = "/chat/completions";

/// An upstream response, and how long its headers took.
#[derive(Debug)]
pub struct UpstreamResponse {
    pub response: Response<Incoming>,
    pub time_to_headers: Duration,
}

impl UpstreamResponse {
    /// The whole body, for the gateway's own calls (small JSON answers).
    pub async fn bytes(self) -> Result<Bytes, hyper::Error> {
        Ok(self.response.into_body().collect().await?.to_bytes())
    }
}

impl Upstream {
    /// The upstream for `config`, with a connection pool for each of `io_threads` threads.
    pub fn new(config: &UpstreamConfig, io_threads: usize) -> Result<Self, String> {
        // Validation already refused a base URL that does not parse.
        let base: Uri = config
            .base_url
            .parse()
            .map_err(|e| format!("upstream.base_url: {e}"))?;
        let (Some(scheme), Some(authority)) = (base.scheme(), base.authority()) else {
            return Err("upstream.base_url: needs a scheme and a host".to_owned());
        };
        let tls = client::tls_config(config)?;
        let clients = PerThread::try_new(io_threads, || {
            Ok::<_, String>(client::client(config, tls.clone()))
        })?;
        let header = |value: &str| {
            (!value.is_empty())
                .then(|| HeaderValue::from_str(value).ok())
                .flatten()
        };
        let mut upstream = Self {
            clients,
            scheme: scheme.clone(),
            authority: authority.clone(),
            base_path: base.path().trim_end_matches('/').to_owned(),
            chat_uri: Uri::default(),
            first_byte_timeout: config.first_byte_timeout.get(),
            idle_timeout: config.idle_timeout.get(),
            retries: config.retries,
            referer: header(&config.referer),
            title: header(&config.title),
        };
        upstream.chat_uri = upstream
            .build_uri(CHAT_SUFFIX, None)
            .map_err(|e| format!("upstream.base_url: {e}"))?;
        Ok(upstream)
    }

    /// The calling I/O thread's client (each thread keeps its own connection pool).
    pub fn client(&self) -> &Client {
        self.clients.get()
    }

    /// The upstream URI for an API path suffix (`/chat/completions`) and the client's query.
    /// The suffix is a path hyper parsed and `proxy::api_suffix` checked, so this fails only
    /// on what no client can send; it is an error rather than a panic all the same.
    pub fn uri(&self, suffix: &str, query: Option<&str>) -> Result<Uri, GatewayError> {
        if suffix == CHAT_SUFFIX && query.is_none() {
            return Ok(self.chat_uri.clone());
        }
        self.build_uri(suffix, query).map_err(|e| {
            GatewayError::BadRequest(format!("path {suffix:?} cannot be sent upstream: {e}"))
        })
    }

    fn build_uri(&self, suffix: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        let query_len = query.map_or(0, |q| q.len() + 1);
        let mut path = String::with_capacity(self.base_path.len() + suffix.len() + query_len);
        path.push_str(&self.base_path);
        path.push_str(suffix);
        if let Some(query) = query {
            path.push('?');
            path.push_str(query);
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(PathAndQuery::try_from(path)?)
            .build()
    }

    /// A request to send to `uri`: the headers whole (`Host` is added from the URI), the body.
    pub fn request(
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: OutgoingBody,
    ) -> UpstreamRequest {
        let mut request = Request::new(body.into_body());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        request
    }

    /// A `GET` the gateway makes on its own behalf (`/models`, `/generation`), with
    /// `upstream_auth` and orgate's `User-Agent`.
    pub fn own_get(uri: Uri, upstream_auth: &HeaderValue) -> UpstreamRequest {
        let mut headers = HeaderMap::with_capacity(2);
        headers.insert(header::AUTHORIZATION, upstream_auth.clone());
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        Self::request(Method::GET, uri, headers, Bytes::new().into())
    }

    /// Sends the request `build` makes, retrying connect errors and 502/503 answers. The
    /// first-byte deadline covers all attempts: the client waits at most `first_byte_timeout`
    /// for headers.
    ///
    /// Each attempt builds its request afresh rather than cloning the first: retries are rare,
    /// and a header map cloned for every request just in case costs several allocations.
    pub async fn send(
        &self,
        metrics: &Metrics,
        build: impl Fn() -> UpstreamRequest,
    ) -> Result<UpstreamResponse, GatewayError> {
        let started = Instant::now();
        let deadline = started + self.first_byte_timeout;
        let mut attempt = 0;
        loop {
            let request = self.client().request(build());
            let outcome = tokio::time::timeout_at(deadline, request).await;
            let retryable = match &outcome {
                Err(_) => {
                    metrics.upstream_error("timeout");
                    return Err(GatewayError::UpstreamTimeout(self.first_byte_timeout));
                }
                Ok(Err(e)) => e.is_connect(),
                Ok(Ok(r)) => matches!(
                    r.status(),
                    StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE
                ),
            };
            if let Ok(Err(_)) = &outcome {
                metrics.upstream_error("connect");
            }
            if retryable && attempt < self.retries {
                attempt += 1;
                metrics.upstream_error("retry");
                tracing::debug!(attempt, "retrying upstream request");
                // Short, growing pauses: long enough for a restarting upstream, short enough
                // to stay well inside the first-byte deadline.
                let pause = Duration::from_millis(50 << attempt.min(5));
                if Instant::now() + pause < deadline {
                    tokio::time::sleep(pause).await;
                    continue;
                }
            }
            return match outcome {
                Ok(Ok(response)) => Ok(UpstreamResponse {
                    response,
                    time_to_headers: started.elapsed(),
                }),
                Ok(Err(e)) => Err(classify(&e)),
                Err(_) => Err(GatewayError::UpstreamTimeout(self.first_byte_timeout)),
            };
        }
    }
}

type ClientError = hyper_util::client::legacy::Error;

/// Whether a cause of `e` is a timeout (the connect timeout: the client sets no other).
fn timed_out(e: &ClientError) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

/// A client error as the caller should read it. The URL is left out: it is ours, not theirs.
fn classify(e: &ClientError) -> GatewayError {
    let what = match (e.is_connect(), timed_out(e)) {
        (true, true) => "connect timed out",
        (true, false) => "connection refused or failed",
        (false, _) => "the connection broke before the response headers",
    };
    let mut detail = String::from(what);
    let mut source = std::error::Error::source(e);
    // The innermost cause says the most ("Connection refused (os error 111)").
    while let Some(cause) = source {
        if cause.source().is_none() {
            detail.push_str(&format!(" ({cause})"));
        }
        source = cause.source();
    }
    GatewayError::UpstreamUnreachable(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_extend_the_base_path_whether_built_once_or_per_request() {
        for base_url in ["https://up.example/api/v1", "https://up.example/api/v1/"] {
            let config = UpstreamConfig {
                base_url: base_url.into(),
                ..UpstreamConfig::default()
            };
            let upstream = Upstream::new(&config, 1).unwrap();
            let url = |suffix, query| upstream.uri(suffix, query).unwrap().to_string();
            assert_eq!(
                url(CHAT_SUFFIX, None),
                "https://up.example/api/v1/chat/completions"
            );
            assert_eq!(
                url(CHAT_SUFFIX, Some("trace=1")),
                "https://up.example/api/v1/chat/completions?trace=1"
            );
            assert_eq!(
                url("/generation", Some("id=gen-1")),
                "https://up.example/api/v1/generation?id=gen-1"
            );
        }
    }
}
