//! The client transactions of RFC 3261 §17.1, sans-IO: [`ClientTransaction`] decides when to
//! retransmit (Timer E, or A for INVITE) and when to give up (Timer F, or B); [`Timers`] holds
//! T1 and T2.

use std::time::{Duration, Instant};

/// RFC 3261's T1 (round-trip estimate) default: 500 ms.
pub const T1_DEFAULT: Duration = Duration::from_millis(500);

/// RFC 3261's T2 (longest retransmit interval of a non-INVITE request): 4 s.
pub const T2_DEFAULT: Duration = Duration::from_secs(4);

/// Timer F is this many times T1 (RFC 3261 §17.1.2.2: 64*T1, 32 s with the default T1).
pub const TIMER_F_T1_MULTIPLE: u32 = 64;

/// The base timer values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// T1: the first retransmit interval. Default [`T1_DEFAULT`].
    pub t1: Duration,
    /// T2: the cap of the retransmit interval. Default [`T2_DEFAULT`]; at least `t1`.
    pub t2: Duration,
}

impl Timers {
    /// Timer F, the transaction timeout: 64*T1.
    pub fn timer_f(&self) -> Duration {
        self.t1.saturating_mul(TIMER_F_T1_MULTIPLE)
    }
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            t1: T1_DEFAULT,
            t2: T2_DEFAULT,
        }
    }
}

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionOutcome {
    /// A final response (200..=699) arrived.
    Final(u16),
    /// Timer F fired before any final response.
    TimedOut,
}

/// The timers of one transaction, a closed set over a fixed array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Retransmit (unreliable transports only); Timer A for INVITE.
    E = 0,
    /// Give up; Timer B for INVITE.
    F = 1,
}

const TIMER_COUNT: usize = 2;

/// One client transaction, without I/O or clock: non-INVITE (RFC 3261 §17.1.2, Timers E and
/// F) or INVITE (§17.1.1, Timers A and B: the same schedule without the T2 cap, and no
/// retransmission once a provisional response arrived).
///
/// Method families, in poll order after every input:
/// - inputs: [`ClientTransaction::new`] (the request was just sent), `handle_response`,
///   `handle_timeout`;
/// - outputs: `poll_retransmit` (send the request again now), `poll_timeout` (call
///   `handle_timeout` then), `outcome` (finished).
///
/// `now` must never decrease between calls. Over a reliable transport (TCP, TLS) there is no
/// Timer E, only Timer F. Timer K (absorbing retransmitted responses) is left to the caller:
/// once the outcome is known the caller drops the transaction, and a late copy of the
/// response matches nothing.
#[derive(Clone, Debug)]
pub struct ClientTransaction {
    timers: Timers,
    invite: bool,
    deadlines: [Option<Instant>; TIMER_COUNT],
    /// The current Timer E interval: T1, doubling, capped at T2.
    interval_e: Duration,
    proceeding: bool,
    retransmit_due: bool,
    retransmissions: u32,
    outcome: Option<TransactionOutcome>,
}

impl ClientTransaction {
    /// A non-INVITE transaction whose request was first sent at `now`, over a reliable
    /// transport or not.
    pub fn new(now: Instant, reliable: bool, timers: Timers) -> ClientTransaction {
        ClientTransaction::start(now, reliable, false, timers)
    }

    /// An INVITE transaction whose request was first sent at `now`.
    pub fn new_invite(now: Instant, reliable: bool, timers: Timers) -> ClientTransaction {
        ClientTransaction::start(now, reliable, true, timers)
    }

    fn start(now: Instant, reliable: bool, invite: bool, timers: Timers) -> ClientTransaction {
        let mut deadlines = [None; TIMER_COUNT];
        if !reliable {
            deadlines[Timer::E as usize] = Some(now + timers.t1);
        }
        deadlines[Timer::F as usize] = Some(now + timers.timer_f());
        ClientTransaction {
            timers,
            invite,
            deadlines,
            interval_e: timers.t1,
            proceeding: false,
            retransmit_due: false,
            retransmissions: 0,
            outcome: None,
        }
    }

    /// A response with this status arrived. A provisional one moves to Proceeding, where
    /// retransmissions continue every T2 (§17.1.2.2); a final one ends the transaction.
    pub fn handle_response(&mut self, status: u16) {
        if self.outcome.is_some() {
            return;
        }
        if status < 200 {
            if self.invite {
                // §17.1.1.2: Proceeding stops Timer A; only Timer B still runs.
                self.proceeding = true;
                self.deadlines[Timer::E as usize] = None;
            } else if !self.proceeding {
                self.proceeding = true;
                self.interval_e = self.timers.t2;
            }
            return;
        }
        self.finish(TransactionOutcome::Final(status));
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        if self.due(Timer::F, now) {
            self.finish(TransactionOutcome::TimedOut);
            return;
        }
        if self.due(Timer::E, now) {
            self.retransmit_due = true;
            self.retransmissions += 1;
            if self.invite {
                self.interval_e *= 2;
            } else if !self.proceeding {
                self.interval_e = (self.interval_e * 2).min(self.timers.t2);
            }
            self.deadlines[Timer::E as usize] = Some(now + self.interval_e);
        }
    }

    /// Whether the request should be sent again now; `true` once per Timer E firing.
    #[must_use]
    pub fn poll_retransmit(&mut self) -> bool {
        std::mem::take(&mut self.retransmit_due)
    }

