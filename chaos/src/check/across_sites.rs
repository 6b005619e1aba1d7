//! Across sites: what a site loss may cost, and that nothing appears from nowhere.
//!
//! When a pool is lost (every node killed) and its partner takes its users over with a
//! disaster failover, the partner serves what its backup copies held: every change the lost
//! pool committed up to the backup lag before the loss. So a write the lost pool acknowledged
//! as owner within [`SiteLoss::window`] before the loss (the lag measured a moment before it,
//! plus a margin) is *at risk*: it may be gone. Every older acknowledged write must be present
//! after healing, which the durability checker verifies with the at-risk writes set aside
//! ([`at_risk`]); this checker counts the at-risk writes and those actually lost (the RPO
//! paid), and checks the other half of the rule: nothing any node lists was never written
//! (every contact listed for an AOR was named by a REGISTER of that AOR sent before the
//! answer).
//!
//! Linearizability across sites ([`linearizable_view`]): a write acknowledged in resiliency
//! mode (the partner as backup registrar, beside a home pool that may still serve) or at risk
//! in a site loss is an *unknown* write for the per-AOR checker (it may take effect later, when
//! the overlay comes home, or never, when it is lost with its site); a read answered in
//! resiliency mode, or by the lost pool within the window, describes a state the owner's
//! history may not continue, and is set aside.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::check::CheckerResult;
use crate::history::{Deployment, Op, OpKind, OpOutcome, Phase};

/// Answers that arrive this long after the kill still count as the lost pool's (in flight).
const IN_FLIGHT_AFTER_LOSS: Duration = Duration::from_millis(500);

/// One site loss, as the checkers need it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SiteLoss {
    /// The pool lost (index into the deployment's pools).
    pub pool: usize,
    /// When its nodes were killed.
    pub lost_at: Duration,
    /// How far back from `lost_at` an acknowledged write may be lost: the measured lag plus a
    /// margin.
    pub window: Duration,
}

impl SiteLoss {
    /// Whether `op`, answered by pool `pool_id` as owner, completed within the window.
    fn covers(&self, pool_id: u64, deployment: &Deployment, op: &Op) -> bool {
        deployment.pools.get(self.pool).map(|pool| pool.id) == Some(pool_id)
            && op.complete + self.window >= self.lost_at
            && op.complete <= self.lost_at + IN_FLIGHT_AFTER_LOSS
    }
}

/// Whether `op` was answered as owner by a lost pool within a loss's window.
fn answered_in_window(op: &Op, deployment: &Deployment, losses: &[SiteLoss]) -> bool {
    match op.served {
        Some(served) if !served.resilient && op.outcome == OpOutcome::Ok => losses
            .iter()
            .any(|loss| loss.covers(served.pool, deployment, op)),
        _ => false,
    }
}

/// The ids of the writes at risk: acknowledged as owner by a lost pool within its window.
pub fn at_risk(ops: &[Op], deployment: &Deployment, losses: &[SiteLoss]) -> HashSet<u64> {
    ops.iter()
        .filter(|op| op.kind.is_write() && answered_in_window(op, deployment, losses))
        .map(|op| op.id)
        .collect()
}

/// The history as the per-AOR linearizability checker should read it across sites (see the
/// module doc).
pub fn linearizable_view(ops: &[Op], deployment: &Deployment, losses: &[SiteLoss]) -> Vec<Op> {
    ops.iter()
        .filter_map(|op| {
            let resilient = op.served.is_some_and(|served| served.resilient);
            let in_window = answered_in_window(op, deployment, losses);
            if !(resilient || in_window) {
                return Some(op.clone());
            }
            if !op.kind.is_write() {
                return None;
            }
            let mut unknown = op.clone();
            unknown.outcome = OpOutcome::Unknown;
            unknown.listed.clear();
            Some(unknown)
        })
        .collect()
}

