//! An incremental Server-Sent Events scanner: it watches bytes go by and reports each event's
//! `data` when the event ends, whatever the chunk boundaries.
//!
//! It never holds the stream back: callers forward every chunk as it arrives and only *feed* it
//! here. A line, or an event, that lies whole in a chunk is read where it is; the only state
//! kept between chunks is what continues into the next one: how much of the line in progress
//! matched `data:` (a count, not the bytes) and the data of the event in progress, bounded by
//! the cap ([`MAX_EVENT_DATA`]). A stream whose chunks are whole events holds no buffer at all.
//!
//! An event whose data grows past the cap is not kept: its data is handed on in pieces as it
//! arrives ([`SseSink::large_piece`]), then its end ([`SseSink::large_end`]), so that a caller
//! can still read it with a streaming reader while the scanner's memory stays bounded.

mod whatwg;

#[doc(hidden)]
pub use whatwg::whatwg_reading;

/// Events whose data grows past this are handed on in pieces rather than kept whole.
pub const MAX_EVENT_DATA: usize = 1 << 20;

/// Who hears what the scanner reads.
pub trait SseSink {
    /// One whole event's `data` (data lines joined by `\n`), at most the scanner's cap.
    fn event(&mut self, data: &[u8]);
    /// A piece of the data of an event too large to keep: the data so far when it crossed the
    /// cap, then every further piece as it arrives (the `\n` joining data lines included), in order.
    fn large_piece(&mut self, _piece: &[u8]) {}
    /// The large event whose pieces came has ended (its blank line).
    fn large_end(&mut self) {}
}

/// A closure hears whole events only: large ones pass it by, as they always did.
impl<F: FnMut(&[u8])> SseSink for F {
    fn event(&mut self, data: &[u8]) {
        self(data)
    }
}

/// The field whose value the scanner reads, with its colon.
const DATA: &[u8] = b"data:";

#[derive(Debug)]
pub struct SseScanner {
    /// Events whose data is longer than this are handed on in pieces.
    cap: usize,
    /// Where the line in progress stands.
    line: LineState,
    /// The `data` of the event in progress, lines joined by `\n` (at most `cap` bytes).
    data: Vec<u8>,
    /// The event in progress has at least one data line.
    has_data: bool,
    /// The event in progress crossed the cap: its data goes to the sink in pieces, not to `data`.
    large: bool,
    /// Anything (a field, a comment) has been seen since the last blank line.
    in_event: bool,
    /// The last byte was `\r`: a following `\n` belongs to the same line ending.
    after_cr: bool,
}

/// Where the line in progress stands; only `data` lines matter, so no bytes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// Its first `n` bytes are the first `n` of `data:` (0: at the start of a line).
    Name(usize),
    /// A `data` line: its further bytes are the event's data.
    Value,
    /// Another field or a comment: skipped to its end.
    Ignore,
}

impl Default for SseScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl SseScanner {
    pub fn new() -> Self {
        Self::with_cap(MAX_EVENT_DATA)
    }

    /// A scanner that keeps events up to `cap` bytes of data (tests and fuzzing use small caps).
    pub fn with_cap(cap: usize) -> Self {
        Self {
            cap,
            line: LineState::Name(0),
            data: Vec::new(),
            has_data: false,
            large: false,
            in_event: false,
            after_cr: false,
        }
    }

    /// Scans `chunk`, telling `sink` of each event that ends in it and of the pieces of a
    /// large event that arrive in it.
    ///
    /// A line that lies whole in `chunk` is read where it is, and so is the data of an event
    /// with one `data` line that ends in `chunk` (the usual upstream chunk: whole events):
    /// only what continues into the next chunk is copied and kept.
    pub fn feed(&mut self, chunk: &[u8], sink: &mut impl SseSink) {
        let mut rest = chunk;
        // An empty chunk says nothing about whether a `\n` follows the last `\r`.
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        // The event's data so far, while it is one line of this chunk (not yet in `data`).
        let mut pending: Option<&[u8]> = None;
        while !rest.is_empty() {
            let Some(i) = memchr::memchr2(b'\n', b'\r', rest) else {
                self.line_bytes(rest, &mut pending, sink);
                break;
            };
            let line = &rest[..i];
            let ending_cr = rest[i] == b'\r';
            rest = &rest[i + 1..];
            if ending_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            if self.line == LineState::Name(0) {
                self.whole_line(line, &mut pending, sink);
            } else {
                self.line_bytes(line, &mut pending, sink);
                self.line_end(&mut pending, sink);
            }
        }
        // The event goes on in the next chunk: keep its data.
        if let Some(data) = pending {
            self.data.extend_from_slice(data);
        }
    }

