//! [`Segments`]: one group's log entries in sled, as a run of trees of
//! [`LOG_SEGMENT_ENTRIES`] consecutive indexes each.
//!
//! A purge drops the trees it covers whole: sled frees their pages, a few dozen per tree,
//! instead of logging one removal per entry. Removing entries one by one cost a purge thousands
//! of sled operations, and openraft runs a purge inside the group's core: the group answered
//! nothing meanwhile, which was the p99 tail of a loaded pool.
//!
//! Entries at or below the purged index that share a tree with newer ones stay until that tree
//! is dropped in turn; every read here hides them.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::io;

use roster_raft::GroupId;

use crate::layout::{self, log_index, log_key};
use crate::{database, sled_io, StoreError};

/// Consecutive log indexes held by one segment tree. At the default snapshot policy (a snapshot
/// every 5,000 entries, 1,000 kept) a purge drops about five trees.
pub const LOG_SEGMENT_ENTRIES: u64 = 1_024;

/// The segment trees of one group's log.
pub(crate) struct Segments {
    db: sled::Db,
    group_id: GroupId,
    /// The open segment trees, by segment number (`index / LOG_SEGMENT_ENTRIES`).
    trees: BTreeMap<u64, sled::Tree>,
    /// Entries at or below this index are purged: no read returns them.
    purged: Option<u64>,
}

fn segment_of(index: u64) -> u64 {
    index / LOG_SEGMENT_ENTRIES
}

/// The last index a segment can hold.
fn segment_last(segment: u64) -> u64 {
    segment
        .saturating_mul(LOG_SEGMENT_ENTRIES)
        .saturating_add(LOG_SEGMENT_ENTRIES - 1)
}

impl Segments {
    /// Opens the group's segment trees, dropping those wholly at or below `purged` (a purge a
    /// crash interrupted).
    pub(crate) fn open(
        db: sled::Db,
        group_id: GroupId,
        purged: Option<u64>,
    ) -> Result<Segments, StoreError> {
        let legacy = layout::legacy_log_tree(group_id);
        let mut trees = BTreeMap::new();
        for name in db.tree_names() {
            if name.as_ref() == legacy.as_bytes() {
                let tree = db.open_tree(&name).map_err(database)?;
                if !tree.is_empty() {
                    return Err(StoreError::Corrupt {
                        group_id,
                        reason: "the log is in the single-tree layout of an older roster; \
                                 start this node from an empty data directory (its replicas \
                                 catch up from the pool)"
                            .into(),
                    });
                }
                db.drop_tree(&name).map_err(database)?;
                continue;
            }
            if let Some(segment) = layout::log_segment_of_tree(group_id, &name) {
                trees.insert(segment, db.open_tree(&name).map_err(database)?);
            }
        }
        let mut segments = Segments {
            db,
            group_id,
            trees,
            purged,
        };
        if let Some(purged) = purged {
            segments.purge_through(purged).map_err(StoreError::Io)?;
        }
        Ok(segments)
    }

    /// Writes the entry of `index` (not yet durable).
    pub(crate) fn insert(&mut self, index: u64, bytes: Vec<u8>) -> io::Result<()> {
        let segment = segment_of(index);
        let tree = match self.trees.entry(segment) {
            Entry::Occupied(tree) => tree.into_mut(),
            Entry::Vacant(vacant) => {
                let name = layout::log_segment_tree(self.group_id, segment);
                vacant.insert(self.db.open_tree(name).map_err(sled_io)?)
            }
        };
        tree.insert(log_key(index), bytes).map_err(sled_io)?;
        Ok(())
    }

    /// The last entry not purged: its key and encoded bytes.
    pub(crate) fn last(&self) -> io::Result<Option<(sled::IVec, sled::IVec)>> {
        for tree in self.trees.values().rev() {
            if let Some((key, value)) = tree.last().map_err(sled_io)? {
                // Everything below a purged entry is purged too.
                let index = log_index(&key);
                if index.is_some_and(|index| self.purged.is_some_and(|p| index <= p)) {
                    return Ok(None);
                }
                return Ok(Some((key, value)));
            }
        }
        Ok(None)
    }

