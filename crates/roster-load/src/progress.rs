//! The live progress line on stderr (indicatif): elapsed time, completed operations, the
//! rate and p99 of the last interval, errors, and transactions in flight. Hidden when stderr
//! is not a terminal.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::stats::Stats;

/// How often the line is redrawn, and the window its rate and p99 cover.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// The progress line of one phase (load or verify).
pub struct Progress {
    bar: ProgressBar,
    last: Instant,
}

impl Progress {
    /// A spinner for `phase`, drawn only when stderr is a terminal.
    pub fn new(phase: &'static str, now: Instant) -> Progress {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::new_spinner()
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {prefix} [{elapsed_precise}] {msg}")
        {
            bar.set_style(style);
        }
        bar.set_prefix(phase);
        Progress { bar, last: now }
    }

    /// When [`Progress::update`] wants to run next.
    pub fn next_at(&self) -> Instant {
        self.last + PROGRESS_INTERVAL
    }

    /// Redraws the line if an interval has passed, and starts a new window.
    pub fn update(&mut self, now: Instant, stats: &mut Stats, outstanding: usize) {
        if now < self.next_at() {
            return;
        }
        let elapsed_s = (now - self.last).as_secs_f64().max(1e-3);
        self.last = now;
        let window = stats.take_window();
        self.bar.set_message(format!(
            "{} done  {:.0}/s  p99 {:.1} ms  errors {}  in flight {}",
            stats.completed(),
            window.completed as f64 / elapsed_s,
            window.p99_ms,
            stats.errors(),
            outstanding
        ));
        self.bar.tick();
    }

    /// Removes the line.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
