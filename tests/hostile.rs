//! Hostile input: every bad request gets a clear answer, nothing odd reaches the upstream, and
//! the gateway keeps serving.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes, reads until the server closes (or 5 s pass); returns what came back.
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_answer(stream).await
}

/// [`raw`], with the writing side shut after the bytes: the client has nothing more to send.
async fn raw_then_close(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    stream.shutdown().await.unwrap();
    read_answer(stream).await
}

/// Reads until the server closes (or 5 s pass).
async fn read_answer(mut stream: TcpStream) -> String {
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn chat_error(gw: &TestGateway, body: Vec<u8>) -> (u16, String) {
    gw.chat(ALICE_KEY).body(body).fetch_error().await
}

#[tokio::test]
async fn malformed_bodies_get_400_with_what_and_where() {
    let (mock, gw) = start_gateway().await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            br#"{"model":"x","messages":[]}trailing"#.to_vec(),
            "line 1, column 28: trailing characters",
        ),
        (
            b"{\"model\":\"x,\n\"messages\":[]}".to_vec(),
            "line 1, column 12: control character",
        ),
        (
            b"{\"model\":\"x\",\n \"messages\":[}".to_vec(),
            "line 2, column 14",
        ),
        (
            br#"{"model" "x"}"#.to_vec(),
            "line 1, column 10: expected `:`",
        ),
        (
            br#"{"messages":[],"model":"\q"}"#.to_vec(),
            "invalid escape",
        ),
        (br#"{"messages":[NaN]}"#.to_vec(), "expected value"),
        (
            b"{\"messages\":[],\"model\":\"\xff\xfe\"}".to_vec(),
            "line 1, column 25: invalid UTF-8",
        ),
        (
            br#"{"messages":[],"model":"a","model":"b"}"#.to_vec(),
            "duplicate key `model`",
        ),
        (
            br#"{"messages":[{"role":"user","content":"hi"}"#.to_vec(),
            "EOF while parsing",
        ),
    ];
    for (body, expected) in cases {
        let (code, message) = chat_error(&gw, body.clone()).await;
        assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
        assert!(
            message.contains(expected),
            "{}: {message}",
            String::from_utf8_lossy(&body)
        );
    }
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let (mock, gw) = start_gateway().await;
    let depth = 10_000;
    let body = format!(
        r#"{{"model":"x","messages":[{}{}]}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let (code, message) = chat_error(&gw, body.into_bytes()).await;
    assert_eq!(code, 400);
    assert!(
        message.contains("nesting deeper than 128 levels"),
        "{message}"
    );
    assert_eq!(mock.request_count(), 0);
    assert_eq!(
        gw.get("/healthz").fetch().await.status(),
        200,
        "still serving"
    );
}

#[tokio::test]
async fn huge_numbers_pass_through_untouched_unless_a_rule_reads_them() {
    let mock = MockOpenRouter::start().await;
    let mut config = config_for(&mock);
    let gw = TestGateway::start(config.clone()).await;
    let body =
        r#"{"model":"x","messages":[],"temperature":1e999,"seed":123456789012345678901234567890}"#;
    assert_eq!(
        forwarded(&mock, gw.chat(ALICE_KEY).body(body)).await.body,
        body.as_bytes(),
        "forwarded as written"
    );
    // With a ceiling to enforce, a max_tokens the gateway cannot read is refused, named.
    config.policy.max_tokens = 100;
    let gw = TestGateway::start(config).await;
    let (code, message) = chat_error(
        &gw,
        br#"{"model":"x","messages":[],"max_tokens":1e400}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 400);
    assert!(message.contains("`max_tokens`"), "{message}");
}

#[tokio::test]
async fn a_body_that_ends_early_is_a_400_and_a_lying_length_smuggles_nothing() {
    let (mock, gw) = start_gateway().await;
    // Content-Length promises more than comes: the client gives up writing.
    let head = format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ALICE_KEY}\r\ncontent-length: 100\r\n\r\n{{\"messages\":[");
    let response = raw_then_close(gw.addr, head.as_bytes()).await;
    assert!(
        response.is_empty() || status_of(&response) == 400,
        "{response}"
    );
    // Content-Length shorter than the body: the rest is not a second request that reaches upstream.
    let smuggled = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ALICE_KEY}\r\ncontent-length: 2\r\n\r\n{{}}GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ALICE_KEY}\r\n\r\n"
    );
    let response = raw(gw.addr, smuggled.as_bytes()).await;
    assert_eq!(status_of(&response), 400, "{response}");
    // Only the declared body counted: `{}` lacks `messages`.
    assert!(response.contains("`messages` is required"), "{response}");
    // The trailing bytes parse as a request of their own on the same connection, authenticated
    // like any other: the gateway never mixes them into the first.
    let seen = mock.try_next_request(Duration::from_millis(300)).await;
    if let Some(seen) = seen {
        assert_eq!(seen.path, "/api/v1/models");
        assert_eq!(seen.body.len(), 0);
    }
}

