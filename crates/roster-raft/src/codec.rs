//! Bincode (2.x, serde mode) encoding of what a routing group stores and ships: log entries,
//! snapshots and small metadata. Every decode has a size limit, and so does every encode, so
//! that nothing is written that could not be read back.

use bincode::config::{Configuration, Limit};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::typ;

/// Largest encoded log entry, in bytes.
///
/// An entry carries one command: the facts of one REGISTER, which came in one SIP message of at
/// most 65,535 bytes (`roster_sip::SIP_MESSAGE_SIZE_MAX`), plus a few numbers; or a membership of
/// at most 16 nodes. Twice the SIP message bound leaves room for encoding overhead. A proposal
/// must be checked with [`GroupRequest::check_size`](crate::GroupRequest::check_size) before it
/// is proposed: the store refuses to write a larger entry, which stops the replica.
pub const ENTRY_SIZE_MAX: usize = 128 * 1024;

/// Largest memory a log entry's decode may claim, in bytes.
///
/// Bincode's limit counts what a decode claims (a collection's length times its element's size
/// in memory), not the bytes it reads, and an element is often larger in memory than encoded: a
/// backup batch of a few hundred small requests, or a restore piece of many bindings, claims
/// several times its encoded size. With the byte bound as the claim bound, such an entry was
/// written (its encoding fit) and could not be read back: its replica stopped and never
/// reopened. The bytes are still bounded by [`ENTRY_SIZE_MAX`]; this bounds what a corrupt
/// length prefix can make a decode allocate, above any real entry's claims (an integer claims
/// at most 16 times its varint's one byte).
pub const ENTRY_CLAIMS_MAX: usize = 32 * ENTRY_SIZE_MAX;

/// Encoded entries above this size are decoded once before they are written, so that an entry
/// whose decode would claim more than [`ENTRY_CLAIMS_MAX`] is refused instead of written. A
/// REGISTER's entry is well below it; backup batches and restore pieces are above.
const ENTRY_VERIFY_ABOVE: usize = 16 * 1024;

/// Largest encoded group snapshot, in bytes.
///
/// A group holds about 1/G of a pool's users. At the design point of 500,000 users per pool,
/// G = 32 and up to 8 bindings per user of about 1 KiB each, one group's state is about 125 MiB;
/// twice that leaves headroom. A bigger pool raises G rather than this bound. The bound stops a
/// corrupt or hostile length prefix from allocating without limit.
pub const SNAPSHOT_SIZE_MAX: usize = 256 * 1024 * 1024;

/// Largest memory a snapshot's decode may claim, in bytes (see [`ENTRY_CLAIMS_MAX`]). Bincode
/// claims an integer's size in memory for its varint, at most 16 times the one byte a small
/// u128 takes, so no snapshot within [`SNAPSHOT_SIZE_MAX`] claims more.
pub const SNAPSHOT_CLAIMS_MAX: usize = 16 * SNAPSHOT_SIZE_MAX;

/// Largest encoded piece of metadata (a vote, a log id), in bytes: a few integers.
pub const META_SIZE_MAX: usize = 4 * 1024;

/// Version byte in front of every snapshot, so that a format change is detected, not misread.
/// Version 2: a group's state has its resiliency overlay.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 2;

/// Why bytes could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Encoding failed (a serde error) or the result would exceed its limit.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// The bytes are not a valid encoding (corrupt, truncated, too long, or a foreign format).
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
}

/// Encodes `value`, refusing results longer than `LIMIT` bytes.
pub fn encode<T: Serialize, const LIMIT: usize>(
    what: &'static str,
    value: &T,
) -> Result<Vec<u8>, CodecError> {
    let bytes = bincode::serde::encode_to_vec(value, config::<LIMIT>()).map_err(|error| {
        CodecError::Encode {
            what,
            reason: error.to_string(),
        }
    })?;
    if bytes.len() > LIMIT {
        return Err(CodecError::Encode {
            what,
            reason: format!("{} bytes exceed the limit of {LIMIT}", bytes.len()),
        });
    }
    Ok(bytes)
}

/// Decodes a whole `T` from `bytes` (trailing bytes are an error), reading at most `LIMIT`
/// bytes and claiming at most `LIMIT` bytes of memory.
pub fn decode<T: DeserializeOwned, const LIMIT: usize>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, CodecError> {
    decode_claiming::<T, LIMIT, LIMIT>(what, bytes)
}

