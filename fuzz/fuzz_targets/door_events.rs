//! Each door's event reader (chat, responses, messages): never panics on any stream, and
//! learns the same facts however the bytes are cut into chunks (what it reads must not depend
//! on where the network split the stream).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "shared/cuts.rs"]
mod cuts;
use cuts::cuts;
use orgate::internals::{read_stream, StreamFacts};

const ROUTES: [&str; 3] = ["chat", "responses", "messages"];

/// The facts that must not depend on the chunking.
fn key(facts: &StreamFacts) -> impl PartialEq + std::fmt::Debug + '_ {
    (
        facts.complete,
        facts.saw_error,
        facts.usage,
        facts.generation_id.as_deref(),
        facts.model.as_deref(),
        facts.events,
    )
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, stream)) = input.split_first() else {
        return;
    };
    let route = ROUTES[usize::from(selector) % ROUTES.len()];
    let whole = read_stream(route, &[stream]).expect("a door with a stream");
    let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
    for chunks in [bytewise, cuts(stream)] {
        let split = read_stream(route, &chunks).expect("a door with a stream");
        assert_eq!(key(&whole), key(&split), "{route}");
    }
});
