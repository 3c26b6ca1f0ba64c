//! The chat body's fast scanner (`json_scan::object`) against serde_json: it accepts only what
//! serde_json accepts, reads the same members (keys unescaped, values as the same raw text),
//! refuses as invalid only what serde_json refuses, and says "too deep" only at an opening
//! bracket of a body with more of them than the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgate::internals::json_scan::{self, Refused, MAX_DEPTH};

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
        (Ok(()), Some(theirs)) => assert_eq!(scanned, theirs, "read differently"),
        (Ok(()), None) => panic!("the scanner accepted what serde_json refuses: {scanned:?}"),
        (Err(Refused::Invalid), Some(theirs)) => {
            panic!("the scanner refused as invalid what serde_json reads as {theirs:?}")
        }
        (Err(Refused::Invalid), None) => {}
        // The scanner alone enforces the limit: it must stop at an opening bracket, in a body
        // that has more of them than the limit.
        (Err(Refused::TooDeep { at }), _) => {
            let openings = bytes.iter().filter(|b| matches!(b, b'[' | b'{')).count();
            assert!(openings > MAX_DEPTH, "too deep with {openings} brackets");
            assert!(matches!(bytes[at], b'[' | b'{'), "too deep at {at}, not a bracket");
        }
    }
});
