//! The async shell: [`drive`] runs a [`Source`] on a [`Client`] over [`Links`] in real time:
//! feed events, poll until quiet, sleep until the next deadline.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::client::{Client, Outcome};
use crate::link::{Inbound, Links};
use crate::progress::Progress;
use crate::source::Source;
use crate::stats::{OutcomeKey, Stats};

/// Operations started per loop turn, so that receiving is never starved by a backlog.
/// A few thousand is a few milliseconds of work.
const START_BATCH_MAX: usize = 2_048;

/// Messages handled per loop turn before operations and timers get their turn again.
const INBOUND_BATCH_MAX: usize = 1_024;

/// How a drive went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriveSummary {
    /// Due operations that waited because `max_outstanding` transactions were open.
    pub cap_hits: u64,
    /// Operations that got a final response.
    pub answered: u64,
    /// Operations still open when the drain ended.
    pub unfinished: usize,
    /// Whether the run was interrupted.
    pub interrupted: bool,
    /// From the start until the source finished (or the drive ended).
    pub active: Duration,
}

/// Limits of one drive.
#[derive(Clone, Copy, Debug)]
pub struct DriveLimits {
    /// Most transactions in flight.
    pub max_outstanding: usize,
    /// Longest wait for open transactions once the source is finished.
    pub drain: Duration,
}

/// Runs `source` until it is finished and its transactions are done (or the drain ends),
/// recording every completion in `stats`. `cancel` stops the source; open transactions
/// still drain.
pub async fn drive(
    client: &mut Client,
    source: &mut dyn Source,
    links: &mut Links,
    stats: &mut Stats,
    progress: &mut Progress,
    limits: DriveLimits,
    cancel: &CancellationToken,
) -> DriveSummary {
    let start = Instant::now();
    let mut summary = DriveSummary::default();
    let mut last_blocked = None;
    let mut drain_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        client.handle_timeout(now);
        let mut capped = false;
        for _ in 0..START_BATCH_MAX {
            if client.outstanding() >= limits.max_outstanding {
                let due = source.due_at().filter(|due| *due <= now);
                if due.is_some() && due != last_blocked {
                    summary.cap_hits += 1;
                    last_blocked = due;
                }
                capped = true;
                break;
            }
            let Some(op) = source.poll_op(now, client) else {
                break;
            };
            if let Err(error) = client.start(op, now) {
                tracing::debug!(%error, "operation not started");
            }
        }
        while let Some(transmit) = client.poll_transmit() {
            links.send(transmit).await;
        }
        while let Some(completion) = client.poll_completion() {
            let outcome = match &completion.outcome {
                Outcome::Final(response) => {
                    summary.answered += 1;
                    OutcomeKey::Status(response.status)
                }
                Outcome::TimedOut => OutcomeKey::Timeout,
                Outcome::TransportError => OutcomeKey::TransportError,
            };
            let latency = completion
                .finished_at
                .saturating_duration_since(completion.op.intended_at);
            stats.record(completion.op.operation, outcome, latency);
            source.handle_completion(&completion);
        }
        progress.update(now, stats, client.outstanding());
        if source.is_finished(now) {
            let until = *drain_until.get_or_insert_with(|| {
                summary.active = now - start;
                now + limits.drain
            });
            if client.outstanding() == 0 || now >= until {
                summary.unfinished = client.outstanding();
                return summary;
            }
        }
        // The next wake-up: a timer, the next operation (at once if one is still due: the
        // batch bound cut it short; never while capped, a completion frees the slot), the
        // drain's end, or the progress line.
        let source_due = if capped || source.is_finished(now) {
            None
        } else {
            source.due_at().map(|due| due.max(now))
        };
        let wake = [
            client.poll_timeout(),
            source_due,
            drain_until,
            Some(progress.next_at()),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now + Duration::from_millis(100));
        tokio::select! {
            biased;
            () = cancel.cancelled(), if !summary.interrupted => {
                summary.interrupted = true;
                source.stop();
            }
            Some(first) = links.recv() => {
                let now = Instant::now();
                let mut next = Some(first);
                for _ in 0..INBOUND_BATCH_MAX {
                    match next {
                        Some(Inbound::Message { link, bytes }) => client.handle_message(link, &bytes, now),
                        Some(Inbound::Closed { link, reason }) => {
                            tracing::warn!(link, %reason, "connection closed; reconnecting");
                            client.handle_link_closed(link, now);
                        }
                        None => break,
                    }
                    next = links.try_recv();
                }
            }
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
        }
    }
}
