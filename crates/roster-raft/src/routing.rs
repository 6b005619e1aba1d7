//! Which routing group of its pool an AOR belongs to: a number in `0..G`.

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The routing group of `aor` in a pool of `groups` groups: FNV-1a 64 of the AOR's UTF-8 bytes,
/// modulo `groups`.
///
/// **Fixed forever.** Every node of both paired pools must agree on it, and the groups' data on
/// disk is placed by it: changing the hash (or feeding it anything other than the canonical AOR
/// that `roster_registrar` produces) would move users to groups that do not hold their bindings.
/// It is written by hand because std's hasher is randomized per process and may change between
/// Rust releases.
///
/// # Panics
///
/// If `groups` is 0: G is validated (at least 1) where the pool's configuration is read.
pub fn group_of(aor: &str, groups: u32) -> u32 {
    assert!(groups > 0, "a pool has at least one routing group");
    let hash = fnv1a_64(aor.as_bytes());
    let group = hash % u64::from(groups);
    // The remainder is below `groups`, a u32.
    u32::try_from(group).unwrap_or(u32::MAX)
}

fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_answers() {
        // Reference values of FNV-1a 64 (draft-eastlake-fnv, the FNV authors' test suite).
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn placement_is_pinned() {
        // These exact values are the contract with the data already on disk: never update them.
        let placed: Vec<u32> = [
            "sip:alice@example.com",
            "sip:bob@example.com",
            "sip:carol@example.org",
        ]
        .iter()
        .map(|aor| group_of(aor, 32))
        .collect();
        assert_eq!(placed, PINNED);
        for aor in ["sip:alice@example.com", "x", ""] {
            assert_eq!(group_of(aor, 1), 0);
            assert!(group_of(aor, 7) < 7);
        }
    }

    /// Computed independently (a few lines of Python) when the hash was chosen.
    const PINNED: [u32; 3] = [0, 19, 30];

    #[test]
    fn spreads_users_over_groups() {
        let groups = 32;
        let mut counts = [0u32; 32];
        for user in 0..32_000 {
            let aor = format!("sip:user{user}@example.com");
            counts[group_of(&aor, groups) as usize] += 1;
        }
        for count in counts {
            assert!((700..1300).contains(&count), "uneven spread: {counts:?}");
        }
    }
}
