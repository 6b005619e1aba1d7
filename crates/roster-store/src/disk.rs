//! The disk under a node's store, for recovering from a full one: [`StoreOpener`] opens the
//! same database again (after its flusher failed, a store is only good for closing) and probes
//! whether the disk takes writes; [`DiskFault`] makes the disk look full, for tests and drills.
//!
//! After a failed flush nothing written since the last good one can be proven durable (after
//! an `fsync` error the kernel may have dropped the dirty pages), and none of it was
//! acknowledged: the flusher completes every waiter with the error. Opening the database again
//! reads what is on disk, as after a crash at that moment, which is the state Raft's promises
//! were made from.

use std::io::{self, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::{NodeStore, StoreError, StoreOptions};

/// Bytes [`StoreOpener::probe_disk`] writes and syncs: room for several of sled's segments
/// (512 KiB each) and a page-table snapshot, which sled writes while it opens, plus the first
/// appends after it. A disk with less free space than this is still full for a store.
pub const DISK_PROBE_BYTES: usize = 4 * 1024 * 1024;

/// The probe file's name in the database directory; removed after each probe, and at open.
pub(crate) const PROBE_FILE: &str = "disk-probe";

/// A switch that makes a store's disk look full: while it is on, every flush of a store opened
/// with it ([`NodeStore::open_with_fault`]) fails as a full disk does (`StorageFull`), which
/// poisons the store, and [`StoreOpener::probe_disk`] fails too. Off by default. For tests and
/// failure drills; a store opened without one never consults it. Clones share the switch.
#[derive(Clone, Debug, Default)]
pub struct DiskFault {
    full: Arc<AtomicBool>,
}

impl DiskFault {
    /// A switch, off.
    pub fn new() -> DiskFault {
        DiskFault::default()
    }

    /// Makes the disk look full (`true`) or gives its space back (`false`).
    pub fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
    }

    /// Whether the disk looks full.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::SeqCst)
    }

    /// The error a flush or probe gets while the disk looks full.
    pub(crate) fn check(&self) -> io::Result<()> {
        if self.is_full() {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (a DiskFault is set)",
            ));
        }
        Ok(())
    }
}

/// What opens a node's database: its options and fault switch. Kept by the owner of a store so
/// that it can open the database again after closing a poisoned store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StoreOpener {
    pub(crate) options: StoreOptions,
    pub(crate) fault: Option<DiskFault>,
}

impl StoreOpener {
    /// Opens the database (the previous store of it must be closed: [`NodeStore::close`]).
    pub fn open(&self) -> Result<NodeStore, StoreError> {
        NodeStore::open_inner(&self.options, self.fault.clone())
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.options.path
    }

    /// Where the store's durable points and blocking steps run.
    pub fn io(&self) -> crate::StoreIo {
        self.options.io
    }

    /// Whether the disk takes writes now: writes [`DISK_PROBE_BYTES`] to a file in the
    /// database directory, syncs it and removes it (also when the write fails, so that a probe
    /// never holds the space it found).
    pub fn probe_disk(&self) -> io::Result<()> {
        if let Some(fault) = &self.fault {
            fault.check()?;
        }
        let path = self.options.path.join(PROBE_FILE);
        let written = write_probe(&path);
        let removed = match std::fs::remove_file(&path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        };
        written.and(removed)
    }
}

fn write_probe(path: &Path) -> io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    let block = vec![0u8; 64 * 1024];
    let mut left = DISK_PROBE_BYTES;
    while left > 0 {
        let length = left.min(block.len());
        file.write_all(&block[..length])?;
        left -= length;
    }
    // tmpfs and some file systems only find out at the sync that space ran out.
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_leaves_no_file_and_fails_while_the_fault_is_on() {
        let directory = tempfile::tempdir().expect("directory");
        let fault = DiskFault::new();
        let opener = StoreOpener {
            options: StoreOptions {
                path: directory.path().to_path_buf(),
                ..StoreOptions::default()
            },
            fault: Some(fault.clone()),
        };
        opener.probe_disk().expect("an empty temp dir takes writes");
        assert!(!directory.path().join(PROBE_FILE).exists());
        fault.set_full(true);
        let refused = opener.probe_disk().expect_err("the disk looks full");
        assert_eq!(refused.kind(), io::ErrorKind::StorageFull);
        fault.set_full(false);
        opener.probe_disk().expect("space is back");
    }
}
