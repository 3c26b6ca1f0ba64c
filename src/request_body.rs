//! A model door's request body, parsed once and touched little.
//!
//! The body is read as an ordered list of top-level keys whose values stay raw JSON text
//! borrowed from the request bytes: `messages` or `input`, usually most of the body, is never
//! turned into a tree. [`json_scan`] finds where the values end; serde_json reads what
//! the scanner does not accept, and says what is wrong with it. The few fields the gateway
//! decides on are read from their raw text on demand, and edits replace one value in place,
//! so the key order survives (OpenRouter's response cache hashes the body with key order
//! significant). A body nobody edited is forwarded as the very bytes the client sent.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::GatewayError;
use crate::json_scan::{self, Refused, MAX_DEPTH};

/// A parsed request body: top-level keys in order, values raw.
pub struct RequestBody<'a> {
    entries: Vec<Entry<'a>>,
    edited: bool,
}

struct Entry<'a> {
    key: Cow<'a, str>,
    value: Slot<'a>,
}

/// A value as raw JSON text: valid, without surrounding whitespace.
enum Slot<'a> {
    Original(&'a str),
    /// Written by the gateway.
    Edited(Arc<str>),
    Removed,
}

impl Slot<'_> {
    fn raw(&self) -> Option<&str> {
        match self {
            Slot::Original(raw) => Some(raw),
            Slot::Edited(raw) => Some(raw),
            Slot::Removed => None,
        }
    }
}

impl fmt::Debug for RequestBody<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys only: values may hold anything the user wrote.
        f.debug_struct("RequestBody")
            .field("keys", &self.keys().collect::<Vec<_>>())
            .field("edited", &self.edited)
            .finish()
    }
}

impl<'a> RequestBody<'a> {
    /// Parses `body` and checks the shape every request body must have: a JSON object with no
    /// duplicate keys (the gateway and the upstream could read different ones).
    pub fn parse(body: &'a [u8]) -> Result<Self, GatewayError> {
        // One SIMD pass for UTF-8; the str parser then skips its own per-string checks. The
        // `basic` check is the faster; only a refused body is checked again to say where.
        let text = simdutf8::basic::from_utf8(body)
            .or_else(|_| simdutf8::compat::from_utf8(body))
            .map_err(|e| {
                let (line, column) = line_column(body, e.valid_up_to());
                GatewayError::BadJson {
                    line,
                    column,
                    reason: "invalid UTF-8".to_owned(),
                }
            })?;
        Ok(Self {
            entries: entries(text)?,
            edited: false,
        })
    }

    /// [`parse`](Self::parse), and `messages` must be an array: a chat request.
    pub fn parse_chat(body: &'a [u8]) -> Result<Self, GatewayError> {
        let request = Self::parse(body)?;
        request.require_array("messages", "{\"role\", \"content\"} objects")?;
        Ok(request)
    }

    /// `key` must be present and an array (of `items`, as the message says).
    pub fn require_array(&self, key: &str, items: &str) -> Result<(), GatewayError> {
        match self.get(key) {
            None => Err(GatewayError::BadRequest(format!(
                "`{key}` is required: an array of {items}"
            ))),
            Some(raw) if json_type(raw) != "an array" => Err(GatewayError::BadRequest(format!(
                "`{key}` must be an array, found {}",
                json_type(raw)
            ))),
            Some(_) => Ok(()),
        }
    }

