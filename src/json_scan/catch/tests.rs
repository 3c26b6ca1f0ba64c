use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;
use crate::json_scan::members_by_serde;

/// What serde_json reads as the first value at `path` of the object `text` (in text order,
/// duplicate keys included), as raw text.
fn first_at<'t>(text: &'t str, path: &[&str]) -> Option<&'t str> {
    let Some((first, rest)) = path.split_first() else {
        return Some(text);
    };
    members_by_serde(text)?
        .into_iter()
        .filter(|(key, _)| key == first)
        .find_map(|(_, value)| first_at(value, rest))
}

/// What a catcher with `cap` catches at each of `paths` from `pieces`, checking after each
/// piece that it keeps no more than it may.
fn catch(
    paths: &'static [&'static [&'static str]],
    cap: usize,
    pieces: &[&[u8]],
) -> Vec<Option<Vec<u8>>> {
    let mut catcher = ValueCatcher::with_cap(paths, cap);
    for piece in pieces {
        catcher.feed(piece);
        assert!(catcher.stack.len() <= MAX_DEPTH);
        assert!(catcher.key.len() <= catcher.key_cap);
        assert!(catcher.catching.len() <= paths.len());
        assert!(catcher.catching.iter().all(|c| c.text.len() <= cap));
    }
    (0..paths.len())
        .map(|i| catcher.caught(i).map(<[u8]>::to_vec))
        .collect()
}

/// `bytes` cut at `cuts` (any order, any values: they are sorted and clamped).
fn cut<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for c in cuts {
        pieces.push(&bytes[start..c]);
        start = c;
    }
    pieces.push(&bytes[start..]);
    pieces
}

const PATHS: &[&[&str]] = &[
    &["type"],
    &["response", "usage"],
    &["response", "id"],
    &["choices"],
    &["missing"],
    &["response", "n"],
];

/// Escapes, nested objects, arrays of objects with the wanted key names, a duplicate key.
const DOC: &str = r#" {"id":"x\\\"y","choices":[{"type":"no","response":{"usage":0}}], "ty\u0070e" : "response.completed" ,
 "response":{"id":"r\"1\u00e9","output":[{"usage":{"fake":1}},[{"usage":2}]],"usage":{"input_tokens":12,"output_tokens":3e2,"details":{"a":[1,true,null,"}]"]}},"n":-0.5},
 "type":"second"} "#;

