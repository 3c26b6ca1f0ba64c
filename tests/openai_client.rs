//! The official-style OpenAI client (`async-openai`) pointed at the gateway, as a developer would.

use crate::common::*;
use async_openai::config::OpenAIConfig;
use async_openai::types::{ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs};
use async_openai::Client;
use futures_util::StreamExt;

fn client_for(gw: &TestGateway, key: &str) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(gw.url("/v1"))
            .with_api_key(key),
    )
}

fn request(stream: bool) -> async_openai::types::CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model(MODEL)
        .stream(stream)
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("Hi")
            .build()
            .unwrap()
            .into()])
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_openai_sdk_gets_a_completion() {
    let (mock, gw) = start_gateway().await;
    let response = client_for(&gw, ALICE_KEY)
        .chat()
        .create(request(false))
        .await
        .unwrap();
    assert_eq!(response.id, "gen-mock-0");
    assert_eq!(response.model, MODEL);
    assert_eq!(
        response.choices[0].message.content.as_deref(),
        Some("Hello there!")
    );
    assert_eq!(response.usage.unwrap().total_tokens, 14);
    let seen = mock.next_request().await;
    assert_eq!(seen.path, "/api/v1/chat/completions");
    assert_eq!(seen.bearer(), Some(UPSTREAM_KEY));
}

#[tokio::test]
async fn the_openai_sdk_reads_a_stream() {
    let (_mock, gw) = start_gateway().await;
    let mut stream = client_for(&gw, ALICE_KEY)
        .chat()
        .create_stream(request(true))
        .await
        .unwrap();
    let mut text = String::new();
    let mut usage = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("every chunk parses");
        for choice in &chunk.choices {
            text.push_str(choice.delta.content.as_deref().unwrap_or(""));
        }
        usage = usage.or(chunk.usage);
    }
    assert_eq!(text, "tok0 tok1 ");
    assert_eq!(
        usage
            .expect("the usage chunk (choices: []) got through")
            .total_tokens,
        12
    );
}

// Errors are checked with the official Python SDK (tests/sdk_python.rs): async-openai's
// `ApiError` wants a string `error.code`, while OpenRouter (and so orgate) sends the number.
