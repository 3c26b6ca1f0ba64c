//! What a response used: OpenRouter's `usage` object, and an estimate for streams without one.
//!
//! Read from a non-streaming body and from a stream's usage event; it feeds the token limits and
//! the token and cost metrics. One reader serves every door: chat and completions say
//! `prompt_tokens` / `completion_tokens`, the Responses API and Messages say `input_tokens` /
//! `output_tokens` (Messages counts cache reads and writes apart), embeddings and rerank report
//! what they have; all may carry OpenRouter's `cost`.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json_scan;

/// OpenRouter's `usage`. Every field is optional: providers differ in what they report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
    /// Credits (USD) the request cost.
    pub cost: Option<f64>,
    /// `prompt_tokens_details.cached_tokens`.
    pub cached_tokens: Option<u64>,
    /// `completion_tokens_details.reasoning_tokens`.
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    /// Parses a `usage` object, or any object that carries one under `usage` (a response body
    /// or the `data:` of the stream's last event). `None` when it is not JSON, when `usage` is
    /// `null` (the stream's earlier events), or when no usage field is present at all.
    pub fn from_json(bytes: &[u8]) -> Option<Usage> {
        parse::<Envelope>(bytes).ok()?.usage()
    }

    /// The tokens to debit: `total_tokens`, else prompt plus completion.
    pub fn tokens(&self) -> u64 {
        self.total_tokens.unwrap_or_else(|| {
            self.prompt_tokens
                .unwrap_or(0)
                .saturating_add(self.completion_tokens.unwrap_or(0))
        })
    }
}

/// What a complete response says about itself: its `id` (the generation), the `model` and
/// `provider` that answered (borrowed from the body unless escaped), and its usage, read in one
/// pass over the body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseSummary<'a> {
    pub id: Option<Cow<'a, str>>,
    pub model: Option<Cow<'a, str>>,
    pub provider: Option<Cow<'a, str>>,
    pub usage: Option<Usage>,
}

impl<'a> ResponseSummary<'a> {
    /// Reads a response body. A `model` or `provider` that is not a string is left out; a body
    /// whose usage cannot be read still yields its `model` and `provider` (a second, rarer
    /// pass), so that the provider check never depends on the usage being well formed.
    pub fn from_json(bytes: &'a [u8]) -> Self {
        match parse::<Envelope>(bytes) {
            Ok(fields) => Self {
                id: text(fields.id),
                model: text(fields.model),
                provider: text(fields.provider),
                usage: fields.usage(),
            },
            Err(_) => {
                #[derive(Deserialize)]
                struct Head<'a> {
                    #[serde(borrow)]
                    id: Option<&'a RawValue>,
                    #[serde(borrow)]
                    model: Option<&'a RawValue>,
                    #[serde(borrow)]
                    provider: Option<&'a RawValue>,
                }
                match parse::<Head>(bytes) {
                    Ok(head) => Self {
                        id: text(head.id),
                        model: text(head.model),
                        provider: text(head.provider),
                        usage: None,
                    },
                    Err(_) => Self::default(),
                }
            }
        }
    }
}

