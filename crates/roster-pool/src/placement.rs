//! Where each routing group's replicas live: an initial spread, and the moves that keep it
//! balanced when nodes join or drain. Pure functions of the current assignment.
//!
//! Replicas of a group are on distinct nodes; every node carries `replicas × groups / nodes`
//! replicas give or take one; the first replica of a group is its preferred leader, so
//! preferred leaders are spread the same way.

use roster_raft::GroupKey;
use roster_topology::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// Voting replicas per routing group (DESIGN.md: 3).
pub const REPLICAS_PER_GROUP: usize = 3;

/// The replicas of every group, first replica first.
pub type Assignment = BTreeMap<GroupKey, Vec<NodeId>>;

/// One step of a rebalance: `add` joins `group` (learner → catch up → voter), then `remove`
/// leaves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    /// The group.
    pub group: GroupKey,
    /// The node gaining a replica.
    pub add: NodeId,
    /// The node losing one, if any.
    pub remove: Option<NodeId>,
}

/// The initial spread of the groups `keys` over `nodes`: each group takes the least loaded
/// nodes (ties broken by a rotation, so equal loads spread), and its first replica is the one
/// of them that is first replica of the fewest groups so far. Replica counts and first-replica
/// counts per node then differ by at most one.
pub fn initial(nodes: &[NodeId], keys: &[GroupKey]) -> Assignment {
    let mut sorted: Vec<NodeId> = nodes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let count = sorted.len();
    let per_group = REPLICAS_PER_GROUP.min(count);
    let mut load = vec![0usize; count];
    let mut firsts = vec![0usize; count];
    let mut assignment = Assignment::new();
    for (position, &key) in keys.iter().enumerate() {
        let rotation = position % count.max(1);
        let mut order: Vec<usize> = (0..count).collect();
        order.sort_by_key(|&i| (load[i], (i + count - rotation) % count));
        let mut chosen: Vec<usize> = order.into_iter().take(per_group).collect();
        chosen.sort_by_key(|&i| (firsts[i], (i + count - rotation) % count));
        for &i in &chosen {
            load[i] += 1;
        }
        if let Some(&first) = chosen.first() {
            firsts[first] += 1;
        }
        assignment.insert(key, chosen.into_iter().map(|i| sorted[i]).collect());
    }
    assignment
}

/// Replica count per node (nodes without replicas included, from `nodes`).
pub fn load(assignment: &Assignment, nodes: &[NodeId]) -> BTreeMap<NodeId, usize> {
    let mut load: BTreeMap<NodeId, usize> = nodes.iter().map(|&n| (n, 0)).collect();
    for replicas in assignment.values() {
        for node in replicas {
            *load.entry(*node).or_default() += 1;
        }
    }
    load
}

/// The moves that take `assignment` to a balanced spread over `nodes` (the nodes that should
/// hold replicas; a draining node is simply left out). Moves are ordered: replicas of nodes
/// that are gone first, then balancing moves. Deterministic.
pub fn rebalance(assignment: &Assignment, nodes: &[NodeId]) -> Vec<Move> {
    let eligible: BTreeSet<NodeId> = nodes.iter().copied().collect();
    if eligible.is_empty() {
        return Vec::new();
    }
    let mut current = assignment.clone();
    let mut moves = Vec::new();
    // 1. Replicas on nodes that are leaving move to the least loaded eligible node.
    let groups: Vec<GroupKey> = current.keys().copied().collect();
    for group in &groups {
        loop {
            let replicas = &current[group];
            let Some(&leaving) = replicas.iter().find(|n| !eligible.contains(n)) else {
                break;
            };
            let target = least_loaded(&current, &eligible, replicas);
            let replicas = current.entry(*group).or_default();
            match target {
                Some(add) => {
                    replace(replicas, leaving, add);
                    moves.push(Move {
                        group: *group,
                        add,
                        remove: Some(leaving),
                    });
                }
                None => {
                    // Fewer eligible nodes than replicas: shrink the group.
                    replicas.retain(|n| *n != leaving);
                }
            }
        }
    }
    // 2. Fill groups below the replica count when nodes allow.
    let want = REPLICAS_PER_GROUP.min(eligible.len());
    for group in &groups {
        while current[group].len() < want {
            let Some(add) = least_loaded(&current, &eligible, &current[group]) else {
                break;
            };
            current.entry(*group).or_default().push(add);
            moves.push(Move {
                group: *group,
                add,
                remove: None,
            });
        }
    }
    // 3. Move replicas from the most to the least loaded node until within one.
    let bound = groups.len() * want + 1;
    for _ in 0..bound {
        let load = load(&current, nodes);
        let (Some((&heavy, &most)), Some((&light, &least))) = (
            load.iter()
                .max_by_key(|(n, l)| (**l, std::cmp::Reverse(**n))),
            load.iter().min_by_key(|(n, l)| (**l, **n)),
        ) else {
            break;
        };
        if most <= least + 1 {
            break;
        }
        let candidate = groups.iter().find(|g| {
            let replicas = &current[*g];
            replicas.contains(&heavy) && !replicas.contains(&light)
        });
        let Some(&group) = candidate else {
            break;
        };
        replace(current.entry(group).or_default(), heavy, light);
        moves.push(Move {
            group,
            add: light,
            remove: Some(heavy),
        });
    }
    moves
}

