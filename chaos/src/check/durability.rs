//! Durability: after the last heal, every node lists every binding that was acknowledged and
//! not since removed.
//!
//! The history's writes fill a roster-load [`Ledger`] (what `roster load --verify` checks), and
//! each final read (one query per AOR through every node) is compared with what the ledger
//! expects at that moment. An unregistration whose outcome is unknown may still apply at any
//! later time, so the binding it names is not expected again; one that was refused or answered
//! is recorded when it ended, as `roster load` does.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use roster_load::{Ack, Ledger};

use crate::check::CheckerResult;
use crate::history::{Deployment, Op, OpKind, OpOutcome, Phase};

/// How far past the run an unknown unregistration is taken to apply: never before the end.
const UNKNOWN_APPLIES_UNTIL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The ledger of the run's writes (load and probes), on a clock starting at `start`. The
/// writes in `exempt` (at risk in a site loss: see `across_sites`) may or may not have
/// survived it: their REGISTERs are left out, and their unregistrations count as unknown (one
/// that reached the partner removed the binding, one that did not left it).
pub fn ledger(ops: &[Op], start: Instant, expires: Duration, exempt: &HashSet<u64>) -> Ledger {
    let mut ledger = Ledger::new();
    for op in ops.iter().filter(|op| op.phase != Phase::Final) {
        let Some(contact) = &op.contact else {
            continue;
        };
        if exempt.contains(&op.id) {
            if op.kind == OpKind::Unregister {
                ledger.record_unregister(&op.aor, contact, start + UNKNOWN_APPLIES_UNTIL);
            }
            continue;
        }
        match (op.kind, op.outcome) {
            (OpKind::Register, OpOutcome::Ok) => ledger.record_ack(Ack {
                aor: op.aor.clone(),
                contact: contact.clone(),
                sent_at: start + op.invoke,
                acked_at: start + op.complete,
                expires,
            }),
            (OpKind::Unregister, OpOutcome::Unknown) => {
                ledger.record_unregister(&op.aor, contact, start + UNKNOWN_APPLIES_UNTIL);
            }
            (OpKind::Unregister, _) => {
                ledger.record_unregister(&op.aor, contact, start + op.complete);
            }
            _ => {}
        }
    }
    ledger
}

