//! The server: the accept loop, the router and its layer stack.

use std::future::Future;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, head};
use axum::Router;
use http::{header, HeaderName, Method, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

use crate::config::{Config, ServerConfig};
use crate::error::GatewayError;
use crate::state::{AppState, Snapshot, StartupError};
use crate::workers::Workers;
use crate::{proxy, telemetry};

/// Read buffer per connection: a request head larger than this gets hyper's own (bare) 431. The
/// gateway's own limit, with a 431 in JSON, is half of it (`proxy::MAX_HEAD_BYTES`).
const READ_BUFFER_BYTES: usize = 2 * proxy::MAX_HEAD_BYTES;

/// How every accepted connection is served: HTTP/1.1 or HTTP/2, the header-read timeout
/// (slowloris guard) and the head limit. Public for the load harness's floor proxy, which
/// must serve connections exactly as orgate does.
pub fn connection_builder(server: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut http = auto::Builder::new(TokioExecutor::new());
    // hyper's header timer also runs while a kept-alive connection waits for its next request:
    // it bounds the idle time too, so it gets the shorter of the two.
    let head_or_idle = server
        .header_read_timeout
        .get()
        .min(server.idle_timeout.get());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(head_or_idle)
        .max_buf_size(READ_BUFFER_BYTES);
    http.http2().timer(TokioTimer::new());
    http
}

/// How long the start (and `orgate check`) waits for the shared limits store's first answer.
pub(crate) const STORE_PROBE_WITHIN: Duration = Duration::from_secs(3);

/// How long a shutdown waits for the shared limits store to take the last charges.
const STORE_DRAIN_WITHIN: Duration = Duration::from_secs(1);

/// A reloaded config, or every problem that stopped it from loading.
pub type ReloadRequest = Result<Config, crate::config::Problems>;

/// [`serve`] without live reload.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartupError> {
    let (_keep_open, reloads) = tokio::sync::mpsc::channel(1);
    serve_with_reloads(config, listener, shutdown, reloads).await
}

/// Runs the gateway on `listener` until `shutdown` completes, then drains: `/readyz` turns 503,
/// the listener closes, idle connections close, and in-flight requests (streams included) get
/// up to `server.shutdown_grace` to finish before the rest are cut.
///
/// Each config received on `reloads` takes effect for new requests; requests in flight finish
/// on the config they started with; limiter state of unchanged keys carries over. A reload
/// that failed to load, or cannot be built, is refused: every problem is logged and the
/// running config stays.
///
/// The listener is bound by the caller, so tests bind port 0 and know the address before the
/// gateway starts.
pub async fn serve_with_reloads(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    mut reloads: tokio::sync::mpsc::Receiver<ReloadRequest>,
) -> Result<(), StartupError> {
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    let snapshot = Snapshot::build(config, &metrics)?;
    // A certificate or password the shared store refuses is a mistake to fix now; a store that
    // is merely down is met by `on_backend_error` until it answers.
    match snapshot.limits.probe(STORE_PROBE_WITHIN).await {
        Ok(None) => {}
        Ok(Some(why)) => tracing::warn!(
            problem = %why,
            "the limits backend (redis) is not reachable at start: requests are decided by \
             limits.on_backend_error until it answers"
        ),
        Err(why) => return Err(StartupError::Config(why)),
    }
    let grace = snapshot.config.server.shutdown_grace.get();
    let http = connection_builder(&snapshot.config.server);
    let first_byte_within = snapshot.config.server.header_read_timeout.get();
    let io_threads = snapshot.config.server.io_threads();
    let keeps_state = !snapshot.config.limits.state_dir.is_empty();
    let state = AppState::new(snapshot, metrics);
    state
        .metrics()
        .learn_models(state.snapshot().configured_models());
    tokio::spawn(crate::models::learn_upstream_models(state.clone()));
    let app = app(state.clone());
    let persisting =
        keeps_state.then(|| tokio::spawn(persist_every(state.clone(), Duration::from_secs(2))));

    let connections = GracefulShutdown::new();
    let workers = Workers::start(io_threads)?;

    tracing::info!(addr = %listener.local_addr()?, io_threads = workers.len(), "orgate listening");
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
            Some(request) = reloads.recv() => {
                reload(&state, request);
                continue;
            }
        };
        // Small SSE writes must leave at once, not wait for an ACK (Nagle).
        let _ = stream.set_nodelay(true);
        // Deregistered here, registered again with the reactor of the I/O thread that serves it.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot hand over a connection");
                continue;
            }
        };
        let (http, app, watcher) = (http.clone(), app.clone(), connections.watcher());
        workers.dispatch(Box::new(move || {
            Box::pin(async move {
                let stream = match tokio::net::TcpStream::from_std(stream) {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "cannot take over a connection");
                        return;
                    }
                };
                // hyper's header timer starts once the protocol is known, after the first
                // bytes: a socket that never sends one would be held for ever, no key needed.
                if !matches!(
                    tokio::time::timeout(first_byte_within, stream.readable()).await,
                    Ok(Ok(()))
                ) {
                    tracing::debug!(%peer, "connection closed: nothing sent within the header read timeout");
                    return;
                }
                let service = TowerToHyperService::new(app);
                let connection = http
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                if let Err(e) = watcher.watch(connection).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            })
        }));
    }

    state.set_draining();
    drop(listener);
    tracing::info!(grace = %humantime::format_duration(grace), "draining in-flight requests");
    tokio::select! {
        () = connections.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("shutdown grace elapsed; closing the remaining connections"),
    }
    // The last responses' charges, while Redis may still take them; what it does not stays in
    // the journal (saved below with state_dir).
    if !state.snapshot().limits.drain(STORE_DRAIN_WITHIN).await {
        tracing::warn!(
            "the limits backend (redis) did not take every charge before shutdown: \
             kept in limits.state_dir if set, else lost"
        );
    }
    if let Some(task) = persisting {
        task.abort();
        persist(&state).await;
    }
    Ok(())
}

