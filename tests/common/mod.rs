//! Shared test support: the real gateway on an ephemeral port in front of the mock OpenRouter.

#![allow(dead_code, unreachable_pub, unused_imports)]

pub mod eventually;
pub mod internals;
pub mod mock_openrouter;
pub mod process;

use std::net::SocketAddr;
use std::time::Duration;

pub use eventually::{eventually, eventually_within};
pub use internals::hash_field;
pub use mock_openrouter::{MockOpenRouter, MODEL};
use orgate::config::{Config, KeyConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The upstream key the gateway is given; it must never reach a client.
pub const UPSTREAM_KEY: &str = "sk-or-v1-upstream-secret-0123456789abcdef";
pub const ALICE_KEY: &str = "sk-orgate-alice-secret-key";
pub const BOB_KEY: &str = "sk-orgate-bob-secret-key";

/// A config pointing at `mock`, with two client keys (alice, bob) and short timeouts.
pub fn config_for(mock: &MockOpenRouter) -> Config {
    let mut config = Config::default();
    config.upstream.base_url = mock.base_url.clone();
    config.upstream.first_byte_timeout = "2s".parse().unwrap();
    config.upstream.idle_timeout = "2s".parse().unwrap();
    config.upstream.connect_timeout = "1s".parse().unwrap();
    config.secrets.insert("OPENROUTER_API_KEY", UPSTREAM_KEY);
    config.auth.keys = vec![key("alice", ALICE_KEY), key("bob", BOB_KEY)];
    config
}

pub fn key(id: &str, secret: &str) -> KeyConfig {
    KeyConfig {
        id: id.to_owned(),
        hash: hash_field(secret),
        ..KeyConfig::default()
    }
}

/// The gateway, running in this test's runtime.
pub struct TestGateway {
    pub addr: SocketAddr,
    reloads: tokio::sync::mpsc::Sender<orgate::ReloadRequest>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), orgate::StartupError>>,
}

impl TestGateway {
    pub async fn start(config: Config) -> Self {
        // Bound before the gateway runs: the address is ready as soon as we have it.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (reloads, reload_rx) = tokio::sync::mpsc::channel(4);
        let shutdown = async {
            let _ = stopped.await;
        };
        let task = tokio::spawn(orgate::serve_with_reloads(
            config, listener, shutdown, reload_rx,
        ));
        Self {
            addr,
            reloads,
            stop: Some(stop),
            task,
        }
    }

    /// `POST /v1/chat/completions` as `key`, ready for more headers and a body.
    pub fn chat(&self, key: &str) -> reqwest::RequestBuilder {
        http()
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
    }

    /// The text of `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        http()
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Hands the gateway a reloaded config (or a failed load), as SIGHUP would.
    pub async fn reload(&self, request: orgate::ReloadRequest) {
        self.reloads.send(request).await.unwrap();
    }

    /// Starts a graceful shutdown and waits for `serve` to return.
    pub async fn shutdown(mut self) -> Result<(), orgate::StartupError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the gateway did not stop within 10s")
            .expect("the gateway task panicked")
    }

    /// Signals shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A plain HTTP client (no redirects, no pooling surprises).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// A streaming chat body for `MODEL`.
pub fn stream_body() -> String {
    format!(r#"{{"model":"{MODEL}","messages":[],"stream":true}}"#)
}

pub fn chat_body(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"Hi"}}]}}"#)
}

/// A response's `Retry-After`, in whole seconds.
pub fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Parses an OpenRouter-shaped error and returns (code, message).
pub async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "errors are JSON"
    );
    let body: serde_json::Value = response.json().await.expect("error body is JSON");
    assert_eq!(
        body["error"]["code"], status,
        "error.code equals the status: {body}"
    );
    (
        status,
        body["error"]["message"]
            .as_str()
            .expect("error.message")
            .to_owned(),
    )
}
