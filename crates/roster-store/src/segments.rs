//! [`Segments`]: one group's log entries in sled, as a run of trees of
//! [`LOG_SEGMENT_ENTRIES`] consecutive indexes each, holding *runs*: the entries one append
//! wrote, under one key.
//!
//! A purge drops the trees it covers whole: sled frees their pages, a few dozen per tree,
//! instead of logging one removal per entry. Removing entries one by one cost a purge thousands
//! of sled operations, and openraft runs a purge inside the group's core: the group answered
//! nothing meanwhile, which was the p99 tail of a loaded pool.
//!
//! A run is one sled insert however many entries it holds (a loaded leader appends two or three
//! at a time; a follower more): a sled insert, which walks the tree and logs a fragment, was a
//! tenth of a loaded node's CPU at one per entry. Each insert is atomic, so a crash keeps whole
//! runs, a prefix of them.
//!
//! Entries at or below the purged index that share a tree with newer ones stay until that tree
//! is dropped in turn; every read here hides them.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::io;

use roster_raft::GroupKey;

use crate::layout::{self, log_index, log_key};
use crate::{database, sled_io, StoreError};

/// Consecutive log indexes held by one segment tree. At the default snapshot policy (a snapshot
/// every 5,000 entries, 1,000 kept) a purge drops about five trees.
pub const LOG_SEGMENT_ENTRIES: u64 = 1_024;

/// Most bytes of encoded entries a run gathers before another begins (a single larger entry
/// is a run of its own). Well below the size at which sled moves a value into a blob file of
/// its own (see `layout::SNAPSHOT_CHUNK_SIZE_MAX`).
pub(crate) const RUN_BYTES_MAX: usize = 64 * 1024;

/// Bytes in front of each entry of a run: its length, u32 big-endian.
const RUN_LENGTH_BYTES: usize = 4;

/// The segment trees of one group's log.
pub(crate) struct Segments {
    db: sled::Db,
    key: GroupKey,
    /// The open segment trees, by segment number (`index / LOG_SEGMENT_ENTRIES`).
    trees: BTreeMap<u64, sled::Tree>,
    /// Entries at or below this index are purged: no read returns them.
    purged: Option<u64>,
}

/// The segment that holds log index `index`.
pub(crate) fn segment_of(index: u64) -> u64 {
    index / LOG_SEGMENT_ENTRIES
}

/// The last index a segment can hold.
fn segment_last(segment: u64) -> u64 {
    segment
        .saturating_mul(LOG_SEGMENT_ENTRIES)
        .saturating_add(LOG_SEGMENT_ENTRIES - 1)
}

/// A run being built: encoded entries from `first` on, each behind its length.
#[derive(Default)]
pub(crate) struct Run {
    first: u64,
    count: u64,
    bytes: Vec<u8>,
}

impl Run {
    /// The index the next entry must have.
    fn next_index(&self) -> u64 {
        self.first + self.count
    }

    /// Whether the entry of `index`, `size` bytes encoded, may join this run: it is the next
    /// one, in the same segment, and the run stays within [`RUN_BYTES_MAX`] (an empty run takes
    /// any entry).
    pub(crate) fn accepts(&self, index: u64, size: usize) -> bool {
        self.count == 0
            || (index == self.next_index()
                && segment_of(index) == segment_of(self.first)
                && self.bytes.len() + RUN_LENGTH_BYTES + size <= RUN_BYTES_MAX)
    }

    /// Adds the encoding of the entry of `index`, which [`Run::accepts`].
    pub(crate) fn push(&mut self, index: u64, entry: &[u8]) -> io::Result<()> {
        debug_assert!(self.accepts(index, entry.len()));
        let length = u32::try_from(entry.len())
            .map_err(|_| io::Error::other("a log entry longer than 4 GiB"))?;
        if self.count == 0 {
            self.first = index;
        }
        self.bytes.extend_from_slice(&length.to_be_bytes());
        self.bytes.extend_from_slice(entry);
        self.count += 1;
        Ok(())
    }

    /// Whether it holds no entry.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The entries of a stored run, as (index, encoded entry), from its key's index on. A length
/// running past the end is corruption.
fn run_entries(first: u64, run: &[u8]) -> impl Iterator<Item = io::Result<(u64, &[u8])>> {
    let mut rest = run;
    let mut index = first;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let Some((length, after)) = rest.split_first_chunk::<RUN_LENGTH_BYTES>() else {
            rest = &[];
            return Some(Err(corrupt_run(first)));
        };
        let length = usize::try_from(u32::from_be_bytes(*length)).unwrap_or(usize::MAX);
        if length > after.len() {
            rest = &[];
            return Some(Err(corrupt_run(first)));
        }
        let (entry, after) = after.split_at(length);
        rest = after;
        let item = (index, entry);
        index += 1;
        Some(Ok(item))
    })
}