/// Checks the final reads of `ops` against the ledger of its writes. `targets` are the (AOR,
/// node) pairs that were to be read: one never read successfully is an anomaly (nothing is
/// known of it). `exempt`: acknowledged writes a site loss may have cost (at risk).
pub fn check(
    ops: &[Op],
    deployment: &Deployment,
    targets: &BTreeSet<(String, usize)>,
    start: Instant,
    expires: Duration,
    exempt: &HashSet<u64>,
) -> CheckerResult {
    let mut result = CheckerResult::new("durability");
    let ledger = ledger(ops, start, expires, exempt);
    let mut read: HashSet<(&str, usize)> = HashSet::new();
    let mut expected_total = 0u64;
    let mut lost = 0u64;
    let mut lost_bindings: BTreeSet<(&str, String)> = BTreeSet::new();
    for op in ops.iter().filter(|op| op.phase == Phase::Final) {
        if op.outcome != OpOutcome::Ok || !read.insert((op.aor.as_str(), op.node)) {
            continue;
        }
        let listed: HashSet<&str> = op.listed.iter().map(String::as_str).collect();
        let expected = ledger.expected_for(&op.aor, start + op.invoke);
        expected_total += expected.len() as u64;
        for binding in expected {
            if listed.contains(binding.contact.as_str()) {
                continue;
            }
            lost += 1;
            lost_bindings.insert((op.aor.as_str(), binding.contact.clone()));
            let node = deployment
                .nodes
                .get(op.node)
                .map_or_else(|| op.node.to_string(), ToString::to_string);
            result.anomaly(format!(
                "{} lost {}: acknowledged at {:.3} s, not listed by node {node} at {:.3} s",
                op.aor,
                binding.contact,
                (binding.ack.acked_at - start).as_secs_f64(),
                op.complete.as_secs_f64()
            ));
        }
    }
    let mut unverified = 0u64;
    for (aor, node) in targets {
        if !read.contains(&(aor.as_str(), *node)) {
            unverified += 1;
            let name = deployment
                .nodes
                .get(*node)
                .map_or_else(|| node.to_string(), ToString::to_string);
            result.anomaly(format!("{aor}: no successful read through node {name}"));
        }
    }
    result.checked = format!(
        "{} reads of {} AORs, {expected_total} expected bindings",
        read.len(),
        ledger.aors().len()
    );
    result
        .figures
        .insert("acknowledged".into(), ledger.acks() as f64);
    result
        .figures
        .insert("bindings_expected".into(), expected_total as f64);
    result.figures.insert("missing".into(), lost as f64);
    result
        .figures
        .insert("lost_bindings".into(), lost_bindings.len() as f64);
    result
        .figures
        .insert("unverified".into(), unverified as f64);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{NodeName, PoolView};

    fn deployment() -> Deployment {
        Deployment {
            pools: vec![PoolView {
                id: 1,
                name: "p".into(),
                groups: 1,
                epoch: 1,
            }],
            nodes: vec![NodeName {
                pool: "p".into(),
                id: 1,
            }],
        }
    }

    fn op(id: u64, kind: OpKind, outcome: OpOutcome, at_ms: u64, phase: Phase) -> Op {
        Op {
            id,
            client: 0,
            node: 0,
            aor: "sip:a@example.com".into(),
            group: 0,
            home: 0,
            served: None,
            kind,
            contact: kind.is_write().then(|| "sip:c@192.0.2.1".to_owned()),
            invoke: Duration::from_millis(at_ms),
            complete: Duration::from_millis(at_ms + 10),
            outcome,
            status: None,
            listed: Vec::new(),
            phase,
        }
    }

    fn run(ops: &[Op]) -> CheckerResult {
        let targets = BTreeSet::from([("sip:a@example.com".to_owned(), 0)]);
        check(
            ops,
            &deployment(),
            &targets,
            Instant::now(),
            Duration::from_secs(7200),
            &HashSet::new(),
        )
    }

    #[test]
    fn a_missing_acknowledged_binding_is_lost_and_a_listed_one_is_not() {
        let register = op(1, OpKind::Register, OpOutcome::Ok, 0, Phase::Load);
        let empty_read = op(2, OpKind::Query, OpOutcome::Ok, 100, Phase::Final);
        let result = run(&[register.clone(), empty_read.clone()]);
        assert_eq!(result.anomalies, 1, "{result:?}");
        let mut full_read = empty_read;
        full_read.listed = vec!["sip:c@192.0.2.1".into()];
        assert_eq!(run(&[register, full_read]).anomalies, 0);
    }

    #[test]
    fn an_unknown_unregister_makes_the_binding_unexpected_for_good() {
        let ops = [
            op(1, OpKind::Register, OpOutcome::Ok, 0, Phase::Load),
            op(2, OpKind::Unregister, OpOutcome::Unknown, 20, Phase::Load),
            op(3, OpKind::Register, OpOutcome::Ok, 40, Phase::Load),
            op(4, OpKind::Query, OpOutcome::Ok, 100, Phase::Final),
        ];
        assert_eq!(run(&ops).anomalies, 0);
    }

    #[test]
    fn an_unregister_at_risk_in_a_site_loss_may_have_removed_the_binding() {
        // Registered, then unregistered just before the loss (acknowledged by the lost pool):
        // the partner may or may not have it, so an empty read is no loss.
        let ops = [
            op(1, OpKind::Register, OpOutcome::Ok, 0, Phase::Load),
            op(2, OpKind::Unregister, OpOutcome::Ok, 20, Phase::Load),
            op(3, OpKind::Query, OpOutcome::Ok, 100, Phase::Final),
        ];
        let check_with = |exempt: HashSet<u64>| {
            let targets = BTreeSet::from([("sip:a@example.com".to_owned(), 0)]);
            let expires = Duration::from_secs(7200);
            check(
                &ops,
                &deployment(),
                &targets,
                Instant::now(),
                expires,
                &exempt,
            )
            .anomalies
        };
        assert_eq!(check_with(HashSet::from([2])), 0);
        // The same register alone at risk, read empty: no loss either; not at risk: lost.
        let lone = [ops[0].clone(), ops[2].clone()];
        let targets = BTreeSet::from([("sip:a@example.com".to_owned(), 0)]);
        let expires = Duration::from_secs(7200);
        let at_risk = HashSet::from([1]);
        assert_eq!(
            check(
                &lone,
                &deployment(),
                &targets,
                Instant::now(),
                expires,
                &at_risk
            )
            .anomalies,
            0
        );
        assert_eq!(run(&lone).anomalies, 1);
    }

    #[test]
    fn an_aor_never_read_is_an_anomaly() {
        let ops = [op(1, OpKind::Register, OpOutcome::Ok, 0, Phase::Load)];
        let result = run(&ops);
        assert_eq!(result.figures["unverified"], 1.0);
        assert_eq!(result.anomalies, 1);
    }
}
