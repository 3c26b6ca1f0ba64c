//! Catching a few values out of a JSON object that arrives in pieces, without parsing the rest:
//! a streaming event too large to keep whole (`SseSink::large_piece`) may still say what it is
//! (`"type"`) and what it used (`"response": {"usage": ...}`).
//!
//! A small tokenizer walks the text as it comes, keeping only a stack of open objects and
//! arrays and, per object, which of the wanted paths the keys so far lead along. A value at a
//! wanted path is copied as it passes, up to a cap; everything else, long strings above all, is
//! skipped (`memchr` finds a string's end). Memory is bounded by the cap per path and the
//! nesting limit. It checks the text only as far as it needs to follow it: on invalid JSON it
//! never panics, but what it caught before the fault is kept.

use super::{string_text, MAX_DEPTH};

/// Values larger than this are not caught (the rest of the text still passes through).
pub const MAX_CAUGHT: usize = 64 * 1024;

/// Paths past this many are never caught: the paths a frame leads along are a bitmask.
const MAX_PATHS: usize = 64;

/// Catches the first value at each of a few object-key paths of a JSON object fed in pieces.
#[derive(Debug)]
pub struct ValueCatcher {
    paths: &'static [&'static [&'static str]],
    /// Values longer than this are not caught.
    cap: usize,
    /// What the tokenizer expects next.
    lex: Lex,
    /// The open objects and arrays, outermost first (at most [`MAX_DEPTH`]).
    stack: Vec<Frame>,
    /// The paths the next value lies at (after a key's colon; none in arrays).
    value_targets: u64,
    /// The paths that lead on through the next value, should it be an object.
    value_live: u64,
    /// The raw text of the key being read, quotes included, while it may still match a path.
    key: Vec<u8>,
    /// The key being read is worth keeping (its object leads along some path, and it is short).
    key_kept: bool,
    /// Longest raw text of a key that can match a path: 6 bytes (`\uXXXX`) per byte, and quotes.
    key_cap: usize,
    /// The last byte was a backslash inside a string: the next byte is escaped.
    escape: bool,
    /// Paths whose first value has been found (caught, being caught, or too large).
    found: u64,
    /// All the paths: once all are found and caught, the rest of the text is not read.
    all: u64,
    /// Values being copied, innermost last.
    catching: Vec<Catching>,
    /// What was caught, per path.
    caught: Vec<Option<Vec<u8>>>,
}

/// What the tokenizer expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// The top-level object.
    Root,
    /// A value (after a colon, or a comma in an array).
    Value,
    /// A value or `]`, just after `[`.
    ValueOrClose,
    /// A key or `}`, just after `{`.
    KeyOrClose,
    /// A key, after a comma in an object.
    Key,
    /// The colon after a key.
    Colon,
    /// Inside a string: a key's or a value's.
    Str { key: bool },
    /// Inside a number or a literal (`true`, `false`, `null`).
    Scalar,
    /// A comma or the close of the innermost object or array.
    AfterValue,
    /// The top-level object has ended.
    End,
    /// Nothing more to catch, or the text is not JSON we can follow: the rest is ignored.
    Stop,
}

/// An open object or array.
#[derive(Debug, Clone, Copy)]
struct Frame {
    object: bool,
    /// The paths the keys so far lead along (never any in an array).
    live: u64,
}

/// A value being copied as it passes.
#[derive(Debug)]
struct Catching {
    /// The paths it is the first value at.
    paths: u64,
    /// The stack depth it began at: it ends when a value ends at that depth again.
    depth: usize,
    /// Where it continues in the piece being fed.
    from: usize,
    text: Vec<u8>,
}