fn corrupt_run(first: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the log run at index {first} is cut short"),
    )
}

fn run_key_index(key: &[u8]) -> io::Result<u64> {
    log_index(key)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a log run's key is not 8 bytes"))
}

impl Segments {
    /// Opens the group's segment trees, dropping those wholly at or below `purged` (a purge a
    /// crash interrupted).
    pub(crate) fn open(
        db: sled::Db,
        key: GroupKey,
        purged: Option<u64>,
    ) -> Result<Segments, StoreError> {
        let mut trees = BTreeMap::new();
        for name in db.tree_names() {
            if let Some(segment) = layout::log_segment_of_tree(key, &name) {
                trees.insert(segment, db.open_tree(&name).map_err(database)?);
            }
        }
        let mut segments = Segments {
            db,
            key,
            trees,
            purged,
        };
        if let Some(purged) = purged {
            segments.purge_through(purged).map_err(StoreError::Io)?;
        }
        Ok(segments)
    }

    /// Writes `run` (not yet durable). It must continue the log, inside one segment
    /// ([`Run::accepts`] keeps it so).
    pub(crate) fn insert(&mut self, run: Run) -> io::Result<()> {
        if run.is_empty() {
            return Ok(());
        }
        let tree = self.tree_for(segment_of(run.first))?;
        tree.insert(log_key(run.first), run.bytes)
            .map_err(sled_io)?;
        Ok(())
    }

    fn tree_for(&mut self, segment: u64) -> io::Result<&sled::Tree> {
        Ok(match self.trees.entry(segment) {
            Entry::Occupied(tree) => tree.into_mut(),
            Entry::Vacant(vacant) => {
                let name = layout::log_segment_tree(self.key, segment);
                vacant.insert(self.db.open_tree(name).map_err(sled_io)?)
            }
        })
    }

