//! Group commit: one thread per database makes writes durable for every group at once.
//!
//! Writers put their data into sled first (readable at once), then hand a [`Waiter`] to the
//! flusher. The flusher thread takes every waiter queued so far (up to [`FLUSH_BATCH_MAX`]),
//! makes the database durable once, and then completes them all, in the order they came. While
//! it flushes, new waiters queue up for the next round: under load, one flush serves the
//! appends of many groups.
//!
//! With [`crate::StoreIo::Inline`] there is no thread: each waiter gets a round of its own when
//! it is queued, on the caller's task (deterministic simulations; no group commit).
//!
//! Durability is three steps, because sled 0.34's `flush` alone is not durable on Linux (it
//! writes with `sync_file_range`, which persists neither the file's size nor the drive's cache;
//! sled issue 1452):
//! 1. `Db::flush` writes sled's I/O buffers into its data file `db`;
//! 2. `fdatasync` of `db` puts that data, and the size it grew to, on disk;
//! 3. values too large for a log segment live in files under `blobs/`, which sled writes without
//!    any sync: each new or grown one is `fsync`ed, then the directory.
//!
//! A failed flush poisons the flusher: after an `fsync` error the kernel may have dropped the
//! dirty pages, so no later flush can prove anything. Every waiter from then on gets an error,
//! which stops the Raft groups of this node (openraft treats storage errors as fatal), and
//! [`Flusher::failure`] says why; the store's owner closes the store and opens it again.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError};
use std::thread::JoinHandle;

use roster_raft::typ;
use tokio::sync::{mpsc, oneshot};

use crate::disk::DiskFault;

/// Waiters queued to the flusher before writers wait for room: generous, as one flush completes
/// them all, and bounded so that a stalled disk turns into back-pressure, not memory.
pub const FLUSH_WAITERS_PENDING_MAX: usize = 16_384;

/// Waiters completed by one flush at most: bounds the batch vector; the rest go to the next
/// flush, which starts at once.
pub const FLUSH_BATCH_MAX: usize = 4_096;

const _: () = assert!(FLUSH_BATCH_MAX <= FLUSH_WAITERS_PENDING_MAX);

/// Shortest time from the start of one flush to the start of the next. Under load a flush
/// waits out the rest of this interval, gathering the waiters that arrive meanwhile, so that a
/// busy node makes at most one durable point per interval (each costs a sled I/O-buffer write,
/// a `sync_file_range`, an `fdatasync` and several thread wake-ups). An idle node flushes at
/// once: the interval has long passed when a lone waiter comes.
pub const FLUSH_INTERVAL_MIN: std::time::Duration = std::time::Duration::from_millis(5);

/// Someone waiting for the next durable point.
pub(crate) enum Waiter {
    /// openraft's append callback: fired after the flush.
    Append(typ::IOFlushed),
    /// A storage call that returns only once its write is durable (vote, truncate, purge,
    /// snapshot).
    Signal(oneshot::Sender<io::Result<()>>),
}

/// The handle to a database's flusher: its thread, or with [`crate::StoreIo::Inline`] the
/// rounds themselves, run on the caller's task. Dropping it lets the thread finish the queued
/// waiters and joins it.
pub(crate) struct Flusher {
    sender: Option<mpsc::Sender<Waiter>>,
    thread: Option<JoinHandle<()>>,
    /// With [`crate::StoreIo::Inline`]: every waiter gets a round of its own, at once. A std
    /// lock around a synchronous flush, with no `.await` inside.
    inline: Option<std::sync::Mutex<Rounds>>,
    flushes: Arc<AtomicU64>,
    /// The first failed flush, once there was one.
    failure: Arc<OnceLock<String>>,
}

