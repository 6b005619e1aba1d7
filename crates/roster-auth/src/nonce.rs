//! Self-validating nonces: hex(issued_ms (8 bytes BE) || boot (8 bytes BE) || counter (8 bytes
//! BE) || HMAC-SHA256(key, issued_ms || boot || counter)[..16]), so a node can check them without
//! state, and a nonce names the process (the boot) that issued it and alone tracks its counts.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256, keyed once per authenticator and cloned per use.
pub(crate) type NonceMac = Hmac<Sha256>;

/// Bytes of issued_ms || boot || counter, the authenticated part of a nonce.
const NONCE_BODY_LENGTH: usize = 24;

/// Bytes of the truncated HMAC tag; 128 bits keep forgery out of reach.
const NONCE_TAG_LENGTH: usize = 16;

/// Hex characters of a nonce.
const NONCE_HEX_LENGTH: usize = 2 * (NONCE_BODY_LENGTH + NONCE_TAG_LENGTH);

/// What a nonce authenticates. Ordered by issue time first, which is also expiry order because
/// every nonce has the same lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct NonceId {
    /// When the nonce was issued, milliseconds since the Unix epoch.
    pub(crate) issued_ms: u64,
    /// The boot of the process that issued it: random per process start, so a nonce from
    /// another node or from before a restart is recognised as not ours to count.
    pub(crate) boot: u64,
    /// The issuing node's challenge counter, which separates nonces of one millisecond.
    pub(crate) counter: u64,
}

impl NonceId {
    /// The nonce text: lowercase hex of body and tag.
    pub(crate) fn encode(self, mac: &NonceMac) -> String {
        let body = self.body();
        let tag = mac.clone().chain_update(body).finalize().into_bytes();
        let mut bytes = [0u8; NONCE_BODY_LENGTH + NONCE_TAG_LENGTH];
        bytes[..NONCE_BODY_LENGTH].copy_from_slice(&body);
        bytes[NONCE_BODY_LENGTH..].copy_from_slice(&tag[..NONCE_TAG_LENGTH]);
        hex::encode(bytes)
    }

    /// The nonce's identity if `nonce` is in canonical (lowercase) form and its tag is right.
    ///
    /// Only the canonical form is accepted, so that one nonce has one spelling and one entry in
    /// the nonce-count table. The tag is compared in constant time.
    pub(crate) fn decode(nonce: &str, mac: &NonceMac) -> Option<NonceId> {
        let canonical = nonce.len() == NONCE_HEX_LENGTH
            && nonce
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !canonical {
            return None;
        }
        let mut bytes = [0u8; NONCE_BODY_LENGTH + NONCE_TAG_LENGTH];
        hex::decode_to_slice(nonce, &mut bytes).ok()?;
        let (body, tag) = bytes.split_at(NONCE_BODY_LENGTH);
        mac.clone()
            .chain_update(body)
            .verify_truncated_left(tag)
            .ok()?;
        let word = |index: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&body[8 * index..8 * (index + 1)]);
            u64::from_be_bytes(bytes)
        };
        Some(NonceId {
            issued_ms: word(0),
            boot: word(1),
            counter: word(2),
        })
    }

    /// Whether the nonce is at least `lifetime_ms` old at `now_ms`.
    /// A nonce from the future (another node's clock ahead of ours) counts as new.
    pub(crate) fn is_expired(self, now_ms: u64, lifetime_ms: u64) -> bool {
        now_ms.saturating_sub(self.issued_ms) >= lifetime_ms
    }

    fn body(self) -> [u8; NONCE_BODY_LENGTH] {
        let mut body = [0u8; NONCE_BODY_LENGTH];
        body[..8].copy_from_slice(&self.issued_ms.to_be_bytes());
        body[8..16].copy_from_slice(&self.boot.to_be_bytes());
        body[16..].copy_from_slice(&self.counter.to_be_bytes());
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(key: u8) -> NonceMac {
        let Ok(mac) = NonceMac::new_from_slice(&[key; 32]) else {
            panic!("HMAC takes keys of any length");
        };
        mac
    }

    #[test]
    fn round_trips_with_the_same_key() {
        let id = NonceId {
            issued_ms: 1_700_000_000_000,
            boot: 0x0123_4567_89ab_cdef,
            counter: 7,
        };
        let nonce = id.encode(&mac(1));
        assert_eq!(nonce.len(), NONCE_HEX_LENGTH);
        assert_eq!(NonceId::decode(&nonce, &mac(1)), Some(id));
        assert_eq!(NonceId::decode(&nonce, &mac(2)), None);
    }

    #[test]
    fn refuses_altered_and_non_canonical_nonces() {
        let id = NonceId {
            issued_ms: 5,
            boot: 3,
            counter: 0,
        };
        let nonce = id.encode(&mac(1));
        assert_eq!(NonceId::decode(&nonce.to_uppercase(), &mac(1)), None);
        assert_eq!(NonceId::decode(&nonce[1..], &mac(1)), None);
        for index in 0..nonce.len() {
            let mut altered = nonce.clone().into_bytes();
            altered[index] = if altered[index] == b'0' { b'1' } else { b'0' };
            let altered = String::from_utf8(altered).unwrap_or_default();
            assert_eq!(NonceId::decode(&altered, &mac(1)), None, "index {index}");
        }
    }

    #[test]
    fn expiry_is_inclusive_and_tolerates_future_nonces() {
        let id = NonceId {
            issued_ms: 1_000,
            boot: 0,
            counter: 0,
        };
        assert!(!id.is_expired(1_999, 1_000));
        assert!(id.is_expired(2_000, 1_000));
        assert!(!id.is_expired(0, 1_000));
    }
}
