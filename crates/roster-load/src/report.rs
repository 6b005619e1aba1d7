//! [`Report`]: what a run measured, as the final table ([`Report::table`]) and as JSON, and
//! the exit verdict ([`Report::verdict`]).

use std::fmt::Write as _;

use crate::client::ClientCounters;
use crate::config::TransportKind;
use crate::error::LoadError;
use crate::op::Operation;
use crate::stats::Row;
use crate::verify::VerifyReport;
use crate::workload::{Mix, WorkloadCounters};

/// The outcome of `roster load`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// The target address.
    pub target: String,
    /// The transport.
    pub transport: TransportKind,
    /// Users simulated.
    pub users: usize,
    /// Endpoints per user.
    pub endpoints: usize,
    /// `--rate`, per second.
    pub rate_offered_per_s: f64,
    /// Operations completed per second of the load phase.
    pub rate_achieved_per_s: f64,
    /// Seconds from the first operation to the last one started.
    pub load_s: f64,
    /// Seconds of the load phase with its drain.
    pub elapsed_s: f64,
    /// The mix after the storm.
    pub mix: Mix,
    /// The seed (reuse it with `--seed` to repeat the run's choices).
    pub seed: u64,
    /// Latency rows per operation and outcome (ms, from intended send times).
    pub operations: Vec<Row>,
    /// Operations completed (answered, timed out, or failed on transport).
    pub completed: u64,
    /// Operations that got a final response.
    pub answered: u64,
    /// Operations that failed (error status, timeout, transport error).
    pub errors: u64,
    /// Operations still open when the drain ended.
    pub unfinished: usize,
    /// `--max-outstanding`.
    pub max_outstanding: usize,
    /// How often a due operation had to wait for a free slot.
    pub cap_hits: u64,
    /// The client's counters.
    pub client: ClientCounters,
    /// The workload's counters.
    pub workload: WorkloadCounters,
    /// Messages that could not be sent.
    pub send_errors: u64,
    /// Acknowledged registrations recorded.
    pub acks: u64,
    /// Endpoints registered at the end.
    pub registered_at_end: usize,
    /// Whether Ctrl-C cut the run short.
    pub interrupted: bool,
    /// The verification, with `--verify`.
    pub verify: Option<VerifyReport>,
}

impl Report {
    /// The final table: one row per operation and outcome, then totals.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "roster load: {} over {}, {} users × {} endpoints, {:.0}/s offered for {:.1} s",
            self.target,
            self.transport.via_token(),
            self.users,
            self.endpoints,
            self.rate_offered_per_s,
            self.load_s
        );
        let _ = writeln!(
            out,
            "{:<11} {:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "operation", "outcome", "count", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        for row in &self.operations {
            let latency = &row.latency;
            let _ = writeln!(
                out,
                "{:<11} {:<16} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                row.operation.as_str(),
                row.outcome,
                latency.count,
                latency.p50_ms,
                latency.p90_ms,
                latency.p99_ms,
                latency.p999_ms,
                latency.max_ms
            );
        }
        let _ = writeln!(
            out,
            "completed {} ({:.0}/s), errors {}, unfinished {}, requests sent {}, retransmissions {}, challenges {}",
            self.completed,
            self.rate_achieved_per_s,
            self.errors,
            self.unfinished,
            self.client.requests_sent,
            self.client.retransmissions,
            self.client.challenges
        );
        if self.cap_hits > 0 {
            let _ = writeln!(
                out,
                "concurrency cap: {} transactions in flight reached; {} operations waited (latency counts the wait)",
                self.max_outstanding, self.cap_hits
            );
        }
        if self.workload.skipped_busy > 0 {
            let _ = writeln!(
                out,
                "skipped: {} operations found their endpoint or user busy",
                self.workload.skipped_busy
            );
        }
        let without_password = self.client.challenged_without_password;
        if without_password > 0 {
            let _ = writeln!(
                out,
                "challenged {without_password} times, but no password was given: pass --password or --password-file"
            );
        }
        let refused = self.client.auth_refused.saturating_sub(without_password);
        if refused > 0 {
            let _ = writeln!(
                out,
                "authentication refused {refused} times (wrong password or unsupported challenge)"
            );
        }
        if let Some(verify) = &self.verify {
            let _ = writeln!(
                out,
                "verify: {} AORs, {} bindings expected: {} missing, {} expiring early, {} AORs not verified{}",
                verify.aors_checked,
                verify.bindings_expected,
                verify.missing,
                verify.expires_early,
                verify.unverified,
                if verify.passed() { " — PASS" } else { " — FAIL" }
            );
            for finding in verify.findings.iter().take(10) {
                let _ = writeln!(
                    out,
                    "  {} {} {:?}",
                    finding.aor, finding.contact, finding.problem
                );
            }
            for (aor, got) in verify.unverified_aors.iter().take(10) {
                let _ = writeln!(out, "  {aor} not verified: {got}");
            }
        }
        if self.interrupted {
            let _ = writeln!(out, "interrupted");
        }
        out
    }

    /// `Ok` when the target answered, acknowledged at least one registration (if any was
    /// sent), and any verification passed.
    pub fn verdict(&self) -> Result<(), LoadError> {
        if self.answered == 0 && self.client.requests_sent > 0 {
            return Err(LoadError::NothingAnswered {
                target: self.target.clone(),
                sent: self.client.requests_sent,
                waited: std::time::Duration::from_secs_f64(self.elapsed_s),
            });
        }
        let registrations: Vec<String> = self
            .operations
            .iter()
            .filter(|row| row.operation == Operation::Register && row.outcome != "all")
            .map(|row| format!("{} ×{}", row.outcome, row.latency.count))
            .collect();
        if self.acks == 0 && self.client.challenged_without_password > 0 {
            return Err(LoadError::NoPassword {
                challenges: self.client.challenged_without_password,
            });
        }
        if self.acks == 0 && !registrations.is_empty() {
            return Err(LoadError::NothingAcknowledged {
                answered: self.answered,
                outcomes: registrations.join(", "),
            });
        }
        match &self.verify {
            Some(verify) if !verify.passed() => Err(LoadError::VerifyFailed {
                missing: verify.missing,
                expires_early: verify.expires_early,
                unverified: verify.unverified,
            }),
            _ => Ok(()),
        }
    }
}