    /// Visits the entries from `from` (inclusive) to `to` (exclusive; `None`: the end) in
    /// index order, skipping purged ones, while `visit` returns `true`.
    pub(crate) fn scan(
        &self,
        from: u64,
        to: Option<u64>,
        mut visit: impl FnMut(&[u8], sled::IVec) -> io::Result<bool>,
    ) -> io::Result<()> {
        let from = match self.purged {
            Some(purged) => from.max(purged.saturating_add(1)),
            None => from,
        };
        if to.is_some_and(|to| to <= from) {
            return Ok(());
        }
        let last_segment = to.map(|to| segment_of(to - 1));
        for (&segment, tree) in self.trees.range(segment_of(from)..) {
            if last_segment.is_some_and(|last| segment > last) {
                break;
            }
            let items = match to {
                Some(to) => tree.range(log_key(from)..log_key(to)),
                None => tree.range(log_key(from)..),
            };
            for item in items {
                let (key, value) = item.map_err(sled_io)?;
                if !visit(&key, value)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Deletes every entry from `index` on, highest first: interrupted by a crash, it leaves the
    /// log contiguous, only longer.
    pub(crate) fn remove_from(&mut self, index: u64) -> io::Result<()> {
        for tree in self
            .trees
            .range(segment_of(index)..)
            .rev()
            .map(|(_, tree)| tree)
        {
            for key in tree.range(log_key(index)..).keys().rev() {
                tree.remove(key.map_err(sled_io)?).map_err(sled_io)?;
            }
        }
        Ok(())
    }

    /// Purges every entry at or below `index`: hides them at once, and drops the trees that
    /// hold nothing else, lowest first. The caller has made the purged id durable first, so an
    /// interrupted purge finishes at the next open.
    pub(crate) fn purge_through(&mut self, index: u64) -> io::Result<()> {
        self.purged = Some(self.purged.map_or(index, |purged| purged.max(index)));
        let covered: Vec<u64> = self
            .trees
            .keys()
            .copied()
            .take_while(|&segment| segment_last(segment) <= index)
            .collect();
        for segment in covered {
            self.trees.remove(&segment);
            let name = layout::log_segment_tree(self.group_id, segment);
            self.db.drop_tree(name).map_err(sled_io)?;
        }
        Ok(())
    }

    /// Segment trees open (for tests: purges drop them).
    #[cfg(test)]
    pub(crate) fn tree_count(&self) -> usize {
        self.trees.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new()
            .path(dir.path())
            .temporary(true)
            .open()
            .expect("sled");
        (dir, db)
    }

    fn indexes(segments: &Segments, from: u64, to: Option<u64>) -> Vec<u64> {
        let mut seen = Vec::new();
        segments
            .scan(from, to, |key, _| {
                seen.push(log_index(key).expect("8-byte key"));
                Ok(true)
            })
            .expect("scan");
        seen
    }

    fn filled(db: &sled::Db, group: GroupId, range: std::ops::Range<u64>) -> Segments {
        let mut segments = Segments::open(db.clone(), group, None).expect("open");
        for index in range {
            segments.insert(index, vec![1]).expect("insert");
        }
        segments
    }

    #[test]
    fn scans_across_segments_in_order() {
        let (_dir, db) = db();
        // Segments 0 (from 1000), 1, 2 and 3 (to 3099).
        let segments = filled(&db, 1, 1000..3100);
        assert_eq!(segments.tree_count(), 4);
        assert_eq!(
            indexes(&segments, 1020, Some(1030)),
            (1020..1030).collect::<Vec<_>>()
        );
        assert_eq!(
            indexes(&segments, 0, None),
            (1000..3100).collect::<Vec<_>>()
        );
        assert_eq!(indexes(&segments, 2047, Some(2049)), vec![2047, 2048]);
        assert!(indexes(&segments, 5, Some(5)).is_empty());
        let last = segments.last().expect("last").expect("an entry");
        assert_eq!(log_index(&last.0), Some(3099));
    }

    #[test]
    fn purge_drops_covered_trees_and_hides_the_rest() {
        let (_dir, db) = db();
        let mut segments = filled(&db, 1, 0..3000);
        segments.purge_through(2100).expect("purge");
        // Segments 0 (0..=1023) and 1 (1024..=2047) dropped; 2 holds 2048..3000.
        assert_eq!(segments.tree_count(), 1);
        assert_eq!(
            indexes(&segments, 0, None),
            (2101..3000).collect::<Vec<_>>()
        );
        assert_eq!(indexes(&segments, 0, Some(2101)), Vec::<u64>::new());
        // Purged past the last entry: nothing is visible.
        segments.purge_through(5000).expect("purge");
        assert!(segments.last().expect("last").is_none());
        assert_eq!(segments.tree_count(), 0);
        assert!(!db
            .tree_names()
            .iter()
            .any(|name| layout::log_segment_of_tree(1, name).is_some()));
    }

    #[test]
    fn purged_entries_in_a_live_tree_stay_hidden_after_reopen() {
        let (_dir, db) = db();
        let mut segments = filled(&db, 7, 10..1500);
        segments.purge_through(1200).expect("purge");
        drop(segments);
        let reopened = Segments::open(db.clone(), 7, Some(1200)).expect("reopen");
        assert_eq!(
            indexes(&reopened, 0, None),
            (1201..1500).collect::<Vec<_>>()
        );
        // Another group's trees are not this group's.
        let other = Segments::open(db, 8, None).expect("open");
        assert!(other.last().expect("last").is_none());
    }

    #[test]
    fn remove_from_truncates_across_segments() {
        let (_dir, db) = db();
        let mut segments = filled(&db, 1, 0..3000);
        segments.remove_from(1000).expect("truncate");
        let last = segments.last().expect("last").expect("an entry");
        assert_eq!(log_index(&last.0), Some(999));
        segments
            .insert(1000, vec![2])
            .expect("append after truncation");
        assert_eq!(indexes(&segments, 998, None), vec![998, 999, 1000]);
    }

    #[test]
    fn a_non_empty_log_of_the_old_layout_is_refused() {
        let (_dir, db) = db();
        let legacy = db.open_tree(layout::legacy_log_tree(3)).expect("tree");
        legacy.insert(log_key(1), vec![1]).expect("insert");
        let refused = Segments::open(db.clone(), 3, None);
        assert!(matches!(
            refused,
            Err(StoreError::Corrupt { group_id: 3, .. })
        ));
        legacy.clear().expect("clear");
        assert!(Segments::open(db.clone(), 3, None).is_ok());
        assert!(!db
            .tree_names()
            .iter()
            .any(|name| name.as_ref() == layout::legacy_log_tree(3).as_bytes()));
    }
}