#[tokio::test]
async fn transfer_encoding_tricks_are_refused() {
    let (mock, gw) = start_gateway().await;
    let tricks = [
        // CL.TE: both framings at once.
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n",
        // An encoding that is not chunked last.
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        // Whitespace before the colon.
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n",
        // Two Content-Lengths that disagree.
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-length: 30\r\n\r\n{}",
        // A chunk size that is not hex.
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    ];
    for trick in tricks {
        let response = raw(gw.addr, trick.as_bytes()).await;
        let status = status_of(&response);
        assert!(
            status == 400 || status == 401 || response.is_empty(),
            "{trick:?} -> {response}"
        );
    }
    assert!(
        mock.forwarded_nothing(Duration::from_millis(200)).await,
        "nothing smuggled upstream"
    );
}

#[tokio::test]
async fn an_oversized_head_on_the_api_gets_a_431_in_json() {
    let (mock, gw) = start_gateway().await;
    let response = gw
        .chat(ALICE_KEY)
        .header("x-big", "a".repeat(40 * 1024))
        .fetch()
        .await;
    let (code, message) = error_of(response).await;
    assert_eq!(code, 431, "{message}");
    assert!(message.contains("request head"), "{message}");
    assert!(mock.forwarded_nothing(Duration::from_millis(50)).await);
}

/// Past hyper's read buffer (twice the gateway's own limit), hyper answers 431 itself.
#[tokio::test]
async fn oversized_headers_get_431() {
    let (_mock, gw) = start_gateway().await;
    let big = "a".repeat(100 * 1024);
    let response = raw(
        gw.addr,
        format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(
        status_of(&response),
        431,
        "{}",
        &response[..response.len().min(200)]
    );
}

#[tokio::test]
async fn a_client_that_sends_its_head_slowly_is_cut_off() {
    let (_mock, gw) = start_gateway_with(|config| {
        config.server.header_read_timeout = "500ms".parse().unwrap();
    })
    .await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n";
    let mut cut_off = false;
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            cut_off = true;
            break;
        }
        let mut buf = [0u8; 256];
        // The server closing (or answering 408) shows up as a read.
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await
        {
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "the slow client was never cut off");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert_eq!(
        gw.get("/healthz").fetch().await.status(),
        200,
        "others are served"
    );
}

#[tokio::test]
async fn absolute_form_targets_and_host_headers_cannot_redirect_upstream_traffic() {
    let (mock, gw) = start_gateway().await;
    let requests = [
        format!("GET http://evil.example/v1/models HTTP/1.1\r\nhost: evil.example\r\nauthorization: Bearer {ALICE_KEY}\r\nconnection: close\r\n\r\n"),
        format!("GET /v1/models HTTP/1.1\r\nhost: evil.example:443\r\nx-forwarded-host: evil.example\r\nauthorization: Bearer {ALICE_KEY}\r\nconnection: close\r\n\r\n"),
    ];
    for request in requests {
        let response = raw(gw.addr, request.as_bytes()).await;
        assert_eq!(status_of(&response), 200, "{response}");
        let seen = mock.next_request().await;
        assert_eq!(seen.path, "/api/v1/models");
        assert_eq!(
            seen.header("host"),
            Some(mock.addr.to_string().as_str()),
            "the configured upstream, whatever the client said"
        );
    }
}