    /// The last entry not purged: its index and encoded bytes.
    pub(crate) fn last(&self) -> io::Result<Option<(u64, Vec<u8>)>> {
        for tree in self.trees.values().rev() {
            if let Some((key, run)) = tree.last().map_err(sled_io)? {
                let mut last = None;
                for item in run_entries(run_key_index(&key)?, &run) {
                    last = Some(item?);
                }
                let Some((index, entry)) = last else {
                    return Err(corrupt_run(run_key_index(&key)?));
                };
                // Everything below a purged entry is purged too.
                if self.purged.is_some_and(|purged| index <= purged) {
                    return Ok(None);
                }
                return Ok(Some((index, entry.to_vec())));
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
        mut visit: impl FnMut(u64, &[u8]) -> io::Result<bool>,
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
            // Start at the run holding `from`, which may begin before it.
            let start = match tree.range(..=log_key(from)).next_back() {
                Some(item) => item.map_err(sled_io)?.0,
                None => log_key(from).as_slice().into(),
            };
            let runs = match to {
                Some(to) => tree.range(start..sled::IVec::from(&log_key(to))),
                None => tree.range(start..),
            };
            for item in runs {
                let (key, run) = item.map_err(sled_io)?;
                for item in run_entries(run_key_index(&key)?, &run) {
                    let (index, entry) = item?;
                    if index < from {
                        continue;
                    }
                    if to.is_some_and(|to| index >= to) || !visit(index, entry)? {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Deletes every entry from `index` on: the runs that begin at or after it, highest first,
    /// then the part of the run that straddles it. Interrupted by a crash, it leaves the log
    /// contiguous, only longer.
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
        // Runs never cross a segment: one that holds `index` is in its segment's tree.
        let Some(tree) = self.trees.get(&segment_of(index)) else {
            return Ok(());
        };
        let Some(item) = tree.range(..log_key(index)).next_back() else {
            return Ok(());
        };
        let (key, run) = item.map_err(sled_io)?;
        let mut kept = Run::default();
        let mut cut = false;
        for item in run_entries(run_key_index(&key)?, &run) {
            let (entry_index, entry) = item?;
            if entry_index >= index {
                cut = true;
                break;
            }
            kept.push(entry_index, entry)?;
        }
        if cut {
            tree.insert(key, kept.bytes).map_err(sled_io)?;
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
            let name = layout::log_segment_tree(self.key, segment);
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
            .scan(from, to, |index, entry| {
                // Each test entry's bytes are its index.
                assert_eq!(entry, index.to_be_bytes());
                seen.push(index);
                Ok(true)
            })
            .expect("scan");
        seen
    }

    /// Appends the entries of `range`, in runs of at most `per_run` (as an append would).
    fn append(segments: &mut Segments, range: std::ops::Range<u64>, per_run: u64) {
        let mut run = Run::default();
        for index in range {
            if run.count == per_run || !run.accepts(index, 8) {
                segments.insert(std::mem::take(&mut run)).expect("insert");
            }
            run.push(index, &index.to_be_bytes()).expect("push");
        }
        segments.insert(run).expect("insert");
    }

    fn filled(db: &sled::Db, group: GroupKey, range: std::ops::Range<u64>) -> Segments {
        let mut segments = Segments::open(db.clone(), group, None).expect("open");
        append(&mut segments, range, 3);
        segments
    }

    fn last_index(segments: &Segments) -> Option<u64> {
        segments.last().expect("last").map(|(index, _)| index)
    }

    #[test]
    fn scans_across_segments_in_order() {
        let (_dir, db) = db();
        // Segments 0 (from 1000), 1, 2 and 3 (to 3099).
        let segments = filled(&db, GroupKey::routing(1, 1), 1000..3100);
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
        assert_eq!(last_index(&segments), Some(3099));
    }

    #[test]
    fn runs_never_cross_a_segment() {
        let (_dir, db) = db();
        let mut segments = Segments::open(db.clone(), GroupKey::routing(1, 2), None).expect("open");
        // One append of 1,000..1,100 is two runs: ..=1023 in segment 0, 1024.. in segment 1.
        append(&mut segments, 1000..1100, u64::MAX);
        assert_eq!(segments.tree_count(), 2);
        assert_eq!(
            indexes(&segments, 1020, Some(1030)),
            (1020..1030).collect::<Vec<_>>()
        );
        assert_eq!(last_index(&segments), Some(1099));
        let mut run = Run::default();
        run.push(5, &[0; RUN_BYTES_MAX - 2 * RUN_LENGTH_BYTES])
            .expect("push");
        assert!(!run.accepts(6, 1), "a full run takes no more");
        assert!(!run.accepts(7, 0), "nor an entry that is not the next");
        assert!(
            Run::default().accepts(9, RUN_BYTES_MAX * 2),
            "an empty run takes anything"
        );
    }

    #[test]
    fn a_run_cut_short_is_corruption_not_a_panic() {
        let (_dir, db) = db();
        let mut segments = filled(&db, GroupKey::routing(1, 4), 0..10);
        let tree = segments.tree_for(0).expect("tree").clone();
        tree.insert(log_key(10), vec![0, 0, 0, 9, 1, 2])
            .expect("insert");
        let error = segments
            .scan(0, None, |_, _| Ok(true))
            .expect_err("corrupt");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(segments.last().is_err());
    }

    #[test]
    fn purge_drops_covered_trees_and_hides_the_rest() {
        let (_dir, db) = db();
        let mut segments = filled(&db, GroupKey::routing(1, 1), 0..3000);
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
        assert_eq!(last_index(&segments), None);
        assert_eq!(segments.tree_count(), 0);
        assert!(!db
            .tree_names()
            .iter()
            .any(|name| layout::log_segment_of_tree(GroupKey::routing(1, 1), name).is_some()));
    }

    #[test]
    fn purged_entries_in_a_live_tree_stay_hidden_after_reopen() {
        let (_dir, db) = db();
        let mut segments = filled(&db, GroupKey::routing(1, 7), 10..1500);
        segments.purge_through(1200).expect("purge");
        drop(segments);
        let reopened =
            Segments::open(db.clone(), GroupKey::routing(1, 7), Some(1200)).expect("reopen");
        assert_eq!(
            indexes(&reopened, 0, None),
            (1201..1500).collect::<Vec<_>>()
        );
        // Another group's trees are not this group's.
        let other = Segments::open(db, GroupKey::routing(1, 8), None).expect("open");
        assert_eq!(last_index(&other), None);
    }

    #[test]
    fn remove_from_truncates_across_segments() {
        let (_dir, db) = db();
        let mut segments = filled(&db, GroupKey::routing(1, 1), 0..3000);
        segments.remove_from(1000).expect("truncate");
        assert_eq!(last_index(&segments), Some(999));
        append(&mut segments, 1000..1001, 3);
        assert_eq!(indexes(&segments, 998, None), vec![998, 999, 1000]);
    }

    #[test]
    fn remove_from_keeps_the_start_of_a_run_it_cuts() {
        let (_dir, db) = db();
        let mut segments = Segments::open(db.clone(), GroupKey::routing(1, 1), None).expect("open");
        append(&mut segments, 0..20, 8); // runs 0..8, 8..16, 16..20
        segments.remove_from(11).expect("truncate");
        assert_eq!(indexes(&segments, 0, None), (0..11).collect::<Vec<_>>());
        assert_eq!(last_index(&segments), Some(10));
        append(&mut segments, 11..13, 8);
        assert_eq!(indexes(&segments, 9, None), vec![9, 10, 11, 12]);
        // At a run's first index, the run goes whole.
        segments.remove_from(8).expect("truncate");
        assert_eq!(last_index(&segments), Some(7));
        segments.remove_from(0).expect("truncate");
        assert_eq!(last_index(&segments), None);
    }
}
