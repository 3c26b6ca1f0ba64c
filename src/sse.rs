//! An incremental Server-Sent Events scanner: it watches bytes go by and reports each event's
//! `data` when the event ends, whatever the chunk boundaries.
//!
//! It never holds the stream back: callers forward every chunk as it arrives and only *feed* it
//! here. A line, or an event, that lies whole in a chunk is read where it is; the only state
//! kept between chunks is what continues into the next one (the line and the data of the event
//! in progress, bounded by [`MAX_EVENT_DATA`]), which is what lets events split across chunks
//! still be read. A stream whose chunks are whole events holds no buffer at all.

/// Events whose data grows past this are not reported (their bytes still pass through).
pub const MAX_EVENT_DATA: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct SseScanner {
    /// The line in progress (only its first bytes matter until we know its field name).
    line: Vec<u8>,
    /// The current line is a `data:` line longer than the cap: keep skipping it.
    line_overflow: bool,
    /// The `data` of the event in progress, lines joined by `\n`.
    data: Vec<u8>,
    /// The event in progress has at least one data line.
    has_data: bool,
    /// The event in progress overflowed; it will not be reported.
    data_overflow: bool,
    /// Anything (a field, a comment) has been seen since the last blank line.
    in_event: bool,
    /// The last byte was `\r`: a following `\n` belongs to the same line ending.
    after_cr: bool,
}

impl SseScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scans `chunk`, calling `on_event` with the data of each event that ends in it.
    ///
    /// A line that lies whole in `chunk` is read where it is, and so is the data of an event
    /// with one `data` line that ends in `chunk` (the usual upstream chunk: whole events):
    /// only what continues into the next chunk is copied and kept.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(&[u8])) {
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
                self.push_line_bytes(rest);
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
            if self.line.is_empty() && !self.line_overflow {
                self.end_line(Line::InChunk(line), &mut pending, &mut on_event);
            } else {
                self.push_line_bytes(line);
                self.end_line(Line::Kept, &mut pending, &mut on_event);
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
        self.line.is_empty() && !self.line_overflow && !self.in_event
    }

    /// True when the bytes seen so far end at the end of a line.
    pub fn at_line_start(&self) -> bool {
        self.line.is_empty() && !self.line_overflow
    }

    fn push_line_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.line_overflow {
            return;
        }
        if self.line.len() + bytes.len() > MAX_EVENT_DATA + 8 {
            self.line_overflow = true;
            self.line.clear();
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    /// Ends a line: `line` is where its bytes are. `pending` is the event's data while it is
    /// still a slice of the chunk being fed (see [`SseScanner::feed`]).
    fn end_line<'c>(
        &mut self,
        line: Line<'c>,
        pending: &mut Option<&'c [u8]>,
        on_event: &mut impl FnMut(&[u8]),
    ) {
        let (empty, overflow) = match line {
            Line::InChunk(bytes) => (bytes.is_empty(), bytes.len() > MAX_EVENT_DATA + 8),
            Line::Kept => (self.line.is_empty(), self.line_overflow),
        };
        if empty && !overflow {
            // A blank line dispatches the event in progress.
            if self.has_data && !self.data_overflow {
                on_event(pending.take().unwrap_or(&self.data));
            }
            *pending = None;
            self.data.clear();
            self.has_data = false;
            self.data_overflow = false;
            self.in_event = false;
            return;
        }
        self.in_event = true;
        if overflow {
            // Only a data line can usefully be this long; either way its event is lost to us.
            self.data_overflow = true;
            self.line_overflow = false;
            self.line.clear();
            return;
        }
        match line {
            Line::InChunk(bytes) => {
                let Some(value) = field_value(bytes, b"data") else {
                    return;
                };
                if self.has_data {
                    self.push_data(value, pending);
                } else if value.len() > MAX_EVENT_DATA {
                    self.has_data = true;
                    self.data_overflow = true;
                } else {
                    // The event's first data line: read where it is if the event ends in this
                    // chunk too.
                    self.has_data = true;
                    *pending = Some(value);
                }
            }
            Line::Kept => {
                let kept = std::mem::take(&mut self.line);
                if let Some(value) = field_value(&kept, b"data") {
                    self.push_data(value, pending);
                }
                self.line = kept;
                self.line.clear();
            }
        }
    }

    /// Appends a data line's `value` to the event's data, after what `pending` holds of it.
    fn push_data(&mut self, value: &[u8], pending: &mut Option<&[u8]>) {
        if let Some(first) = pending.take() {
            self.data.extend_from_slice(first);
        }
        if self.has_data {
            self.data.push(b'\n');
        }
        self.has_data = true;
        if self.data.len() + value.len() > MAX_EVENT_DATA {
            self.data_overflow = true;
        } else {
            self.data.extend_from_slice(value);
        }
    }
}

