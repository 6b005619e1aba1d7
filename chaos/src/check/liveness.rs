//! Liveness: how the load fared during each fault, and whether everything works again after
//! the last heal.
//!
//! Per fault ([`FaultWindow`]): the *recovery time*, from the fault's start until writes have
//! succeeded again in every routing group (the completion of the earliest successful write of
//! each group invoked after the start, the largest over the groups); the same measured from
//! the heal; and the share of operations invoked during the fault that succeeded.
//!
//! Anomalies: after the last heal, each running node must accept a write for each routing
//! group (the probes of [`Phase::Probe`]), and the nemesis must have been able to bring every
//! node back (a node that does not start again is reported by the runner).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::check::CheckerResult;
use crate::history::{Deployment, Op, OpOutcome, Phase};

/// One fault's window, as the liveness checker needs it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultWindow {
    /// The fault's number in the run.
    pub id: u64,
    /// When it began, from the run's start.
    pub start: Duration,
    /// When it was healed.
    pub heal: Duration,
}

/// How the load fared during one fault.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FaultLiveness {
    /// The fault.
    pub id: u64,
    /// Seconds from the start until every group accepted a write again; `None`: some group
    /// had none before the run ended.
    pub recovery_s: Option<f64>,
    /// Seconds from the heal until every group accepted a write invoked after it.
    pub after_heal_s: Option<f64>,
    /// Operations invoked between start and heal.
    pub operations: u64,
    /// Of those, answered with success.
    pub ok: u64,
}

/// Successful writes of one (home pool, group), by invoke time: (invoke, complete).
fn ok_writes_by_group(ops: &[Op]) -> BTreeMap<(usize, u32), Vec<(Duration, Duration)>> {
    let mut groups: BTreeMap<(usize, u32), Vec<(Duration, Duration)>> = BTreeMap::new();
    for op in ops {
        if op.phase == Phase::Load && op.kind.is_write() && op.outcome == OpOutcome::Ok {
            groups
                .entry((op.home, op.group))
                .or_default()
                .push((op.invoke, op.complete));
        }
    }
    for writes in groups.values_mut() {
        writes.sort();
    }
    groups
}

/// The completion of the earliest-completing successful write invoked at or after `from`.
fn first_ok_after(writes: &[(Duration, Duration)], from: Duration) -> Option<Duration> {
    let first = writes.partition_point(|(invoke, _)| *invoke < from);
    let mut best: Option<Duration> = None;
    for (invoke, complete) in &writes[first..] {
        if best.is_some_and(|best| *invoke > best) {
            break;
        }
        best = Some(best.map_or(*complete, |best| best.min(*complete)));
    }
    best
}

/// Per-fault figures, over the routing groups of `pools` pools of `groups` each.
pub fn per_fault(
    ops: &[Op],
    faults: &[FaultWindow],
    pools: usize,
    groups: u32,
) -> Vec<FaultLiveness> {
    let writes = ok_writes_by_group(ops);
    let keys: Vec<(usize, u32)> = (0..pools.max(1))
        .flat_map(|pool| (0..groups).map(move |group| (pool, group)))
        .collect();
    let recovered_from = |from: Duration| -> Option<f64> {
        let mut worst = Duration::ZERO;
        for key in &keys {
            let first = first_ok_after(writes.get(key).map_or(&[][..], Vec::as_slice), from)?;
            worst = worst.max(first.saturating_sub(from));
        }
        Some(worst.as_secs_f64())
    };
    faults
        .iter()
        .map(|fault| {
            let during = ops.iter().filter(|op| {
                op.phase == Phase::Load && op.invoke >= fault.start && op.invoke <= fault.heal
            });
            let (operations, ok) = during.fold((0, 0), |(all, ok), op| {
                (all + 1, ok + u64::from(op.outcome == OpOutcome::Ok))
            });
            FaultLiveness {
                id: fault.id,
                recovery_s: recovered_from(fault.start),
                after_heal_s: recovered_from(fault.heal),
                operations,
                ok,
            }
        })
        .collect()
}

