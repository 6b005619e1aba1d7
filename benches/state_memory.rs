//! Memory of a routing group's applied state per binding: fills a `GroupState` with 200,000
//! AORs of one binding each, through the apply step, and reports the heap bytes and
//! allocations it holds per binding (requested sizes, before any allocator's rounding or
//! fragmentation), and the encoded snapshot's bytes per binding (what a restart reads back).
//! Two kinds of REGISTER: the plain one `benches/pool/million` sends with SIPp, and a typical
//! soft phone's (with `+sip.instance`, q and a longer contact).
//!
//! Not a criterion benchmark: it measures bytes, not time. Run with
//! `cargo bench -p roster-benches --bench state_memory`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use roster_benches::{command_entry, minimal_register_command, register_command};
use roster_raft::{GroupState, ReplicatedState};
use roster_registrar::{Command, Policy};

/// The system allocator, counting live bytes and allocations.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        LIVE_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        LIVE_ALLOCATIONS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// AORs per measurement.
const AORS: u32 = 200_000;

fn live() -> (usize, usize) {
    (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_ALLOCATIONS.load(Ordering::Relaxed),
    )
}

fn measure(name: &str, command: fn(u32) -> Command) {
    let mut state = GroupState::new(Policy::default());
    let (bytes_before, allocations_before) = live();
    for n in 0..AORS {
        // Built and dropped one at a time: only what the state keeps stays counted.
        let entry = command_entry(u64::from(n) + 1, command(n));
        state.apply(&entry).expect("register applies");
    }
    let (bytes_after, allocations_after) = live();
    let snapshot = state.encode_snapshot().expect("snapshot encodes");
    let per = |total: usize| total as f64 / f64::from(AORS);
    println!(
        "{name:<14} {:>9.0} B heap  {:>5.1} allocations  {:>6.0} B snapshot   per binding ({AORS} AORs)",
        per(bytes_after - bytes_before),
        per(allocations_after - allocations_before),
        per(snapshot.len()),
    );
}

fn main() {
    measure("sipp_unique", minimal_register_command);
    measure("typical_phone", |n| register_command(n, 1));
}