/// Parses `bytes` as `T`. UTF-8 is checked once for the whole body when it is valid (SIMD),
/// so that the parser does not check every key and string again; a body that is not valid
/// UTF-8 throughout is parsed as bytes, which checks only the strings it reads.
fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> serde_json::Result<T> {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// A JSON string's text ([`json_scan::string_text`]); `None` for any other JSON value.
fn text(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    json_scan::string_text(raw?.get())
}

/// A stand-in for the tokens of a stream that ended without usage: about four bytes a token,
/// rounded up, so a stream is never free.
pub(crate) fn estimate_tokens(streamed_bytes: usize) -> u64 {
    u64::try_from(streamed_bytes.div_ceil(4)).unwrap_or(u64::MAX)
}

/// A `usage` object's fields, and the nested `usage` when these bytes are its envelope (with
/// the envelope's `model` and `provider`, borrowed, unchecked). Other fields (`choices`, `id`,
/// ...) are skipped by the parser without being built.
///
/// `Nested` is what `usage` holds: [`Envelope`] makes it these same fields one level down, with
/// nothing read below that, so the nesting needs no box.
#[derive(Deserialize)]
struct Fields<'a, Nested = IgnoredAny> {
    usage: Option<Nested>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    provider: Option<&'a RawValue>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    cost: Option<f64>,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
    /// The Responses API's and Messages' names.
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    input_tokens_details: Option<PromptDetails>,
    output_tokens_details: Option<CompletionDetails>,
    /// Messages: prompt tokens read from and written to the cache, not in `input_tokens`.
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

/// A response body, a stream event's data, or a bare `usage` object.
type Envelope<'a> = Fields<'a, Fields<'a>>;

#[derive(Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    reasoning_tokens: Option<u64>,
}

impl Envelope<'_> {
    /// The nested `usage`, else these fields as one.
    fn usage(mut self) -> Option<Usage> {
        match self.usage.take() {
            Some(nested) => nested.into_usage(),
            // `"usage": null` and a missing `usage` are alike here: the fields decide.
            None => self.into_usage(),
        }
    }
}

