//! The floor (`--role floor`): the cheapest proxy that can be built from orgate's own parts,
//! to tell what the stack costs from what orgate's work costs.
//!
//! The same I/O threads as orgate (`orgate::workers`: one single-threaded runtime per CPU,
//! each connection on one thread from accept to close, an upstream client per thread), the
//! same hyper server connection, the body gathered as orgate gathers a chat body, and the
//! request sent on with nothing else done: no auth, no limits, no JSON, no metrics, no log.
//! The response streams back as it comes. `--client upstream` sends with orgate's own upstream
//! (`orgate::internals::Upstream`: its per-thread clients over rustls, its prebuilt URIs);
//! `--client hyper` with a plain hyper-util pooled client built here, which is what orgate's
//! wraps. Whatever orgate costs above the first is its own work; the gap between the two is
//! that of orgate's upstream module (the TLS-or-plain connector, the URI built per request).

use std::convert::Infallible;
use std::error::Error as StdError;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use orgate::config::{ServerConfig, UpstreamConfig};
use orgate::internals::Upstream;
use orgate::internals::{PerThread, Workers};

use crate::procs;

type BoxError = Box<dyn StdError + Send + Sync>;
type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;
type HyperClient = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// What sends the request upstream.
enum Floor {
    /// orgate's upstream, built from a config as orgate builds it.
    Upstream(Box<Upstream>),
    Hyper {
        clients: PerThread<HyperClient>,
        upstream: Authority,
    },
}

/// The API prefix the load generator calls under, and the floor's upstream base path.
const API_PREFIX: &str = "/api/v1";

/// Runs the floor proxy in front of `127.0.0.1:upstream_port` until its stdin closes. Prints
/// the port it listens on, on one line, first.
pub(crate) fn run(upstream_port: u16, client: &str) -> ExitCode {
    // orgate's defaults: one I/O thread per CPU, and its connection settings.
    let server = ServerConfig::default();
    let threads = server.io_threads();
    match build(upstream_port, client, threads) {
        Ok(floor) => procs::serve_role("floor", serve(Arc::new(floor), &server)),
        Err(e) => {
            eprintln!("floor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn build(upstream_port: u16, client: &str, threads: usize) -> Result<Floor, String> {
    match client {
        "upstream" => {
            let config = UpstreamConfig {
                base_url: format!("http://127.0.0.1:{upstream_port}{API_PREFIX}"),
                ..UpstreamConfig::default()
            };
            Upstream::new(&config, threads).map(|u| Floor::Upstream(Box::new(u)))
        }
        "hyper" => {
            let clients = PerThread::try_new(threads, || {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                Ok::<_, Infallible>(
                    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                        .pool_idle_timeout(Duration::from_secs(90))
                        .pool_timer(TokioTimer::new())
                        .build(connector),
                )
            })
            .unwrap_or_else(|never| match never {});
            let upstream = Authority::try_from(format!("127.0.0.1:{upstream_port}"))
                .map_err(|e| e.to_string())?;
            Ok(Floor::Hyper { clients, upstream })
        }
        other => Err(format!("unknown client {other:?}: upstream or hyper")),
    }
}

async fn serve(floor: Arc<Floor>, server: &ServerConfig) -> std::io::Result<()> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(([127, 0, 0, 1], 0).into())?;
    let listener = socket.listen(4096)?;
    let mut out = std::io::stdout();
    writeln!(out, "{}", listener.local_addr()?.port())?;
    out.flush()?;
    let http = orgate::internals::connection_builder(server);
    let workers = Workers::start(server.io_threads())?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let stream = stream.into_std()?;
        let (http, floor) = (http.clone(), floor.clone());
        workers.dispatch(Box::new(move || {
            Box::pin(async move {
                let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                    return;
                };
                let service = service_fn(move |request| forward(floor.clone(), request));
                let _ = http.serve_connection(TokioIo::new(stream), service).await;
            })
        }));
    }
}

async fn forward(
    floor: Arc<Floor>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (mut parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    parts.headers.remove(header::HOST);
    parts.headers.remove(header::CONNECTION);
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let response = match &*floor {
        Floor::Upstream(upstream) => {
            let Some(suffix) = path.path().strip_prefix(API_PREFIX) else {
                return Ok(status(StatusCode::NOT_FOUND));
            };
            let Ok(uri) = upstream.uri(suffix, path.query()) else {
                return Ok(status(StatusCode::BAD_REQUEST));
            };
            let request = Upstream::request(parts.method, uri, parts.headers, body.into());
            match upstream.client().request(request).await {
                Ok(response) => response.map(|b| b.map_err(BoxError::from).boxed_unsync()),
                Err(_) => status(StatusCode::BAD_GATEWAY),
            }
        }
        Floor::Hyper { clients, upstream } => {
            let uri = Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(upstream.clone())
                .path_and_query(path)
                .build();
            let Ok(uri) = uri else {
                return Ok(status(StatusCode::BAD_REQUEST));
            };
            let mut request = Request::new(Full::new(body));
            *request.method_mut() = parts.method;
            *request.uri_mut() = uri;
            *request.headers_mut() = parts.headers;
            match clients.get().request(request).await {
                Ok(response) => response.map(|b| b.map_err(BoxError::from).boxed_unsync()),
                Err(_) => status(StatusCode::BAD_GATEWAY),
            }
        }
    };
    Ok(response)
}

fn status(code: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = code;
    response
}