    /// The current value of a top-level key, as raw JSON text.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .and_then(|e| e.value.raw())
    }

    /// A top-level field read into `T`; a value of the wrong type is a 400 naming the field and
    /// what was expected.
    pub fn field<T: DeserializeOwned>(
        &self,
        key: &str,
        expected: &str,
    ) -> Result<Option<T>, GatewayError> {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        serde_json::from_str(raw).map(Some).map_err(|_| {
            GatewayError::BadRequest(format!(
                "`{key}` must be {expected}, found {}",
                json_type(raw)
            ))
        })
    }

    /// `model`, when it is a string (anything else is a 400).
    pub fn model(&self) -> Result<Option<String>, GatewayError> {
        self.field("model", "a string")
    }

    /// Whether the client asked for a stream. Only `true` counts, as upstream reads it.
    pub fn stream(&self) -> bool {
        self.get("stream") == Some("true")
    }

    /// Replaces the value of `key` in place, or appends it when absent.
    pub fn set<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), GatewayError> {
        let raw = Self::encode(key, value)?;
        self.set_raw(key, raw);
        Ok(())
    }

    /// `value` as the raw JSON [`set_raw`](Self::set_raw) takes.
    pub fn encode<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Arc<str>, GatewayError> {
        serde_json::to_string(value)
            .map(Arc::from)
            .map_err(|e| GatewayError::Internal(format!("cannot encode `{key}`: {e}")))
    }

    /// [`set`](Self::set) with a value already written as JSON.
    pub fn set_raw(&mut self, key: &str, raw: Arc<str>) {
        self.edited = true;
        match self.entries.iter_mut().find(|e| e.key == key) {
            Some(entry) => entry.value = Slot::Edited(raw),
            None => self.entries.push(Entry {
                key: Cow::Owned(key.to_owned()),
                value: Slot::Edited(raw),
            }),
        }
    }

    /// Removes `key` if present.
    pub fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.key == key) {
            if !matches!(entry.value, Slot::Removed) {
                entry.value = Slot::Removed;
                self.edited = true;
            }
        }
    }

    /// Top-level keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|e| e.value.raw().is_some())
            .map(|e| e.key.as_ref())
    }

    pub fn is_edited(&self) -> bool {
        self.edited
    }

    /// The body to forward: `original` itself when nothing was edited, else the entries written
    /// back in order, untouched values byte for byte.
    pub fn to_body(&self, original: &Bytes) -> Bytes {
        if !self.edited {
            return original.clone();
        }
        // Nothing is shared below usize::MAX bytes: the whole body is the last piece.
        self.write_pieces(original, usize::MAX, &mut Vec::new())
    }

    /// [`to_body`](Self::to_body) in pieces that, joined, are that body: every untouched value
    /// of at least `shared_from` bytes is `original`'s own bytes (shared, not copied), and what
    /// the gateway writes goes between them. A large body with a small edit (the policy's
    /// `provider`) is sent without copying its `messages`.
    pub fn to_pieces(&self, original: &Bytes, shared_from: usize) -> Vec<Bytes> {
        if !self.edited {
            return vec![original.clone()];
        }
        let mut pieces = Vec::new();
        let last = self.write_pieces(original, shared_from, &mut pieces);
        pieces.push(last);
        pieces
    }

    /// Writes the edited body, pushing each piece but the last onto `pieces`; returns the last.
    fn write_pieces(&self, original: &Bytes, shared_from: usize, pieces: &mut Vec<Bytes>) -> Bytes {
        // A body shorter than `shared_from` shares nothing: it is all written, in one buffer.
        let mut written = Vec::with_capacity(if original.len() < shared_from {
            original.len() + 256
        } else {
            256
        });
        written.push(b'{');
        let mut first = true;
        for entry in &self.entries {
            let Some(raw) = entry.value.raw() else {
                continue;
            };
            if !first {
                written.push(b',');
            }
            first = false;
            // Writing a `str` as JSON cannot fail.
            let _ = serde_json::to_writer(&mut written, entry.key.as_ref());
            written.push(b':');
            let value = raw.as_bytes();
            let shared = match entry.value {
                Slot::Original(_) if value.len() >= shared_from => shared_slice(original, value),
                _ => None,
            };
            match shared {
                Some(slice) => {
                    pieces.push(Bytes::from(std::mem::take(&mut written)));
                    pieces.push(slice);
                }
                None => written.extend_from_slice(value),
            }
        }
        written.push(b'}');
        Bytes::from(written)
    }
}

/// `part` as a slice of `original` sharing its memory, if that is where `part` lies.
fn shared_slice(original: &Bytes, part: &[u8]) -> Option<Bytes> {
    let start = (part.as_ptr() as usize).checked_sub(original.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= original.len()).then(|| original.slice(start..end))
}

/// The body's entries: the scanner's reading; a body nested too deep refused where it goes
/// too deep; anything else the scanner does not accept (not an object, not valid JSON, a
/// duplicate key) read by serde_json, which accepts it or says what is wrong.
fn entries(text: &str) -> Result<Vec<Entry<'_>>, GatewayError> {
    let mut entries: Vec<Entry<'_>> = Vec::with_capacity(16);
    let scanned = json_scan::object(text, |key, value| {
        if entries.iter().any(|e| e.key == key) {
            return false;
        }
        entries.push(Entry {
            key,
            value: Slot::Original(value),
        });
        true
    });
    match scanned {
        Ok(()) => Ok(entries),
        Err(Refused::TooDeep { at }) => {
            let (line, column) = line_column(text.as_bytes(), at);
            Err(GatewayError::BadJson {
                line,
                column,
                reason: format!("nesting deeper than {MAX_DEPTH} levels"),
            })
        }
        Err(Refused::Invalid) => entries_by_serde(text),
    }
}