    /// True when the bytes seen so far end between events, so that something appended now is
    /// read as a new event rather than as part of a broken one.
    pub fn at_event_boundary(&self) -> bool {
        self.at_line_start() && !self.in_event
    }

    /// True when the bytes seen so far end at the end of a line.
    pub fn at_line_start(&self) -> bool {
        self.line == LineState::Name(0)
    }

    /// A line that lies whole in the chunk being fed. `pending` is the event's data while it is
    /// still a slice of that chunk (see [`SseScanner::feed`]).
    fn whole_line<'c>(
        &mut self,
        line: &'c [u8],
        pending: &mut Option<&'c [u8]>,
        sink: &mut impl SseSink,
    ) {
        if line.is_empty() {
            self.dispatch(pending, sink);
            return;
        }
        self.in_event = true;
        let Some(value) = field_value(line, b"data") else {
            return;
        };
        if !self.has_data && value.len() <= self.cap {
            // The event's first data line: read where it is if the event ends in this chunk too.
            self.has_data = true;
            *pending = Some(value);
        } else {
            self.start_data_line(pending, sink);
            self.append(value, pending, sink);
        }
    }

    /// Bytes of a line that began in an earlier chunk or ends in a later one.
    fn line_bytes<'c>(
        &mut self,
        mut bytes: &'c [u8],
        pending: &mut Option<&'c [u8]>,
        sink: &mut impl SseSink,
    ) {
        if bytes.is_empty() {
            return;
        }
        self.in_event = true;
        loop {
            match self.line {
                LineState::Name(n) => {
                    let Some((&b, tail)) = bytes.split_first() else {
                        return;
                    };
                    if n == DATA.len() {
                        // `data:` seen: one space may follow before the value.
                        if b == b' ' {
                            bytes = tail;
                        }
                        self.start_data_line(pending, sink);
                        self.line = LineState::Value;
                    } else if b == DATA[n] {
                        self.line = LineState::Name(n + 1);
                        bytes = tail;
                    } else {
                        self.line = LineState::Ignore;
                        return;
                    }
                }
                LineState::Value => {
                    self.append(bytes, pending, sink);
                    return;
                }
                LineState::Ignore => return,
            }
        }
    }

    /// Ends a line whose bytes went through [`SseScanner::line_bytes`].
    fn line_end(&mut self, pending: &mut Option<&[u8]>, sink: &mut impl SseSink) {
        match std::mem::replace(&mut self.line, LineState::Name(0)) {
            LineState::Name(0) => self.dispatch(pending, sink),
            // `data` or `data:` alone: a data line with an empty value.
            LineState::Name(n) if n >= DATA.len() - 1 => self.start_data_line(pending, sink),
            LineState::Name(_) | LineState::Value | LineState::Ignore => {}
        }
    }

    /// A blank line: the event in progress ends.
    fn dispatch(&mut self, pending: &mut Option<&[u8]>, sink: &mut impl SseSink) {
        if self.large {
            sink.large_end();
        } else if self.has_data {
            sink.event(pending.take().unwrap_or(&self.data));
        }
        *pending = None;
        self.data.clear();
        self.has_data = false;
        self.large = false;
        self.in_event = false;
    }

    /// A data line begins: after the first, its value is joined to the data by `\n`.
    fn start_data_line(&mut self, pending: &mut Option<&[u8]>, sink: &mut impl SseSink) {
        if self.has_data {
            self.append(b"\n", pending, sink);
        }
        self.has_data = true;
    }

    /// Adds `bytes` to the event's data, after what `pending` holds of it; past the cap, the
    /// data goes to the sink instead.
    fn append(&mut self, bytes: &[u8], pending: &mut Option<&[u8]>, sink: &mut impl SseSink) {
        if let Some(first) = pending.take() {
            self.data.extend_from_slice(first);
        }
        if self.large {
            if !bytes.is_empty() {
                sink.large_piece(bytes);
            }
        } else if self.data.len() + bytes.len() > self.cap {
            self.large = true;
            if !self.data.is_empty() {
                sink.large_piece(&self.data);
                self.data.clear();
            }
            sink.large_piece(bytes);
        } else {
            self.data.extend_from_slice(bytes);
        }
    }
}

/// The value of `line` if it is the field `name` (`name:value`, one leading space dropped).
fn field_value<'l>(line: &'l [u8], name: &[u8]) -> Option<&'l [u8]> {
    let rest = line.strip_prefix(name)?;
    if rest.is_empty() {
        return Some(rest);
    }
    let value = rest.strip_prefix(b":")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

#[cfg(test)]
mod tests;
