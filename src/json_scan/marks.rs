//! The bytes of a 64-byte block that matter inside a JSON string, as bitmasks: the string
//! scanner's view of long strings (`messages` contents), where it otherwise stops at every
//! escape in a loop whose exit the CPU cannot predict.
//!
//! On x86_64 the masks come from SSE2 compares, 16 bytes at a time. Elsewhere they come from a
//! plain loop over the bytes, slower than the scanner's eight-byte loop, which is used there
//! instead ([`Marks::VECTOR`]); that loop is also the reference the tests hold SSE2 to.

/// Bit `n` of each mask is set when byte `n` of the block is of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Marks {
    pub(super) quote: u64,
    pub(super) backslash: u64,
    /// Below 0x20: never allowed raw inside a string.
    pub(super) control: u64,
}

impl Marks {
    /// Whether [`Marks::of`] is vector code on this target, and so worth calling.
    pub(super) const VECTOR: bool = cfg!(target_arch = "x86_64");

    /// The marks of `block`.
    #[inline]
    pub(super) fn of(block: &[u8; 64]) -> Marks {
        #[cfg(target_arch = "x86_64")]
        {
            sse2::marks(block)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Marks::by_byte(block)
        }
    }

    /// One byte at a time: the portable version, and the reference for the vector one.
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    pub(super) fn by_byte(block: &[u8; 64]) -> Marks {
        let mut marks = Marks::default();
        for (n, &byte) in block.iter().enumerate() {
            let bit = 1u64 << n;
            match byte {
                b'"' => marks.quote |= bit,
                b'\\' => marks.backslash |= bit,
                0..=0x1f => marks.control |= bit,
                _ => {}
            }
        }
        marks
    }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_set1_epi8, _mm_set_epi64x,
    };

    use super::Marks;

    #[inline]
    pub(super) fn marks(block: &[u8; 64]) -> Marks {
        // SAFETY: SSE2 is part of the x86_64 baseline (every x86_64 CPU has it, and Rust's
        // x86_64 targets compile with it on), so the feature `classify` asks for is present.
        #[allow(unsafe_code)]
        unsafe {
            classify(block)
        }
    }

    #[target_feature(enable = "sse2")]
    fn classify(block: &[u8; 64]) -> Marks {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let highest_control = _mm_set1_epi8(0x1f);
        let mut marks = Marks::default();
        for (n, lane) in block.chunks_exact(16).enumerate() {
            let v = load(lane);
            // `movemask` packs the 16 compare results into the low 16 bits.
            let mask = |cmp: __m128i| u64::from(_mm_movemask_epi8(cmp) as u16) << (16 * n);
            marks.quote |= mask(_mm_cmpeq_epi8(v, quote));
            marks.backslash |= mask(_mm_cmpeq_epi8(v, backslash));
            // byte ≤ 0x1f (unsigned) exactly when min(byte, 0x1f) is the byte itself.
            marks.control |= mask(_mm_cmpeq_epi8(_mm_min_epu8(v, highest_control), v));
        }
        marks
    }

    /// Sixteen bytes into a vector, from two little-endian words: no pointer, so no `unsafe`
    /// (the compiler makes it one unaligned load).
    #[inline]
    #[target_feature(enable = "sse2")]
    fn load(lane: &[u8]) -> __m128i {
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&lane[at..at + 8]);
            u64::from_le_bytes(bytes) as i64
        };
        _mm_set_epi64x(word(8), word(0))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Marks;

    #[test]
    fn each_kind_of_byte_sets_its_own_bit() {
        let mut block = [b'a'; 64];
        block[0] = b'"';
        block[17] = b'\\';
        block[33] = 0x1f;
        block[48] = 0;
        block[63] = b'"';
        block[40] = 0x20; // a space is plain text
        block[41] = 0x80; // so is a UTF-8 continuation byte (signed, it is negative)
        let marks = Marks::of(&block);
        assert_eq!(marks.quote, 1 | 1 << 63);
        assert_eq!(marks.backslash, 1 << 17);
        assert_eq!(marks.control, 1 << 33 | 1 << 48);
    }

    proptest! {
        #[test]
        fn the_vector_marks_are_the_bytewise_marks(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x21, any::<u8>()], 64),
        ) {
            let block: [u8; 64] = bytes.try_into().unwrap();
            prop_assert_eq!(Marks::of(&block), Marks::by_byte(&block));
        }
    }
}
