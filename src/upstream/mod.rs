//! The upstream: one pooled client per I/O thread, the URLs under `upstream.base_url`, the
//! outgoing body, and the retry rule (connect errors and 502/503 only, only before anything
//! reached the client).
//!
//! Shared state, not a handler: built once per snapshot (and kept across reloads that leave
//! `[upstream]` alone), used by the request pipeline and by the gateway's own calls (the model
//! list, `/generation` settlements).

mod outgoing;

pub use outgoing::OutgoingBody;

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use tokio::time::Instant;

use crate::config::UpstreamConfig;
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::workers::PerThread;

/// The `User-Agent` of requests orgate makes on its own behalf.
pub(crate) const USER_AGENT: &str = concat!("orgate/", env!("CARGO_PKG_VERSION"));

/// Where requests go, and how patiently.
#[derive(Debug)]
pub struct Upstream {
    /// One client (one connection pool) per I/O thread: an upstream connection is a task on
    /// the runtime that opened it, so a shared pool would wake another thread for every
    /// response.
    clients: PerThread<reqwest::Client>,
    /// `upstream.base_url`, parsed once: every request URL is this with a longer path.
    base: reqwest::Url,
    /// The base's path without a trailing slash (`/api/v1`).
    base_path: String,
    /// The URL of [`CHAT_SUFFIX`], built once: nearly every request goes there.
    chat_url: reqwest::Url,
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

/// `base` with its path (`base_path`, no trailing slash) extended by `suffix`.
fn url_with_path(base: &reqwest::Url, base_path: &str, suffix: &str) -> reqwest::Url {
    let mut url = base.clone();
    let mut path = String::with_capacity(base_path.len() + suffix.len());
    path.push_str(base_path);
    path.push_str(suffix);
    url.set_path(&path);
    url
}

/// An upstream response, and how long its headers took.
#[derive(Debug)]
pub struct UpstreamResponse {
    pub response: reqwest::Response,
    pub time_to_headers: Duration,
}

impl Upstream {
    /// The upstream for `config`, with a connection pool for each of `io_threads` threads.
    pub fn new(config: &UpstreamConfig, io_threads: usize) -> Result<Self, String> {
        // Validation already refused a base URL that does not parse.
        let base =
            reqwest::Url::parse(&config.base_url).map_err(|e| format!("upstream.base_url: {e}"))?;
        let client = || {
            reqwest::Client::builder()
                .connect_timeout(config.connect_timeout.get())
                // Without it, a reused connection stalls ~40 ms on every small write (Nagle + delayed ACK).
                .tcp_nodelay(true)
                .pool_idle_timeout(Duration::from_secs(90))
                // A redirect would send the request (and our key) somewhere else: pass it back instead.
                .redirect(reqwest::redirect::Policy::none())
                // The gateway is the proxy; an ambient HTTP(S)_PROXY must not reroute upstream traffic.
                .no_proxy()
                // HTTP/1.1 even where the upstream offers HTTP/2 (OpenRouter does, by ALPN): over
                // HTTP/2 a thread's requests share one connection, so past the server's stream
                // limit they queue behind streams that last minutes, and one broken connection
                // fails them all. A connection per request in flight, as nginx keeps upstream.
                .http1_only()
                .build()
                .map_err(|e| format!("cannot build the upstream client: {e}"))
        };
        let clients = PerThread::try_new(io_threads, client)?;
        let header = |value: &str| {
            (!value.is_empty())
                .then(|| HeaderValue::from_str(value).ok())
                .flatten()
        };
        let base_path = base.path().trim_end_matches('/').to_owned();
        Ok(Self {
            clients,
            chat_url: url_with_path(&base, &base_path, CHAT_SUFFIX),
            base_path,
            base,
            first_byte_timeout: config.first_byte_timeout.get(),
            idle_timeout: config.idle_timeout.get(),
            retries: config.retries,
            referer: header(&config.referer),
            title: header(&config.title),
        })
    }

    /// The calling I/O thread's client (each thread keeps its own connection pool).
    pub fn client(&self) -> &reqwest::Client {
        self.clients.get()
    }

    /// The upstream URL for an API path suffix (`/chat/completions`) and the client's query.
    /// Built from the parsed base rather than parsed from a string: scheme and host are never
    /// re-read (reqwest would re-parse, IDNA included, on every request).
    pub fn url(&self, suffix: &str, query: Option<&str>) -> reqwest::Url {
        if suffix == CHAT_SUFFIX && query.is_none() {
            return self.chat_url.clone();
        }
        let mut url = url_with_path(&self.base, &self.base_path, suffix);
        url.set_query(query);
        url
    }

    /// A request to send: `suffix` and `query` as in [`Upstream::url`], the headers whole
    /// (set, not merged into reqwest's defaults: there are none), the body.
    pub fn request(
        &self,
        method: Method,
        suffix: &str,
        query: Option<&str>,
        headers: HeaderMap,
        body: OutgoingBody,
    ) -> reqwest::Request {
        let mut request = reqwest::Request::new(method, self.url(suffix, query));
        *request.headers_mut() = headers;
        *request.body_mut() = Some(body.into_reqwest());
        request
    }

    /// A `GET` the gateway makes on its own behalf (`/models`, `/generation`), with
    /// `upstream_auth` and orgate's `User-Agent`.
    pub fn own_get(
        &self,
        suffix: &str,
        query: Option<&str>,
        upstream_auth: &HeaderValue,
    ) -> reqwest::Request {
        let mut headers = HeaderMap::with_capacity(2);
        headers.insert(header::AUTHORIZATION, upstream_auth.clone());
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        self.request(Method::GET, suffix, query, headers, Bytes::new().into())
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
        build: impl Fn() -> reqwest::Request,
    ) -> Result<UpstreamResponse, GatewayError> {
        let started = Instant::now();
        let deadline = started + self.first_byte_timeout;
        let mut attempt = 0;
        loop {
            let request = self.client().execute(build());
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
            if let Ok(Err(e)) = &outcome {
                metrics.upstream_error(if e.is_timeout() && !e.is_connect() {
                    "timeout"
                } else {
                    "connect"
                });
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
                Ok(Err(e)) => Err(classify(&e, self.first_byte_timeout)),
                Err(_) => Err(GatewayError::UpstreamTimeout(self.first_byte_timeout)),
            };
        }
    }
}

/// A reqwest error as the client should read it. The URL is left out: it is ours, not theirs.
fn classify(e: &reqwest::Error, first_byte_timeout: Duration) -> GatewayError {
    if e.is_timeout() && !e.is_connect() {
        return GatewayError::UpstreamTimeout(first_byte_timeout);
    }
    let what = if e.is_connect() {
        if e.is_timeout() {
            "connect timed out"
        } else {
            "connection refused or failed"
        }
    } else {
        "the connection broke before the response headers"
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
            let url = |suffix, query| upstream.url(suffix, query).to_string();
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
