//! [`NonceCounts`]: the bounded table of the highest `nc` accepted per nonce (replay protection).

use std::collections::BTreeMap;

use crate::nonce::NonceId;

/// Why a nonce count was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CountRefusal {
    /// `nc` is not above the highest one already accepted for this nonce.
    Replayed,
    /// The nonce was dropped from the full table while still valid (or is older than one that
    /// was), so its history is unknown; the client must take a fresh nonce.
    Forgotten,
}

/// Highest accepted `nc` per nonce, at most `capacity` entries.
///
/// Entries are ordered by issue time, so the first entry is the oldest and the first to expire:
/// dropping expired entries and, when full, the oldest entry are both `pop_first`.
/// Every operation is O(log n).
///
/// A nonce dropped before it expired would otherwise be accepted again with any count.
/// `forgotten_up_to` closes that hole: it is the newest nonce ever dropped, and a nonce that is
/// not in the table and not newer than it is refused as [`CountRefusal::Forgotten`].
#[derive(Debug)]
pub(crate) struct NonceCounts {
    highest_nc: BTreeMap<NonceId, u32>,
    forgotten_up_to: Option<NonceId>,
    capacity: usize,
}

impl NonceCounts {
    /// An empty table holding at most `capacity` nonces; `capacity` is at least 1.
    pub(crate) fn new(capacity: usize) -> NonceCounts {
        assert!(
            capacity >= 1,
            "a nonce-count table needs room for one nonce"
        );
        NonceCounts {
            highest_nc: BTreeMap::new(),
            forgotten_up_to: None,
            capacity,
        }
    }

    /// How many nonces are tracked.
    pub(crate) fn len(&self) -> usize {
        self.highest_nc.len()
    }

    /// Drops every entry expired at `now_ms`; amortised over the calls that inserted them.
    pub(crate) fn drop_expired(&mut self, now_ms: u64, lifetime_ms: u64) {
        while let Some(entry) = self.highest_nc.first_entry() {
            if !entry.key().is_expired(now_ms, lifetime_ms) {
                break;
            }
            let (id, _) = entry.remove_entry();
            self.forget(id);
        }
    }

    /// Accepts `nc` for `id` if it is above every count accepted before, and records it.
    /// `nc` is at least 1.
    pub(crate) fn accept(&mut self, id: NonceId, nc: u32) -> Result<(), CountRefusal> {
        debug_assert!(nc >= 1, "nc 0 is refused before the table");
        if let Some(highest) = self.highest_nc.get_mut(&id) {
            if nc <= *highest {
                return Err(CountRefusal::Replayed);
            }
            *highest = nc;
            return Ok(());
        }
        if self
            .forgotten_up_to
            .is_some_and(|forgotten| id <= forgotten)
        {
            return Err(CountRefusal::Forgotten);
        }
        self.highest_nc.insert(id, nc);
        while self.highest_nc.len() > self.capacity {
            if let Some((oldest, _)) = self.highest_nc.pop_first() {
                self.forget(oldest);
            }
        }
        debug_assert!(self.highest_nc.len() <= self.capacity);
        Ok(())
    }

    fn forget(&mut self, id: NonceId) {
        self.forgotten_up_to = Some(self.forgotten_up_to.map_or(id, |newest| newest.max(id)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(issued_ms: u64) -> NonceId {
        NonceId {
            issued_ms,
            boot: 0,
            counter: 0,
        }
    }

    #[test]
    fn accepts_increasing_counts_and_refuses_replays() {
        let mut counts = NonceCounts::new(10);
        assert_eq!(counts.accept(id(1), 1), Ok(()));
        assert_eq!(counts.accept(id(1), 1), Err(CountRefusal::Replayed));
        assert_eq!(counts.accept(id(1), 3), Ok(()));
        assert_eq!(counts.accept(id(1), 2), Err(CountRefusal::Replayed));
        assert_eq!(counts.accept(id(2), 5), Ok(()));
    }

    #[test]
    fn evicts_oldest_when_full_and_remembers_it() {
        let mut counts = NonceCounts::new(2);
        for issued_ms in [3, 1, 2] {
            assert_eq!(counts.accept(id(issued_ms), 1), Ok(()));
        }
        assert_eq!(counts.len(), 2);
        assert_eq!(counts.accept(id(1), 2), Err(CountRefusal::Forgotten));
        assert_eq!(counts.accept(id(0), 1), Err(CountRefusal::Forgotten));
        assert_eq!(counts.accept(id(2), 2), Ok(()));
        assert_eq!(counts.accept(id(4), 1), Ok(()));
        assert_eq!(counts.len(), 2);
    }

    #[test]
    fn drops_expired_entries_first() {
        let mut counts = NonceCounts::new(100);
        for issued_ms in 0..10 {
            assert_eq!(counts.accept(id(issued_ms * 100), 1), Ok(()));
        }
        counts.drop_expired(1_000, 500);
        assert_eq!(counts.len(), 4);
        assert_eq!(counts.accept(id(600), 2), Ok(()));
    }
}
