//! Where a door's request keeps what the policy decides on. The policy's rules are the same on
//! every door; only these places differ (chat's `max_completion_tokens`, the Responses API's
//! `max_output_tokens`, Messages' `fallbacks[].model` and thinking budget). Each door names its
//! shape (`crate::doors`); the policy reads nothing else about doors.

/// What the policy needs to know about one door's request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestShape {
    /// `fallbacks[].model` names models too (Messages).
    pub fallback_models: bool,
    /// Where the `max_tokens` ceiling applies.
    pub cap: Cap,
}

/// The output-length fields a door's request has, for the `max_tokens` ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// No output length to cap (embeddings, rerank, token counting).
    None,
    /// Chat: `max_tokens` and `max_completion_tokens`; `max_tokens` set when neither is.
    Chat,
    /// One field, set to the ceiling when missing (`max_output_tokens`, legacy `max_tokens`).
    Field(&'static str),
    /// Messages: `max_tokens`, with `thinking.budget_tokens` kept below it (Anthropic refuses a
    /// budget that is not).
    Messages,
}

impl RequestShape {
    /// Chat completions: the shape the policy was first written for.
    pub const CHAT: RequestShape = RequestShape {
        fallback_models: false,
        cap: Cap::Chat,
    };
}
