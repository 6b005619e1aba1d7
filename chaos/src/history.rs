//! The record of a run: every operation a client invoked, with its invoke and completion times
//! and its outcome ([`Op`]), and the deployment it ran against ([`Deployment`]).
//!
//! Times are offsets from the run's start (its monotonic clock), so a history can be written,
//! read back and checked without the process that made it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What an operation asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// REGISTER the client's contact (a new binding or a refresh).
    Register,
    /// REGISTER the client's contact with `Expires: 0`.
    Unregister,
    /// REGISTER without Contact: the AOR's bindings.
    Query,
    /// OPTIONS to the AOR: `302` with its contacts, or `480` with none.
    Lookup,
}

impl OpKind {
    /// Whether it may change the AOR's bindings.
    pub fn is_write(self) -> bool {
        matches!(self, OpKind::Register | OpKind::Unregister)
    }

    /// The name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Register => "register",
            OpKind::Unregister => "unregister",
            OpKind::Query => "query",
            OpKind::Lookup => "lookup",
        }
    }
}

/// How an operation ended, as the checkers read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpOutcome {
    /// A success answer: `2xx`, or for a lookup `302` or `480`; `listed` is what it said.
    Ok,
    /// A definite refusal (`4xx`): nothing changed.
    Fail,
    /// No answer (timeout, connection lost) or a `5xx`, which in a pool may follow a write
    /// that committed (a forward whose answer was lost is answered `503`): it may or may not
    /// have taken effect, at any time after its invocation.
    Unknown,
}

/// Which part of the run issued an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The load, while the nemesis runs.
    Load,
    /// After the last heal: one write per node and routing group must succeed.
    Probe,
    /// The final reads of every AOR through every node, for durability.
    Final,
}

/// One operation of one client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Unique in the run, in invocation order.
    pub id: u64,
    /// The logical client (one contact, one operation at a time).
    pub client: usize,
    /// The node it was sent to (index into [`Deployment::nodes`]).
    pub node: usize,
    /// The AOR, canonical (`sip:user@domain`).
    pub aor: String,
    /// The AOR's routing group in its home pool.
    pub group: u32,
    /// The AOR's home pool (index into [`Deployment::pools`]).
    #[serde(default)]
    pub home: usize,
    /// What it asked.
    pub kind: OpKind,
    /// The client's contact (comparison key), for register and unregister.
    pub contact: Option<String>,
    /// When it was sent.
    #[serde(with = "seconds")]
    pub invoke: Duration,
    /// When its answer (or its timeout) came.
    #[serde(with = "seconds")]
    pub complete: Duration,
    /// How it ended.
    pub outcome: OpOutcome,
    /// The final status, if any.
    pub status: Option<u16>,
    /// The contacts (comparison keys) an `Ok` answer listed, sorted.
    pub listed: Vec<String>,
    /// Which part of the run sent it.
    pub phase: Phase,
    /// Who answered a successful operation, from the answer's `X-Roster-Served` header.
    #[serde(default)]
    pub served: Option<Served>,
}

/// Which pool answered an operation, under which epoch, and how: the node's
/// `X-Roster-Served: pool=2; epoch=3; mode=owner|resilient` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Served {
    /// The answering pool's id.
    pub pool: u64,
    /// The epoch the write was applied under (a read: the owner's epoch as the node knew it).
    pub epoch: u64,
    /// Answered in resiliency mode (the home pool's partner as backup registrar).
    pub resilient: bool,
}

impl Served {
    /// Parses the header's value; `None` when it is not one.
    pub fn parse(value: &str) -> Option<Served> {
        let mut pool = None;
        let mut epoch = None;
        let mut resilient = None;
        for part in value.split(';') {
            let (name, value) = part.trim().split_once('=')?;
            match name.trim() {
                "pool" => pool = value.trim().parse().ok(),
                "epoch" => epoch = value.trim().parse().ok(),
                "mode" => resilient = Some(value.trim() == "resilient"),
                _ => {}
            }
        }
        Some(Served {
            pool: pool?,
            epoch: epoch?,
            resilient: resilient?,
        })
    }
}

impl Op {
    /// Its latency.
    pub fn latency(&self) -> Duration {
        self.complete.saturating_sub(self.invoke)
    }
}

/// One node as the checkers name it: its pool and its id in the pool.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeName {
    /// The pool (and, with pairing, its site).
    pub pool: String,
    /// The node id, unique in the pool.
    pub id: u64,
}

impl std::fmt::Display for NodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.pool, self.id)
    }
}

/// One pool of the deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolView {
    /// Its id in the topology (what `X-Roster-Served` names).
    #[serde(default)]
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its routing groups.
    pub groups: u32,
    /// The epoch its nodes run with (the owner of its users; changes with failover).
    pub epoch: u64,
}

/// What the run was against: its pools and nodes. Checkers take this, so that two pools (a
/// pair across sites) fit without changing their signatures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The pools: one, or two paired pools in two sites (the first holds the CMS).
    pub pools: Vec<PoolView>,
    /// Every node, by index.
    pub nodes: Vec<NodeName>,
}

impl Deployment {
    /// The index (into `pools`) of the pool with topology id `id`.
    pub fn pool_index(&self, id: u64) -> Option<usize> {
        self.pools.iter().position(|pool| pool.id == id)
    }

    /// Two paired pools `a` (id 1) and `b` (id 2) of one group, and node `a/1`: the two-site
    /// checkers' tests.
    #[cfg(test)]
    pub fn paired_for_tests() -> Deployment {
        Deployment {
            pools: ["a", "b"]
                .iter()
                .enumerate()
                .map(|(index, name)| PoolView {
                    id: index as u64 + 1,
                    name: (*name).into(),
                    groups: 1,
                    epoch: 1,
                })
                .collect(),
            nodes: vec![NodeName {
                pool: "a".into(),
                id: 1,
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_header_parses() {
        assert_eq!(
            Served::parse("pool=2; epoch=3; mode=resilient"),
            Some(Served {
                pool: 2,
                epoch: 3,
                resilient: true
            })
        );
        assert_eq!(
            Served::parse("pool=1;epoch=1;mode=owner").map(|s| s.resilient),
            Some(false)
        );
        assert_eq!(Served::parse("pool=1"), None);
        assert_eq!(Served::parse("garbage"), None);
    }
}

/// `Duration` as fractional seconds in JSON.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let seconds = f64::deserialize(deserializer)?;
        Ok(Duration::from_secs_f64(seconds.max(0.0)))
    }
}
