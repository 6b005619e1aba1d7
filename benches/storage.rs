//! Durable appends to `roster-store`: `LogStore::append` of a batch of REGISTER entries, then
//! the wait for its `IOFlushed` callback, which the flusher thread fires after one sled flush
//! and one `fdatasync` shared by every waiter queued meanwhile (group commit). One group
//! appending alone, and 32 groups of one node appending at once, each as soon as its previous
//! append is durable; batches of 1 and 16 entries. The database lives under the target
//! directory, on the real disk. Time is per durable batch of every group; throughput is in
//! entries.
//!
//! `storage/purge`: one durable `LogStore::purge` of 5,000 entries, keeping the newest 1,000:
//! what each replica of a group does after every snapshot at the default policy (a snapshot
//! every 5,000 entries, 1,000 kept). openraft awaits it inside the group's core, so the group
//! answers nothing meanwhile. The appends before it are not timed.

use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use openraft::storage::RaftLogStorage;
use openraft::type_config::TypeConfigExt;
use roster_benches::{command_entry, log_id, register_command};
use roster_raft::{typ, GroupState, TypeConfig};
use roster_registrar::Policy;
use roster_store::{LogStore, NodeStore};

const GROUP_COUNTS: [u32; 2] = [1, 32];
const BATCH_SIZES: [u64; 2] = [1, 16];

/// One node's database and the log of each of its groups, with the index each log ends at.
struct Node {
    // Field order is drop order: the logs, then the database (its flusher joins), then the
    // directory.
    logs: Vec<(LogStore, u64)>,
    node: NodeStore,
    _directory: tempfile::TempDir,
    /// Durable appends and flushes in the timed parts of [`Node::run`].
    appends: u64,
    flushes: u64,
}

impl Node {
    fn open(groups: u32) -> Node {
        // Under the target directory: `/tmp` may be a tmpfs, where `fdatasync` costs nothing.
        let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("directory");
        let node = NodeStore::open(directory.path().join("node")).expect("store opens");
        let logs = (0..groups)
            .map(|group| {
                let (log, _machine) = node
                    .group(
                        roster_raft::GroupKey::routing(1, group),
                        GroupState::new(Policy::default()),
                    )
                    .expect("group");
                (log, 0)
            })
            .collect();
        Node {
            logs,
            node,
            _directory: directory,
            appends: 0,
            flushes: 0,
        }
    }

    /// Every group appends `iters` batches of `batch` entries, each once the one before is
    /// durable, all groups at once; returns the time until the last is durable. Purging the
    /// logs afterwards, so that the database does not grow from sample to sample, is not
    /// timed.
    async fn run(&mut self, batch: u64, iters: u64) -> Duration {
        let flushes_before = self.node.flush_count();
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (mut log, mut last_index) in std::mem::take(&mut self.logs) {
            tasks.spawn(async move {
                for _ in 0..iters {
                    let first = last_index + 1;
                    last_index += batch;
                    append_durably(&mut log, first..=last_index).await;
                }
                (log, last_index)
            });
        }
        self.logs = tasks.join_all().await;
        let measured = started.elapsed();
        self.appends += iters * self.logs.len() as u64;
        self.flushes += self.node.flush_count() - flushes_before;
        for (log, last_index) in &mut self.logs {
            log.purge(log_id(*last_index)).await.expect("log purges");
        }
        measured
    }
}

/// Appends entries at `indexes` and returns once the store reports them durable.
async fn append_durably(log: &mut LogStore, indexes: std::ops::RangeInclusive<u64>) {
    let entries = indexes.map(|index| {
        let user = u32::try_from(index % 100_000).expect("below 100,000");
        command_entry(index, register_command(user, 1))
    });
    let (sender, receiver) = TypeConfig::oneshot();
    log.append(entries, typ::IOFlushed::signal(sender))
        .await
        .expect("append");
    receiver.await.expect("callback fires").expect("durable");
}

/// A runtime with the machine's two cores.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime")
}

fn appends(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("storage");
    // Milliseconds per iteration: few samples, each of a fixed number of iterations.
    group.sample_size(20).sampling_mode(SamplingMode::Flat);
    for groups in GROUP_COUNTS {
        for batch in BATCH_SIZES {
            let mut node = Node::open(groups);
            group.throughput(Throughput::Elements(u64::from(groups) * batch));
            let id = BenchmarkId::new(format!("{groups}_groups"), format!("{batch}_entries"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| runtime.block_on(node.run(batch, iters)))
            });
            println!(
                "storage/{groups}_groups/{batch}_entries: {} durable appends, {} flushes",
                node.appends, node.flushes
            );
        }
    }
    group.finish();
}

/// Entries appended before each timed purge, and how many of the newest it keeps.
const PURGE_LOG_ENTRIES: u64 = 5_000;
const PURGE_KEPT: u64 = 1_000;

fn purge(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("storage");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(PURGE_LOG_ENTRIES));
    let mut node = Node::open(1);
    group.bench_function("purge", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut measured = Duration::ZERO;
                for _ in 0..iters {
                    let (log, last_index) = &mut node.logs[0];
                    let first = *last_index + 1;
                    *last_index += PURGE_LOG_ENTRIES;
                    // In batches of 100, the size of a loaded leader's appends.
                    for start in (first..=*last_index).step_by(100) {
                        append_durably(log, start..=(start + 99).min(*last_index)).await;
                    }
                    let started = Instant::now();
                    log.purge(log_id(*last_index - PURGE_KEPT))
                        .await
                        .expect("log purges");
                    measured += started.elapsed();
                }
                measured
            })
        })
    });
    group.finish();
}

criterion_group!(benches, appends, purge);
criterion_main!(benches);
