//! Streaming `MurmurHash3` (x86, 32-bit variant).
//!
//! [`Murmur3`] is an incremental hasher: bytes may be fed in any number of
//! chunks of any size and the result equals hashing the concatenation in one
//! go with [`murmur3_x86_32`]. The state is small and `Copy`, so a caller can
//! hash a fixed prefix once (for example a per-flag salt), keep the state, and
//! for each call copy it, write the variable part and [`finish`](Murmur3::finish).
//!
//! The algorithm, as defined by Austin Appleby's `MurmurHash3_x86_32`:
//!
//! * the input is split into little-endian 32-bit blocks; each block `k` is
//!   scrambled (`k *= C1; k = rotl(k, 15); k *= C2`) and mixed into the state
//!   (`h ^= k; h = rotl(h, 13); h = h * 5 + 0xe654_6b64`);
//! * the final 1–3 leftover bytes form a little-endian partial block that is
//!   scrambled the same way and xored into `h` (without the rotate/multiply
//!   step);
//! * `h ^= len` (the total length in bytes, as a 32-bit value), followed by the
//!   `fmix32` avalanche finalizer.
//!
//! Everything here is allocation-free and uses only wrapping arithmetic.

/// First block-scrambling multiplier.
const C1: u32 = 0xcc9e_2d51;
/// Second block-scrambling multiplier.
const C2: u32 = 0x1b87_3593;