/// Where the bytes of a line that has just ended are.
#[derive(Clone, Copy)]
enum Line<'c> {
    /// Whole in the chunk being fed.
    InChunk(&'c [u8]),
    /// Begun in an earlier chunk: in [`SseScanner::line`].
    Kept,
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn events_of(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut scanner = SseScanner::new();
        let mut out = Vec::new();
        for chunk in chunks {
            scanner.feed(chunk, |data| out.push(data.to_vec()));
        }
        out
    }

    const SAMPLE: &[u8] = b": OPENROUTER PROCESSING\n\ndata: {\"id\":\"gen-1\"}\n\ndata: {\"usage\":{}}\r\n\r\ndata: [DONE]\n\n";

    #[test]
    fn reads_events_and_skips_comments() {
        let events = events_of(&[SAMPLE]);
        assert_eq!(
            events,
            vec![
                b"{\"id\":\"gen-1\"}".to_vec(),
                b"{\"usage\":{}}".to_vec(),
                b"[DONE]".to_vec()
            ]
        );
    }

    #[test]
    fn joins_multi_line_data_and_tracks_boundaries() {
        let mut s = SseScanner::new();
        let mut out = Vec::new();
        s.feed(b"data: a\ndata: b\n", |d| out.push(d.to_vec()));
        assert!(!s.at_event_boundary());
        assert!(s.at_line_start());
        s.feed(b"\ndata: partial", |d| out.push(d.to_vec()));
        assert!(!s.at_line_start());
        assert_eq!(out, vec![b"a\nb".to_vec()]);
        s.feed(b"\r", |d| out.push(d.to_vec()));
        s.feed(b"\n\n", |d| out.push(d.to_vec()));
        assert!(s.at_event_boundary());
        assert_eq!(out.last().unwrap(), b"partial");
    }

    #[test]
    fn whole_events_in_a_chunk_are_read_in_place_and_nothing_is_kept() {
        let mut s = SseScanner::new();
        let mut out = Vec::new();
        for _ in 0..3 {
            s.feed(SAMPLE, |d| out.push(d.to_vec()));
        }
        assert_eq!(out.len(), 9);
        // A held stream costs no buffer while its chunks are whole events.
        assert_eq!((s.line.capacity(), s.data.capacity()), (0, 0));
        // Only what continues into the next chunk is kept.
        s.feed(b"data: {\"a\":1}\n", |d| out.push(d.to_vec()));
        assert_eq!(s.data, b"{\"a\":1}");
        s.feed(b"\n", |d| out.push(d.to_vec()));
        assert_eq!(out.last().unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn oversized_events_are_dropped_not_buffered() {
        let mut s = SseScanner::new();
        let mut out = 0;
        let big = vec![b'x'; MAX_EVENT_DATA + 100];
        s.feed(b"data: ", |_| out += 1);
        s.feed(&big, |_| out += 1);
        assert!(s.line.capacity() <= MAX_EVENT_DATA * 2);
        s.feed(b"\n\ndata: ok\n\n", |_| out += 1);
        assert_eq!(out, 1);
    }

    #[test]
    fn an_empty_chunk_between_cr_and_lf_keeps_them_one_line_ending() {
        // Found by fuzzing (fuzz/fuzz_targets/sse.rs): an empty chunk right after a `\r` used
        // to forget it, so the `\n` that followed read as a blank line and split the event.
        assert_eq!(
            events_of(&[b"data: a\r", b"", b"\ndata: b\n\n"]),
            vec![b"a\nb".to_vec()]
        );
        let mut s = SseScanner::new();
        for chunk in [&b":\r"[..], b"", b"\n"] {
            s.feed(chunk, |_| {});
        }
        assert!(!s.at_event_boundary());
    }

    proptest! {
        /// However the stream is cut into chunks, the same events come out.
        #[test]
        fn chunking_does_not_change_events(cuts in proptest::collection::vec(0usize..SAMPLE.len(), 0..12)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for cut in cuts {
                chunks.push(&SAMPLE[start..cut]);
                start = cut;
            }
            chunks.push(&SAMPLE[start..]);
            prop_assert_eq!(events_of(&chunks), events_of(&[SAMPLE]));
        }

        /// Arbitrary bytes never panic, and never make the scanner hold more than its cap.
        #[test]
        fn any_bytes_are_safe(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut s = SseScanner::new();
            for chunk in &chunks {
                s.feed(chunk, |d| assert!(d.len() <= MAX_EVENT_DATA));
            }
        }
    }
}
