//! Cutting an input into pieces the way a network might, deterministically from the input, for
//! the targets that check a reader learns the same whatever the cuts.

/// A small deterministic generator, seeded from the input, for chunk sizes.
pub fn cuts(bytes: &[u8]) -> Vec<&[u8]> {
    let mut state = bytes.iter().fold(0x9e37_79b9_7f4a_7c15_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) | 1;
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Mostly short chunks, sometimes empty ones, now and then a long one.
        let len = match state % 8 {
            0 => 0,
            7 => (state >> 8) as usize % 64,
            n => n as usize,
        }
        .min(rest.len());
        let (chunk, tail) = rest.split_at(len);
        out.push(chunk);
        rest = tail;
    }
    out
}
