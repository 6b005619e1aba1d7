//! Where a group's data lives in the node's sled database: tree names and keys.
//!
//! Per group `g` (zero-padded decimal so that trees sort by group):
//! - `group/<g>/runs/<s>`, one tree per log segment `s` (16 hex digits, the indexes
//!   `s * LOG_SEGMENT_ENTRIES ..` of the next `LOG_SEGMENT_ENTRIES`; see `segments`): key = the
//!   first log index of a *run* of consecutive entries appended together, 8 bytes big-endian (so
//!   that key order is log order); value = the run: per entry a u32 big-endian length, then that
//!   many bytes of one encoded `typ::Entry`. A run never crosses a segment.
//! - `group/<g>/meta`: `vote`, `committed`, `purged` (each an encoded vote or log id).
//! - `group/<g>/snapshot`: `meta` (encoded `typ::SnapshotMeta`), `length` (total bytes, u64 BE),
//!   `chunks` (u32 BE) and `chunk/<n>` (u32 BE) holding the snapshot bytes in pieces of at most
//!   [`SNAPSHOT_CHUNK_SIZE_MAX`].

use roster_raft::GroupId;

/// Largest piece of a snapshot stored under one key, in bytes.
///
/// sled 0.34 moves any value larger than a quarter of a log segment (512 KiB by default) into a
/// separate blob file; keeping chunks well below that keeps snapshots inside sled's own log.
pub const SNAPSHOT_CHUNK_SIZE_MAX: usize = 64 * 1024;

/// sled 0.34's default log segment size, which this store does not change.
const SLED_SEGMENT_SIZE: usize = 512 * 1024;
const _: () = assert!(SNAPSHOT_CHUNK_SIZE_MAX < SLED_SEGMENT_SIZE / 4 - 1024);

const GROUP_PREFIX: &str = "group/";

/// Meta key of the last saved vote.
pub(crate) const META_VOTE: &[u8] = b"vote";
/// Meta key of the last saved committed log id.
pub(crate) const META_COMMITTED: &[u8] = b"committed";
/// Meta key of the last purged log id.
pub(crate) const META_PURGED: &[u8] = b"purged";

/// Snapshot key of the snapshot's metadata.
pub(crate) const SNAPSHOT_META: &[u8] = b"meta";
/// Snapshot key of the snapshot's total length.
pub(crate) const SNAPSHOT_LENGTH: &[u8] = b"length";
/// Snapshot key of the number of chunks.
pub(crate) const SNAPSHOT_CHUNKS: &[u8] = b"chunks";

/// The names of a group's trees besides its log segments.
pub(crate) struct GroupTrees {
    pub(crate) meta: String,
    pub(crate) snapshot: String,
}

impl GroupTrees {
    pub(crate) fn of(group_id: GroupId) -> GroupTrees {
        GroupTrees {
            meta: format!("{GROUP_PREFIX}{group_id:010}/meta"),
            snapshot: format!("{GROUP_PREFIX}{group_id:010}/snapshot"),
        }
    }
}

/// The tree of log segment `segment` of a group.
pub(crate) fn log_segment_tree(group_id: GroupId, segment: u64) -> String {
    format!("{GROUP_PREFIX}{group_id:010}/runs/{segment:016x}")
}

/// The segment number of `name`, if it is a log segment tree of `group_id`.
pub(crate) fn log_segment_of_tree(group_id: GroupId, name: &[u8]) -> Option<u64> {
    segment_of_tree(group_id, "runs", name)
}

fn segment_of_tree(group_id: GroupId, kind: &str, name: &[u8]) -> Option<u64> {
    let name = std::str::from_utf8(name).ok()?;
    let prefix = format!("{GROUP_PREFIX}{group_id:010}/{kind}/");
    let digits = name.strip_prefix(&prefix)?;
    if digits.len() != 16 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// Whether `name` is a log tree of `group_id` in an older layout, which a node refuses when
/// not empty: the single log tree (`group/<g>/log`), or a segment of one entry per key
/// (`group/<g>/log/<s>`).
pub(crate) fn is_legacy_log_tree(group_id: GroupId, name: &[u8]) -> bool {
    name == format!("{GROUP_PREFIX}{group_id:010}/log").as_bytes()
        || segment_of_tree(group_id, "log", name).is_some()
}

/// The group a tree name belongs to, if it is a group's tree.
pub(crate) fn group_of_tree(name: &[u8]) -> Option<GroupId> {
    let name = std::str::from_utf8(name).ok()?;
    let rest = name.strip_prefix(GROUP_PREFIX)?;
    let (number, _) = rest.split_once('/')?;
    number.parse().ok()
}

/// The key of log index `index`.
pub(crate) fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The log index of a log key, `None` if the key is not 8 bytes.
pub(crate) fn log_index(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// The key of snapshot chunk `number`.
pub(crate) fn chunk_key(number: u32) -> Vec<u8> {
    let mut key = b"chunk/".to_vec();
    key.extend_from_slice(&number.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_names_round_trip() {
        let trees = GroupTrees::of(31);
        let segment = log_segment_tree(31, 0x1f);
        assert_eq!(segment, "group/0000000031/runs/000000000000001f");
        assert_eq!(log_segment_of_tree(31, segment.as_bytes()), Some(0x1f));
        assert_eq!(log_segment_of_tree(3, segment.as_bytes()), None);
        assert_eq!(log_segment_of_tree(31, trees.meta.as_bytes()), None);
        let legacy = [
            "group/0000000031/log",
            "group/0000000031/log/000000000000001f",
        ];
        for name in [&segment, &trees.meta, &trees.snapshot]
            .into_iter()
            .map(String::as_str)
            .chain(legacy)
        {
            assert_eq!(group_of_tree(name.as_bytes()), Some(31));
        }
        for name in legacy {
            assert!(is_legacy_log_tree(31, name.as_bytes()));
            assert!(!is_legacy_log_tree(3, name.as_bytes()));
        }
        assert!(!is_legacy_log_tree(31, segment.as_bytes()));
        assert_eq!(group_of_tree(b"__sled__default"), None);
    }

    #[test]
    fn segment_trees_sort_like_segments() {
        assert!(log_segment_tree(2, 0xff) < log_segment_tree(2, 0x100));
    }

    #[test]
    fn log_keys_sort_like_indexes() {
        assert!(log_key(255) < log_key(256));
        assert_eq!(log_index(&log_key(u64::MAX)), Some(u64::MAX));
        assert_eq!(log_index(b"short"), None);
    }
}
