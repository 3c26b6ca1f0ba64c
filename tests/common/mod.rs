//! Shared test support: the real gateway on an ephemeral port in front of the mock OpenRouter.
//!
//! - here: the keys, the config ([`config_for`] and its tweaks), [`TestGateway`] and
//!   [`start_gateway_with`], the tools a test needs from the machine;
//! - [`client`]: requests to a gateway (in-process or a child process) and what their answers
//!   hold;
//! - [`eventually`]: waiting, to a deadline, for what happens in the background;
//! - [`mock_openrouter`]: the recording mock OpenRouter;
//! - [`doors`]: the model doors (Responses, Messages, ...) from the client's side;
//! - [`process`]: the `orgate` binary as a child process, and its config files;
//! - [`redis_server`]: a `redis-server` (plain or TLS) of a test's own;
//! - [`internals`]: every way into the library past `orgate::serve`, for `src/` renames.

#![allow(dead_code, unreachable_pub, unused_imports)]

pub mod client;
pub mod doors;
pub mod eventually;
pub mod internals;
pub mod mock_openrouter;
pub mod process;
pub mod redis_server;

use std::net::SocketAddr;
use std::time::Duration;

pub use client::{
    error_of, forwarded, generation_id, leave_after_first_piece, metric_value, retry_after,
    Gateway, RequestExt, Streamed,
};
pub use eventually::{eventually, eventually_within};
pub use internals::hash_field;
pub use mock_openrouter::{MockOpenRouter, Recorded, MODEL};
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

/// The mock, and a gateway in front of it as [`config_for`] sets it up.
pub async fn start_gateway() -> (MockOpenRouter, TestGateway) {
    start_gateway_with(|_| {}).await
}

/// The mock, and a gateway in front of it as [`config_for`] sets it up and `tweak` changes it.
pub async fn start_gateway_with(tweak: impl FnOnce(&mut Config)) -> (MockOpenRouter, TestGateway) {
    let mock = MockOpenRouter::start().await;
    let mut config = config_for(&mock);
    tweak(&mut config);
    let gateway = TestGateway::start(config).await;
    (mock, gateway)
}

/// A tweak for [`start_gateway_with`]: no response headers from the upstream within 300 ms
/// is a 504.
pub fn first_byte_timeout_300ms(config: &mut Config) {
    config.upstream.first_byte_timeout = "300ms".parse().unwrap();
}

/// A tweak for [`start_gateway_with`]: no body bytes from the upstream for 300 ms ends the
/// answer.
pub fn idle_timeout_300ms(config: &mut Config) {
    config.upstream.idle_timeout = "300ms".parse().unwrap();
}

/// The request rate of the keys without one of their own: `per_minute` requests a minute,
/// `burst` of them at once.
pub fn default_rate(config: &mut Config, per_minute: u64, burst: u64) {
    config.limits.requests_per_minute = per_minute;
    config.limits.burst = burst;
}

/// A key's own request rate: `per_minute` requests a minute, `burst` of them at once.
pub fn key_rate(key: &mut KeyConfig, per_minute: u64, burst: u64) {
    key.requests_per_minute = Some(per_minute);
    key.burst = Some(burst);
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

    /// The text of `GET /metrics` (Prometheus text).
    pub async fn metrics_text(&self) -> String {
        let response = self.get("/metrics").fetch().await;
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        response.text().await.unwrap()
    }

    /// The value of one series in `GET /metrics` ([`metric_value`]).
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics_text().await, series)
    }

    /// Scrapes `/metrics` until `series` reaches `expected` (gauges move when bodies finish);
    /// returns that scrape.
    pub async fn metrics_when(&self, series: &str, expected: f64) -> String {
        eventually(&format!("{series} to reach {expected}"), async || {
            let text = self.metrics_text().await;
            if metric_value(&text, series) == expected {
                Ok(text)
            } else {
                Err(text)
            }
        })
        .await
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

impl Gateway for TestGateway {
    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether a tool a test needs from the machine is there: `check` runs it and succeeds
/// (`redis-server --version`). Without it the test is skipped, loudly (`SKIPPED:` on stderr),
/// except under CI (`CI` set), where it fails: CI must install `what`.
pub fn tool_present(check: &mut std::process::Command, what: &str) -> bool {
    let present = check
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} is not installed, and CI is set: CI must install it"
        );
        eprintln!("SKIPPED: {what} is not installed");
    }
    present
}

/// A loopback port nobody listens on (bound, noted, released): for an upstream that refuses,
/// or a server the test starts itself on a port it must know.
pub fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