impl<Nested> Fields<'_, Nested> {
    fn into_usage(self) -> Option<Usage> {
        let cache_read = self.cache_read_input_tokens;
        let cache_written = self.cache_creation_input_tokens;
        let input = match (self.input_tokens, cache_read, cache_written) {
            (None, None, None) => None,
            (input, read, written) => Some(
                input
                    .unwrap_or(0)
                    .saturating_add(read.unwrap_or(0))
                    .saturating_add(written.unwrap_or(0)),
            ),
        };
        let usage = Usage {
            prompt_tokens: self.prompt_tokens.or(input),
            completion_tokens: self.completion_tokens.or(self.output_tokens),
            total_tokens: self.total_tokens,
            cost: self.cost,
            cached_tokens: self
                .prompt_tokens_details
                .or(self.input_tokens_details)
                .and_then(|d| d.cached_tokens)
                .or(cache_read),
            reasoning_tokens: self
                .completion_tokens_details
                .or(self.output_tokens_details)
                .and_then(|d| d.reasoning_tokens),
        };
        (usage != Usage::default()).then_some(usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_openrouters_usage_object() {
        let json = br#"{
            "prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
            "prompt_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 2},
            "cost": 0.00014, "is_byok": false,
            "cost_details": {"upstream_inference_cost": null}
        }"#;
        let usage = Usage::from_json(json).unwrap();
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: Some(10),
                completion_tokens: Some(4),
                total_tokens: Some(14),
                cost: Some(0.00014),
                cached_tokens: Some(3),
                reasoning_tokens: Some(2),
            }
        );
        assert_eq!(usage.tokens(), 14);
    }

    #[test]
    fn reads_usage_inside_a_response_or_stream_event() {
        let event = br#"{"id":"gen-1","choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":7,"completion_tokens":5}}"#;
        let usage = Usage::from_json(event).unwrap();
        assert_eq!(usage.prompt_tokens, Some(7));
        assert_eq!(usage.total_tokens, None);
        assert_eq!(usage.tokens(), 12);
    }

    #[test]
    fn no_usage_is_none() {
        assert_eq!(
            Usage::from_json(br#"{"id":"gen-1","choices":[],"usage":null}"#),
            None
        );
        assert_eq!(Usage::from_json(br#"{"id":"gen-1","choices":[]}"#), None);
        assert_eq!(Usage::from_json(br#"{}"#), None);
        assert_eq!(Usage::from_json(b"[DONE]"), None);
        assert_eq!(Usage::from_json(b""), None);
        assert_eq!(
            Usage::from_json(br#"{"usage":{"prompt_tokens":"ten"}}"#),
            None
        );
    }

    #[test]
    fn nulls_and_missing_details_are_fine() {
        let usage = Usage::from_json(
            br#"{"total_tokens":9,"cost":null,"prompt_tokens_details":null,"completion_tokens_details":{}}"#,
        )
        .unwrap();
        assert_eq!(usage.total_tokens, Some(9));
        assert_eq!(usage.cost, None);
        assert_eq!(usage.cached_tokens, None);
    }

    #[test]
    fn a_response_summary_is_read_in_one_pass() {
        let body = br#"{"id":"gen-1","provider":"Azure","model":"openai/gpt-4o",
            "choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}],
            "usage":{"prompt_tokens":7,"completion_tokens":5,"cost":0.001}}"#;
        let summary = ResponseSummary::from_json(body);
        assert_eq!(summary.model.as_deref(), Some("openai/gpt-4o"));
        assert_eq!(summary.provider.as_deref(), Some("Azure"));
        assert_eq!(summary.usage, Usage::from_json(body));
        assert_eq!(summary.usage.map(|u| u.tokens()), Some(12));
    }

    #[test]
    fn a_bad_usage_does_not_hide_the_provider() {
        let body = br#"{"provider":"Azure","model":7,"usage":{"prompt_tokens":"ten"}}"#;
        let summary = ResponseSummary::from_json(body);
        assert_eq!(summary.provider.as_deref(), Some("Azure"));
        assert_eq!(summary.model, None);
        assert_eq!(summary.usage, None);
        assert_eq!(
            ResponseSummary::from_json(b"not json"),
            ResponseSummary::default()
        );
        let escaped = ResponseSummary::from_json(br#"{"provider":"Az\u0075re"}"#);
        assert_eq!(escaped.provider.as_deref(), Some("Azure"));
    }

    #[test]
    fn model_and_provider_are_borrowed_unless_escaped() {
        let summary =
            ResponseSummary::from_json(br#"{"model":"openai/gpt-4o","provider":"Az\u0075re"}"#);
        assert!(matches!(
            summary.model,
            Some(Cow::Borrowed("openai/gpt-4o"))
        ));
        assert!(matches!(summary.provider, Some(Cow::Owned(ref p)) if p == "Azure"));
        let odd = ResponseSummary::from_json(br#"{"model":null,"provider":{"name":"Azure"}}"#);
        assert_eq!((odd.model, odd.provider), (None, None));
    }

    #[test]
    fn reads_the_responses_and_messages_names() {
        let responses = br#"{"id":"resp_1","object":"response","output":[],
            "usage":{"input_tokens":20,"input_tokens_details":{"cached_tokens":5},
            "output_tokens":8,"output_tokens_details":{"reasoning_tokens":3},"total_tokens":28,"cost":0.002}}"#;
        let summary = ResponseSummary::from_json(responses);
        assert_eq!(summary.id.as_deref(), Some("resp_1"));
        assert_eq!(
            summary.usage,
            Some(Usage {
                prompt_tokens: Some(20),
                completion_tokens: Some(8),
                total_tokens: Some(28),
                cost: Some(0.002),
                cached_tokens: Some(5),
                reasoning_tokens: Some(3),
            })
        );
        let messages = br#"{"id":"msg_1","type":"message","content":[],
            "usage":{"input_tokens":12,"cache_read_input_tokens":100,"cache_creation_input_tokens":0,"output_tokens":6}}"#;
        let usage = Usage::from_json(messages).unwrap();
        assert_eq!(usage.prompt_tokens, Some(112));
        assert_eq!(usage.cached_tokens, Some(100));
        assert_eq!((usage.completion_tokens, usage.cost), (Some(6), None));
        assert_eq!(usage.tokens(), 118);
    }

    #[test]
    fn estimates_four_bytes_a_token() {
        assert_eq!(estimate_tokens(0), 0);
        assert_eq!(estimate_tokens(1), 1);
        assert_eq!(estimate_tokens(4), 1);
        assert_eq!(estimate_tokens(5), 2);
        assert_eq!(estimate_tokens(4000), 1000);
    }
}
