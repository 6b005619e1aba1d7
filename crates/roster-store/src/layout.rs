//! Where a group's data lives in the node's sled database: tree names and keys.
//!
//! Per group, named by its key's text form `<pool>/<kind>` (`1/routing-7`, `2/backup-7`,
//! `1/cms`; see `roster_raft::GroupKey`):
//! - `group/<key>/runs/<s>`, one tree per log segment `s` (16 hex digits, the indexes
//!   `s * LOG_SEGMENT_ENTRIES ..` of the next `LOG_SEGMENT_ENTRIES`; see `segments`): key = the
//!   first log index of a *run* of consecutive entries appended together, 8 bytes big-endian (so
//!   that key order is log order); value = the run: per entry a u32 big-endian length, then that
//!   many bytes of one encoded `typ::Entry`. A run never crosses a segment.
//! - `group/<key>/meta`: `vote`, `committed`, `purged` (each an encoded vote or log id).
//! - `group/<key>/snapshot`: `meta` (encoded `typ::SnapshotMeta`), `length` (total bytes, u64 BE),
//!   `chunks` (u32 BE) and `chunk/<n>` (u32 BE) holding the snapshot bytes in pieces of at most
//!   [`SNAPSHOT_CHUNK_SIZE_MAX`].

use roster_raft::GroupKey;

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
    pub(crate) fn of(key: GroupKey) -> GroupTrees {
        GroupTrees {
            meta: format!("{GROUP_PREFIX}{key}/meta"),
            snapshot: format!("{GROUP_PREFIX}{key}/snapshot"),
        }
    }
}

/// The tree of log segment `segment` of a group.
pub(crate) fn log_segment_tree(key: GroupKey, segment: u64) -> String {
    format!("{GROUP_PREFIX}{key}/runs/{segment:016x}")
}

/// The segment number of `name`, if it is a log segment tree of `key`.
pub(crate) fn log_segment_of_tree(key: GroupKey, name: &[u8]) -> Option<u64> {
    let (owner, rest) = split_tree_name(name)?;
    let digits = rest.strip_prefix("runs/")?;
    if owner != key || digits.len() != 16 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// The group a tree name belongs to, if it is a group's tree.
pub(crate) fn group_of_tree(name: &[u8]) -> Option<GroupKey> {
    split_tree_name(name).map(|(key, _)| key)
}

/// Whether `name` looks like a group's tree (`group/...`) but does not name a group key: the
/// layout of an older Roster (routing groups by number alone), which a node refuses to run
/// with rather than ignore.
pub(crate) fn is_foreign_group_tree(name: &[u8]) -> bool {
    name.starts_with(GROUP_PREFIX.as_bytes()) && group_of_tree(name).is_none()
}

/// Splits `group/<pool>/<kind>/<rest>` into the group key and `<rest>`.
fn split_tree_name(name: &[u8]) -> Option<(GroupKey, &str)> {
    let name = std::str::from_utf8(name).ok()?;
    let rest = name.strip_prefix(GROUP_PREFIX)?;
    let (pool, rest) = rest.split_once('/')?;
    let (kind, rest) = rest.split_once('/')?;
    let key: GroupKey = format!("{pool}/{kind}").parse().ok()?;
    Some((key, rest))
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
        let key = GroupKey::routing(2, 31);
        let trees = GroupTrees::of(key);
        let segment = log_segment_tree(key, 0x1f);
        assert_eq!(segment, "group/2/routing-31/runs/000000000000001f");
        assert_eq!(log_segment_of_tree(key, segment.as_bytes()), Some(0x1f));
        assert_eq!(
            log_segment_of_tree(GroupKey::backup(2, 31), segment.as_bytes()),
            None
        );
        assert_eq!(log_segment_of_tree(key, trees.meta.as_bytes()), None);
        for name in [&segment, &trees.meta, &trees.snapshot] {
            assert_eq!(group_of_tree(name.as_bytes()), Some(key));
            assert!(!is_foreign_group_tree(name.as_bytes()));
        }
        let cms = GroupTrees::of(GroupKey::cms(1));
        assert_eq!(cms.meta, "group/1/cms/meta");
        assert_eq!(
            group_of_tree(cms.snapshot.as_bytes()),
            Some(GroupKey::cms(1))
        );
        assert_eq!(group_of_tree(b"__sled__default"), None);
        assert!(!is_foreign_group_tree(b"__sled__default"));
    }

    #[test]
    fn older_layouts_are_foreign() {
        for name in [
            "group/0000000031/log",
            "group/0000000031/runs/000000000000001f",
            "group/0000000031/meta",
        ] {
            assert_eq!(group_of_tree(name.as_bytes()), None, "{name}");
            assert!(is_foreign_group_tree(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn segment_trees_sort_like_segments() {
        let key = GroupKey::routing(1, 2);
        assert!(log_segment_tree(key, 0xff) < log_segment_tree(key, 0x100));
    }

    #[test]
    fn log_keys_sort_like_indexes() {
        assert!(log_key(255) < log_key(256));
        assert_eq!(log_index(&log_key(u64::MAX)), Some(u64::MAX));
        assert_eq!(log_index(b"short"), None);
    }
}
