//! `POST /embeddings`: `input` in, vectors out; `usage` (and `cost`) in the JSON answer. No
//! output length to cap, no stream.

use super::{DoorSpec, Events};
use crate::error::ErrorShape;
use crate::policy::{Cap, RequestShape};

pub(super) const DOOR: DoorSpec = DoorSpec {
    route: "embeddings",
    path: "/embeddings",
    required: None,
    shape: RequestShape {
        fallback_models: false,
        cap: Cap::None,
    },
    // Never streamed; an event stream would be read as chat's.
    events: Events::Chat,
    errors: ErrorShape::OpenRouter,
};