/// Saves what must survive a restart (spend) every `period`.
async fn persist_every(state: AppState, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        persist(&state).await;
    }
}

async fn persist(state: &AppState) {
    let snapshot = state.snapshot();
    let saved = tokio::task::spawn_blocking(move || snapshot.limits.persist()).await;
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot save the spend state"),
        Err(e) => tracing::error!(error = %e, "the spend state task failed"),
    }
}

/// Swaps in a reloaded config, or refuses it and keeps the running one.
fn reload(state: &AppState, request: ReloadRequest) {
    let config = match request {
        Ok(config) => config,
        Err(problems) => {
            for problem in &problems.0 {
                tracing::error!(%problem, "config reload refused");
            }
            state.metrics().reload("refused");
            return;
        }
    };
    let current = state.snapshot();
    let (was, now) = (&current.config.server, &config.server);
    if (was.listen, was.workers) != (now.listen, now.workers) {
        tracing::warn!(
            "server.listen and server.workers take effect at the next start, not on reload"
        );
    }
    match Snapshot::rebuild(config, &current) {
        Ok(snapshot) => {
            state.metrics().learn_models(snapshot.configured_models());
            state.replace(snapshot);
            state.metrics().reload("applied");
            tracing::info!(
                "config reloaded: new requests use it, requests in flight finish on the old one"
            );
        }
        Err(e) => {
            tracing::error!(problem = %e, "config reload refused");
            state.metrics().reload("refused");
        }
    }
}

/// The gateway as one service: [`router`] inside the layer stack, outermost first:
/// 1. catch panics: a panic becomes an OpenRouter-shaped 500, never a dropped connection;
/// 2. mark `authorization` / `x-api-key` sensitive, before anything could log them;
/// 3. request ids, access log and request metrics (`telemetry::AccessLogLayer`): set
///    `x-request-id` (the client's, else a new one) so it reaches logs and upstream, copy it
///    onto every response, errors included, and write one line per request when its body ends;
/// 4. the router.
///
/// The stack wraps the router once rather than each route (`Router::layer`), so a request
/// pays for these layers without a boxed, cloned copy of them per route.
pub fn app(
    state: AppState,
) -> impl tower::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<
        impl http_body::Body<Data = bytes::Bytes, Error = impl Into<tower::BoxError>> + Send + 'static,
    >,
    Error = std::convert::Infallible,
    Future = impl Future + Send + 'static,
> + Clone
       + Send
       + Sync
       + 'static {
    ServiceBuilder::new()
        // axum's body type from here on, as the router would do itself.
        .map_request(|request: http::Request<hyper::body::Incoming>| {
            request.map(axum::body::Body::new)
        })
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
        ]))
        .layer(telemetry::AccessLogLayer::new(state.metrics().clone()))
        .service(router(state))
}

/// The routes:
/// - everything under `/api/v1` and `/v1`: one handler (`proxy::api`) finds the door
///   (`doors`) or refuses the path, then runs the one pipeline, which admits the request
///   first (401, 429) and gives it the context that holds its concurrency slot until its body
///   ends; `HEAD` on the prefixes themselves answers 200, for clients that probe a base URL;
/// - health, readiness and metrics.
///
/// Unmatched paths and methods get 404/405 in the same error shape. Served by [`app`], which
/// adds request ids, the access log and panic safety around it; the limits hold without them.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1", head(base_url))
        .route("/v1", head(base_url))
        .route("/api/v1/{*rest}", any(proxy::api))
        .route("/v1/{*rest}", any(proxy::api))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn base_url() {}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    if state.is_ready() {
        "ready".into_response()
    } else {
        GatewayError::ShuttingDown.into_response()
    }
}

async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics().render(),
    )
        .into_response()
}

async fn not_found(method: Method, uri: Uri) -> GatewayError {
    GatewayError::NotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> GatewayError {
    GatewayError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = detail, "a request handler panicked");
    GatewayError::Internal(format!("panic: {detail}")).into_response()
}