impl Flusher {
    /// Starts the flusher of `db`, whose files are in `directory`; `fault` can make every flush
    /// fail as on a full disk. With [`crate::StoreIo::Inline`] no thread starts: each waiter is
    /// made durable and completed when it is queued.
    pub(crate) fn start(
        db: sled::Db,
        directory: &Path,
        fault: Option<DiskFault>,
        io: crate::StoreIo,
    ) -> io::Result<Flusher> {
        let data_file = File::open(directory.join("db"))?;
        let blobs = BlobSync::new(directory.join("blobs"));
        let flushes = Arc::new(AtomicU64::new(0));
        let failure = Arc::new(OnceLock::new());
        let rounds = Rounds {
            db,
            data_file,
            blobs,
            flushes: flushes.clone(),
            fault,
            failure: None,
            reported: Arc::clone(&failure),
        };
        if io == crate::StoreIo::Inline {
            return Ok(Flusher {
                sender: None,
                thread: None,
                inline: Some(std::sync::Mutex::new(rounds)),
                flushes,
                failure,
            });
        }
        let (sender, receiver) = mpsc::channel(FLUSH_WAITERS_PENDING_MAX);
        let worker = Worker { rounds, receiver };
        let thread = std::thread::Builder::new()
            .name("roster-store-flusher".into())
            .spawn(move || worker.run())?;
        Ok(Flusher {
            sender: Some(sender),
            thread: Some(thread),
            inline: None,
            flushes,
            failure,
        })
    }

    /// Queues `waiter` for the next flush. Fails only when the flusher thread is gone.
    pub(crate) async fn enqueue(&self, waiter: Waiter) -> io::Result<()> {
        if let Some(rounds) = &self.inline {
            // A panic mid-round leaves nothing half-done that the next round relies on.
            let mut rounds = rounds.lock().unwrap_or_else(PoisonError::into_inner);
            rounds.round(&mut vec![waiter]);
            return Ok(());
        }
        let Some(sender) = &self.sender else {
            return Err(stopped());
        };
        sender.send(waiter).await.map_err(|_| stopped())
    }

    /// Returns once everything written before the call is durable.
    pub(crate) async fn flush(&self) -> io::Result<()> {
        let (sender, receiver) = oneshot::channel();
        self.enqueue(Waiter::Signal(sender)).await?;
        receiver.await.map_err(|_| stopped())?
    }

    /// How many flushes (each a sled flush plus `fdatasync`) the thread has done.
    pub(crate) fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// The error of the flush that poisoned the flusher, if one failed.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.get().cloned()
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Closing the channel ends the thread once the queue is empty; joining makes sure the
        // database is released before a reopen. This waits for at most one flush.
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the store's flusher thread panicked");
            }
        }
    }
}

/// The flusher thread: gathers waiters into rounds.
struct Worker {
    rounds: Rounds,
    receiver: mpsc::Receiver<Waiter>,
}

/// What makes a database durable, round after round, wherever the rounds run.
struct Rounds {
    db: sled::Db,
    data_file: File,
    blobs: BlobSync,
    flushes: Arc<AtomicU64>,
    /// Makes flushes fail as on a full disk while it is set (tests).
    fault: Option<DiskFault>,
    /// Set by the first failed flush; every later waiter gets it.
    failure: Option<(io::ErrorKind, String)>,
    /// The same failure, for [`Flusher::failure`].
    reported: Arc<OnceLock<String>>,
}

impl Worker {
    fn run(mut self) {
        let mut batch = Vec::with_capacity(FLUSH_BATCH_MAX);
        let mut last_start: Option<std::time::Instant> = None;
        while let Some(first) = self.receiver.blocking_recv() {
            if let Some(rest) = last_start
                .and_then(|start| FLUSH_INTERVAL_MIN.checked_sub(start.elapsed()))
                .filter(|rest| !rest.is_zero())
            {
                std::thread::sleep(rest);
            }
            last_start = Some(std::time::Instant::now());
            batch.push(first);
            while batch.len() < FLUSH_BATCH_MAX {
                match self.receiver.try_recv() {
                    Ok(waiter) => batch.push(waiter),
                    Err(_) => break,
                }
            }
            self.rounds.round(&mut batch);
        }
    }
}

