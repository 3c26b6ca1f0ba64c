use proptest::prelude::*;
use serde_json::Value;

use super::*;

/// The scanner's reading of a whole object: its members, in order.
fn scanned(text: &str) -> Result<Vec<(String, &str)>, Refused> {
    let mut members = Vec::new();
    object(text, |key, value| {
        members.push((key.into_owned(), value));
        true
    })?;
    Ok(members)
}

/// The scanner accepts `text` only if serde_json does, with the same members; it refuses as
/// invalid only what serde_json refuses; and it says a body is too deep only at an opening
/// bracket of a body that has more of them than the limit.
fn agree(text: &str) -> Result<(), String> {
    let ours = scanned(text);
    let theirs = members_by_serde(text);
    let openings = text.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
    match (&ours, &theirs) {
        (Ok(ours), Some(theirs)) if ours == theirs => Ok(()),
        (Err(Invalid), None) => Ok(()),
        (Err(Refused::TooDeep { at }), _)
            if openings > MAX_DEPTH && matches!(text.as_bytes()[*at], b'[' | b'{') =>
        {
            Ok(())
        }
        _ => Err(format!(
            "scanner {ours:?} vs serde_json {theirs:?} for {text:?}"
        )),
    }
}

#[test]
fn values_end_where_serde_json_says() {
    for value in [
        r#""""#,
        r#""plain""#,
        r#""esc \" \\ \/ \b \f \n \r \t \u00e9 \uD83D\uDE80 end""#,
        r#""a lone surrogate \ud800 is fine in a raw value""#,
        "\"caf\u{e9} \u{65e5}\u{672c} \u{1f680} and seven+ bytes after\"",
        "0",
        "-0",
        "12",
        "-12.5e+3",
        "1E9",
        "0.25",
        "true",
        "false",
        "null",
        "[]",
        "{}",
        "[ 1 , [ ] , { } ,\"x\" ]",
        r#"{ "a" : [ {"b":null} ] , "c":{"d":[true,false]} }"#,
        "[\n\t1,\r\n2\n]",
    ] {
        let text = format!("{{\"v\": {value} }}");
        assert_eq!(agree(&text), Ok(()));
        assert_eq!(
            scanned(&text).map(|m| m[0].1.to_owned()),
            Ok(value.to_owned())
        );
    }
}

#[test]
fn what_serde_json_refuses_the_scanner_refuses() {
    for value in [
        "",
        r#""unterminated"#,
        "\"a control \u{1} byte\"",
        "\"the last control byte \u{1f} too\"",
        "\"a raw\nnewline\"",
        r#""bad escape \x""#,
        r#""short \u12""#,
        r#""not hex \u12g4""#,
        "01",
        "-",
        "1.",
        ".5",
        "1e",
        "1e+",
        "+1",
        "tru",
        "nul",
        "True",
        "[1,]",
        "[1 2]",
        "[1}",
        "{\"a\":1]",
        "[{]}",
        "{\"a\" 1}",
        "{\"a\":1,}",
        "{1:2}",
        "[",
        "]",
        "{\"a\":}",
        "NaN",
    ] {
        let text = format!("{{\"v\": {value} }}");
        assert_eq!(scanned(&text), Err(Invalid), "{text:?}");
        assert_eq!(agree(&text), Ok(()));
    }
    for text in [
        "",
        "[]",
        "\"s\"",
        "{} x",
        "{\"a\":1} {}",
        "{\"a\":1",
        "{,}",
        "{\"a\":1,,\"b\":2}",
    ] {
        assert_eq!(scanned(text), Err(Invalid), "{text:?}");
        assert_eq!(agree(text), Ok(()));
    }
}