/// The checker: per-fault figures, the probes after the last heal, and what the nemesis could
/// not undo (`failures`: one sentence each).
pub fn check(
    ops: &[Op],
    deployment: &Deployment,
    faults: &[FaultWindow],
    running_at_end: &BTreeSet<usize>,
    failures: &[String],
) -> (CheckerResult, Vec<FaultLiveness>) {
    let mut result = CheckerResult::new("liveness");
    let groups = deployment.pools.first().map_or(0, |pool| pool.groups);
    let figures = per_fault(ops, faults, deployment.pools.len(), groups);
    let mut accepted: BTreeSet<(usize, usize, u32)> = BTreeSet::new();
    for op in ops {
        if op.phase == Phase::Probe && op.outcome == OpOutcome::Ok {
            accepted.insert((op.node, op.home, op.group));
        }
    }
    for &node in running_at_end {
        if node >= deployment.nodes.len() {
            continue;
        }
        // Every node serves every pool's users (its own, the partner's by forwarding).
        for (home, pool) in deployment.pools.iter().enumerate() {
            for group in 0..pool.groups {
                if !accepted.contains(&(node, home, group)) {
                    let whose = if deployment.pools.len() > 1 {
                        format!(" of {}", pool.name)
                    } else {
                        String::new()
                    };
                    result.anomaly(format!(
                        "node {} accepted no write for group {group}{whose} after the last heal",
                        deployment.nodes[node]
                    ));
                }
            }
        }
    }
    for failure in failures {
        result.anomaly(failure.clone());
    }
    let recoveries: Vec<f64> = figures.iter().filter_map(|f| f.recovery_s).collect();
    let (p50, max) = percentile_and_max(&recoveries);
    result.figures.insert("recovery_p50_s".into(), p50);
    result.figures.insert("recovery_max_s".into(), max);
    let unrecovered = figures.iter().filter(|f| f.recovery_s.is_none()).count();
    result
        .figures
        .insert("faults_unrecovered_before_end".into(), unrecovered as f64);
    let (operations, ok) = figures
        .iter()
        .fold((0, 0), |(a, b), f| (a + f.operations, b + f.ok));
    result.figures.insert(
        "ok_share_during_faults".into(),
        if operations == 0 {
            1.0
        } else {
            ok as f64 / operations as f64
        },
    );
    result.checked = format!(
        "{} faults, probes of {} nodes × {} pool(s) × {groups} groups",
        faults.len(),
        running_at_end.len(),
        deployment.pools.len()
    );
    (result, figures)
}

/// The median and the largest of `values` (0 and 0 when empty).
pub fn percentile_and_max(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    (sorted[(sorted.len() - 1) / 2], sorted[sorted.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{NodeName, OpKind, PoolView};

    fn write(group: u32, invoke_ms: u64, complete_ms: u64, outcome: OpOutcome, phase: Phase) -> Op {
        Op {
            id: 0,
            client: 0,
            node: 0,
            aor: "sip:a@example.com".into(),
            group,
            home: 0,
            served: None,
            kind: OpKind::Register,
            contact: Some("c".into()),
            invoke: Duration::from_millis(invoke_ms),
            complete: Duration::from_millis(complete_ms),
            outcome,
            status: None,
            listed: Vec::new(),
            phase,
        }
    }

    #[test]
    fn recovery_is_the_slowest_group_and_probes_must_cover_every_group() {
        let ops = vec![
            write(0, 900, 950, OpOutcome::Ok, Phase::Load),
            write(0, 1_000, 1_010, OpOutcome::Ok, Phase::Load),
            write(1, 1_000, 7_000, OpOutcome::Unknown, Phase::Load),
            write(1, 2_000, 2_500, OpOutcome::Ok, Phase::Load),
            write(0, 9_000, 9_010, OpOutcome::Ok, Phase::Probe),
        ];
        let faults = [FaultWindow {
            id: 1,
            start: Duration::from_millis(1_000),
            heal: Duration::from_millis(3_000),
        }];
        let figures = per_fault(&ops, &faults, 1, 2);
        assert_eq!(figures[0].recovery_s, Some(1.5));
        assert_eq!(figures[0].after_heal_s, None, "no write after the heal");
        assert_eq!((figures[0].operations, figures[0].ok), (3, 2));
        let deployment = Deployment {
            pools: vec![PoolView {
                id: 1,
                name: "p".into(),
                groups: 2,
                epoch: 1,
            }],
            nodes: vec![NodeName {
                pool: "p".into(),
                id: 1,
            }],
        };
        let (result, _) = check(&ops, &deployment, &faults, &BTreeSet::from([0]), &[]);
        assert_eq!(result.anomalies, 1, "group 1 had no probe: {result:?}");
    }
}
