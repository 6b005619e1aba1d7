//! Durable appends to `roster-store`: `LogStore::append` of a batch of REGISTER entries, then
//! the wait for its `IOFlushed` callback, which the flusher thread fires after one sled flush
//! and one `fdatasync` shared by every waiter queued meanwhile (group commit). One group
//! appending alone, and 32 groups of one node appending at once, each as soon as its previous
//! append is durable; batches of 1 and 16 entries. The database lives under the target
//! directory, on the real disk. Time is per durable batch of every group; throughput is in
//! entries.

use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use openraft::storage::RaftLogStorage;
use openraft::type_config::TypeConfigExt;
use roster_benches::{command_entry, log_id, register_command};
use roster_raft::{typ, TypeConfig};
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
                let (log, _machine) = node.group(group, &Policy::default()).expect("group");
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

fn appends(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
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

criterion_group!(benches, appends);
criterion_main!(benches);
