//! Deterministic pseudo-randomness for the simulator: splitmix64 mixing, a seeded stream,
//! string hashing and seed-derived UUIDs.
//!
//! Everything the simulator invents (UUIDs, sizes, RRD values) comes from here so that one
//! seed always describes the same pool.

/// The splitmix64 finaliser: a bijective, well-avalanched 64-bit mix.
pub(super) const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over the bytes, then mixed with the seed; stable across runs and platforms.
pub(super) fn hash_str(seed: u64, s: &str) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix(h ^ mix(seed))
}

/// Maps 64 random bits to a double in [0, 1) using the top 53 bits.
pub(super) fn unit(bits: u64) -> f64 {
    // 2^53 fits exactly in an f64, and so does every 53-bit integer.
    (bits >> 11) as f64 / 9_007_199_254_740_992.0
}

/// A seeded splitmix64 stream.
#[derive(Debug, Clone)]
pub(super) struct SplitMix(u64);

impl SplitMix {
    #[cfg(test)]
    pub(super) fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// An independent stream for a named purpose, so that adding draws to one purpose does
    /// not shift the values of another.
    pub(super) fn for_purpose(seed: u64, purpose: &str) -> Self {
        SplitMix(hash_str(seed, purpose))
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[cfg(test)]
    pub(super) fn unit(&mut self) -> f64 {
        unit(self.next_u64())
    }

    /// Uniform in `0..n` (`n > 0`); the modulo bias is irrelevant for a simulator.
    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform integer in `lo..=hi`.
    pub(super) fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        let span = hi.saturating_sub(lo).max(0) as u64 + 1;
        lo + self.below(span) as i64
    }
}

/// A version-4-shaped UUID derived from (seed, tag, n): stable for a given seed.
pub(super) fn uuid(seed: u64, tag: &str, n: u64) -> String {
    let a = mix(hash_str(seed, tag) ^ mix(n));
    let b = mix(a ^ 0x5155_4944_5F53_494D);
    format_uuid(a, b)
}

fn format_uuid(a: u64, b: u64) -> String {
    // Set the version (4) and RFC 4122 variant bits so that strict parsers accept it.
    let a = (a & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
    let b = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFFF,
        b >> 48,
        b & 0xFFFF_FFFF_FFFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_stable_and_well_formed() {
        let u = uuid(42, "host", 0);
        assert_eq!(u, uuid(42, "host", 0));
        assert_ne!(u, uuid(42, "host", 1));
        assert_ne!(u, uuid(43, "host", 0));
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn unit_is_in_range() {
        let mut r = SplitMix::new(7);
        for _ in 0..1000 {
            let x = r.unit();
            assert!((0.0..1.0).contains(&x));
        }
        assert!(unit(u64::MAX) < 1.0);
    }
}