impl ValueCatcher {
    /// `paths`: object-key paths from the top-level object, e.g. &[&["type"], &["response", "usage"]].
    pub fn new(paths: &'static [&'static [&'static str]]) -> Self {
        Self::with_cap(paths, MAX_CAUGHT)
    }

    pub fn with_cap(paths: &'static [&'static [&'static str]], cap: usize) -> Self {
        debug_assert!(paths.len() <= MAX_PATHS, "at most {MAX_PATHS} paths");
        let longest = paths.iter().flat_map(|p| p.iter()).map(|k| k.len());
        Self {
            paths,
            cap,
            lex: Lex::Root,
            stack: Vec::new(),
            value_targets: mask(paths, |p| p.is_empty()),
            value_live: mask(paths, |p| !p.is_empty()),
            key: Vec::new(),
            key_kept: false,
            key_cap: 2 + 6 * longest.max().unwrap_or(0),
            escape: false,
            found: 0,
            all: mask(paths, |_| true),
            catching: Vec::new(),
            caught: vec![None; paths.len().min(MAX_PATHS)],
        }
    }

    /// Feeds the next piece of the JSON text (pieces split anywhere, also inside strings,
    /// escapes, numbers, literals).
    pub fn feed(&mut self, piece: &[u8]) {
        for c in &mut self.catching {
            c.from = 0;
        }
        let mut i = 0;
        while i < piece.len() {
            i = match self.lex {
                Lex::Stop => return,
                Lex::Str { key } => self.string(piece, i, key),
                Lex::Scalar => match piece[i..].iter().position(|&b| !is_scalar(b)) {
                    // The delimiter is read next, as what follows the value.
                    Some(n) => {
                        self.value_end(piece, i + n);
                        i + n
                    }
                    None => piece.len(),
                },
                _ => {
                    let b = piece[i];
                    if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                        self.structural(piece, i, b);
                    }
                    i + 1
                }
            };
        }
        // The values still being caught go on in the next piece.
        let mut catching = std::mem::take(&mut self.catching);
        catching.retain_mut(|c| {
            let from = c.from;
            self.append(c, &piece[from..])
        });
        self.catching = catching;
    }

    /// The raw JSON text of the first value found at `paths[i]` (e.g. `"response.completed"` with
    /// its quotes, or `{"input_tokens":1,...}`), if it was seen whole and within the cap.
    pub fn caught(&self, i: usize) -> Option<&[u8]> {
        self.caught.get(i)?.as_deref()
    }

    /// Reads string bytes from `i`; returns where to go on.
    fn string(&mut self, piece: &[u8], mut i: usize, key: bool) -> usize {
        let from = i;
        if self.escape {
            self.escape = false;
            i += 1;
        }
        let end = loop {
            match memchr::memchr2(b'"', b'\\', &piece[i..]) {
                Some(n) if piece[i + n] == b'\\' => {
                    if i + n + 1 == piece.len() {
                        self.escape = true;
                        break None;
                    }
                    i += n + 2;
                }
                Some(n) => break Some(i + n),
                None => break None,
            }
        };
        if key {
            self.key_bytes(&piece[from..end.unwrap_or(piece.len())]);
        }
        let Some(quote) = end else {
            return piece.len();
        };
        if key {
            self.key_end();
        } else {
            self.value_end(piece, quote + 1);
        }
        quote + 1
    }

    /// A byte outside strings and scalars, at `i` (not whitespace).
    fn structural(&mut self, piece: &[u8], i: usize, b: u8) {
        let top = self.stack.last().map(|f| f.object);
        self.lex = match (self.lex, b) {
            (Lex::ValueOrClose, b']') | (Lex::AfterValue, b']') if top == Some(false) => {
                return self.close(piece, i);
            }
            (Lex::KeyOrClose, b'}') | (Lex::AfterValue, b'}') if top == Some(true) => {
                return self.close(piece, i);
            }
            (Lex::Root, b'{') | (Lex::Value | Lex::ValueOrClose, _) => {
                return self.value_start(i, b);
            }
            (Lex::KeyOrClose | Lex::Key, b'"') => {
                let live = self.stack.last().map_or(0, |f| f.live) & !self.found;
                self.key_kept = live != 0;
                self.key.clear();
                self.key.push(b'"');
                Lex::Str { key: true }
            }
            (Lex::Colon, b':') => Lex::Value,
            (Lex::AfterValue, b',') if top == Some(true) => Lex::Key,
            (Lex::AfterValue, b',') => {
                // Values in arrays lie at no path.
                self.value_targets = 0;
                self.value_live = 0;
                Lex::Value
            }
            _ => return self.stop(),
        };
    }

    /// A value begins with `b`, at `i`.
    fn value_start(&mut self, i: usize, b: u8) {
        let targets = std::mem::take(&mut self.value_targets) & !self.found;
        let live = std::mem::take(&mut self.value_live);
        if targets != 0 {
            self.found |= targets;
            self.catching.push(Catching {
                paths: targets,
                depth: self.stack.len(),
                from: i,
                text: Vec::new(),
            });
        }
        self.lex = match b {
            b'{' | b'[' if self.stack.len() >= MAX_DEPTH => return self.stop(),
            b'{' => {
                self.stack.push(Frame { object: true, live });
                Lex::KeyOrClose
            }
            b'[' => {
                self.stack.push(Frame {
                    object: false,
                    live: 0,
                });
                Lex::ValueOrClose
            }
            b'"' => Lex::Str { key: false },
            b if is_scalar(b) => Lex::Scalar,
            _ => return self.stop(),
        };
    }

    /// The `}` or `]` at `i` closes the innermost object or array.
    fn close(&mut self, piece: &[u8], i: usize) {
        self.stack.pop();
        self.value_end(piece, i + 1);
    }

    /// A value has ended just before `end`: the values being caught that began at this depth
    /// are whole.
    fn value_end(&mut self, piece: &[u8], end: usize) {
        let depth = self.stack.len();
        while self.catching.last().is_some_and(|c| c.depth == depth) {
            let Some(mut c) = self.catching.pop() else {
                break;
            };
            let from = c.from.min(end);
            if self.append(&mut c, &piece[from..end]) {
                for (i, caught) in self.caught.iter_mut().enumerate() {
                    if c.paths & (1 << i) != 0 {
                        *caught = Some(c.text.clone());
                    }
                }
            }
        }
        self.lex = if depth == 0 {
            Lex::End
        } else {
            Lex::AfterValue
        };
        if self.found == self.all && self.catching.is_empty() {
            self.lex = Lex::Stop;
        }
    }

    /// Adds `bytes` to a value being caught; false (and nothing kept) once it is over the cap.
    fn append(&self, c: &mut Catching, bytes: &[u8]) -> bool {
        if c.text.len() + bytes.len() > self.cap {
            c.text = Vec::new();
            return false;
        }
        c.text.extend_from_slice(bytes);
        true
    }

    fn key_bytes(&mut self, bytes: &[u8]) {
        if !self.key_kept {
            return;
        }
        if self.key.len() + bytes.len() + 1 > self.key_cap {
            self.key_kept = false;
            return;
        }
        self.key.extend_from_slice(bytes);
    }

    /// A key has been read: which paths lead on from it.
    fn key_end(&mut self) {
        self.lex = Lex::Colon;
        self.value_targets = 0;
        self.value_live = 0;
        if !self.key_kept {
            return;
        }
        self.key.push(b'"');
        let Some(key) = std::str::from_utf8(&self.key).ok().and_then(string_text) else {
            return;
        };
        let Some(depth) = self.stack.len().checked_sub(1) else {
            return;
        };
        let live = self.stack.last().map_or(0, |f| f.live) & !self.found;
        for (i, path) in self.paths.iter().enumerate().take(MAX_PATHS) {
            if live & (1 << i) != 0 && path.get(depth) == Some(&&*key) {
                if path.len() == depth + 1 {
                    self.value_targets |= 1 << i;
                } else {
                    self.value_live |= 1 << i;
                }
            }
        }
    }

    /// The text cannot be followed (or there is nothing left to catch): ignore the rest.
    fn stop(&mut self) {
        self.lex = Lex::Stop;
        self.catching.clear();
        self.stack = Vec::new();
    }
}

/// The first [`MAX_PATHS`] paths for which `keep` holds, as a bitmask.
fn mask(paths: &[&[&str]], keep: impl Fn(&[&str]) -> bool) -> u64 {
    paths
        .iter()
        .take(MAX_PATHS)
        .enumerate()
        .filter(|(_, p)| keep(p))
        .fold(0, |m, (i, _)| m | 1 << i)
}

/// A byte of a number or a literal.
fn is_scalar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')
}

#[cfg(test)]
mod tests;