/// serde_json's reading of the body, with its precise errors.
fn entries_by_serde(text: &str) -> Result<Vec<Entry<'_>>, GatewayError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let entries = de.deserialize_map(EntriesVisitor).map_err(json_error)?;
    de.end().map_err(json_error)?;
    Ok(entries)
}

/// The 1-based line and column of byte `offset`, as serde_json counts them.
fn line_column(body: &[u8], offset: usize) -> (usize, usize) {
    let before = &body[..offset.min(body.len())];
    let line = 1 + memchr::memchr_iter(b'\n', before).count();
    let column = offset - memchr::memrchr(b'\n', before).map_or(0, |p| p + 1) + 1;
    (line, column)
}

/// The JSON type of a raw value, for error messages.
pub(crate) fn json_type(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn json_error(e: serde_json::Error) -> GatewayError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => GatewayError::BadJson {
            line: e.line(),
            column: e.column(),
            reason: reason_of(&e),
        },
        Category::Data => GatewayError::BadRequest(format!(
            "request body must be a JSON object ({})",
            reason_of(&e)
        )),
    }
}

/// serde_json's message without its trailing " at line X column Y" (we say where ourselves).
fn reason_of(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Vec<Entry<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries: Vec<Entry<'de>> = Vec::with_capacity(16);
        while let Some(Key(key)) = map.next_key()? {
            if entries.iter().any(|e| e.key == key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let raw: &'de RawValue = map.next_value()?;
            entries.push(Entry {
                key,
                value: Slot::Original(raw.get()),
            });
        }
        Ok(entries)
    }
}

