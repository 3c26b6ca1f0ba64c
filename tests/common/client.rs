//! The client's side: requests to a running gateway (in-process or a child process), the mock's
//! knobs on them, and what their answers hold (error bodies, headers, streams, metrics).

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::{RequestBuilder, Response};

use super::{chat_body, http, stream_body, MODEL};

/// A gateway that answers HTTP: [`super::TestGateway`] in this process, or
/// [`super::process::Served`], the binary as a child process.
pub trait Gateway {
    /// `http://host:port`, where it listens.
    fn base_url(&self) -> String;

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// `GET path`, without credentials.
    fn get(&self, path: &str) -> RequestBuilder {
        http().get(self.url(path))
    }

    /// `POST path`, without credentials.
    fn post(&self, path: &str) -> RequestBuilder {
        http().post(self.url(path))
    }

    /// `POST /v1/chat/completions` without credentials, ready for more headers and a body.
    fn chat_without_key(&self) -> RequestBuilder {
        self.post("/v1/chat/completions")
    }

    /// `POST /v1/chat/completions` as `key`, ready for more headers and a body.
    fn chat(&self, key: &str) -> RequestBuilder {
        self.chat_without_key().bearer_auth(key)
    }

    /// `POST /api/v1/chat/completions` (OpenRouter's own path) as `key`.
    fn openrouter_chat(&self, key: &str) -> RequestBuilder {
        self.post("/api/v1/chat/completions").bearer_auth(key)
    }

    /// [`Gateway::chat`] with the plain chat body for [`MODEL`] ([`chat_body`]).
    fn completion(&self, key: &str) -> RequestBuilder {
        self.chat(key).completion()
    }

    /// [`Gateway::chat`] with the streaming chat body for [`MODEL`] ([`stream_body`]).
    fn stream(&self, key: &str) -> RequestBuilder {
        self.chat(key).streaming()
    }
}

/// The mock's knobs (see `mock_openrouter.rs`), the usual chat bodies, and sends that unwrap,
/// on any request.
pub trait RequestExt: Sized {
    /// The mock's scenario for this request (`x-mock`).
    fn scenario(self, name: &str) -> Self;
    /// How many content chunks the mock streams (`x-mock-chunks`).
    fn chunks(self, n: usize) -> Self;
    /// The mock's pause between two chunks (`x-mock-delay-ms`).
    fn delay_ms(self, ms: u64) -> Self;
    /// The mock's stream: `chunks` content chunks, `delay_ms` apart.
    fn paced(self, chunks: usize, delay_ms: u64) -> Self {
        self.scenario("stream").chunks(chunks).delay_ms(delay_ms)
    }
    /// The mock's 503 for the first `times` requests it gets, then its answer.
    fn fail_then_ok(self, times: usize) -> Self;
    /// The plain chat body for [`MODEL`] ([`chat_body`]).
    fn completion(self) -> Self;
    /// The streaming chat body for [`MODEL`] ([`stream_body`]).
    fn streaming(self) -> Self;
    /// Sends it; the transport must not fail (a test about a failing transport sends by hand).
    fn fetch(self) -> impl Future<Output = Response>;
    /// Sends it and reads the whole answer; returns its status.
    fn fetch_status(self) -> impl Future<Output = u16>;
    /// Sends it and returns the OpenRouter-shaped error it gets ([`error_of`]).
    fn fetch_error(self) -> impl Future<Output = (u16, String)>;
}

impl RequestExt for RequestBuilder {
    fn scenario(self, name: &str) -> Self {
        self.header("x-mock", name)
    }

    fn chunks(self, n: usize) -> Self {
        self.header("x-mock-chunks", n)
    }

    fn delay_ms(self, ms: u64) -> Self {
        self.header("x-mock-delay-ms", ms)
    }

    fn fail_then_ok(self, times: usize) -> Self {
        self.scenario("fail-then-ok")
            .header("x-mock-fail-times", times)
    }

    fn completion(self) -> Self {
        self.body(chat_body(MODEL))
    }

    fn streaming(self) -> Self {
        self.body(stream_body())
    }

    async fn fetch(self) -> Response {
        self.send().await.unwrap()
    }

    async fn fetch_status(self) -> u16 {
        let response = self.fetch().await;
        let status = response.status().as_u16();
        response.bytes().await.unwrap();
        status
    }

    async fn fetch_error(self) -> (u16, String) {
        error_of(self.fetch().await).await
    }
}

/// Sends `request` to a gateway in front of `mock`; it must be answered 200. Returns the
/// request as it reached the mock.
pub async fn forwarded(mock: &super::MockOpenRouter, request: RequestBuilder) -> super::Recorded {
    let response = request.fetch().await;
    assert_eq!(response.status(), 200, "{}", response.url());
    mock.next_request().await
}

/// A response's `Retry-After`, in whole seconds.
pub fn retry_after(response: &Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The generation id the upstream gave the answer (`x-generation-id`).
pub fn generation_id(response: &Response) -> String {
    response.headers()["x-generation-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// An error response's status and JSON body, checking it says it is JSON.
pub async fn json_error(response: Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "errors are JSON ({status})"
    );
    let body = response.json().await.expect("error body is JSON");
    (status, body)
}

/// Parses an OpenRouter-shaped error and returns (code, message).
pub async fn error_of(response: Response) -> (u16, String) {
    let (status, body) = json_error(response).await;
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

/// A streamed answer being read, with what has come so far. Dropping it is the client leaving.
pub struct Streamed {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>>>>,
    pub received: Vec<u8>,
}

impl Streamed {
    /// Reads the first piece of `response`'s body.
    pub async fn first_piece(response: Response) -> Self {
        let mut streamed = Self {
            body: Box::pin(response.bytes_stream()),
            received: Vec::new(),
        };
        let piece = streamed.body.next().await.expect("a first piece").unwrap();
        streamed.received.extend_from_slice(&piece);
        streamed
    }

    /// Reads the rest, to the end; returns the whole body.
    pub async fn read_to_end(mut self) -> Vec<u8> {
        while let Some(piece) = self.body.next().await {
            self.received.extend_from_slice(&piece.unwrap());
        }
        self.received
    }
}

/// The client reads the first piece of a streamed answer and leaves.
pub async fn leave_after_first_piece(response: Response) {
    drop(Streamed::first_piece(response).await);
}

/// The value of one series (its name with its labels, as printed) in a `/metrics` text; 0 when
/// the series is absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map_or(0.0, |v| v.trim().parse().unwrap())
}