    /// When to call [`ClientTransaction::handle_timeout`] next; `None` once finished.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        self.deadlines.iter().flatten().min().copied()
    }

    /// How the transaction ended, once it has.
    #[must_use]
    pub fn outcome(&self) -> Option<TransactionOutcome> {
        self.outcome
    }

    /// How many times Timer E asked for a retransmission.
    pub fn retransmissions(&self) -> u32 {
        self.retransmissions
    }

    fn due(&self, timer: Timer, now: Instant) -> bool {
        self.deadlines[timer as usize].is_some_and(|deadline| deadline <= now)
    }

    fn finish(&mut self, outcome: TransactionOutcome) {
        self.outcome = Some(outcome);
        self.deadlines = [None; TIMER_COUNT];
        self.retransmit_due = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives the transaction on a virtual clock, answering nothing, until it ends or
    /// `steps_max` timer firings; returns the offsets (ms) of retransmissions and the end.
    fn run_silent(
        reliable: bool,
        steps_max: usize,
    ) -> (Vec<u64>, Option<(u64, TransactionOutcome)>) {
        let start = Instant::now();
        let mut transaction = ClientTransaction::new(start, reliable, Timers::default());
        let mut retransmits = Vec::new();
        for _ in 0..steps_max {
            let Some(deadline) = transaction.poll_timeout() else {
                break;
            };
            transaction.handle_timeout(deadline);
            let at = (deadline - start).as_millis() as u64;
            if transaction.poll_retransmit() {
                retransmits.push(at);
            }
            if let Some(outcome) = transaction.outcome() {
                return (retransmits, Some((at, outcome)));
            }
        }
        (retransmits, None)
    }

    #[test]
    fn udp_retransmits_from_t1_doubling_to_t2_and_times_out_at_64_t1() {
        let (retransmits, end) = run_silent(false, 100);
        // Intervals 0.5, 1, 2, 4, 4, ... s: sends at 0.5, 1.5, 3.5, 7.5, 11.5, ... until 32 s.
        assert_eq!(
            retransmits,
            [500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
        );
        assert_eq!(end, Some((32_000, TransactionOutcome::TimedOut)));
    }

    #[test]
    fn tcp_never_retransmits_and_times_out_at_64_t1() {
        let (retransmits, end) = run_silent(true, 100);
        assert!(retransmits.is_empty());
        assert_eq!(end, Some((32_000, TransactionOutcome::TimedOut)));
    }

    #[test]
    fn provisional_response_moves_retransmissions_to_t2() {
        let start = Instant::now();
        let mut transaction = ClientTransaction::new(start, false, Timers::default());
        transaction.handle_response(100);
        // The first E was armed at T1; after it fires the interval is T2, not 2*T1.
        transaction.handle_timeout(start + Duration::from_millis(500));
        assert!(transaction.poll_retransmit());
        assert_eq!(
            transaction.poll_timeout(),
            Some(start + Duration::from_millis(4_500))
        );
        assert!(
            !transaction.poll_retransmit(),
            "one retransmission per firing"
        );
    }

    #[test]
    fn invite_doubles_without_cap_and_stops_on_provisional() {
        let start = Instant::now();
        let mut transaction = ClientTransaction::new_invite(start, false, Timers::default());
        let mut sends = Vec::new();
        while let Some(deadline) = transaction.poll_timeout() {
            transaction.handle_timeout(deadline);
            if transaction.poll_retransmit() {
                sends.push((deadline - start).as_millis() as u64);
            }
        }
        // Timer A: 0.5, 1, 2, 4, 8, 16 s intervals; Timer B at 32 s.
        assert_eq!(sends, [500, 1_500, 3_500, 7_500, 15_500, 31_500]);
        let mut transaction = ClientTransaction::new_invite(start, false, Timers::default());
        transaction.handle_response(100);
        assert_eq!(
            transaction.poll_timeout(),
            Some(start + Duration::from_secs(32))
        );
    }

    #[test]
    fn final_response_ends_it_and_disarms_timers() {
        let start = Instant::now();
        let mut transaction = ClientTransaction::new(start, false, Timers::default());
        transaction.handle_response(401);
        assert_eq!(transaction.outcome(), Some(TransactionOutcome::Final(401)));
        assert_eq!(transaction.poll_timeout(), None);
        transaction.handle_timeout(start + Duration::from_secs(40));
        transaction.handle_response(200);
        assert_eq!(transaction.outcome(), Some(TransactionOutcome::Final(401)));
        assert!(!transaction.poll_retransmit());
    }

    #[test]
    fn shorter_t1_scales_every_timer() {
        let timers = Timers {
            t1: Duration::from_millis(50),
            t2: Duration::from_millis(400),
        };
        let start = Instant::now();
        let mut transaction = ClientTransaction::new(start, false, timers);
        let mut last = start;
        while let Some(deadline) = transaction.poll_timeout() {
            assert!(deadline >= last, "deadlines never go back");
            last = deadline;
            transaction.handle_timeout(deadline);
        }
        assert_eq!(last - start, Duration::from_millis(3_200));
        assert_eq!(transaction.outcome(), Some(TransactionOutcome::TimedOut));
        // 50, 150, 350, 750, then every 400 ms until 3200: 750 + 6*400 = 3150.
        assert_eq!(transaction.retransmissions(), 10);
    }
}