/// The checker: nothing listed was never written, and the figures of every site loss.
pub fn check(
    ops: &[Op],
    deployment: &Deployment,
    losses: &[SiteLoss],
    at_risk: &HashSet<u64>,
) -> CheckerResult {
    let mut result = CheckerResult::new("across-sites");
    // Per AOR: each contact's first REGISTER's invocation.
    let mut written: HashMap<(&str, &str), Duration> = HashMap::new();
    for op in ops {
        if op.kind == OpKind::Register {
            if let Some(contact) = &op.contact {
                let first = written
                    .entry((op.aor.as_str(), contact.as_str()))
                    .or_insert(op.invoke);
                *first = (*first).min(op.invoke);
            }
        }
    }
    let mut reads = 0u64;
    for op in ops.iter().filter(|op| op.outcome == OpOutcome::Ok) {
        reads += 1;
        for contact in &op.listed {
            let known = written
                .get(&(op.aor.as_str(), contact.as_str()))
                .is_some_and(|invoked| *invoked <= op.complete);
            if !known {
                result.anomaly(format!(
                    "{}: {contact} listed by node {} at {:.3} s was never written",
                    op.aor,
                    deployment
                        .nodes
                        .get(op.node)
                        .map_or_else(|| op.node.to_string(), ToString::to_string),
                    op.complete.as_secs_f64()
                ));
            }
        }
    }
    let lost = lost_at_risk(ops, at_risk);
    for (index, loss) in losses.iter().enumerate() {
        let key = |name: &str| format!("loss{}_{name}", index + 1);
        result
            .figures
            .insert(key("window_s"), loss.window.as_secs_f64());
        result
            .figures
            .insert(key("lost_at_s"), loss.lost_at.as_secs_f64());
    }
    result
        .figures
        .insert("writes_at_risk".into(), at_risk.len() as f64);
    result
        .figures
        .insert("registrations_lost_within_lag".into(), lost as f64);
    result.checked = format!(
        "{reads} answers' listings; {} site loss(es), {} writes acknowledged within the lag before a loss ({lost} registrations of them gone); every older one is checked by durability",
        losses.len(),
        at_risk.len()
    );
    result
}

/// At-risk REGISTERs whose contact no final read lists, and that the same client did not
/// write again afterwards: what the site loss actually cost.
fn lost_at_risk(ops: &[Op], at_risk: &HashSet<u64>) -> u64 {
    let mut finals: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
    for op in ops
        .iter()
        .filter(|op| op.phase == Phase::Final && op.outcome == OpOutcome::Ok)
    {
        finals
            .entry(op.aor.as_str())
            .or_default()
            .extend(op.listed.iter().map(String::as_str));
    }
    ops.iter()
        .filter(|op| at_risk.contains(&op.id) && op.kind == OpKind::Register)
        .filter(|op| {
            let rewritten = ops.iter().any(|later| {
                later.client == op.client
                    && later.kind.is_write()
                    && later.invoke > op.complete
                    && later.outcome != OpOutcome::Fail
            });
            let listed = op.contact.as_deref().is_some_and(|contact| {
                finals
                    .get(op.aor.as_str())
                    .is_some_and(|listed| listed.contains(contact))
            });
            !rewritten && !listed
        })
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Served;

    fn deployment() -> Deployment {
        Deployment::paired_for_tests()
    }

    fn op(id: u64, kind: OpKind, at_ms: u64, served: Option<(u64, bool)>, listed: &[&str]) -> Op {
        Op {
            id,
            client: 0,
            node: 0,
            aor: "sip:u@example.com".into(),
            group: 0,
            home: 0,
            kind,
            contact: kind.is_write().then(|| "c".to_owned()),
            invoke: Duration::from_millis(at_ms),
            complete: Duration::from_millis(at_ms + 5),
            outcome: OpOutcome::Ok,
            status: Some(200),
            listed: listed.iter().map(|c| (*c).to_owned()).collect(),
            phase: Phase::Load,
            served: served.map(|(pool, resilient)| Served {
                pool,
                epoch: 1,
                resilient,
            }),
        }
    }

    #[test]
    fn writes_just_before_a_loss_are_at_risk_and_become_unknown() {
        let loss = SiteLoss {
            pool: 0,
            lost_at: Duration::from_millis(10_000),
            window: Duration::from_millis(1_500),
        };
        let ops = [
            op(1, OpKind::Register, 1_000, Some((1, false)), &["c"]),
            op(2, OpKind::Register, 9_000, Some((1, false)), &["c"]),
            op(3, OpKind::Register, 9_100, Some((2, false)), &["c"]),
            op(4, OpKind::Query, 9_200, Some((1, false)), &["c"]),
            op(5, OpKind::Register, 12_000, Some((2, true)), &["c"]),
        ];
        let risky = at_risk(&ops, &deployment(), &[loss]);
        assert_eq!(risky, HashSet::from([2]));
        let view = linearizable_view(&ops, &deployment(), &[loss]);
        let ids: Vec<u64> = view.iter().map(|op| op.id).collect();
        assert_eq!(
            ids,
            vec![1, 2, 3, 5],
            "the lost pool's read in the window is set aside"
        );
        assert_eq!(view[1].outcome, OpOutcome::Unknown);
        assert_eq!(view[3].outcome, OpOutcome::Unknown, "resiliency mode");
        assert_eq!(check(&ops, &deployment(), &[loss], &risky).anomalies, 0);
    }

    #[test]
    fn a_contact_nobody_wrote_is_an_anomaly() {
        let ops = [
            op(1, OpKind::Register, 1_000, None, &["c"]),
            op(2, OpKind::Query, 2_000, None, &["c", "ghost"]),
        ];
        let result = check(&ops, &deployment(), &[], &HashSet::new());
        assert_eq!(result.anomalies, 1, "{result:?}");
        assert!(result.details[0].contains("ghost"));
    }
}
