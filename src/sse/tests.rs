use proptest::prelude::*;

use super::*;

/// What a sink heard, in order: whole events, and large events as their pieces joined.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    Event(Vec<u8>),
    Large(Vec<u8>),
}

#[derive(Debug, Default)]
struct Recorder {
    heard: Vec<Heard>,
    /// The large event in progress: its pieces so far.
    large: Option<Vec<u8>>,
}

impl SseSink for Recorder {
    fn event(&mut self, data: &[u8]) {
        assert!(self.large.is_none(), "a whole event inside a large one");
        self.heard.push(Heard::Event(data.to_vec()));
    }
    fn large_piece(&mut self, piece: &[u8]) {
        self.large.get_or_insert_default().extend_from_slice(piece);
    }
    fn large_end(&mut self) {
        let data = self
            .large
            .take()
            .expect("a large event ended before any piece");
        self.heard.push(Heard::Large(data));
    }
}

/// What the scanner with `cap` tells a sink for `chunks`, checking after each chunk that it
/// keeps no more than its cap.
fn heard(cap: usize, chunks: &[&[u8]]) -> Vec<Heard> {
    let mut s = SseScanner::with_cap(cap);
    let mut sink = Recorder::default();
    for chunk in chunks {
        s.feed(chunk, &mut sink);
        assert!(
            s.data.len() <= cap,
            "kept {} bytes over a cap of {cap}",
            s.data.len()
        );
    }
    sink.heard
}

/// What the scanner should tell: the reference's events, whole up to `cap` and large past it.
fn expected(cap: usize, stream: &[u8]) -> Vec<Heard> {
    whatwg_reading(stream)
        .into_iter()
        .map(|data| match data.len() <= cap {
            true => Heard::Event(data),
            false => Heard::Large(data),
        })
        .collect()
}

fn events_of(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut scanner = SseScanner::new();
    let mut out = Vec::new();
    for chunk in chunks {
        scanner.feed(chunk, &mut |data: &[u8]| out.push(data.to_vec()));
    }
    out
}

/// `bytes` cut at `cuts` (any order, any values: they are sorted and clamped).
fn cut<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for c in cuts {
        chunks.push(&bytes[start..c]);
        start = c;
    }
    chunks.push(&bytes[start..]);
    chunks
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
    assert_eq!(events, whatwg_reading(SAMPLE));
}

#[test]
fn joins_multi_line_data_and_tracks_boundaries() {
    let mut s = SseScanner::new();
    let mut out = Vec::new();
    let mut sink = |d: &[u8]| out.push(d.to_vec());
    s.feed(b"data: a\ndata: b\n", &mut sink);
    assert!(!s.at_event_boundary());
    assert!(s.at_line_start());
    s.feed(b"\ndata: partial", &mut sink);
    assert!(!s.at_line_start());
    s.feed(b"\r", &mut sink);
    s.feed(b"\n\n", &mut sink);
    assert!(s.at_event_boundary());
    assert_eq!(out, vec![b"a\nb".to_vec(), b"partial".to_vec()]);
}

#[test]
fn whole_events_in_a_chunk_are_read_in_place_and_nothing_is_kept() {
    let mut s = SseScanner::new();
    let mut out = Vec::new();
    let mut sink = |d: &[u8]| out.push(d.to_vec());
    for _ in 0..3 {
        s.feed(SAMPLE, &mut sink);
    }
    // A held stream costs no buffer while its chunks are whole events.
    assert_eq!(s.data.capacity(), 0);
    // Only what continues into the next chunk is kept.
    s.feed(b"data: {\"a\":1}\n", &mut sink);
    assert_eq!(s.data, b"{\"a\":1}");
    s.feed(b"\n", &mut sink);
    assert_eq!(out.len(), 10);
    assert_eq!(out.last().unwrap(), b"{\"a\":1}");
}

#[test]
fn a_field_name_split_across_chunks_is_still_recognised() {
    for (a, b) in [
        (&b"da"[..], &b"ta: {\"x\":1}\n\n"[..]),
        (b"d", b"ata:{\"x\":1}\n\n"),
        (b"data", b": {\"x\":1}\n\n"),
        (b"data:", b" {\"x\":1}\n\n"),
        (b"data: ", b"{\"x\":1}\n\n"),
    ] {
        assert_eq!(
            events_of(&[a, b]),
            vec![b"{\"x\":1}".to_vec()],
            "{a:?} | {b:?}"
        );
    }
    // The space after the colon is dropped once, even when it starts the next chunk.
    assert_eq!(events_of(&[b"data:", b"  x\n\n"]), vec![b" x".to_vec()]);
    // `data` alone is a data line with an empty value; `dat` and `datas` are other fields.
    assert_eq!(
        events_of(&[b"dat", b"a\ndat", b"\ndata", b"s: no\n\n"]),
        vec![b"".to_vec()]
    );
    // Split at every byte of the sample, with a cap that makes one of its events large.
    for at in 0..=SAMPLE.len() {
        let chunks = [&SAMPLE[..at], &SAMPLE[at..]];
        assert_eq!(heard(13, &chunks), expected(13, SAMPLE), "split at {at}");
    }
}

