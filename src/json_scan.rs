//! Where JSON values end, checked as strictly as serde_json checks them, without building
//! anything: the fast path of [`RequestBody::parse`](crate::request_body::RequestBody::parse).
//!
//! A chat body is mostly the strings inside `messages`, and the gateway only needs to know
//! where each top-level value starts and ends. serde_json's raw-value skipper stops for every
//! escape through several calls (prose and code have one every 20 bytes or so); this scanner
//! reads a long string 64 bytes at a time as bitmasks of quotes, backslashes and control bytes
//! (`marks`: SSE2 on x86_64) and handles each escape in place from them. It accepts no
//! text serde_json would refuse and finds the same value boundaries: the fuzz target
//! `json_scan` and the property tests compare the two. It enforces the nesting limit itself
//! and says where a body goes too deep; anything else it does not accept goes to serde_json,
//! which says precisely what is wrong (the scanner never has to explain a syntax error).

use std::borrow::Cow;

use marks::Marks;

/// How deeply a body may nest, counting the top-level object: serde_json's own limit for trees.
pub const MAX_DEPTH: usize = 128;

/// Why [`object`] did not accept a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Valid so far, but the opening bracket at byte `at` is one level more than
    /// [`MAX_DEPTH`].
    TooDeep { at: usize },
    /// Not valid JSON, not an object, or `member` stopped the walk: serde_json says which.
    Invalid,
}

use Refused::Invalid;

/// Walks a JSON object that is the whole of `text` (whitespace around it allowed), calling
/// `member` with each key (unescaped) and the raw text of its value, in order, until `member`
/// returns `false`.
pub fn object<'a>(
    text: &'a str,
    mut member: impl FnMut(Cow<'a, str>, &'a str) -> bool,
) -> Result<(), Refused> {
    let b = text.as_bytes();
    let whole = |end: usize| {
        if skip_ws(b, end) == b.len() {
            Ok(())
        } else {
            Err(Invalid)
        }
    };
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err(Invalid);
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return whole(i + 1);
    }
    loop {
        let (key_end, value_start) = key_and_colon(b, i).ok_or(Invalid)?;
        let key = text.get(i..key_end).and_then(string_text).ok_or(Invalid)?;
        i = value_start;
        // The object itself is one level.
        let value_end = value_end(b, i, MAX_DEPTH - 1)?;
        let value = text.get(i..value_end).ok_or(Invalid)?;
        if !member(key, value) {
            return Err(Invalid);
        }
        i = skip_ws(b, value_end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return whole(i + 1),
            _ => return Err(Invalid),
        }
    }
}

/// The text of a JSON string value (`raw` with its quotes): borrowed when it has no escapes
/// (nearly always), else unescaped by serde_json; `None` for any other JSON value, or a string
/// that does not decode (a lone surrogate escape cannot be text).
pub(crate) fn string_text(raw: &str) -> Option<Cow<'_, str>> {
    match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Some(Cow::Borrowed(inner)),
        _ => serde_json::from_str::<String>(raw).ok().map(Cow::Owned),
    }
}

/// The end (exclusive) of the JSON value that starts at `start`; refused if there is no valid
/// value there or it opens more than `max_depth` brackets inside one another.
fn value_end(b: &[u8], start: usize, max_depth: usize) -> Result<usize, Refused> {
    // Whether each open container is an object; bounded, so no allocation.
    let mut objects = [false; MAX_DEPTH];
    let max_depth = max_depth.min(MAX_DEPTH);
    let mut depth = 0;
    let mut i = start;
    loop {
        // One value at `i`.
        i = match *b.get(i).ok_or(Invalid)? {
            b'"' => string_end(b, i).ok_or(Invalid)?,
            open @ (b'{' | b'[') => {
                if depth == max_depth {
                    return Err(Refused::TooDeep { at: i });
                }
                let object = open == b'{';
                objects[depth] = object;
                depth += 1;
                i = skip_ws(b, i + 1);
                let close = if object { b'}' } else { b']' };
                if b.get(i) != Some(&close) {
                    // The first member or element.
                    if object {
                        i = key_and_colon(b, i).ok_or(Invalid)?.1;
                    }
                    continue;
                }
                depth -= 1;
                i + 1
            }
            b't' => literal_end(b, i, b"true").ok_or(Invalid)?,
            b'f' => literal_end(b, i, b"false").ok_or(Invalid)?,
            b'n' => literal_end(b, i, b"null").ok_or(Invalid)?,
            b'-' | b'0'..=b'9' => number_end(b, i).ok_or(Invalid)?,
            _ => return Err(Invalid),
        };
        // After a value: close what ends here, or go on to the next member or element.
        loop {
            if depth == 0 {
                return Ok(i);
            }
            i = skip_ws(b, i);
            let object = objects[depth - 1];
            match (*b.get(i).ok_or(Invalid)?, object) {
                (b',', _) => {
                    i = skip_ws(b, i + 1);
                    if object {
                        i = key_and_colon(b, i).ok_or(Invalid)?.1;
                    }
                    break;
                }
                (b'}', true) | (b']', false) => {
                    depth -= 1;
                    i += 1;
                }
                _ => return Err(Invalid),
            }
        }
    }
}

