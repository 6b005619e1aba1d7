//! The checkers, one module per invariant, each reading the recorded run and returning its
//! [`CheckerResult`]:
//!
//! - [`durability`]: every binding acknowledged, and not since removed, is listed by every node
//!   after healing (roster-load's [`roster_load::Ledger`] and `check_bindings`);
//! - [`linear`]: per-AOR linearizability of register, unregister, query and lookup;
//! - [`raft`]: at most one leader per group and term, terms never go back, and a node whose
//!   groups have shut down does not call itself healthy (from every node's `/status` and
//!   `/health`, sampled);
//! - [`liveness`]: per fault, the time until writes succeed again in every routing group and
//!   the share of operations that succeeded during it; after the last heal, every node must
//!   accept a write for every group.
//!
//! With two sites:
//! - [`across_sites`]: after a site loss and failover, every write acknowledged more than the
//!   measured lag before the loss is present (durability, with the writes at risk set aside),
//!   and nothing listed was never written; resiliency-mode and at-risk answers are read as
//!   unknown writes (or set aside, reads) by the linearizability checker;
//! - [`split_brain`]: no two pools acknowledged writes for the same user as owner in the same
//!   epoch (from each answer's `X-Roster-Served` header).
//!
//! Checkers take the [`crate::history::Deployment`] (pools, nodes, epochs).

pub mod across_sites;
pub mod durability;
pub mod linear;
pub mod liveness;
pub mod raft;
pub mod split_brain;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::history::Op;

/// Most anomalies a checker lists in a report; the count is always complete.
pub const ANOMALIES_LISTED_MAX: usize = 50;

/// What one checker found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CheckerResult {
    /// The checker's name.
    pub checker: String,
    /// What it looked at, e.g. "1,204 AORs".
    pub checked: String,
    /// Broken invariants: a run with any fails.
    pub anomalies: u64,
    /// Things it could not decide (not failures, but listed).
    pub inconclusive: u64,
    /// Of the anomalies, those a scenario lists as known defects (they do not fail the run).
    pub known: u64,
    /// The first [`ANOMALIES_LISTED_MAX`] anomalies, one sentence each.
    pub details: Vec<String>,
    /// Figures the report shows (counts, seconds).
    pub figures: BTreeMap<String, f64>,
    /// Every anomaly's sentence, for matching known defects (not serialized: `details`
    /// lists the first ones).
    #[serde(skip)]
    pub anomaly_details: Vec<String>,
}

impl CheckerResult {
    /// An empty result named `checker`.
    pub fn new(checker: &str) -> CheckerResult {
        CheckerResult {
            checker: checker.to_owned(),
            ..CheckerResult::default()
        }
    }

    /// Counts one anomaly and lists it while there is room.
    pub fn anomaly(&mut self, detail: String) {
        self.anomalies += 1;
        self.anomaly_details.push(detail.clone());
        if self.details.len() < ANOMALIES_LISTED_MAX {
            self.details.push(detail);
        }
    }

    /// Moves the anomalies that `is_known` recognises to `known`, marking their details.
    pub fn classify_known(&mut self, is_known: impl Fn(&str, &str) -> bool) {
        let checker = self.checker.clone();
        let known = self
            .anomaly_details
            .iter()
            .filter(|detail| is_known(&checker, detail))
            .count() as u64;
        self.known = known;
        for detail in &mut self.details {
            if is_known(&checker, detail) {
                detail.insert_str(0, "known defect: ");
            }
        }
    }

    /// Anomalies that are not known defects: any fails the run.
    pub fn unexpected(&self) -> u64 {
        self.anomalies - self.known
    }

    /// Counts one undecided case and lists it while there is room.
    pub fn undecided(&mut self, detail: String) {
        self.inconclusive += 1;
        if self.details.len() < ANOMALIES_LISTED_MAX {
            self.details.push(format!("inconclusive: {detail}"));
        }
    }
}

/// The operations of each (home pool, AOR), in id order.
pub fn by_aor(ops: &[Op]) -> BTreeMap<&str, Vec<&Op>> {
    let mut aors: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        aors.entry(op.aor.as_str()).or_default().push(op);
    }
    aors
}

/// Runs [`linear::check_aor`] on every AOR.
pub fn linearizability(ops: &[Op]) -> CheckerResult {
    let mut result = CheckerResult::new("linearizability");
    let aors = by_aor(ops);
    let mut checked = 0u64;
    for (aor, ops) in &aors {
        match linear::check_aor(aor, ops) {
            linear::AorVerdict::Linearizable => checked += 1,
            linear::AorVerdict::Violation(violation) => {
                checked += 1;
                result.anomaly(format!(
                    "{aor}: op {} ({}, {:.3}-{:.3} s) answered {:?}; possible then: {:?}",
                    violation.op,
                    violation.kind.as_str(),
                    violation.invoke_s,
                    violation.complete_s,
                    violation.listed,
                    violation.possible
                ));
            }
            linear::AorVerdict::Unchecked(reason) => result.undecided(format!("{aor}: {reason}")),
        }
    }
    result.checked = format!("{checked} of {} AORs, {} operations", aors.len(), ops.len());
    result.figures.insert("aors_checked".into(), checked as f64);
    result
}