#[test]
fn a_data_line_longer_than_the_cap_is_handed_on_in_pieces() {
    let cap = 8;
    let value: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
    let mut stream = b"data: ".to_vec();
    stream.extend_from_slice(&value);
    stream.extend_from_slice(b"\ndata: tail\n\ndata: ok\n\n");
    let mut want = value.clone();
    want.extend_from_slice(b"\ntail");
    let want = vec![Heard::Large(want), Heard::Event(b"ok".to_vec())];
    // Whole, then in pieces of 10 bytes: never more than the cap kept (`heard` checks).
    assert_eq!(heard(cap, &[&stream]), want);
    let chunks: Vec<&[u8]> = stream.chunks(10).collect();
    assert_eq!(heard(cap, &chunks), want);
    // The pieces come as the bytes arrive, not at the end of the event.
    let mut s = SseScanner::with_cap(cap);
    let mut sink = Recorder::default();
    s.feed(&stream[..50], &mut sink);
    assert_eq!(sink.large.as_deref(), Some(&stream[6..50]));
    assert!(s.data.capacity() <= cap);
}

#[test]
fn large_events_at_the_default_cap_are_not_buffered() {
    let mut s = SseScanner::new();
    let mut events = 0;
    let mut sink = |_: &[u8]| events += 1;
    let big = vec![b'x'; MAX_EVENT_DATA + 100];
    s.feed(b"data: ", &mut sink);
    s.feed(&big, &mut sink);
    assert!(s.data.is_empty());
    s.feed(b"\n\ndata: ok\n\n", &mut sink);
    // A closure hears whole events only.
    assert_eq!(events, 1);
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
        s.feed(chunk, &mut |_: &[u8]| {});
    }
    assert!(!s.at_event_boundary());
}

/// One line of a generated stream: a field or comment the scanner must read or skip.
fn line() -> impl Strategy<Value = Vec<u8>> {
    let value = proptest::collection::vec(
        prop_oneof![Just(b'x'), Just(b' '), Just(b':'), Just(b'd'), Just(b'{')],
        0..24,
    );
    let name = prop_oneof![
        Just(&b"data: "[..]),
        Just(&b"data:"[..]),
        Just(&b"data"[..]),
        Just(&b"data:  "[..]),
        Just(&b": "[..]),
        Just(&b"event: "[..]),
        Just(&b"id:"[..]),
        Just(&b"dat:"[..]),
        Just(&b"datas:"[..]),
        Just(&b""[..]),
    ];
    let ending = prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..]), Just(&b"\r"[..])];
    (name, value, ending).prop_map(|(name, value, ending)| {
        let mut line = name.to_vec();
        // A blank line stays blank: it is what ends events.
        if !name.is_empty() {
            line.extend_from_slice(&value);
        }
        line.extend_from_slice(ending);
        line
    })
}

proptest! {
    /// However a stream of events is cut into chunks, and whatever the cap: events within the
    /// cap come whole, larger ones as pieces that join to their data, all as the reference
    /// reads them and in its order.
    #[test]
    fn events_and_large_events_match_the_reference(
        lines in proptest::collection::vec(line(), 0..40),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
        cap in 0usize..40,
    ) {
        let stream = lines.concat();
        let cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        prop_assert_eq!(heard(cap, &cut(&stream, &cuts)), expected(cap, &stream));
    }

    /// The same for bytes drawn from the few that matter, in any order.
    #[test]
    fn any_mix_of_the_bytes_that_matter_matches_the_reference(
        stream in proptest::collection::vec(
            prop_oneof![Just(b'd'), Just(b'a'), Just(b't'), Just(b':'), Just(b' '), Just(b'\r'), Just(b'\n'), Just(b'x')],
            0..200,
        ),
        cuts in proptest::collection::vec(0usize..200, 0..24),
        cap in 0usize..16,
    ) {
        prop_assert_eq!(heard(cap, &cut(&stream, &cuts)), expected(cap, &stream));
    }

    /// However the sample is cut into chunks, the same events come out.
    #[test]
    fn chunking_does_not_change_events(cuts in proptest::collection::vec(0usize..SAMPLE.len(), 0..12)) {
        prop_assert_eq!(events_of(&cut(SAMPLE, &cuts)), events_of(&[SAMPLE]));
    }

    /// Arbitrary bytes never panic, and never make the scanner hold more than its cap.
    #[test]
    fn any_bytes_are_safe(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
        let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        heard(16, &chunks);
    }
}
