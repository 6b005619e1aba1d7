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

/// Largest encoded group snapshot, in bytes.
///
/// A group holds about 1/G of a pool's users. At the design point of 500,000 users per pool,
/// G = 32 and up to 8 bindings per user of about 1 KiB each, one group's state is about 125 MiB;
/// twice that leaves headroom. A bigger pool raises G rather than this bound. The bound stops a
/// corrupt or hostile length prefix from allocating without limit.
pub const SNAPSHOT_SIZE_MAX: usize = 256 * 1024 * 1024;

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
/// bytes.
pub fn decode<T: DeserializeOwned, const LIMIT: usize>(
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
        bincode::serde::decode_from_slice(bytes, config::<LIMIT>()).map_err(|error| {
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

/// Encodes a log entry (at most [`ENTRY_SIZE_MAX`] bytes).
pub fn encode_entry(entry: &typ::Entry) -> Result<Vec<u8>, CodecError> {
    encode::<_, ENTRY_SIZE_MAX>("log entry", entry)
}

/// Decodes a log entry (at most [`ENTRY_SIZE_MAX`] bytes).
pub fn decode_entry(bytes: &[u8]) -> Result<typ::Entry, CodecError> {
    decode::<_, ENTRY_SIZE_MAX>("log entry", bytes)
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
    fn decode_refuses_a_length_prefix_past_the_limit() {
        // A vector claiming u32::MAX elements in a few bytes must not allocate them.
        let claim = encode::<_, 64>("length", &u64::from(u32::MAX)).unwrap();
        assert!(decode::<Vec<u8>, 64>("vector", &claim).is_err());
    }
}
