//! No split brain: no two pools acknowledged writes for the same user as its owner in the same
//! epoch.
//!
//! Every successful REGISTER names who acknowledged it (the node's `X-Roster-Served` header,
//! [`Served`]): the pool, the epoch the write was applied under, and whether that pool answered
//! as the user's owner or as backup registrar (resiliency mode). An epoch has one owner (the
//! CMS records it; failover and failback raise it), so the owner acknowledgements of one
//! user's writes in one epoch must all come from one pool. Acknowledgements in resiliency mode
//! are at the old epoch by design (the partner answers from its copy's overlay, and sends it
//! home or folds it in at a failover): they are counted, never taken for an owner's.
//!
//! A successful write without the header (a node that does not send it) is counted as
//! unattributed and listed as inconclusive: the checker cannot vouch for it.

use std::collections::{BTreeMap, BTreeSet};

use crate::check::CheckerResult;
use crate::history::{Deployment, Op, OpKind, OpOutcome, Served};

/// Per (AOR, epoch): each pool that acknowledged as owner, with its first acknowledgement (op
/// id, completion seconds).
type Owners<'a> = BTreeMap<(&'a str, u64), BTreeMap<u64, (u64, f64)>>;

/// The checker.
pub fn check(ops: &[Op], deployment: &Deployment) -> CheckerResult {
    let mut result = CheckerResult::new("split-brain");
    let mut owners: Owners<'_> = BTreeMap::new();
    let mut owner_acks = 0u64;
    let mut resilient_acks = 0u64;
    let mut unattributed = 0u64;
    let mut epochs: BTreeSet<(u64, u64)> = BTreeSet::new();
    for op in ops {
        // A REGISTER's answer (a write or a query) comes from the apply step under an epoch.
        if op.outcome != OpOutcome::Ok || op.kind == OpKind::Lookup {
            continue;
        }
        match op.served {
            None => unattributed += 1,
            Some(Served {
                resilient: true, ..
            }) => resilient_acks += 1,
            Some(Served { pool, epoch, .. }) => {
                owner_acks += 1;
                epochs.insert((pool, epoch));
                owners
                    .entry((op.aor.as_str(), epoch))
                    .or_default()
                    .entry(pool)
                    .or_insert((op.id, op.complete.as_secs_f64()));
            }
        }
    }
    let pool_name = |id: u64| {
        deployment.pool_index(id).map_or_else(
            || format!("pool {id}"),
            |index| deployment.pools[index].name.clone(),
        )
    };
    for ((aor, epoch), pools) in &owners {
        if pools.len() > 1 {
            let who: Vec<String> = pools
                .iter()
                .map(|(pool, (id, at))| format!("{} (op {id} at {at:.3} s)", pool_name(*pool)))
                .collect();
            result.anomaly(format!(
                "{aor}: epoch {epoch} acknowledged as owner by {}",
                who.join(" and ")
            ));
        }
    }
    if unattributed > 0 && deployment.pools.len() > 1 {
        result.undecided(format!(
            "{unattributed} acknowledged REGISTERs named no pool (no X-Roster-Served header)"
        ));
    }
    result.checked = format!(
        "{owner_acks} owner acknowledgements of {} (user, epoch) pairs, {resilient_acks} in resiliency mode",
        owners.len()
    );
    result
        .figures
        .insert("owner_acknowledgements".into(), owner_acks as f64);
    result
        .figures
        .insert("resilient_acknowledgements".into(), resilient_acks as f64);
    result
        .figures
        .insert("unattributed".into(), unattributed as f64);
    result
        .figures
        .insert("pool_epochs".into(), epochs.len() as f64);
    result
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::history::Phase;

    fn deployment() -> Deployment {
        Deployment::paired_for_tests()
    }

    fn ack(id: u64, pool: u64, epoch: u64, resilient: bool) -> Op {
        Op {
            id,
            client: 0,
            node: 0,
            aor: "sip:u@example.com".into(),
            group: 0,
            home: 0,
            kind: OpKind::Register,
            contact: Some("c".into()),
            invoke: Duration::from_millis(id * 10),
            complete: Duration::from_millis(id * 10 + 5),
            outcome: OpOutcome::Ok,
            status: Some(200),
            listed: vec!["c".into()],
            phase: Phase::Load,
            served: Some(Served {
                pool,
                epoch,
                resilient,
            }),
        }
    }

    #[test]
    fn two_owners_in_one_epoch_are_split_brain_and_a_backup_registrar_is_not() {
        let fine = [
            ack(1, 1, 1, false),
            ack(2, 2, 1, true),
            ack(3, 2, 2, false),
            ack(4, 1, 3, false),
        ];
        let result = check(&fine, &deployment());
        assert_eq!(result.anomalies, 0, "{result:?}");
        assert_eq!(result.figures["resilient_acknowledgements"], 1.0);
        let split = [ack(1, 1, 2, false), ack(2, 2, 2, false)];
        let result = check(&split, &deployment());
        assert_eq!(result.anomalies, 1, "{result:?}");
        assert!(result.details[0].contains("epoch 2"), "{result:?}");
    }
}