/// Decodes a whole `T` from `bytes` (trailing bytes are an error), reading at most `LIMIT`
/// bytes and claiming at most `CLAIMS` bytes of memory (bincode counts a collection's length
/// times its element's size in memory).
pub fn decode_claiming<T: DeserializeOwned, const LIMIT: usize, const CLAIMS: usize>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, CodecError> {
    if bytes.len() > LIMIT {
        return Err(CodecError::Decode {
            what,
            reason: format!("{} bytes exceed the limit of {LIMIT}", bytes.len()),
        });
    }
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, config::<CLAIMS>()).map_err(|error| {
            CodecError::Decode {
                what,
                reason: error.to_string(),
            }
        })?;
    if read != bytes.len() {
        return Err(CodecError::Decode {
            what,
            reason: format!("{} trailing bytes", bytes.len() - read),
        });
    }
    Ok(value)
}

/// Encodes a log entry (at most [`ENTRY_SIZE_MAX`] bytes) that [`decode_entry`] reads back: a
/// large one is decoded once to make sure.
pub fn encode_entry(entry: &typ::Entry) -> Result<Vec<u8>, CodecError> {
    let bytes = encode::<_, ENTRY_SIZE_MAX>("log entry", entry)?;
    if bytes.len() > ENTRY_VERIFY_ABOVE {
        decode_entry(&bytes).map_err(|error| CodecError::Encode {
            what: "log entry",
            reason: format!("it would not read back: {error}"),
        })?;
    }
    Ok(bytes)
}

/// Decodes a log entry (at most [`ENTRY_SIZE_MAX`] bytes, [`ENTRY_CLAIMS_MAX`] claimed).
pub fn decode_entry(bytes: &[u8]) -> Result<typ::Entry, CodecError> {
    decode_claiming::<_, ENTRY_SIZE_MAX, ENTRY_CLAIMS_MAX>("log entry", bytes)
}

/// Encodes a small piece of metadata (at most [`META_SIZE_MAX`] bytes).
pub fn encode_meta<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    encode::<_, META_SIZE_MAX>(what, value)
}

/// Decodes a small piece of metadata (at most [`META_SIZE_MAX`] bytes).
pub fn decode_meta<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    decode::<_, META_SIZE_MAX>(what, bytes)
}

/// Bincode's standard configuration (varint integers, little endian) with a decode limit.
fn config<const LIMIT: usize>(
) -> Configuration<bincode::config::LittleEndian, bincode::config::Varint, Limit<LIMIT>> {
    bincode::config::standard().with_limit::<LIMIT>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_refuses_trailing_bytes_and_oversize() {
        let mut bytes = encode_meta("number", &7u64).unwrap();
        assert_eq!(decode_meta::<u64>("number", &bytes).unwrap(), 7);
        bytes.push(0);
        assert!(decode_meta::<u64>("number", &bytes).is_err());
        let big = vec![0u8; META_SIZE_MAX + 1];
        assert!(decode_meta::<Vec<u8>>("blob", &big).is_err());
        assert!(encode_meta("blob", &big).is_err());
    }

    #[test]
    fn an_entry_that_claims_more_memory_than_its_bytes_reads_back() {
        use openraft::vote::RaftLeaderIdExt;

        use crate::stream::{ReplicaBatch, SourceEntry};
        use crate::{GroupKey, GroupRequest};

        // A backup batch of the largest run the shipper reads (512) of small requests: bincode
        // claims each integer's size in memory (8 bytes for a u64) though its varint encoding
        // takes one or two, so the decode claims several times the entry's bytes.
        let entries: Vec<SourceEntry> = (1..=512)
            .map(|index| SourceEntry {
                index,
                request: GroupRequest::set_epoch(2, index),
            })
            .collect();
        let batch = ReplicaBatch {
            source: GroupKey::routing(1, 4),
            epoch: 2,
            after: 0,
            through: 512,
            entries,
        };
        let entry = typ::Entry {
            log_id: typ::LogId::new(typ::LeaderId::new_committed(1, 1), 7),
            payload: openraft::EntryPayload::Normal(GroupRequest::replicate(batch)),
        };
        let bytes = encode_entry(&entry).unwrap();
        const CLAIMS: usize = 8 * 1024;
        assert!(bytes.len() < CLAIMS, "{} bytes", bytes.len());
        assert_eq!(decode_entry(&bytes).unwrap().log_id, entry.log_id);
        // Claims bounded by a bound the bytes fit (as entries were before), it fails.
        assert!(
            decode_claiming::<typ::Entry, ENTRY_SIZE_MAX, CLAIMS>("log entry", &bytes).is_err()
        );
    }

    #[test]
    fn decode_refuses_a_length_prefix_past_the_limit() {
        // A vector claiming u32::MAX elements in a few bytes must not allocate them.
        let claim = encode::<_, 64>("length", &u64::from(u32::MAX)).unwrap();
        assert!(decode::<Vec<u8>, 64>("vector", &claim).is_err());
    }
}