/// An object key at `i` and its colon: where the key ends, and where the value starts.
fn key_and_colon(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let key_end = string_end(b, i)?;
    let colon = skip_ws(b, key_end);
    (b.get(colon) == Some(&b':')).then(|| (key_end, skip_ws(b, colon + 1)))
}

/// Past JSON whitespace (space, tab, line feed, carriage return), as serde_json counts it.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

const ONES: u64 = u64::MAX / 255;
const HIGH_BITS: u64 = ONES << 7;

/// The high bit of every byte of `word` that stops a run of plain string bytes: `"`, `\` or a
/// control byte (below 0x20). Exact for the lowest flagged byte, which is the only one used (a
/// borrow can flag a byte above a real match, never below it).
fn stops(word: u64) -> u64 {
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    let quotes = word ^ (ONES * u64::from(b'"'));
    let quote = quotes.wrapping_sub(ONES) & !quotes;
    let backslashes = word ^ (ONES * u64::from(b'\\'));
    let backslash = backslashes.wrapping_sub(ONES) & !backslashes;
    (control | quote | backslash) & HIGH_BITS
}

/// The end (exclusive, past the closing quote) of the string whose opening quote is at `open`.
/// Refuses what serde_json refuses: control bytes, unknown escapes, `\u` without four hex
/// digits. (UTF-8 is checked once for the whole body, before.)
fn string_end(b: &[u8], open: usize) -> Option<usize> {
    if b.get(open) != Some(&b'"') {
        return None;
    }
    let mut i = open + 1;
    // Keys and short values end within a word: they need no block.
    if let Some(chunk) = b.get(i..i + 8) {
        let stop = stops(u64::from_le_bytes(chunk.try_into().ok()?));
        let at = i + stop.trailing_zeros() as usize / 8;
        if stop != 0 && b.get(at) == Some(&b'"') {
            return Some(at + 1);
        }
    }
    // Long strings, 64 bytes at a time: every escape of a block is handled from its masks,
    // so the loop's exit is mispredicted once a block rather than once an escape. (Where the
    // masks are not vector compares, the eight-byte loop below is the faster.)
    'blocks: while let Some(block) = b.get(i..i + 64).filter(|_| Marks::VECTOR) {
        let marks = Marks::of(block.try_into().ok()?);
        let mut pending = marks.quote | marks.backslash | marks.control;
        while pending != 0 {
            let at = pending.trailing_zeros() as usize;
            let bit = 1u64 << at;
            if marks.quote & bit != 0 {
                return Some(i + at + 1);
            }
            if marks.control & bit != 0 {
                return None;
            }
            let next = at + escape_len(b, i + at)?;
            if next >= 64 {
                i += next;
                continue 'blocks;
            }
            // What the escape covered (an escaped quote or backslash) is text, not a mark.
            pending &= u64::MAX << next;
        }
        i += 64;
    }
    short_string_end(b, i)
}

/// [`string_end`] from `i`, inside the string, for the last bytes (fewer than a block).
fn short_string_end(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        // Eight plain bytes at a time, to the next byte that needs a look.
        while let Some(chunk) = b.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().ok()?);
            let stop = stops(word);
            if stop != 0 {
                i += stop.trailing_zeros() as usize / 8;
                break;
            }
            i += 8;
        }
        match *b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += escape_len(b, i)?,
            0..=0x1f => return None,
            // Only in the last seven bytes, where the loop above cannot read a whole word.
            _ => i += 1,
        }
    }
}

/// The length of the escape whose backslash is at `i`: 2, or 6 for `\uXXXX`.
#[inline(always)]
fn escape_len(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(2),
        b'u' if b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => Some(6),
        _ => None,
    }
}

/// The end of `word` at `i` (`true`, `false` or `null`).
fn literal_end(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    let end = i + word.len();
    (b.get(i..end)? == word).then_some(end)
}

/// The end of the number at `i`, in JSON's grammar: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)?
/// ([eE] [+-]? [0-9]+)?
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match *b.get(i)? {
        // A digit after a leading zero ends up where a comma or a bracket must be: refused.
        b'0' => i += 1,
        b'1'..=b'9' => i = digits_end(b, i + 1),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let end = digits_end(b, i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let end = digits_end(b, i);
        if end == i {
            return None;
        }
        i = end;
    }
    Some(i)
}

fn digits_end(b: &[u8], mut i: usize) -> usize {
    while let Some(b'0'..=b'9') = b.get(i) {
        i += 1;
    }
    i
}

/// serde_json's reading of an object's members (keys unescaped, values raw): what [`object`]
/// must agree with, for the property tests and the fuzz target.
#[doc(hidden)]
pub fn members_by_serde(text: &str) -> Option<Vec<(String, &str)>> {
    use serde::de::{Deserializer, MapAccess, Visitor};
    use serde_json::value::RawValue;

    struct Members;
    impl<'de> Visitor<'de> for Members {
        type Value = Vec<(String, &'de str)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut members = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                let value: &'de RawValue = map.next_value()?;
                members.push((key, value.get()));
            }
            Ok(members)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let members = de.deserialize_map(Members).ok()?;
    de.end().ok()?;
    Some(members)
}

pub(crate) mod catch;
mod marks;
#[cfg(test)]
mod tests;