/// Scrambles one 32-bit block (or the zero-padded tail) before it is mixed in.
#[inline]
const fn scramble(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

/// Mixes one full little-endian block into the running hash.
#[inline]
const fn mix_block(h: u32, k: u32) -> u32 {
    (h ^ scramble(k))
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// The `fmix32` finalizer: forces every input bit to affect every output bit.
#[inline]
const fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// Incremental `MurmurHash3` `x86_32` state.
///
/// Feeding bytes with [`write`](Self::write) in any split of chunks gives the
/// same [`finish`](Self::finish) result as feeding them all at once. The state
/// is `Copy`: hash a common prefix once, then copy the state per use.
///
/// ```
/// use switchyard_engine::hash::{murmur3_x86_32, Murmur3};
///
/// let salted = Murmur3::new(0).with(b"flag-salt:");
/// let a = salted.with(b"user-1").finish();
/// let b = salted.with(b"user-2").finish();
/// assert_eq!(a, murmur3_x86_32(b"flag-salt:user-1", 0));
/// # let _ = b;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Murmur3 {
    /// Running hash over all complete 4-byte blocks seen so far.
    h1: u32,
    /// Pending bytes of an incomplete block; only `tail[..tail_len]` is valid.
    tail: [u8; 4],
    /// Number of valid bytes in `tail` (always 0..=3 between calls).
    tail_len: u8,
    /// Total number of bytes written, modulo 2^32 (as the algorithm uses it).
    len: u32,
}

impl Murmur3 {
    /// A new state with `seed`.
    #[must_use]
    #[inline]
    pub const fn new(seed: u32) -> Self {
        Self {
            h1: seed,
            tail: [0; 4],
            tail_len: 0,
            len: 0,
        }
    }

    /// Feeds `bytes`; feeding in any split of chunks gives the same result as
    /// feeding them at once.
    ///
    /// Complete 4-byte blocks are read straight from `bytes`; only a trailing
    /// partial block (at most 3 bytes) is buffered in the state.
    #[inline]
    // Truncating casts are intentional: see the comments at each one.
    #[allow(clippy::cast_possible_truncation)]
    pub fn write(&mut self, bytes: &[u8]) {
        // The algorithm folds in the length as a 32-bit value; truncating each
        // chunk length and adding with wrap-around yields the total mod 2^32.
        let chunk_len = bytes.len() as u32;
        self.len = self.len.wrapping_add(chunk_len);

        let mut rest = bytes;
        let mut h1 = self.h1;

        // Complete a block left pending by a previous call, if any.
        let pending = usize::from(self.tail_len);
        if pending != 0 {
            let take = (4 - pending).min(rest.len());
            let (head, after) = rest.split_at(take);
            // At most 3 bytes: a loop, not a `memcpy` call.
            for (slot, &b) in self.tail[pending..].iter_mut().zip(head) {
                *slot = b;
            }
            rest = after;
            let filled = pending + take;
            if filled < 4 {
                // Still not a full block (the input was that short).
                self.tail_len = filled as u8; // filled <= 3
                return;
            }
            h1 = mix_block(h1, u32::from_le_bytes(self.tail));
        }

        // Full blocks directly from the slice.
        let mut blocks = rest.chunks_exact(4);
        for b in &mut blocks {
            h1 = mix_block(h1, u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        }

        // Buffer the leftover 0..=3 bytes.
        let rem = blocks.remainder();
        for (slot, &b) in self.tail.iter_mut().zip(rem) {
            *slot = b;
        }
        self.tail_len = rem.len() as u8; // rem.len() <= 3
        self.h1 = h1;
    }

    /// Convenience: `write` returning self (for chaining on a copy).
    #[must_use]
    #[inline]
    pub fn with(mut self, bytes: &[u8]) -> Self {
        self.write(bytes);
        self
    }

    /// The final 32-bit hash (does not consume; the state can be cloned
    /// before finishing to reuse a prefix).
    #[must_use]
    #[inline]
    pub fn finish(&self) -> u32 {
        self.finish_with(&[])
    }

    /// `self.with(bytes).finish()`, computed in registers: nothing is written back to a state,
    /// so a hot caller (a bucketer, once per evaluation) pays neither the copies of the state
    /// nor the store-to-load stalls that writing it and reading it back would cost.
    #[must_use]
    #[inline]
    // Truncating casts are intentional: the length is folded in modulo 2^32, as `write` does.
    #[allow(clippy::cast_possible_truncation)]
    pub fn finish_with(&self, bytes: &[u8]) -> u32 {
        let mut h = self.h1;
        let len = self.len.wrapping_add(bytes.len() as u32);
        let pending = usize::from(self.tail_len);
        // The block being filled, little-endian, from the valid pending bytes only.
        let mut k = if pending == 0 {
            0
        } else {
            u32::from_le_bytes(self.tail) & (u32::MAX >> (8 * (4 - pending)))
        };
        let mut filled = pending;
        let mut rest = bytes;
        if pending != 0 {
            let take = (4 - pending).min(rest.len());
            for (i, &b) in rest[..take].iter().enumerate() {
                k |= u32::from(b) << (8 * (pending + i));
            }
            rest = &rest[take..];
            filled += take;
            if filled == 4 {
                h = mix_block(h, k);
                k = 0;
                filled = 0;
            }
        }
        if filled == 0 {
            let mut blocks = rest.chunks_exact(4);
            for b in &mut blocks {
                h = mix_block(h, u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            }
            let rem = blocks.remainder();
            for (i, &b) in rem.iter().enumerate() {
                k |= u32::from(b) << (8 * i);
            }
            filled = rem.len();
        }
        if filled != 0 {
            h ^= scramble(k);
        }
        fmix32(h ^ len)
    }
}

/// One-shot `MurmurHash3` `x86_32` of `bytes` with `seed`.
#[must_use]
#[inline]
pub fn murmur3_x86_32(bytes: &[u8], seed: u32) -> u32 {
    Murmur3::new(seed).with(bytes).finish()
}

#[cfg(test)]
mod tests {
    use super::{murmur3_x86_32, Murmur3};

    /// Published `MurmurHash3_x86_32` vectors, each confirmed against an
    /// independent reference implementation (Python `mmh3`, unsigned).
    const VECTORS: &[(&[u8], u32, u32)] = &[
        (b"", 0, 0),
        (b"", 1, 0x514E_28B7),
        (b"", 0xffff_ffff, 0x81F1_6F39),
        (b"\0\0\0\0", 0, 0x2362_F9DE),
        (b"aaaa", 0x9747_b28c, 0x5A97_808A),
        (b"abc", 0, 0xB3DD_93FA),
        (b"Hello, world!", 0x9747_b28c, 0x2488_4CBA),
        (
            b"The quick brown fox jumps over the lazy dog",
            0x9747_b28c,
            0x2FA8_26CD,
        ),
        (b"hello", 0, 0x248B_FA47),
    ];

    /// Deterministic pseudo-random test bytes (no allocation).
    fn sample(seed: u32) -> [u8; 40] {
        let mut x = seed.wrapping_mul(0x9E37_79B9) | 1;
        let mut out = [0u8; 40];
        for b in &mut out {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = (x >> 24) as u8;
        }
        out
    }

    #[test]
    fn published_vectors() {
        for &(input, seed, expected) in VECTORS {
            assert_eq!(
                murmur3_x86_32(input, seed),
                expected,
                "one-shot {input:?} seed {seed:#x}"
            );
            let mut s = Murmur3::new(seed);
            for b in input {
                s.write(core::slice::from_ref(b));
            }
            assert_eq!(s.finish(), expected, "bytewise {input:?} seed {seed:#x}");
        }
    }

    #[test]
    fn streaming_matches_one_shot_for_all_splits() {
        for (round, seed) in [(7u32, 0u32), (8, 1), (9, 0x9747_b28c), (10, 0xffff_ffff)] {
            let data = sample(round);
            for len in 0..=data.len() {
                let input = &data[..len];
                let expected = murmur3_x86_32(input, seed);

                // Every two-way split.
                for i in 0..=len {
                    let got = Murmur3::new(seed)
                        .with(&input[..i])
                        .with(&input[i..])
                        .finish();
                    assert_eq!(got, expected, "len {len} split {i} seed {seed:#x}");
                }

                // Every three-way split.
                for i in 0..=len {
                    for j in i..=len {
                        let mut s = Murmur3::new(seed);
                        s.write(&input[..i]);
                        s.write(&input[i..j]);
                        s.write(&input[j..]);
                        assert_eq!(
                            s.finish(),
                            expected,
                            "len {len} splits {i},{j} seed {seed:#x}"
                        );
                    }
                }

                // Byte at a time, with empty writes interleaved.
                let mut s = Murmur3::new(seed);
                for b in input {
                    s.write(&[]);
                    s.write(core::slice::from_ref(b));
                }
                assert_eq!(s.finish(), expected, "bytewise len {len} seed {seed:#x}");
            }
        }
    }

    #[test]
    fn prefix_state_is_reusable() {
        let salt = b"flag-salt:";
        let prefix = Murmur3::new(42).with(salt);
        let snapshot = prefix;
        for unit in [&b""[..], b"u", b"user-1", b"user-12345", b"\xff\x00\x80"] {
            let got = prefix.with(unit).finish();
            let mut whole = [0u8; 32];
            whole[..salt.len()].copy_from_slice(salt);
            whole[salt.len()..salt.len() + unit.len()].copy_from_slice(unit);
            let expected = murmur3_x86_32(&whole[..salt.len() + unit.len()], 42);
            assert_eq!(got, expected, "unit {unit:?}");
        }
        // Finishing does not disturb the state.
        assert_eq!(prefix.finish(), snapshot.finish());
        assert_eq!(prefix.finish(), murmur3_x86_32(salt, 42));
    }

    #[test]
    fn finish_with_equals_writing_then_finishing() {
        for (round, seed) in [(11u32, 0u32), (12, 0x9747_b28c)] {
            let data = sample(round);
            for split in 0..=data.len() {
                for end in split..=data.len() {
                    let prefix = Murmur3::new(seed).with(&data[..split]);
                    let unit = &data[split..end];
                    assert_eq!(
                        prefix.finish_with(unit),
                        prefix.with(unit).finish(),
                        "prefix {split} unit {} seed {seed:#x}",
                        unit.len()
                    );
                }
            }
        }
        // Stale bytes beyond the pending tail (left by an earlier, longer tail) are ignored.
        let mut s = Murmur3::new(3);
        s.write(b"abc");
        s.write(b"d");
        s.write(b"e");
        assert_eq!(s.finish_with(b"fg"), murmur3_x86_32(b"abcdefg", 3));
    }

    #[test]
    fn new_is_const() {
        const S: Murmur3 = Murmur3::new(0);
        assert_eq!(S.finish(), 0);
    }
}
