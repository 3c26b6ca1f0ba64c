//! Streams: bytes pass as they arrive, unchanged; a broken stream ends with an error event; a
//! client that leaves cancels the upstream.

use std::time::{Duration, Instant};

use crate::common::*;
use futures_util::StreamExt;

async fn start_stream(gw: &TestGateway, scenario: &str, delay_ms: u64) -> reqwest::Response {
    let response = gw
        .openrouter_chat(ALICE_KEY)
        .scenario(scenario)
        .delay_ms(delay_ms)
        .streaming()
        .fetch()
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    response
}

/// A stream in `scenario` from a gateway of its own, read to the end: the mock (which knows
/// what it sent), the generation id, and the bytes the client received.
async fn read_stream(scenario: &str) -> (MockOpenRouter, String, Vec<u8>) {
    let (mock, gw) = start_gateway().await;
    let response = start_stream(&gw, scenario, 0).await;
    let id = generation_id(&response);
    let (received, _) = read_timed(response).await;
    (mock, id, received)
}

/// Reads the whole body, noting when each piece arrived.
async fn read_timed(response: reqwest::Response) -> (Vec<u8>, Vec<(Instant, Vec<u8>)>) {
    let mut all = Vec::new();
    let mut pieces = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(piece) = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .expect("stream hung")
    {
        let piece = piece.expect("the client-side stream ended cleanly");
        all.extend_from_slice(&piece);
        pieces.push((Instant::now(), piece.to_vec()));
    }
    (all, pieces)
}

/// The `data:` payloads of a complete SSE text.
fn data_events(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: ").map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn stream_bytes_reach_the_client_unchanged_comments_included() {
    let (mock, id, received) = read_stream("stream").await;
    assert_eq!(received, mock.sent_stream(&id), "byte for byte");
    assert!(received.starts_with(b": OPENROUTER PROCESSING\n\n"));
    assert!(received.ends_with(b"data: [DONE]\n\n"));
}

#[tokio::test]
async fn chunk_spacing_survives_the_gateway() {
    let (_mock, gw) = start_gateway().await;
    // 7 events, 150 ms apart: buffered, they would arrive together at the end.
    let started = Instant::now();
    let response = start_stream(&gw, "stream", 150).await;
    let (received, pieces) = read_timed(response).await;
    assert_eq!(data_events(&received).len(), 6);
    let first_data = pieces
        .iter()
        .find(|(_, p)| p.starts_with(b"data:"))
        .expect("a data piece")
        .0;
    let last = pieces.last().unwrap().0;
    assert!(
        first_data.duration_since(started) < Duration::from_millis(600),
        "the first event came at once"
    );
    assert!(
        last.duration_since(first_data) >= Duration::from_millis(600),
        "events kept their spacing: {:?}",
        last.duration_since(first_data)
    );
    // Each piece is a whole event as the upstream sent it, not a merge of several.
    assert!(pieces.len() >= 6, "{} pieces", pieces.len());
}

#[tokio::test]
async fn a_stream_cut_mid_way_ends_with_one_error_event() {
    let (mock, id, received) = read_stream("stream-cut").await;
    let sent = mock.sent_stream(&id);
    assert!(
        received.starts_with(&sent),
        "everything sent before the cut is passed on"
    );
    let events = data_events(&received);
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], 502);
    assert_eq!(last["choices"][0]["finish_reason"], "error");
    assert_eq!(
        last["id"],
        id.as_str(),
        "the error event carries the generation id"
    );
    assert!(
        last["error"]["message"].as_str().unwrap().contains("broke"),
        "{last}"
    );
    assert_eq!(events.iter().filter(|e| e.contains("\"error\"")).count(), 1);
    assert!(!received.ends_with(b"data: [DONE]\n\n"));
}

#[tokio::test]
async fn a_stream_that_goes_quiet_ends_after_the_idle_timeout() {
    let (mock, gw) = start_gateway_with(idle_timeout_300ms).await;
    let started = Instant::now();
    let response = start_stream(&gw, "stream-stall", 0).await;
    let (received, _) = read_timed(response).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    let events = data_events(&received);
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sent nothing for 300ms"),
        "{last}"
    );
    assert_eq!(last["choices"][0]["finish_reason"], "error");
    // The stalled upstream stream is abandoned, not left open.
    mock.next_abandoned().await;
}

#[tokio::test]
async fn a_stream_that_ends_without_done_gets_an_error_event() {
    let (_, _, received) = read_stream("stream-no-done").await;
    let events = data_events(&received);
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last["error"]["message"]
        .as_str()
        .unwrap()
        .contains("before [DONE]"));
}

#[tokio::test]
async fn the_upstreams_own_error_event_passes_and_ends_the_stream() {
    let (mock, id, received) = read_stream("stream-error").await;
    assert_eq!(
        received,
        mock.sent_stream(&id),
        "no second error event of ours"
    );
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_upstream_stream() {
    let (mock, gw) = start_gateway().await;
    let response = gw.stream(ALICE_KEY).paced(100, 50).fetch().await;
    let id = generation_id(&response);
    leave_after_first_piece(response).await;
    assert_eq!(
        mock.next_abandoned().await,
        id,
        "the mock saw its stream abandoned"
    );
}

#[tokio::test]
async fn a_broken_stream_does_not_disturb_the_others() {
    let (_mock, gw) = start_gateway().await;
    let healthy = gw.stream(BOB_KEY).paced(10, 40).send();
    let healthy = tokio::spawn(async move { healthy.await.unwrap().bytes().await.unwrap() });
    for scenario in ["stream-cut", "stream-no-done", "json-cut"] {
        let response = gw.stream(ALICE_KEY).scenario(scenario).fetch().await;
        let _ = response.bytes().await;
    }
    let healthy = healthy.await.unwrap();
    assert!(healthy.ends_with(b"data: [DONE]\n\n"));
    // role, 10 content, finish, usage, [DONE]
    assert_eq!(data_events(&healthy).len(), 14);
}

#[tokio::test]
async fn a_json_body_cut_short_is_not_passed_off_as_complete() {
    let (_mock, gw) = start_gateway().await;
    let response = gw.completion(ALICE_KEY).scenario("json-cut").fetch().await;
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.is_err(),
        "the client sees the body break"
    );
}
