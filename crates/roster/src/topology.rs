//! Reading the deployment file (sites, pools, pairs, nodes; see `roster_topology::Deployment`):
//! the node reads it at startup and for admin operations, the commands to reach the nodes.

use std::path::Path;

use anyhow::Context as _;
use roster_topology::Deployment;

/// Reads and checks the deployment file at `path`; errors name the file.
pub fn read_topology(path: &Path) -> anyhow::Result<Deployment> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read topology file {}", path.display()))?;
    Deployment::parse(&text).with_context(|| format!("in topology file {}", path.display()))
}
