//! The upstream over TLS, as OpenRouter is reached: a server that offers HTTP/2 by ALPN and
//! allows one stream per connection, as a server's `SETTINGS_MAX_CONCURRENT_STREAMS` does.
//!
//! Over HTTP/2 every request of an I/O thread shares one connection, so past the server's
//! stream limit requests queue behind the ones in flight (minutes, for LLM streams), and one
//! broken connection fails all of them. orgate speaks HTTP/1.1 upstream: a connection per
//! request in flight, no ceiling, and a failure stays with its own request.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::rustls;

use crate::common::mock_openrouter::completion;
use crate::common::process::{key_toml, serve_command, ConfigFile, Served};
use crate::common::*;

/// How many requests the upstream holds until all have arrived.
const TOGETHER: usize = 3;

/// A TLS upstream that answers a request only once [`TOGETHER`] requests are in flight at
/// once (or 503 after a deadline), recording the HTTP version of each.
struct TlsUpstream {
    port: u16,
    /// The certificate (self-signed, for 127.0.0.1), PEM: the gateway's trust store.
    cert_pem: String,
    versions: Arc<Mutex<Vec<Version>>>,
}

impl TlsUpstream {
    async fn start() -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert_pem = certified.cert.pem();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let versions = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(AtomicUsize::new(0));
        let all_here = Arc::new(Notify::new());
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http2().max_concurrent_streams(1);
        let recorded = versions.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, http) = (acceptor.clone(), http.clone());
                let (versions, arrived, all_here) =
                    (recorded.clone(), arrived.clone(), all_here.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |request| {
                        hold(request, versions.clone(), arrived.clone(), all_here.clone())
                    });
                    let _ = http.serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        Self {
            port,
            cert_pem,
            versions,
        }
    }
}

async fn hold(
    request: Request<Incoming>,
    versions: Arc<Mutex<Vec<Version>>>,
    arrived: Arc<AtomicUsize>,
    all_here: Arc<Notify>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    versions.lock().unwrap().push(request.version());
    // The gateway's own model-list fetch at start is answered at once and not counted.
    if request.uri().path().ends_with("/models") {
        return Ok(Response::new(Full::new(Bytes::from_static(
            br#"{"data":[]}"#,
        ))));
    }
    let _ = request.into_body().collect().await;
    let waiting = all_here.notified();
    tokio::pin!(waiting);
    // Registered before counting, so the last arrival's notify reaches every waiter.
    waiting.as_mut().enable();
    if arrived.fetch_add(1, Ordering::SeqCst) + 1 >= TOGETHER {
        all_here.notify_waiters();
    } else if tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .is_err()
    {
        let mut response = Response::new(Full::new(Bytes::from_static(b"not all together")));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return Ok(response);
    }
    let body = completion("gen-tls", MODEL).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

impl TlsUpstream {
    /// A gateway in front of it, trusting its certificate through `upstream.ca_file` when
    /// `trusted`, else with the built-in roots alone. `extra` goes first in the config.
    async fn gateway(&self, trusted: bool, extra: &str) -> Served {
        let text = |ca_file: &str| {
            format!(
                "{extra}[upstream]\nbase_url = \"https://127.0.0.1:{}/api/v1\"\nretries = 0\n\
                 ca_file = {ca_file:?}\n{}",
                self.port,
                key_toml("alice", ALICE_KEY)
            )
        };
        let config = ConfigFile::new(&text(""));
        if trusted {
            let ca = config.beside("upstream-ca.pem", &self.cert_pem);
            config.rewrite(&text(ca.to_str().unwrap()));
        }
        Served::start(&mut serve_command(&config.path)).await
    }
}

#[tokio::test]
async fn an_upstream_certificate_outside_the_roots_and_ca_file_is_refused() {
    let upstream = TlsUpstream::start().await;
    let served = upstream.gateway(false, "").await;
    let response = served
        .chat(ALICE_KEY)
        .body(format!(r#"{{"model":"{MODEL}","messages":[]}}"#))
        .fetch()
        .await;
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("certificate"), "says why: {body}");
    assert!(
        upstream.versions.lock().unwrap().is_empty(),
        "no request reached the untrusted server"
    );
}

#[tokio::test]
async fn requests_in_flight_each_get_their_own_upstream_connection_over_tls() {
    let upstream = TlsUpstream::start().await;
    // One I/O thread: one upstream client, so every request would share one HTTP/2 connection.
    let served = upstream.gateway(true, "[server]\nworkers = 1\n").await;

    let send = |n: usize| {
        served
            .chat(ALICE_KEY)
            .body(format!(
                r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"{n}"}}]}}"#
            ))
            .fetch()
    };
    let responses = tokio::time::timeout(
        Duration::from_secs(20),
        futures_util::future::join_all((0..TOGETHER).map(send)),
    )
    .await
    .expect("the requests finish");
    for response in responses {
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("gen-tls"), "{body}");
    }
    let versions = upstream.versions.lock().unwrap().clone();
    assert!(
        versions.len() >= TOGETHER,
        "the chats and the model list: {versions:?}"
    );
    assert!(
        versions.iter().all(|v| *v == Version::HTTP_11),
        "HTTP/1.1 upstream even when the server offers HTTP/2: {versions:?}"
    );
}
