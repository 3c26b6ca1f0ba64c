//! `POST /completions`: the legacy text completions (`prompt`, not `messages`). Its stream is
//! chat's: `data:` chunks, a usage chunk, `[DONE]`.

use super::{DoorSpec, Events};
use crate::error::ErrorShape;
use crate::policy::{Cap, RequestShape};

pub(super) const DOOR: DoorSpec = DoorSpec {
    route: "completions",
    path: "/completions",
    // `prompt` may be a string or an array: the upstream checks it.
    required: None,
    shape: RequestShape {
        fallback_models: false,
        cap: Cap::Field("max_tokens"),
    },
    events: Events::Chat,
    errors: ErrorShape::OpenRouter,
};
