//! The value catcher (`json_scan::catch`): never panics on any bytes cut into any pieces, and on
//! a JSON object serde_json accepts, catches at each path exactly the raw text of serde_json's
//! first value there (in text order, duplicate keys included), when it is within the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "shared/cuts.rs"]
mod cuts;
use cuts::cuts;
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