#[test]
fn keys_are_unescaped_and_bad_keys_refused() {
    assert_eq!(
        scanned(r#"{"pro\u0076ider":1, "a\"b":2}"#),
        Ok(vec![("provider".to_owned(), "1"), ("a\"b".to_owned(), "2")])
    );
    // A key is a real string: a lone surrogate cannot be one (serde_json refuses it too).
    assert_eq!(scanned(r#"{"\ud800":1}"#), Err(Invalid));
    assert_eq!(agree(r#"{"\ud800":1}"#), Ok(()));
}

#[test]
fn nesting_stops_at_the_limit() {
    let nested = |levels: usize| {
        format!(
            "{{\"v\":{}{}}}",
            "[".repeat(levels - 1),
            "]".repeat(levels - 1)
        )
    };
    assert!(scanned(&nested(MAX_DEPTH)).is_ok());
    // `{"v":` is five bytes and the object is level 1: the 128th bracket, at byte 5 + 127, is
    // level 129.
    assert_eq!(
        scanned(&nested(MAX_DEPTH + 1)),
        Err(Refused::TooDeep { at: 5 + 127 })
    );
    assert_eq!(agree(&nested(MAX_DEPTH + 1)), Ok(()));
}

#[test]
fn a_member_callback_can_stop_the_walk() {
    assert_eq!(
        object(r#"{"a":1,"b":2}"#, |key, _| key != "b"),
        Err(Invalid)
    );
}

/// Strings with what makes scanning hard: escapes of every kind, quotes, control characters
/// (escaped by serde_json when written), non-ASCII, and lengths around the 8-byte steps.
fn tricky_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just('"'),
            Just('\\'),
            Just('/'),
            Just('\n'),
            Just('\u{1}'),
            Just('\u{1f}'),
            Just('\u{7f}'),
            Just('\u{e9}'),
            Just('\u{1f680}'),
            Just('\u{2028}'),
            prop::char::range('a', 'z'),
        ],
        0..40,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// An object whose one long string (as in `messages`) crosses several 64-byte blocks, at any
/// alignment (the key's length), with an escape or a stop at any place in a block, and a
/// member of any length after it, so that the string ends at any distance from the text's end.
fn long_string_object() -> impl Strategy<Value = String> {
    let long = prop::collection::vec(tricky_string(), 1..8).prop_map(|parts| parts.concat());
    ("[a-z]{0,63}", long, "[a-z]{0,80}").prop_map(|(key, long, tail)| {
        serde_json::to_string(&serde_json::json!({ key: long, "tail": tail })).unwrap()
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    json_value_of(tricky_string().boxed(), tricky_string())
}

/// JSON values whose object keys come from `keys` and whose strings from `strings` (the value
/// catcher's tests use it with the keys it looks for).
pub(super) fn json_value_of(
    keys: BoxedStrategy<String>,
    strings: impl Strategy<Value = String> + 'static,
) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        strings.prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..8)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::vec(("[a-z\"\\\\]{0,6}", json_value()), 0..8)
        .prop_map(|members| Value::Object(members.into_iter().collect()))
}

proptest! {
    #[test]
    fn valid_objects_scan_as_serde_json_reads_them(object in json_object(), pretty: bool) {
        let text = if pretty {
            serde_json::to_string_pretty(&object)
        } else {
            serde_json::to_string(&object)
        }
        .unwrap();
        prop_assert!(scanned(&text).is_ok(), "refused valid JSON {}", text);
        prop_assert_eq!(agree(&text), Ok(()));
    }

    #[test]
    fn long_strings_end_where_serde_json_says(text in long_string_object()) {
        prop_assert!(scanned(&text).is_ok(), "refused valid JSON {}", text);
        prop_assert_eq!(agree(&text), Ok(()));
    }

    #[test]
    fn damaged_long_strings_are_never_read_differently(
        text in long_string_object(),
        at in any::<prop::sample::Index>(),
        byte in prop_oneof![Just(b'"'), Just(b'\\'), Just(1u8), Just(0x1f), Just(b'u'), Just(b'a')],
    ) {
        let mut bytes = text.into_bytes();
        let at = at.index(bytes.len());
        bytes[at] = byte;
        if let Ok(text) = std::str::from_utf8(&bytes) {
            prop_assert_eq!(agree(text), Ok(()));
        }
    }

    #[test]
    fn damaged_objects_are_never_read_differently(
        object in json_object(),
        at in any::<prop::sample::Index>(),
        byte in prop_oneof![
            Just(b'"'), Just(b'\\'), Just(b','), Just(b':'), Just(b'['), Just(b']'),
            Just(b'{'), Just(b'}'), Just(b'0'), Just(b'-'), Just(b'.'), Just(b'e'),
            Just(b' '), Just(b'\n'), Just(1u8), Just(0x1f), Just(b'u'), Just(b'a'),
        ],
        replace: bool,
    ) {
        let mut bytes = serde_json::to_vec(&object).unwrap();
        let at = at.index(bytes.len() + 1);
        if replace && at < bytes.len() {
            bytes[at] = byte;
        } else {
            bytes.insert(at, byte);
        }
        // Inserted ASCII keeps the text UTF-8 unless it replaced part of a character.
        if let Ok(text) = std::str::from_utf8(&bytes) {
            prop_assert_eq!(agree(text), Ok(()));
        }
    }
}
