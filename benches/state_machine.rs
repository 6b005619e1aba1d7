//! The Raft apply step of one routing group: `StateMachineStore::apply`, which openraft's
//! state-machine worker calls with each run of committed entries, on batches of 64 REGISTER
//! entries, in a group already holding 1,000 or 100,000 AORs of one binding each.
//! `register_new` adds AORs the group does not hold (removed again, untimed, after each batch);
//! `refresh` registers held ones again with a higher CSeq. `group_state` is `GroupState::apply`
//! alone, without the store's lock and stream around it. Throughput is in entries.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use openraft::storage::RaftStateMachine;
use roster_benches::{command_entry, register_command, unregister_command};
use roster_raft::{typ, GroupResponse, GroupState, ReplicatedState};
use roster_registrar::{Command, Policy, Registry};
use roster_store::{NodeStore, StateMachineStore};
use tokio::runtime::Runtime;

/// Entries per apply call: a run of entries committed together under load.
const BATCH: u32 = 64;
/// AORs the group holds before each benchmark.
const AOR_COUNTS: [u32; 2] = [1_000, 100_000];
/// Entries per apply call while filling the group.
const FILL_BATCH: u32 = 1_024;

#[derive(Clone, Copy)]
enum Kind {
    RegisterNew,
    Refresh,
}

/// Where entries are applied: the store openraft drives, or the bare state inside it.
trait Target {
    fn apply_batch(&mut self, entries: Vec<typ::Entry>);
    fn aor_count(&self) -> usize;
}

/// A group's state machine in a database of its own, with a runtime to drive its async API.
struct Store {
    // Field order is drop order: the store before its database and directory.
    machine: StateMachineStore<GroupState>,
    _node: NodeStore,
    _directory: tempfile::TempDir,
    runtime: Runtime,
}

/// One group being benchmarked: its target and where its log and its AORs stand.
struct Group<T> {
    target: T,
    aors: u32,
    last_index: u64,
    next_refresh: u32,
}

impl Store {
    fn open() -> Store {
        let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("directory");
        let node = NodeStore::open(directory.path().join("node")).expect("store opens");
        let (_log, machine) = node
            .group(
                roster_raft::GroupKey::routing(1, 0),
                GroupState::new(Policy::default()),
            )
            .expect("group opens");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        Store {
            machine,
            _node: node,
            _directory: directory,
            runtime,
        }
    }
}

impl Target for Store {
    fn apply_batch(&mut self, entries: Vec<typ::Entry>) {
        // As on a follower: no client waits for the responses.
        let stream = futures_util::stream::iter(entries.into_iter().map(|entry| Ok((entry, None))));
        self.runtime
            .block_on(self.machine.apply(stream))
            .expect("entries apply");
    }

    fn aor_count(&self) -> usize {
        self.machine
            .state_handle()
            .read(|state| state.registry().map_or(0, Registry::aor_count))
            .expect("state reads")
    }
}

impl Target for GroupState {
    fn apply_batch(&mut self, entries: Vec<typ::Entry>) {
        for entry in &entries {
            // A refused command would be cheaper and measure the wrong thing.
            let response = self.apply(entry);
            assert!(matches!(response, Ok(GroupResponse::Registered { .. })));
        }
    }

    fn aor_count(&self) -> usize {
        self.registry().map_or(0, Registry::aor_count)
    }
}

impl<T: Target> Group<T> {
    /// `target` filled with AORs `0..aors`.
    fn filled(target: T, aors: u32) -> Group<T> {
        let mut group = Group {
            target,
            aors,
            last_index: 0,
            next_refresh: 0,
        };
        for first in (0..aors).step_by(FILL_BATCH as usize) {
            let users: Vec<u32> = (first..aors.min(first + FILL_BATCH)).collect();
            let entries = group.entries(&users, register_command);
            group.target.apply_batch(entries);
        }
        assert_eq!(group.target.aor_count(), aors as usize);
        group
    }

    /// One entry per user, at the next log indexes. The CSeq is the index, so it rises on
    /// every user's one Call-ID.
    fn entries(&mut self, users: &[u32], command: fn(u32, u32) -> Command) -> Vec<typ::Entry> {
        let mut entries = Vec::with_capacity(users.len());
        for &user in users {
            self.last_index += 1;
            let cseq = u32::try_from(self.last_index).expect("fewer than 2^32 entries");
            entries.push(command_entry(self.last_index, command(user, cseq)));
        }
        entries
    }

    /// The users of the next batch: AORs the group does not hold, or the next held ones.
    fn users(&mut self, kind: Kind) -> Vec<u32> {
        match kind {
            Kind::RegisterNew => (self.aors..self.aors + BATCH).collect(),
            Kind::Refresh => {
                let first = self.next_refresh;
                self.next_refresh = (first + BATCH) % self.aors;
                (first..first + BATCH)
                    .map(|user| user % self.aors)
                    .collect()
            }
        }
    }

    /// Applies `iters` batches of `kind` and returns the time their applies took, and only
    /// that: making entries and removing new AORs again are not timed.
    fn run(&mut self, kind: Kind, iters: u64) -> Duration {
        let mut measured = Duration::ZERO;
        for _ in 0..iters {
            let users = self.users(kind);
            let entries = self.entries(&users, register_command);
            let started = Instant::now();
            self.target.apply_batch(entries);
            measured += started.elapsed();
            if let Kind::RegisterNew = kind {
                let entries = self.entries(&users, unregister_command);
                self.target.apply_batch(entries);
            }
        }
        measured
    }
}

fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("state_machine");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    for aors in AOR_COUNTS {
        bench_target(&mut group, "store", Group::filled(Store::open(), aors));
        let state = GroupState::new(Policy::default());
        bench_target(&mut group, "group_state", Group::filled(state, aors));
    }
    group.finish();
}

fn bench_target<T: Target>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    target: &str,
    mut filled: Group<T>,
) {
    let aors = filled.aors;
    for (kind, name) in [
        (Kind::RegisterNew, "register_new"),
        (Kind::Refresh, "refresh"),
    ] {
        let id = BenchmarkId::new(format!("{target}_{name}"), aors);
        group.bench_function(id, |b| b.iter_custom(|iters| filled.run(kind, iters)));
    }
    // Pair check with `filled`: new AORs went again, refreshes added none.
    assert_eq!(filled.target.aor_count(), aors as usize);
}

criterion_group!(benches, apply);
criterion_main!(benches);
