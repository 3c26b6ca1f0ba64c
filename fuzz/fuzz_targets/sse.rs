//! The SSE scanner: never panics, reports the same events however the bytes are cut into
//! chunks, and agrees with a plain line-by-line reading of the whole stream; with a small cap,
//! the pieces of each large event join to the data the reference reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "shared/cuts.rs"]
mod cuts;
use cuts::cuts;
use orgate::internals::{whatwg_reading, SseScanner, SseSink, MAX_EVENT_DATA};

/// What the scanner reports for `chunks`, and whether it ends at a line start / event boundary.
fn scan<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Vec<u8>>, bool, bool) {
    let mut scanner = SseScanner::new();
    let mut events = Vec::new();
    for chunk in chunks {
        scanner.feed(chunk, &mut |data: &[u8]| {
            assert!(data.len() <= MAX_EVENT_DATA, "event over the cap");
            events.push(data.to_vec());
        });
    }
    (events, scanner.at_line_start(), scanner.at_event_boundary())
}

/// The reference: the WHATWG reading of an event stream, restricted to what the scanner reports
/// (the `data` of each event that has at least one `data` field), on the whole input at once.
fn reference(bytes: &[u8]) -> (Vec<Vec<u8>>, bool, bool) {
    let mut events = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let mut has_data = false;
    let mut in_event = false;
    let mut line_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let end = match bytes[i] {
            b'\n' => i + 1,
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => i + 2,
            b'\r' => i + 1,
            _ => {
                i += 1;
                continue;
            }
        };
        let line = &bytes[line_start..i];
        if line.is_empty() {
            if has_data {
                events.push(std::mem::take(&mut data));
            }
            data.clear();
            has_data = false;
            in_event = false;
        } else {
            in_event = true;
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(colon) => {
                    let value = &line[colon + 1..];
                    (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &[][..]),
            };
            if name == b"data" {
                if has_data {
                    data.push(b'\n');
                }
                has_data = true;
                data.extend_from_slice(value);
            }
        }
        i = end;
        line_start = end;
    }
    let at_line_start = line_start == bytes.len();
    (events, at_line_start, at_line_start && !in_event)
}

/// A cap small enough that fuzzed inputs have events past it.
const SMALL_CAP: usize = 8;

/// Every event's data, whole or joined from its pieces, with whether it came in pieces.
#[derive(Default)]
struct Joined {
    events: Vec<(Vec<u8>, bool)>,
    large: Option<Vec<u8>>,
}

impl SseSink for Joined {
    fn event(&mut self, data: &[u8]) {
        assert!(self.large.is_none(), "a whole event inside a large one");
        assert!(data.len() <= SMALL_CAP, "event over the cap");
        self.events.push((data.to_vec(), false));
    }
    fn large_piece(&mut self, piece: &[u8]) {
        self.large.get_or_insert_default().extend_from_slice(piece);
    }
    fn large_end(&mut self) {
        let data = self.large.take().expect("a large event ended before any piece");
        self.events.push((data, true));
    }
}

/// The scanner with [`SMALL_CAP`] on `chunks`: events as the reference reads them, in pieces
/// exactly when over the cap.
fn check_small_cap<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, whole: &[u8]) {
    let mut scanner = SseScanner::with_cap(SMALL_CAP);
    let mut sink = Joined::default();
    for chunk in chunks {
        scanner.feed(chunk, &mut sink);
    }
    let want: Vec<(Vec<u8>, bool)> = whatwg_reading(whole)
        .into_iter()
        .map(|data| {
            let large = data.len() > SMALL_CAP;
            (data, large)
        })
        .collect();
    assert_eq!(sink.events, want, "small cap: events or pieces differ");
}

fuzz_target!(|bytes: &[u8]| {
    let whole = scan([bytes]);
    assert_eq!(whole, reference(bytes), "scanner and reference disagree");
    assert_eq!(
        scan(bytes.chunks(1)),
        whole,
        "byte-by-byte chunking changed the events"
    );
    assert_eq!(scan(cuts(bytes)), whole, "chunking changed the events");
    check_small_cap([bytes], bytes);
    check_small_cap(cuts(bytes), bytes);
    // Every cut right after a CR (the CRLF-split case), and empty chunks in between.
    let mut around_cr = Vec::new();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\r' {
            around_cr.push(&bytes[start..=i]);
            around_cr.push(&[][..]);
            start = i + 1;
        }
    }
    around_cr.push(&bytes[start..]);
    assert_eq!(
        scan(around_cr),
        whole,
        "cutting after CR changed the events"
    );
});
