//! The HTTP client under the upstream: hyper-util's pooled client, HTTP/1.1 over rustls.
//!
//! One TLS configuration for the process (the bundled webpki roots, plus `upstream.ca_file`),
//! shared by a client per I/O thread.

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::outgoing::SendBody;
use crate::config::{read_ca_file, UpstreamConfig};

/// A pooled client: plain HTTP for `http://` bases (tests, a local mock), TLS for `https://`.
pub type Client = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, SendBody>;

/// How long an unused pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// What the upstream's certificate is checked against: the bundled webpki roots (a container
/// may have no system store), and every certificate of `upstream.ca_file` when set.
pub(crate) fn tls_config(config: &UpstreamConfig) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if !config.ca_file.is_empty() {
        for cert in
            read_ca_file(&config.ca_file).map_err(|why| format!("upstream.ca_file: {why}"))?
        {
            roots
                .add(cert)
                .map_err(|e| format!("upstream.ca_file: a certificate cannot be used: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tls)
}

/// A client for one I/O thread. Its connections are tasks on that thread's runtime.
pub(crate) fn client(config: &UpstreamConfig, tls: rustls::ClientConfig) -> Client {
    let mut http = HttpConnector::new();
    // Without it, a reused connection stalls ~40 ms on every small write (Nagle + delayed ACK).
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout.get()));
    // The TLS connector above it decides by scheme.
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        // HTTP/1.1 even where the upstream offers HTTP/2 (OpenRouter does, by ALPN): over
        // HTTP/2 a thread's requests share one connection, so past the server's stream limit
        // they queue behind streams that last minutes, and one broken connection fails them
        // all. A connection per request in flight, as nginx keeps upstream.
        .enable_http1()
        .wrap_connector(http);
    // No redirects are followed (a redirect would send the request, and our key, elsewhere:
    // it is passed back), and no ambient HTTP(S)_PROXY is read: hyper does neither.
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .build(connector)
}
