//! How the checker tells states apart: a deterministic 64-bit hash.

use std::hash::Hash;

/// Seeds of [`fingerprint`]'s hasher. aHash XORs its seeds with the hexadecimal
/// digits of π that follow these, so seeds equal to those digits would zero its keys
/// and map every value to one hash; `fingerprint_tells_values_apart` guards these.
const SEEDS: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

/// A value's fingerprint: how the checker tells states apart (by their `Hash`, as
/// stateright's checkers do), and the digest a server's state keeps of itself. Fixed
/// seeds make it the same on every run, so state numbering and counterexamples are
/// too; aHash gives 64 well-mixed bits at a fraction of SipHash's cost, and hashing is
/// a large share of exploring a state.
///
/// ```
/// use ballot_model::model::fingerprint;
/// assert_eq!(fingerprint(&(1, "a")), fingerprint(&(1, "a")));
/// assert_ne!(fingerprint(&(1, "a")), fingerprint(&(2, "a")));
/// ```
pub fn fingerprint<T: Hash>(value: &T) -> u64 {
    let [k0, k1, k2, k3] = SEEDS;
    ahash::RandomState::with_seeds(k0, k1, k2, k3).hash_one(value)
}

#[cfg(test)]
mod tests {
    use super::fingerprint;
    use std::collections::HashSet;

    /// Distinct values of the shapes states are made of (nested vectors, integers,
    /// flags) get distinct fingerprints. Seeds that cancel aHash's own keys fail this:
    /// every value then gets one fingerprint.
    #[test]
    fn fingerprint_tells_values_apart() {
        let mut seen = HashSet::new();
        let mut values = 0;
        for a in 0u64..100 {
            for b in 0u8..50 {
                for flag in [false, true] {
                    let log: Vec<(u64, u8)> = (0..a % 7).map(|i| (i * a, b)).collect();
                    seen.insert(fingerprint(&(&log, a, flag, b)));
                    values += 1;
                }
            }
        }
        assert_eq!(seen.len(), values);
    }
}
