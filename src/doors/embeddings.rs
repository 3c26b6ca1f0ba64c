//! `POST /embeddings`: `input` in, vectors out; `usage` (and `cost`) in the JSON answer. No
//! output length to cap, no stream.

use super::DoorSpec;

pub(super) const DOOR: DoorSpec = DoorSpec::json_only("embeddings", "/embeddings");