/// Applies `moves` to `assignment` (what the pool looks like once they are done).
pub fn apply(assignment: &Assignment, moves: &[Move]) -> Assignment {
    let mut next = assignment.clone();
    for step in moves {
        let replicas = next.entry(step.group).or_default();
        match step.remove {
            Some(remove) => replace(replicas, remove, step.add),
            None => replicas.push(step.add),
        }
    }
    next
}

/// Who should lead each group: leaders spread evenly over the nodes (at most
/// `ceil(groups / nodes)` each where the replicas allow), keeping the `current` leader of a
/// group where the spread allows it (a transfer costs an election's pause), and otherwise
/// the replica that leads fewest groups so far, first replicas first. Deterministic.
pub fn leaders(
    assignment: &Assignment,
    current: &BTreeMap<GroupKey, NodeId>,
) -> BTreeMap<GroupKey, NodeId> {
    let nodes: BTreeSet<NodeId> = assignment.values().flatten().copied().collect();
    let cap = assignment.len().div_ceil(nodes.len().max(1));
    let mut led: BTreeMap<NodeId, usize> = nodes.iter().map(|&n| (n, 0)).collect();
    let mut chosen: BTreeMap<GroupKey, NodeId> = BTreeMap::new();
    for (group, replicas) in assignment {
        let Some(&leader) = current.get(group) else {
            continue;
        };
        let count = led.entry(leader).or_default();
        if replicas.contains(&leader) && *count < cap {
            *count += 1;
            chosen.insert(*group, leader);
        }
    }
    for (group, replicas) in assignment {
        if chosen.contains_key(group) {
            continue;
        }
        let best = replicas
            .iter()
            .enumerate()
            .min_by_key(|(position, node)| (led.get(node).copied().unwrap_or(0), *position))
            .map(|(_, node)| *node);
        if let Some(node) = best {
            *led.entry(node).or_default() += 1;
            chosen.insert(*group, node);
        }
    }
    chosen
}

fn least_loaded(
    assignment: &Assignment,
    eligible: &BTreeSet<NodeId>,
    exclude: &[NodeId],
) -> Option<NodeId> {
    let nodes: Vec<NodeId> = eligible.iter().copied().collect();
    let load = load(assignment, &nodes);
    load.into_iter()
        .filter(|(node, _)| !exclude.contains(node))
        .min_by_key(|(node, count)| (*count, *node))
        .map(|(node, _)| node)
}

