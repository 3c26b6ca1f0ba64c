//! The value catcher (`json_scan::catch`): never panics on any bytes cut into any pieces, and on
//! a JSON object serde_json accepts, catches at each path exactly the raw text of serde_json's
//! first value there (in text order, duplicate keys included), when it is within the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgate::internals::json_scan::{members_by_serde, ValueCatcher, MAX_CAUGHT};

/// Key names the dictionary (fuzz/dict/value_catcher.dict) also offers.
const PATHS: &[&[&str]] = &[
    &["type"],
    &["response", "usage"],
    &["a"],
    &["a", "a"],
    &["a", "b", "c"],
];

/// A cap small enough that fuzzed values cross it.
const SMALL_CAP: usize = 24;

/// serde_json's first value at `path` of the object `text`, as raw text.
fn first_at<'t>(text: &'t str, path: &[&str]) -> Option<&'t str> {
    let Some((first, rest)) = path.split_first() else {
        return Some(text);
    };
    members_by_serde(text)?
        .into_iter()
        .filter(|(key, _)| key == first)
        .find_map(|(_, value)| first_at(value, rest))
}

/// What a catcher with `cap` catches from `pieces`.
fn catch<'a>(cap: usize, pieces: impl IntoIterator<Item = &'a [u8]>) -> Vec<Option<Vec<u8>>> {
    let mut catcher = ValueCatcher::with_cap(PATHS, cap);
    for piece in pieces {
        catcher.feed(piece);
    }
    (0..PATHS.len())
        .map(|i| catcher.caught(i).map(<[u8]>::to_vec))
        .collect()
}

/// A small deterministic generator, seeded from the input, for piece sizes.
fn cuts(bytes: &[u8]) -> Vec<&[u8]> {
    let mut state = bytes.iter().fold(0x9e37_79b9_7f4a_7c15_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) | 1;
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Mostly short pieces, sometimes empty ones, now and then a long one.
        let len = match state % 8 {
            0 => 0,
            7 => (state >> 8) as usize % 64,
            n => n as usize,
        }
        .min(rest.len());
        let (piece, tail) = rest.split_at(len);
        out.push(piece);
        rest = tail;
    }
    out
}

fuzz_target!(|bytes: &[u8]| {
    for cap in [SMALL_CAP, MAX_CAUGHT] {
        let whole = catch(cap, [bytes]);
        assert_eq!(catch(cap, bytes.chunks(1)), whole, "byte by byte differs");
        assert_eq!(catch(cap, cuts(bytes)), whole, "cutting into pieces differs");
        // Only a whole object serde_json accepts says what must be caught.
        let Ok(text) = std::str::from_utf8(bytes) else {
            continue;
        };
        if !matches!(
            serde_json::from_str::<serde_json::Value>(text),
            Ok(serde_json::Value::Object(_))
        ) {
            continue;
        }
        for (i, path) in PATHS.iter().enumerate() {
            let want = first_at(text, path).filter(|v| v.len() <= cap);
            assert_eq!(
                whole[i].as_deref(),
                want.map(str::as_bytes),
                "caught differently at {path:?}"
            );
        }
    }
});
