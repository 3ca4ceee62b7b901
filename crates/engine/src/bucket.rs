//! Bucketing algorithm v1: which units fall inside a percentage and which variant of a split.
//!
//! Specified in `docs/bucketing.md`; summarised here:
//!
//! ```text
//! input  = domain (1 byte: 0x01 rollout, 0x02 split)
//!          ‖ len(salt) as u32 little-endian ‖ salt (UTF-8) ‖ unit (UTF-8)
//! hash   = MurmurHash3_x86_32(input, seed 0)
//! bucket = (hash × 100 000) >> 32            -- integer, in 0 ..= 99 999
//! ```
//!
//! A bucket is a slot of 0.001 %. A unit is inside a percentage `p` (in thousandths of a percent)
//! when `bucket < p`, so raising `p` only adds units. A split lays its variants' weights out as
//! consecutive ranges in variant declaration order, and the unit gets the variant whose range
//! holds its split bucket. Rollout and split buckets are hashed in separate domains, so ramping
//! the percentage of a rule never reshuffles which variant its units get. The salt is length-
//! prefixed, so no two different (salt, unit) pairs produce the same input.
//!
//! The test vectors in `tests/fixtures/bucketing-v1.json` pin this down and must never change;
//! a change to the algorithm is a new version.

use crate::hash::Murmur3;

/// Number of buckets: one per 0.001 %.
pub const BUCKETS: u32 = 100_000;

/// What the bucket is used for; each purpose hashes in its own domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// Is the unit inside the percentage?
    Rollout,
    /// Which variant of a weighted split?
    Split,
}

impl Domain {
    fn byte(self) -> u8 {
        match self {
            Domain::Rollout => 0x01,
            Domain::Split => 0x02,
        }
    }

    /// The name used in the test-vector fixtures.
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Rollout => "rollout",
            Domain::Split => "split",
        }
    }
}

/// A hasher with the domain and salt already absorbed: per unit, only the unit is hashed.
#[derive(Debug, Clone, Copy)]
pub struct Bucketer {
    prefix: Murmur3,
}

impl Bucketer {
    /// Precomputes the hash state for `domain` and `salt`.
    pub fn new(domain: Domain, salt: &str) -> Self {
        let mut prefix = Murmur3::new(0);
        prefix.write(&[domain.byte()]);
        // Salts longer than 4 GiB cannot occur: documents are far smaller.
        let len = u32::try_from(salt.len()).unwrap_or(u32::MAX);
        prefix.write(&len.to_le_bytes());
        prefix.write(salt.as_bytes());
        Self { prefix }
    }

    /// The 32-bit hash of `unit` under this domain and salt.
    #[inline]
    pub fn hash(&self, unit: &[u8]) -> u32 {
        self.prefix.finish_with(unit)
    }

    /// The bucket of `unit`, in `0..BUCKETS`.
    #[inline]
    pub fn bucket(&self, unit: &[u8]) -> u32 {
        project(self.hash(unit), BUCKETS)
    }
}

/// Projects a 32-bit hash onto `0..n` without floating point: `(hash × n) >> 32`.
pub fn project(hash: u32, n: u32) -> u32 {
    ((u64::from(hash) * u64::from(n)) >> 32) as u32
}

/// The bucket of `unit` for `salt` in `domain` (one-shot form of [`Bucketer`]).
pub fn bucket(domain: Domain, salt: &str, unit: &str) -> u32 {
    Bucketer::new(domain, salt).bucket(unit.as_bytes())
}

/// Converts a percentage (0–100) into thousandths of a percent, the bucket unit.
///
/// Returns `None` when it is out of range, not finite, or finer than 0.001 %.
pub fn percent_to_units(percent: f64) -> Option<u32> {
    if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
        return None;
    }
    let scaled = percent * 1000.0;
    let rounded = scaled.round();
    // Allow for binary representation error (12.345 is not exact) but nothing coarser.
    if (scaled - rounded).abs() > 1e-6 {
        return None;
    }
    Some(rounded as u32)
}

/// Renders an integer unit into a stack buffer, so integer ids bucket like their decimal text.
pub(crate) struct IntText {
    buf: [u8; 20],
    start: usize,
}

impl IntText {
    pub(crate) fn unsigned(mut n: u64) -> Self {
        let mut buf = [0u8; 20];
        let mut start = buf.len();
        loop {
            start -= 1;
            buf[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Self { buf, start }
    }

    /// Negative numbers render with a leading `-`; `i64::MIN` included.
    pub(crate) fn signed(n: i64) -> IntTextSigned {
        IntTextSigned {
            negative: n < 0,
            digits: Self::unsigned(n.unsigned_abs()),
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// A signed integer rendered as text, sign kept apart to avoid a larger buffer.
pub(crate) struct IntTextSigned {
    negative: bool,
    digits: IntText,
}

impl IntTextSigned {
    /// Hashes the text through `bucketer`.
    pub(crate) fn bucket(&self, bucketer: &Bucketer) -> u32 {
        let mut state = bucketer.prefix;
        if self.negative {
            state.write(b"-");
        }
        state.write(self.digits.as_bytes());
        project(state.finish(), BUCKETS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_conversion_accepts_thousandths_and_rejects_finer() {
        assert_eq!(percent_to_units(0.0), Some(0));
        assert_eq!(percent_to_units(0.001), Some(1));
        assert_eq!(percent_to_units(0.1), Some(100));
        assert_eq!(percent_to_units(12.345), Some(12_345));
        assert_eq!(percent_to_units(100.0), Some(100_000));
        assert_eq!(percent_to_units(0.0005), None);
        assert_eq!(percent_to_units(-1.0), None);
        assert_eq!(percent_to_units(100.001), None);
        assert_eq!(percent_to_units(f64::NAN), None);
    }

    #[test]
    fn projection_covers_the_whole_range() {
        assert_eq!(project(0, BUCKETS), 0);
        assert_eq!(project(u32::MAX, BUCKETS), BUCKETS - 1);
        assert_eq!(project(1 << 31, 100), 50);
    }

    #[test]
    fn integer_units_bucket_like_their_text() {
        let b = Bucketer::new(Domain::Rollout, "flag");
        for n in [0i64, 7, -7, 8_527_130_908, i64::MIN, i64::MAX] {
            assert_eq!(
                IntText::signed(n).bucket(&b),
                b.bucket(n.to_string().as_bytes()),
                "{n}"
            );
        }
    }

    #[test]
    fn domains_are_independent() {
        let rollout = Bucketer::new(Domain::Rollout, "s");
        let split = Bucketer::new(Domain::Split, "s");
        let same = (0..1000)
            .filter(|i| {
                let unit = format!("u{i}");
                rollout.bucket(unit.as_bytes()) == split.bucket(unit.as_bytes())
            })
            .count();
        assert!(same < 5, "{same} units share a bucket in both domains");
    }
}
