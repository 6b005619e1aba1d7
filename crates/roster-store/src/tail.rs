//! [`Tail`]: the newest entries of one group's log, decoded, in memory.
//!
//! A leader reads every entry back soon after appending it: once per follower to replicate it,
//! and once more to apply it. Each read from sled walks its tree and decodes the entry again.
//! The tail keeps the last entries as they were appended, so those reads are clones instead.
//!
//! Invariant: when the tail is not empty, it holds exactly the log's entries
//! `first..=last`, and `last` is the log's last index. Every change of the log's end (append,
//! truncate, purge) updates sled and the tail under the tail's lock, so a reader holding that
//! lock sees both agree. An empty tail says nothing; readers then go to sled.

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};

use roster_raft::typ;

/// Most entries one group's tail keeps.
pub(crate) const TAIL_ENTRIES_MAX: usize = 512;

/// Most encoded bytes one group's tail keeps (past its newest entry, always kept): bounds the
/// memory of the cache at 32 groups to a few MiB per node.
pub(crate) const TAIL_BYTES_MAX: usize = 256 * 1024;

/// The newest entries of a log, each with its encoded size.
#[derive(Default)]
pub(crate) struct Tail {
    entries: VecDeque<(typ::Entry, usize)>,
    bytes: usize,
}

/// What the tail can say about a read.
pub(crate) enum TailRead {
    /// The entries of the range (possibly none: the range starts past the log's end).
    Served(Vec<typ::Entry>),
    /// The range starts before the tail, or the tail is empty: read sled.
    Miss,
}

