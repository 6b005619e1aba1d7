//! [`MemoryStore`]: a single node's bindings in memory, without replication.

use std::sync::Mutex;

use roster_registrar::{Binding, Command, Policy, Registry};

use super::{Applied, Store, StoreError};

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
    /// back or another request got in first.
    pub fn apply_now(&self, command: &Command, now_ms: u64) -> Result<Applied, StoreError> {
        let mut inner = self.lock_inner()?;
        let at_ms = now_ms.max(inner.last_ms);
        inner.last_ms = at_ms;
        Ok(Applied {
            outcome: inner.registry.apply(command, at_ms),
            at_ms,
            served: None,
        })
    }

    /// (AORs, bindings) held, expired ones included until purged.
    pub fn counts(&self) -> Result<(usize, usize), StoreError> {
        let inner = self.lock_inner()?;
        Ok((inner.registry.aor_count(), inner.registry.binding_count()))
    }

    fn lock_inner(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        // A poisoned lock means a panic inside apply: refuse service rather than serve state
        // that may be half-changed.
        self.inner.lock().map_err(|_| StoreError::Unavailable {
            reason: "registry lock poisoned by an earlier panic".into(),
            retry_after_s: 5,
        })
    }
}

impl Store for MemoryStore {
    async fn apply(&self, command: Command, now_ms: u64) -> Result<Applied, StoreError> {
        self.apply_now(&command, now_ms)
    }

    async fn lookup(&self, aor: &str, now_ms: u64) -> Result<Vec<Binding>, StoreError> {
        Ok(self.lock_inner()?.registry.lookup(aor, now_ms))
    }

    async fn purge_expired(&self, now_ms: u64) -> Result<(), StoreError> {
        if self.lock_inner()?.registry.has_expired(now_ms) {
            self.apply_now(&Command::PurgeExpired, now_ms)?;
        }
        Ok(())
    }

    fn served(&self, _aor: &str) -> Option<super::Served> {
        None
    }

    fn placement(&self, _aor: &str) -> super::Placement {
        super::Placement {
            group: "memory".into(),
            pool: None,
            epoch: None,
        }
    }

    fn status(&self) -> serde_json::Value {
        match self.counts() {
            Ok((aors, bindings)) => serde_json::json!({
                "kind": "memory",
                "aors": aors,
                "bindings": bindings,
            }),
            Err(error) => serde_json::json!({ "kind": "memory", "error": error.to_string() }),
        }
    }

    fn healthy(&self) -> bool {
        self.counts().is_ok()
    }
}