/// Puts `add` where `remove` was, keeping the first-replica position.
fn replace(replicas: &mut [NodeId], remove: NodeId, add: NodeId) {
    if let Some(slot) = replicas.iter_mut().find(|n| **n == remove) {
        *slot = add;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(groups: u32) -> Vec<GroupKey> {
        (0..groups)
            .map(|group| GroupKey::routing(1, group))
            .collect()
    }

    fn assert_valid(assignment: &Assignment, nodes: &[NodeId]) {
        let want = REPLICAS_PER_GROUP.min(nodes.len());
        for (group, replicas) in assignment {
            let distinct: BTreeSet<_> = replicas.iter().collect();
            assert_eq!(
                distinct.len(),
                replicas.len(),
                "group {group}: {replicas:?}"
            );
            assert_eq!(replicas.len(), want, "group {group}: {replicas:?}");
            assert!(replicas.iter().all(|n| nodes.contains(n)), "{replicas:?}");
        }
        let load = load(assignment, nodes);
        let (min, max) = (load.values().min(), load.values().max());
        assert!(
            max.zip(min).is_some_and(|(max, min)| max - min <= 1),
            "{load:?}"
        );
    }

    #[test]
    fn three_nodes_hold_every_group() {
        let assignment = initial(&[1, 2, 3], &keys(32));
        assert_valid(&assignment, &[1, 2, 3]);
        assert!(assignment.values().all(|r| r.len() == 3));
    }

    #[test]
    fn initial_spreads_replicas_and_first_replicas() {
        let nodes = [1, 2, 3, 4, 5];
        let assignment = initial(&nodes, &keys(32));
        assert_valid(&assignment, &nodes);
        let mut firsts: BTreeMap<NodeId, usize> = BTreeMap::new();
        for replicas in assignment.values() {
            *firsts.entry(replicas[0]).or_default() += 1;
        }
        let (min, max) = (firsts.values().min(), firsts.values().max());
        assert!(max.zip(min).is_some_and(|(max, min)| max - min <= 1));
    }

    #[test]
    fn adding_a_node_moves_replicas_onto_it() {
        let assignment = initial(&[1, 2, 3], &keys(32));
        let nodes = [1, 2, 3, 4];
        let moves = rebalance(&assignment, &nodes);
        assert!(moves.iter().all(|m| m.add == 4 && m.remove.is_some()));
        assert_valid(&apply(&assignment, &moves), &nodes);
    }

    #[test]
    fn draining_a_node_moves_its_replicas_away() {
        let assignment = initial(&[1, 2, 3, 4, 5], &keys(32));
        let nodes = [1, 2, 4, 5];
        let moves = rebalance(&assignment, &nodes);
        let after = apply(&assignment, &moves);
        assert!(after.values().all(|r| !r.contains(&3)));
        assert_valid(&after, &nodes);
    }

    #[test]
    fn balanced_pool_needs_no_moves() {
        let nodes = [1, 2, 3, 4, 5, 6, 7];
        assert!(rebalance(&initial(&nodes, &keys(32)), &nodes).is_empty());
    }

    #[test]
    fn leaders_spread_and_stay_put_when_balanced() {
        let nodes = [1, 2, 3, 4];
        let assignment = initial(&nodes, &keys(32));
        // Everything led by node 1 where it can: spread out.
        let current: BTreeMap<GroupKey, NodeId> = assignment
            .iter()
            .map(|(g, r)| (*g, if r.contains(&1) { 1 } else { r[0] }))
            .collect();
        let wanted = leaders(&assignment, &current);
        let mut led: BTreeMap<NodeId, usize> = BTreeMap::new();
        for (group, leader) in &wanted {
            assert!(assignment[group].contains(leader));
            *led.entry(*leader).or_default() += 1;
        }
        assert!(led.values().all(|&count| count == 8), "{led:?}");
        // Balanced already: nothing changes.
        assert_eq!(leaders(&assignment, &wanted), wanted);
    }

    #[test]
    fn many_shapes_stay_valid() {
        for count in 3..=16u64 {
            let nodes: Vec<NodeId> = (1..=count).collect();
            let start = initial(&nodes, &keys(32));
            assert_valid(&start, &nodes);
            let grown: Vec<NodeId> = (1..=count + 1).collect();
            assert_valid(&apply(&start, &rebalance(&start, &grown)), &grown);
            if count > 3 {
                let drained: Vec<NodeId> = (2..=count).collect();
                assert_valid(&apply(&start, &rebalance(&start, &drained)), &drained);
            }
        }
    }
}
