//! The node ids a pool has had, so that a removed node's id is never given to another node.
//!
//! Raft knows a replica by its node id: a new node under a removed node's id would be taken
//! for the old one (its votes, its place in a membership, its certificate's name). `roster
//! init` keeps `DIR/node-ids.toml`: every id any of its runs wrote a node for, and those
//! since removed from the topology. A topology that brings a retired id back is refused.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The file's name in a pool directory.
pub const NODE_IDS_FILE: &str = "node-ids.toml";

/// A pool's node ids: every one it has had, and the retired ones among them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeIds {
    /// Every id `roster init` wrote a node for.
    pub known: BTreeSet<u64>,
    /// Ids of nodes removed from the topology: never given again.
    pub retired: BTreeSet<u64>,
}

impl NodeIds {
    /// Reads `dir`'s record; a pool directory without one has had no nodes yet.
    pub fn read(dir: &Path) -> anyhow::Result<NodeIds> {
        let path = path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(NodeIds::default())
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()))
            }
        };
        toml::from_str(&text).with_context(|| format!("in {}", path.display()))
    }

    /// The record after a run of `roster init` for a topology of `ids`: ids missing from it are
    /// retired. Fails, naming them, if `ids` brings back a retired id.
    pub fn update(&self, ids: &BTreeSet<u64>) -> anyhow::Result<NodeIds> {
        let reused: Vec<String> = ids
            .intersection(&self.retired)
            .map(u64::to_string)
            .collect();
        anyhow::ensure!(
            reused.is_empty(),
            "node id {} belonged to a node removed from this pool, and node ids are never reused: \
             give the new node an unused id (ids this pool has had: {}; see {NODE_IDS_FILE})",
            reused.join(", "),
            join(&self.known),
        );
        let retired = self
            .retired
            .iter()
            .chain(self.known.difference(ids))
            .copied()
            .collect();
        let known = self.known.union(ids).copied().collect();
        Ok(NodeIds { known, retired })
    }

    /// Writes the record into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = path(dir);
        let text = format!(
            "# Written by `roster init`: every node id this pool has had, and the ids of nodes\n\
             # removed from its topology. A removed node's id is never given to another node.\n{}",
            toml::to_string(self).context("cannot encode the node ids")?
        );
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

fn path(dir: &Path) -> PathBuf {
    dir.join(NODE_IDS_FILE)
}

fn join(ids: &BTreeSet<u64>) -> String {
    ids.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[u64]) -> BTreeSet<u64> {
        list.iter().copied().collect()
    }

    #[test]
    fn a_node_left_out_of_the_topology_is_retired_for_good() {
        let first = NodeIds::default().update(&ids(&[1, 2, 3])).unwrap();
        assert_eq!(first.retired, ids(&[]));
        let added = first.update(&ids(&[1, 2, 3, 4])).unwrap();
        let removed = added.update(&ids(&[1, 3, 4])).unwrap();
        assert_eq!(removed.known, ids(&[1, 2, 3, 4]));
        assert_eq!(removed.retired, ids(&[2]));
        let error = removed.update(&ids(&[1, 2, 3, 4])).unwrap_err().to_string();
        assert!(
            error.contains("node id 2 belonged to a node removed"),
            "{error}"
        );
        // Leaving it out again is fine, and so is a new id.
        let grown = removed.update(&ids(&[1, 3, 4, 5])).unwrap();
        assert_eq!(grown.retired, ids(&[2]));
        assert_eq!(grown.known, ids(&[1, 2, 3, 4, 5]));
    }

    #[test]
    fn the_record_survives_a_round_trip_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(NodeIds::read(dir.path()).unwrap(), NodeIds::default());
        let record = NodeIds {
            known: ids(&[1, 2, 3, 7]),
            retired: ids(&[2]),
        };
        record.write(dir.path()).unwrap();
        assert_eq!(NodeIds::read(dir.path()).unwrap(), record);
    }

    #[test]
    fn a_damaged_record_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(NODE_IDS_FILE), "known = [1, \"two\"]\n").unwrap();
        let error = format!("{:#}", NodeIds::read(dir.path()).unwrap_err());
        assert!(error.contains(NODE_IDS_FILE), "{error}");
    }
}