fn want(i: usize) -> Option<&'static str> {
    [
        Some(r#""response.completed""#),
        Some(r#"{"input_tokens":12,"output_tokens":3e2,"details":{"a":[1,true,null,"}]"]}}"#),
        Some(r#""r\"1\u00e9""#),
        Some(r#"[{"type":"no","response":{"usage":0}}]"#),
        None,
        Some("-0.5"),
    ][i]
}

#[test]
fn catches_the_values_at_the_paths_however_the_text_is_cut() {
    let bytes = DOC.as_bytes();
    let whole = catch(PATHS, MAX_CAUGHT, &[bytes]);
    for (i, path) in PATHS.iter().enumerate() {
        assert_eq!(
            first_at(DOC.trim(), path),
            want(i),
            "the reference, at {path:?}"
        );
        assert_eq!(
            whole[i].as_deref(),
            want(i).map(str::as_bytes),
            "at {path:?}"
        );
    }
    for a in 0..=bytes.len() {
        assert_eq!(
            catch(PATHS, MAX_CAUGHT, &cut(bytes, &[a])),
            whole,
            "cut at {a}"
        );
        for b in a..=bytes.len() {
            assert_eq!(
                catch(PATHS, MAX_CAUGHT, &cut(bytes, &[a, b])),
                whole,
                "cut at {a}, {b}"
            );
        }
    }
    // Byte by byte, and with empty pieces between.
    let bytes_and_gaps: Vec<&[u8]> = bytes.chunks(1).flat_map(|b| [b, &[][..]]).collect();
    assert_eq!(catch(PATHS, MAX_CAUGHT, &bytes_and_gaps), whole);
}

#[test]
fn a_value_over_the_cap_is_not_caught_and_the_rest_still_is() {
    let text = br#"{"response":{"usage":{"input_tokens":123456789}},"type":"ok"}"#;
    const P: &[&[&str]] = &[&["response", "usage"], &["type"], &["response"]];
    // `{"input_tokens":123456789}` is 26 bytes; `"ok"` 4; the response 37.
    for pieces in [vec![&text[..]], text.chunks(3).collect()] {
        let caught = catch(P, 25, &pieces);
        assert_eq!(caught[0], None);
        assert_eq!(caught[1].as_deref(), Some(&b"\"ok\""[..]));
        assert_eq!(caught[2], None);
        let caught = catch(P, 26, &pieces);
        assert_eq!(
            caught[0].as_deref(),
            Some(&br#"{"input_tokens":123456789}"#[..])
        );
        assert_eq!(caught[2], None);
    }
    // Only the first value counts: a later one within the cap is not caught instead.
    let text = br#"{"type":"far too long","type":"ok"}"#;
    assert_eq!(catch(&[&["type"]], 8, &[text]), vec![None]);
}

#[test]
fn keys_match_unescaped_and_values_in_arrays_never_match() {
    let text = br#"{"a":[{"b":1}],"\u0061":{"\"b":2,"\/b":3,"b":4}}"#;
    assert_eq!(
        catch(&[&["a", "b"], &["a", "\"b"], &["a", "/b"]], 64, &[text]),
        vec![
            Some(b"4".to_vec()),
            Some(b"2".to_vec()),
            Some(b"3".to_vec())
        ]
    );
    // The empty path is the whole object.
    assert_eq!(catch(&[&[]], 64, &[b" {} "]), vec![Some(b"{}".to_vec())]);
}

#[test]
fn nesting_past_the_limit_stops_the_catch() {
    for depth in [MAX_DEPTH, MAX_DEPTH + 1, 10_000] {
        // The top-level object is one level, `a`'s arrays the rest.
        let inner = depth - 1;
        let text = format!(
            r#"{{"b":1,"a":{}{},"type":2}}"#,
            "[".repeat(inner),
            "]".repeat(inner)
        );
        let caught = catch(&[&["b"], &["type"]], 64, &[text.as_bytes()]);
        assert_eq!(caught[0].as_deref(), Some(&b"1"[..]));
        // The limit the chat body's scanner has (serde_json's trees stop one level sooner).
        assert_eq!(caught[1].is_some(), depth <= MAX_DEPTH, "depth {depth}");
        if depth > MAX_DEPTH {
            assert!(serde_json::from_str::<Value>(&text).is_err());
        }
    }
}

#[test]
fn invalid_text_catches_nothing_past_the_fault() {
    for text in [
        &b"[1]"[..],
        b"\"type\"",
        b"{\"type\" 1}",
        b"{\"type\":}",
        b"{\"type\":,1}",
        b"{,\"type\":1}",
        b"{\"a\":1,,\"type\":1}",
        b"{\"a\":[1,],\"type\":1}",
        b"{\"a\":{]\"type\":1}",
    ] {
        assert_eq!(catch(&[&["type"]], 64, &[text]), vec![None], "{text:?}");
    }
}

/// A string with characters JSON escapes, or must not.
fn text() -> impl Strategy<Value = String> {
    "[a-z \"\\\\/\n\t\u{1}\u{7f}é😀]{0,12}"
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("type".to_string()),
        Just("usage".to_string()),
        Just("response".to_string()),
        Just("a".to_string()),
        Just("ty\"pe".to_string()),
        text(),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    crate::json_scan::tests::json_value_of(key().boxed(), text())
}

fn object() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::vec((key(), value()), 0..8).prop_map(|m| m.into_iter().collect())
}

/// Serialised compactly or pretty.
fn serialise(doc: &Value, pretty: bool) -> String {
    match pretty {
        true => serde_json::to_string_pretty(doc),
        false => serde_json::to_string(doc),
    }
    .unwrap_or_default()
}

proptest! {
    /// A value put at a path of a random document is caught, however the text is cut, as
    /// text that reads as that value.
    #[test]
    fn a_value_put_at_the_path_is_caught(
        mut doc in object(),
        mut response in object(),
        usage in value(),
        kind in value(),
        pretty in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        response.insert("usage".into(), usage.clone());
        doc.insert("response".into(), Value::Object(response));
        doc.insert("type".into(), kind.clone());
        let text = serialise(&Value::Object(doc), pretty);
        let caught = catch(&[&["response", "usage"], &["type"]], MAX_CAUGHT, &cut(text.as_bytes(), &cuts));
        // The same text reads the same, floats included.
        let read = |v: &Value| serde_json::from_str::<Value>(&serde_json::to_string(v).unwrap_or_default()).ok();
        for (caught, put) in caught.iter().zip([&usage, &kind]) {
            let caught = caught.as_deref().and_then(|c| serde_json::from_slice::<Value>(c).ok());
            prop_assert_eq!(caught, read(put));
        }
    }

    /// Random documents and small caps: what is caught is serde_json's first value at the
    /// path, exactly as written, when it is within the cap.
    #[test]
    fn catches_what_serde_json_reads_first(
        doc in object(),
        pretty in any::<bool>(),
        cap in 0usize..64,
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        const P: &[&[&str]] = &[&["a"], &["a", "a"], &["usage"], &["response", "usage"], &["ty\"pe", "type"]];
        let text = serialise(&Value::Object(doc), pretty);
        let caught = catch(P, cap, &cut(text.as_bytes(), &cuts));
        for (i, path) in P.iter().enumerate() {
            let want = first_at(&text, path).filter(|v| v.len() <= cap);
            prop_assert_eq!(caught[i].as_deref(), want.map(str::as_bytes), "at {:?}", path);
        }
    }

    /// Any bytes: never a panic, never more kept than the cap (`catch` checks).
    #[test]
    fn any_bytes_are_safe(
        bytes in proptest::collection::vec(
            prop_oneof![Just(b'{'), Just(b'}'), Just(b'['), Just(b']'), Just(b'"'), Just(b'\\'), Just(b':'), Just(b','), Just(b'a'), Just(b'1'), Just(b' '), any::<u8>()],
            0..200,
        ),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        catch(&[&["a"], &["a", "a"], &[]], 16, &cut(&bytes, &cuts));
    }
}
