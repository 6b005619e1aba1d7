//! Where bindings live. For now one node's memory; the pool replaces it with Raft groups
//! behind the same two calls.

use std::sync::Mutex;

use roster_registrar::{Binding, Command, CommandOutcome, Policy, Registry};

/// A store that cannot take or answer a request now: the caller answers `503`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No quorum, overloaded, shutting down.
    #[error("store unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
        /// When the client may retry, in seconds.
        retry_after_s: u32,
    },
}

/// One node's in-memory registry.
///
/// Commands run under a lock with a timestamp that never goes backwards, so the apply step
/// sees the monotonic time a replicated log will give it.
pub struct MemoryStore {
    /// A `std` mutex: every section is short and has no `.await` inside.
    inner: Mutex<Inner>,
}

struct Inner {
    registry: Registry,
    last_ms: u64,
}

impl MemoryStore {
    /// An empty store applying `policy`.
    pub fn new(policy: Policy) -> MemoryStore {
        MemoryStore {
            inner: Mutex::new(Inner {
                registry: Registry::new(policy),
                last_ms: 0,
            }),
        }
    }

    /// Applies `command` at `now_ms`, raised to the last command's time if the clock stepped
    /// back or another request got in first. Returns the outcome and the timestamp it was
    /// applied at, which the answer must use (remaining expiries count from it).
    pub fn apply(
        &self,
        command: &Command,
        now_ms: u64,
    ) -> Result<(CommandOutcome, u64), StoreError> {
        let mut inner = self.lock()?;
        let at_ms = now_ms.max(inner.last_ms);
        inner.last_ms = at_ms;
        Ok((inner.registry.apply(command, at_ms), at_ms))
    }

    /// The live bindings of `aor` at `now_ms`, highest q first.
    pub fn lookup(&self, aor: &str, now_ms: u64) -> Result<Vec<Binding>, StoreError> {
        Ok(self.lock()?.registry.lookup(aor, now_ms))
    }

    /// Whether a purge would remove anything at `now_ms`.
    pub fn has_expired(&self, now_ms: u64) -> Result<bool, StoreError> {
        Ok(self.lock()?.registry.has_expired(now_ms))
    }

    /// (AORs, bindings) held, expired ones included until purged.
    pub fn counts(&self) -> Result<(usize, usize), StoreError> {
        let inner = self.lock()?;
        Ok((inner.registry.aor_count(), inner.registry.binding_count()))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        // A poisoned lock means a panic inside apply: refuse service rather than serve state
        // that may be half-changed.
        self.inner.lock().map_err(|_| StoreError::Unavailable {
            reason: "registry lock poisoned by an earlier panic".into(),
            retry_after_s: 5,
        })
    }
}
