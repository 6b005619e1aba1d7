//! The async runtime of every group's Raft: openraft's Tokio runtime, with a random number
//! generator that a deterministic simulation can seed.
//!
//! openraft draws its randomness (election timeouts, the first tick's jitter) from
//! `AsyncRuntime::thread_rng`. [`RaftRuntime`] delegates everything to
//! `openraft::TokioRuntime` but answers `thread_rng` from a per-thread seed when one is set
//! ([`seed_thread`]), and from the operating system's entropy otherwise. A node never sets a
//! seed, so production draws stay random; a simulation on a one-threaded Tokio runtime with a
//! paused clock seeds its thread, and then every election timeout of every group is a pure
//! function of the seed and the order of the draws.
//!
//! openraft's own `DeterministicRng` does the same with a task-local seed, which only tasks
//! spawned through openraft inherit; Roster's tasks are spawned with Tokio, so a thread-local
//! seed is what reaches every draw.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use openraft::async_runtime::AsyncRuntime;
use openraft::{OptionalSend, TokioRuntime};
use rand::rngs::SmallRng;
use rand::SeedableRng;

thread_local! {
    /// The next seed of this thread's draws, while a simulation has seeded it.
    static SEED: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Seeds this thread's Raft randomness with `seed` until the guard is dropped.
///
/// For deterministic simulations only: every Raft on the thread draws its election timeouts
/// from the seeded sequence, so the runtime must be one-threaded (`current_thread`), or draws
/// on its other threads stay random.
///
/// # Panics
///
/// If the thread is already seeded: two simulations on one thread would share draws.
pub fn seed_thread(seed: u64) -> SeedGuard {
    SEED.with(|cell| {
        assert!(cell.get().is_none(), "this thread's Raft rng is seeded");
        cell.set(Some(seed));
    });
    SeedGuard {
        _not_send: std::marker::PhantomData,
    }
}

/// Unseeds the thread's Raft randomness when dropped; see [`seed_thread`].
#[must_use = "the seed holds only while the guard lives"]
pub struct SeedGuard {
    /// The seed belongs to the thread that set it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        SEED.with(|cell| cell.set(None));
    }
}

/// openraft's Tokio runtime with a seedable `thread_rng`; see the module doc.
pub struct RaftRuntime {
    inner: TokioRuntime,
}

impl std::fmt::Debug for RaftRuntime {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RaftRuntime")
            .finish_non_exhaustive()
    }
}

impl AsyncRuntime for RaftRuntime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = <TokioRuntime as AsyncRuntime>::Instant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = SmallRng;

    #[inline]
    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        TokioRuntime::spawn(future)
    }

    #[inline]
    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    #[inline]
    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    #[inline]
    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    #[inline]
    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    #[inline]
    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        match SEED.with(|cell| {
            let seed = cell.get()?;
            cell.set(Some(next_seed(seed)));
            Some(seed)
        }) {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_rng(&mut rand::rng()),
        }
    }

    type Mpsc = <TokioRuntime as AsyncRuntime>::Mpsc;
    type Watch = <TokioRuntime as AsyncRuntime>::Watch;
    type Oneshot = <TokioRuntime as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::Mutex<T>;

    fn new(threads: usize) -> Self {
        RaftRuntime {
            inner: TokioRuntime::new(threads),
        }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.inner.block_on(future)
    }
}

/// The seed after `seed` (splitmix64's step and mix): each draw gets its own generator.
fn next_seed(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    fn draws() -> Vec<u64> {
        (0..8)
            .map(|_| RaftRuntime::thread_rng().random_range(300..600))
            .collect()
    }

    #[test]
    fn a_seeded_thread_draws_the_same_sequence_again() {
        let first = {
            let _seed = seed_thread(7);
            draws()
        };
        let again = {
            let _seed = seed_thread(7);
            draws()
        };
        let other = {
            let _seed = seed_thread(8);
            draws()
        };
        assert_eq!(first, again);
        assert_ne!(first, other);
        assert!(first.iter().all(|timeout| (300..600).contains(timeout)));
        // Unseeded again: draws vary (eight equal draws in 300 values is 1 in 300^7).
        let unseeded = draws();
        assert!(unseeded.iter().any(|draw| *draw != unseeded[0]));
    }
}