/// A key borrowed from the body when it has no escapes, owned otherwise.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RequestBody<'_>, GatewayError> {
        RequestBody::parse_chat(text.as_bytes())
    }

    #[test]
    fn an_untouched_body_is_forwarded_as_sent() {
        let text =
            r#"{ "z": 1, "messages": [ {"role":"user","content":"hi"} ], "a": {"x": [1,2]} }"#;
        let original = Bytes::from_static(text.as_bytes());
        let req = RequestBody::parse(&original).unwrap();
        assert!(!req.is_edited());
        assert_eq!(req.to_body(&original), original);
        assert_eq!(req.keys().collect::<Vec<_>>(), ["z", "messages", "a"]);
    }

    #[test]
    fn edits_keep_key_order_and_untouched_values() {
        let text = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"h\u00e9"}],"provider":{"b":1,"a":2},"top_p":1.0}"#;
        let original = Bytes::from_static(text.as_bytes());
        let mut req = RequestBody::parse(&original).unwrap();
        req.set("model", "openai/gpt-4o").unwrap();
        req.set("max_tokens", &100).unwrap();
        req.remove("top_p");
        assert_eq!(
            req.to_body(&original),
            r#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"h\u00e9"}],"provider":{"b":1,"a":2},"max_tokens":100}"#
        );
    }

    #[test]
    fn bad_json_says_where() {
        let e = parse("{\n  \"messages\": [\n  }").unwrap_err();
        match e {
            GatewayError::BadJson { line, column, .. } => assert_eq!((line, column), (3, 3)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn shape_errors_name_the_field() {
        assert!(parse(r#"{"model":"x"}"#)
            .unwrap_err()
            .to_string()
            .contains("`messages` is required"));
        assert!(parse(r#"{"messages":"hi"}"#)
            .unwrap_err()
            .to_string()
            .contains("found a string"));
        assert!(parse("[1,2]")
            .unwrap_err()
            .to_string()
            .contains("must be a JSON object"));
        assert!(parse(r#"{"messages":[],"model":"a","model":"b"}"#)
            .unwrap_err()
            .to_string()
            .contains("duplicate key `model`"));
        let req = parse(r#"{"messages":[],"model":42}"#).unwrap();
        assert!(req
            .model()
            .unwrap_err()
            .to_string()
            .contains("`model` must be a string, found a number"));
    }

    #[test]
    fn deep_nesting_is_refused_where_it_goes_too_deep() {
        let deep = format!(r#"{{"messages":[{}{}]}}"#, "[".repeat(200), "]".repeat(200));
        match parse(&deep).unwrap_err() {
            GatewayError::BadJson {
                line,
                column,
                reason,
            } => {
                // `{` and `"messages":[` are levels 1 and 2; level 129 is the 127th bracket after them.
                assert_eq!((line, column), (1, 13 + MAX_DEPTH - 1));
                assert!(reason.contains("128 levels"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let fine = format!(
            r#"{{"messages":[{}{}],"s":"{}"}}"#,
            "[".repeat(100),
            "]".repeat(100),
            "[\\\"[".repeat(100)
        );
        assert!(
            parse(&fine).is_ok(),
            "brackets in strings and escaped quotes do not count"
        );
        // Exactly the limit, and one level more.
        let nested = |levels: usize| {
            let inner = levels - 2; // `{` and `"messages":[` are two of them
            format!(
                r#"{{"messages":[{}{}],"pad":"{}"}}"#,
                "[".repeat(inner),
                "]".repeat(inner),
                "x".repeat(300)
            )
        };
        assert!(parse(&nested(MAX_DEPTH)).is_ok());
        assert!(parse(&nested(MAX_DEPTH + 1)).is_err());
    }

    #[test]
    fn escaped_keys_are_understood_and_rewritten_safely() {
        let text = r#"{"mess\u0061ges":[],"m\"odel":1}"#;
        let original = Bytes::from_static(text.as_bytes());
        let mut req = RequestBody::parse(&original).unwrap();
        req.set("stream", &true).unwrap();
        let out = req.to_body(&original);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["m\"odel"], 1);
        assert!(v["messages"].is_array());
        assert!(req.stream());
    }

    #[test]
    fn large_untouched_values_are_shared_not_copied() {
        let content = "x".repeat(100_000);
        let text = format!(
            r#"{{"model":"a/b","messages":[{{"role":"user","content":"{content}"}}],"provider":{{"sort":"price"}}}}"#
        );
        let original = Bytes::from(text);
        let mut req = RequestBody::parse(&original).unwrap();
        req.set("provider", &serde_json::json!({"data_collection": "deny"}))
            .unwrap();
        let pieces = req.to_pieces(&original, 64 * 1024);
        assert_eq!(pieces.len(), 3, "head, the shared messages, tail");
        let messages = &pieces[1];
        let inside = original.as_ptr_range();
        assert!(
            inside.contains(&messages.as_ptr()),
            "messages are the client's own bytes"
        );
        assert!(messages.starts_with(b"[{") && messages.ends_with(b"}]"));
        assert_eq!(pieces.concat(), req.to_body(&original).to_vec());
        // Below the threshold everything is written out: one piece.
        assert_eq!(req.to_pieces(&original, usize::MAX).len(), 1);
        // Unedited: the body itself.
        let untouched = RequestBody::parse(&original).unwrap();
        assert_eq!(untouched.to_pieces(&original, 0), vec![original.clone()]);
    }

    proptest::proptest! {
        #[test]
        fn pieces_join_into_the_body_whatever_is_shared(
            values in proptest::collection::vec(("[a-z\\\"é ]{0,40}", 0usize..3), 1..6),
            edit in 0usize..6,
            shared_from in proptest::sample::select(vec![0usize, 1, 8, 30, usize::MAX]),
        ) {
            let mut object = serde_json::Map::new();
            object.insert("messages".into(), serde_json::json!([]));
            for (i, (text, shape)) in values.iter().enumerate() {
                let value = match shape {
                    0 => serde_json::json!(text),
                    1 => serde_json::json!([text, i]),
                    _ => serde_json::json!({ "k\"": text }),
                };
                object.insert(format!("f{i}\u{e9}"), value);
            }
            let original = Bytes::from(serde_json::to_vec(&object).unwrap());
            let mut req = RequestBody::parse(&original).unwrap();
            if edit < values.len() {
                req.set(&format!("f{edit}\u{e9}"), &serde_json::json!({"edited": edit})).unwrap();
            } else {
                req.remove("messages");
            }
            let joined = req.to_pieces(&original, shared_from).concat();
            proptest::prop_assert_eq!(joined, req.to_body(&original).to_vec());
        }
    }
}