#[tokio::test]
async fn every_route_with_every_method_answers_in_the_error_shape() {
    let (_mock, gw) = start_gateway().await;
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"];
    let routes = [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/chat/completions",
        "/api/v1/chat/completions",
        "/v1/models",
        "/api/v1/key",
        "/nope",
        "/",
    ];
    for route in routes {
        for method in methods {
            let response = http()
                .request(method.parse().unwrap(), gw.url(route))
                .bearer_auth(ALICE_KEY)
                .completion()
                .fetch()
                .await;
            let status = response.status().as_u16();
            let expected = match (route, method) {
                ("/healthz" | "/readyz" | "/metrics", "GET" | "HEAD") => 200,
                ("/healthz" | "/readyz" | "/metrics", _) => 405,
                ("/v1/chat/completions" | "/api/v1/chat/completions", "POST") => 200,
                ("/v1/chat/completions" | "/api/v1/chat/completions", _) => 405,
                // The catalogue is read-only; `/key` is answered by the gateway.
                ("/v1/models" | "/api/v1/key", "GET" | "HEAD") => 200,
                ("/v1/models" | "/api/v1/key", _) => 403, // route_not_allowed
                _ => 404,
            };
            assert_eq!(status, expected, "{method} {route}");
            if status >= 400 && method != "HEAD" {
                let (code, message) = error_of(response).await;
                assert_eq!(code, status);
                assert!(!message.is_empty());
            }
        }
    }
}

/// Waits up to `within` for the server to close `stream`; true when it did.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn a_socket_that_never_sends_a_byte_is_closed_within_the_header_read_timeout() {
    let (_mock, gw) = start_gateway_with(|config| {
        config.server.header_read_timeout = "300ms".parse().unwrap();
    })
    .await;
    // Many silent sockets at once: each is closed, and the gateway answers meanwhile.
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    assert_eq!(gw.get("/healthz").fetch_status().await, 200);
    let opened = Instant::now();
    for stream in &mut silent {
        assert!(closed_within(stream, Duration::from_secs(3)).await);
    }
    assert!(
        opened.elapsed() < Duration::from_secs(3),
        "{:?}",
        opened.elapsed()
    );
}

#[tokio::test]
async fn a_kept_alive_connection_idle_past_the_idle_timeout_is_closed() {
    let (_mock, gw) = start_gateway_with(|config| {
        config.server.idle_timeout = "300ms".parse().unwrap();
    })
    .await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 512];
    let n = stream.read(&mut answer).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&answer[..n])), 200);
    assert!(closed_within(&mut stream, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn a_body_trickled_past_the_body_read_timeout_is_a_408() {
    let (mock, gw) = start_gateway_with(|config| {
        config.server.body_read_timeout = "300ms".parse().unwrap();
    })
    .await;
    let head = format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ALICE_KEY}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"model\":");
    let started = Instant::now();
    let response = raw(gw.addr, head.as_bytes()).await;
    assert_eq!(status_of(&response), 408, "{response}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        response.contains("\"code\":408") && response.contains("not received within"),
        "{response}"
    );
    assert!(mock.forwarded_nothing(Duration::from_millis(50)).await);
}

/// `body` encoded in `encoding` (gzip, br, zstd).
async fn encoded(encoding: &str, body: &[u8]) -> Vec<u8> {
    use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
    let mut out = Vec::new();
    match encoding {
        "gzip" => GzipEncoder::new(body).read_to_end(&mut out).await,
        "br" => BrotliEncoder::new(body).read_to_end(&mut out).await,
        "zstd" => ZstdEncoder::new(body).read_to_end(&mut out).await,
        other => panic!("no encoder for {other}"),
    }
    .unwrap();
    out
}

#[tokio::test]
async fn encoded_request_bodies_are_decoded_and_others_refused_with_415() {
    let (mock, gw) = start_gateway_with(|config| {
        config.server.max_body = "4KiB".parse().unwrap();
    })
    .await;
    let body = br#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"Hi"}]}"#;
    for encoding in ["gzip", "br", "zstd"] {
        let response = gw
            .chat(ALICE_KEY)
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(encoded(encoding, body).await)
            .fetch()
            .await;
        assert_eq!(response.status(), 200, "{encoding}");
        let seen = mock.next_request().await;
        assert_eq!(seen.body, &body[..], "{encoding}: forwarded decoded");
        assert_eq!(seen.header("content-encoding"), None, "{encoding}");
    }
    // What cannot be decoded is refused, never forwarded.
    let refusals = [
        ("compress", body.to_vec(), 415),
        ("gzip", b"not gzip at all".to_vec(), 400),
        // A small body that decodes past max_body.
        ("gzip", encoded("gzip", &[b' '; 64 * 1024]).await, 413),
    ];
    for (encoding, bytes, status) in refusals {
        let response = gw
            .chat(ALICE_KEY)
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(bytes)
            .fetch()
            .await;
        let (code, message) = error_of(response).await;
        assert_eq!(code, status, "{encoding}: {message}");
        assert!(mock.forwarded_nothing(Duration::from_millis(50)).await);
    }
}
