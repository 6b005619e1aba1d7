//! Reading a pool's topology file (`[pool]` name and groups, `[[node]]` id and addresses):
//! the node reads it at startup and for admin operations, the commands to reach the nodes.

use std::path::Path;

use anyhow::Context as _;
use roster_pool::Topology;

/// Reads and checks the topology file at `path`; errors name the file.
pub fn read_topology(path: &Path) -> anyhow::Result<Topology> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read topology file {}", path.display()))?;
    Topology::parse(&text).with_context(|| format!("in topology file {}", path.display()))
}