impl Tail {
    /// The log's last index, when the tail knows it.
    pub(crate) fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(entry, _)| entry.log_id.index)
    }

    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(entry, _)| entry.log_id.index)
    }

    /// Records `entry` (of `size` encoded bytes), just appended to the log after `previous`
    /// (the log's last index before it). Drops the oldest entries past the bounds.
    pub(crate) fn push(&mut self, previous: Option<u64>, entry: typ::Entry, size: usize) {
        // Precondition of the invariant: a non-empty tail ends where the log ended.
        if self.last_index() != previous {
            self.clear();
        }
        self.entries.push_back((entry, size));
        self.bytes += size;
        while self.entries.len() > 1
            && (self.entries.len() > TAIL_ENTRIES_MAX || self.bytes > TAIL_BYTES_MAX)
        {
            self.pop_front();
        }
    }

    /// Forgets every entry from `index` on (the log was truncated there).
    pub(crate) fn truncate_from(&mut self, index: u64) {
        while self.last_index().is_some_and(|last| last >= index) {
            if let Some((_, size)) = self.entries.pop_back() {
                self.bytes -= size;
            }
        }
    }

    /// Forgets every entry at or below `index` (the log was purged through it). Purging the
    /// whole tail empties it, as the log's end is then known only to sled.
    pub(crate) fn purge_through(&mut self, index: u64) {
        while self.first_index().is_some_and(|first| first <= index) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Reads `range` as sled would (at most `entries_max` entries and, past the first,
    /// `bytes_max` encoded bytes), when the tail holds its start.
    pub(crate) fn read<RB: RangeBounds<u64>>(
        &self,
        range: &RB,
        entries_max: usize,
        bytes_max: usize,
    ) -> TailRead {
        let (Some(first), Some(last)) = (self.first_index(), self.last_index()) else {
            return TailRead::Miss;
        };
        let start = match range.start_bound() {
            Bound::Included(index) => *index,
            Bound::Excluded(index) => index.saturating_add(1),
            Bound::Unbounded => 0,
        };
        if start < first {
            return TailRead::Miss;
        }
        // Exclusive end, clamped to the log's end.
        let end = match range.end_bound() {
            Bound::Included(index) => index.saturating_add(1),
            Bound::Excluded(index) => *index,
            Bound::Unbounded => u64::MAX,
        }
        .min(last.saturating_add(1));
        let mut entries = Vec::new();
        if start >= end {
            return TailRead::Served(entries);
        }
        let skip = usize::try_from(start - first).unwrap_or(usize::MAX);
        let count = usize::try_from(end - start).unwrap_or(usize::MAX);
        let mut bytes_read = 0usize;
        for (entry, size) in self.entries.iter().skip(skip).take(count) {
            if !entries.is_empty()
                && (entries.len() >= entries_max || bytes_read + size > bytes_max)
            {
                break;
            }
            bytes_read += size;
            entries.push(entry.clone());
        }
        TailRead::Served(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::vote::RaftLeaderIdExt;
    use roster_raft::typ;

    fn entry(index: u64) -> typ::Entry {
        typ::Entry {
            log_id: typ::LogId::new(typ::LeaderId::new_committed(1, 1), index),
            payload: typ::EntryPayload::Blank,
        }
    }

    fn indexes(read: TailRead) -> Option<Vec<u64>> {
        match read {
            TailRead::Served(entries) => Some(entries.iter().map(|e| e.log_id.index).collect()),
            TailRead::Miss => None,
        }
    }

    fn tail(from: u64, to: u64) -> Tail {
        let mut tail = Tail::default();
        let mut previous = from.checked_sub(1);
        for index in from..=to {
            tail.push(previous, entry(index), 10);
            previous = Some(index);
        }
        tail
    }

    #[test]
    fn serves_ranges_it_holds_and_misses_older_ones() {
        let tail = tail(5, 9);
        assert_eq!(indexes(tail.read(&(5..8), 100, 1000)), Some(vec![5, 6, 7]));
        assert_eq!(indexes(tail.read(&(7..), 100, 1000)), Some(vec![7, 8, 9]));
        assert_eq!(indexes(tail.read(&(8..=20), 100, 1000)), Some(vec![8, 9]));
        assert_eq!(indexes(tail.read(&(10..12), 100, 1000)), Some(vec![]));
        assert_eq!(indexes(tail.read(&(4..8), 100, 1000)), None);
        assert_eq!(indexes(tail.read(&(..), 100, 1000)), None);
        assert_eq!(indexes(Tail::default().read(&(0..), 100, 1000)), None);
    }

    #[test]
    fn reads_keep_the_limits_and_always_return_one_entry() {
        let tail = tail(1, 9);
        assert_eq!(indexes(tail.read(&(1..), 2, 1000)), Some(vec![1, 2]));
        assert_eq!(indexes(tail.read(&(1..), 100, 25)), Some(vec![1, 2]));
        assert_eq!(indexes(tail.read(&(3..), 100, 1)), Some(vec![3]));
    }

    #[test]
    fn truncation_purge_and_a_gap_keep_it_equal_to_the_log_end() {
        let mut tail = tail(1, 9);
        tail.truncate_from(7);
        assert_eq!(tail.last_index(), Some(6));
        tail.purge_through(3);
        assert_eq!(indexes(tail.read(&(3..), 100, 1000)), None);
        assert_eq!(indexes(tail.read(&(4..), 100, 1000)), Some(vec![4, 5, 6]));
        // An append that does not follow the tail's end restarts it.
        tail.push(Some(10), entry(11), 10);
        assert_eq!(indexes(tail.read(&(4..), 100, 1000)), None);
        assert_eq!(indexes(tail.read(&(11..), 100, 1000)), Some(vec![11]));
        tail.purge_through(11);
        assert_eq!(tail.last_index(), None);
    }

    #[test]
    fn bounded_in_entries_and_bytes() {
        let tail = tail(1, (TAIL_ENTRIES_MAX + 10) as u64);
        assert_eq!(tail.entries.len(), TAIL_ENTRIES_MAX);
        assert_eq!(tail.first_index(), Some(11));
        let mut big = Tail::default();
        big.push(None, entry(1), TAIL_BYTES_MAX);
        big.push(Some(1), entry(2), TAIL_BYTES_MAX);
        assert_eq!(big.entries.len(), 1);
        assert_eq!(big.bytes, TAIL_BYTES_MAX);
    }
}
