//! The chat body's fast scanner (`json_scan::object`) against serde_json: it accepts only what
//! serde_json accepts, reads the same members (keys unescaped, values as the same raw text),
//! and, nesting within the limit, accepts everything serde_json accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgate::json_scan::{self, MAX_DEPTH};

fuzz_target!(|bytes: &[u8]| {
    // The body's UTF-8 is checked before the scanner runs.
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let mut scanned = Vec::new();
    let accepted = json_scan::object(text, |key, value| {
        scanned.push((key.into_owned(), value));
        true
    });
    let by_serde = json_scan::members_by_serde(text);
    match (accepted, by_serde) {
        (Some(()), Some(theirs)) => assert_eq!(scanned, theirs, "read differently"),
        (Some(()), None) => panic!("the scanner accepted what serde_json refuses: {scanned:?}"),
        (None, Some(theirs)) => {
            let openings = bytes.iter().filter(|b| matches!(b, b'[' | b'{')).count();
            assert!(
                openings > MAX_DEPTH,
                "the scanner refused what serde_json reads as {theirs:?}"
            );
        }
        (None, None) => {}
    }
});