impl Rounds {
    /// Makes the database durable once (unless an earlier round failed) and completes every
    /// waiter of `batch` with the outcome, in order, leaving `batch` empty.
    fn round(&mut self, batch: &mut Vec<Waiter>) {
        if self.failure.is_none() {
            let started = std::time::Instant::now();
            let flushed = self.make_durable();
            metrics::histogram!(crate::FLUSH_DURATION).record(started.elapsed().as_secs_f64());
            metrics::histogram!(crate::FLUSH_BATCH).record(batch.len() as f64);
            if let Err(error) = flushed {
                tracing::error!(%error, "flush failed; the store is poisoned");
                self.failure = Some((error.kind(), error.to_string()));
                let _ = self.reported.set(error.to_string());
            }
        }
        for waiter in batch.drain(..) {
            complete(waiter, self.result());
        }
    }

    fn make_durable(&mut self) -> io::Result<()> {
        if let Some(fault) = &self.fault {
            fault.check()?;
        }
        // Step 1: sled's buffers into its data file (not yet durable, see the module doc).
        self.db.flush().map_err(io::Error::other)?;
        // Step 2: the data file's data and size on disk.
        self.data_file.sync_data()?;
        // Step 3: large values in blob files.
        self.blobs.sync_changed()?;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn result(&self) -> io::Result<()> {
        match &self.failure {
            None => Ok(()),
            Some((kind, message)) => Err(io::Error::new(
                *kind,
                format!("an earlier flush failed ({message}); reopen the store"),
            )),
        }
    }
}

fn complete(waiter: Waiter, result: io::Result<()>) {
    match waiter {
        Waiter::Append(callback) => callback.io_completed(result),
        // The caller may have given up waiting; nothing to tell then.
        Waiter::Signal(sender) => drop(sender.send(result)),
    }
}

fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the store's flusher has stopped")
}

/// Tracks which blob files are durable, by length: sled writes a blob once, completely, before
/// the write that refers to it returns, so a file seen at its final length and synced stays
/// durable.
struct BlobSync {
    directory: PathBuf,
    synced_lengths: HashMap<OsString, u64>,
}

impl BlobSync {
    fn new(directory: PathBuf) -> BlobSync {
        BlobSync {
            directory,
            synced_lengths: HashMap::new(),
        }
    }

    fn sync_changed(&mut self) -> io::Result<()> {
        let entries = match std::fs::read_dir(&self.directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        self.sync_entries(entries)
    }

    /// Syncs the listed blob files that are new or grew, then the directory if any did.
    ///
    /// sled deletes a blob when its value is replaced or removed (each new group snapshot
    /// replaces the last), possibly between the listing and the sync: a file that is gone
    /// needs no sync. Before this was handled, such a race failed the flush, which poisons the
    /// store and stops every group of the node (seen filling a pool with a million bindings).
    fn sync_entries(
        &mut self,
        entries: impl Iterator<Item = io::Result<std::fs::DirEntry>>,
    ) -> io::Result<()> {
        let mut seen = HashMap::with_capacity(self.synced_lengths.len());
        let mut changed = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let length = match entry.metadata() {
                Ok(metadata) => metadata.len(),
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            if self.synced_lengths.get(&name) != Some(&length) {
                match File::open(entry.path()) {
                    Ok(file) => file.sync_all()?,
                    Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                    Err(error) => return Err(error),
                }
                changed = true;
            }
            seen.insert(name, length);
        }
        if changed {
            File::open(&self.directory)?.sync_all()?;
        }
        self.synced_lengths = seen;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_deleted_between_listing_and_sync_is_skipped() {
        let directory = tempfile::tempdir().expect("directory");
        for name in ["1", "2", "3"] {
            std::fs::write(directory.path().join(name), b"blob").expect("blob written");
        }
        let mut blobs = BlobSync::new(directory.path().to_path_buf());
        // Listed first, deleted after: what sled's garbage collection does during a flush.
        let listed: Vec<_> = std::fs::read_dir(directory.path())
            .expect("listing")
            .collect();
        std::fs::remove_file(directory.path().join("2")).expect("blob removed");
        blobs
            .sync_entries(listed.into_iter())
            .expect("a vanished blob is not an error");
        let mut synced: Vec<_> = blobs.synced_lengths.keys().cloned().collect();
        synced.sort();
        assert_eq!(synced, vec![OsString::from("1"), OsString::from("3")]);
    }
}
