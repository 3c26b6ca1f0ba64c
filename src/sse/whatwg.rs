//! The reference the scanner is held to: the WHATWG HTML standard's reading of an event stream
//! ("9.2.6 Interpreting an event stream"), done plainly on a whole buffer, restricted to what
//! the scanner reports: the `data` of each dispatched event.
//!
//! Two simplifications, both shared with the scanner: the stream is read as bytes (the standard
//! decodes UTF-8 first, which changes no line boundary and no field name), and a leading byte
//! order mark is not dropped (OpenRouter never sends one).

/// The `data` of every event dispatched by `stream`, in order. An event not ended by a blank
/// line before the stream ends is not dispatched, as the standard says.
#[doc(hidden)]
pub fn whatwg_reading(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut events = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    for line in lines(stream) {
        if line.is_empty() {
            // Dispatch: nothing if no data line came; else the data less its last `\n`.
            if !data.is_empty() {
                data.pop();
                events.push(std::mem::take(&mut data));
            }
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        if field == b"data" {
            data.extend_from_slice(value);
            data.push(b'\n');
        }
    }
    events
}

/// The lines of `stream` that end (CRLF, LF or CR), without their endings; a last line with no
/// ending is left out.
fn lines(stream: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < stream.len() {
        match stream[i] {
            b'\n' => {
                lines.push(&stream[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&stream[start..i]);
                if stream.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    lines
}
