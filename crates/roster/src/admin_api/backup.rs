//! The backup service's status document, `GET /api/v1/backup` on every pool node (no token:
//! it names groups, nodes and log indexes, nothing secret), shared by the node that builds it,
//! `roster backup status` and the status page.
//!
//! ```json
//! {
//!   "pool": {"id": 1, "name": "east"}, "node": 1, "generated_at_ms": 1767225600000,
//!   "steady_lag_s": 1.0,
//!   "directions": [
//!     {"source": {"id": 1, "name": "east"}, "copy": {"id": 2, "name": "west"},
//!      "streams": 33, "steady": 33, "behind": 0, "stopped": 0,
//!      "lag_entries_max": 2, "lag_seconds_max": 0.004,
//!      "groups": [
//!        {"source": "1/routing-0", "copy": "1/backup-0", "leader": 2,
//!         "source_index": 1234, "source_time_ms": 1767225599990, "partner_index": 1233,
//!         "lag_entries": 1, "lag_seconds": 0.004, "state": "steady", "detail": null,
//!         "restores": 0}, ...]},
//!     {"source": {"id": 2, "name": "west"}, "copy": {"id": 1, "name": "east"}, ...}],
//!   "unreachable": ["pool 2 node 5: timed out"]
//! }
//! ```
//!
//! A direction lists every source group it should have (each routing group of the source pool,
//! and the CMS when it lives there): one that no node reported is `stopped`, with a detail.

use roster_topology::NodeId;
use serde::{Deserialize, Serialize};

use super::users::PoolName;

/// `GET`: the backup service's status, both directions.
pub const BACKUP_PATH: &str = "/api/v1/backup";

/// Largest backup document a command reads: a direction of [`roster_topology::GROUPS_MAX`]
/// groups at about 300 bytes of JSON each, twice, with room to spare.
pub const BACKUP_ANSWER_SIZE_MAX: u64 = 2 * 1024 * 1024;

/// The backup service's status as one node of a pool sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupStatus {
    /// The answering node's pool.
    pub pool: PoolName,
    /// The answering node.
    pub node: NodeId,
    /// When the document was gathered (milliseconds since the Unix epoch, the node's clock).
    pub generated_at_ms: u64,
    /// Lag under which a stream is steady, in seconds.
    pub steady_lag_s: f64,
    /// This pool's groups streaming to the partner, then the partner's streaming here; empty
    /// without a partner.
    pub directions: Vec<Direction>,
    /// Nodes that did not answer (`node N: why`, `pool P node N: why`).
    pub unreachable: Vec<String>,
}

/// Every stream from one pool to its partner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Direction {
    /// The pool whose groups are copied.
    pub source: PoolName,
    /// The pool holding the copies.
    pub copy: PoolName,
    /// Streams (source groups) in this direction.
    pub streams: usize,
    /// Streams within the steady bound.
    pub steady: usize,
    /// Streams behind (lagging, or the partner slow or briefly unreachable).
    pub behind: usize,
    /// Streams stopped (refused, unreachable for long, or reported by no node).
    pub stopped: usize,
    /// The largest lag of any stream, in entries.
    pub lag_entries_max: u64,
    /// The largest lag of any stream, in seconds.
    pub lag_seconds_max: f64,
    /// One line per source group, in group order.
    pub groups: Vec<StreamView>,
}

/// One stream: a source group and its copy in the partner pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamView {
    /// The source group (`1/routing-7`, `1/cms`).
    pub source: String,
    /// Its copy in the partner pool (`1/backup-7`, `1/cms-backup`).
    pub copy: String,
    /// The node shipping it (the source's leader); `null` when none does.
    pub leader: Option<NodeId>,
    /// The source's last applied index; `null` when no shipper reported it.
    pub source_index: Option<u64>,
    /// When the source applied it, as the shipper first saw it (milliseconds since the Unix
    /// epoch); `null` when unknown.
    pub source_time_ms: Option<u64>,
    /// The source index the copy has applied, once known.
    pub partner_index: Option<u64>,
    /// Entries the copy lacks.
    pub lag_entries: u64,
    /// Age of the oldest entry the copy lacks, in seconds.
    pub lag_seconds: f64,
    /// `steady`, `behind` or `stopped`.
    pub state: String,
    /// Why the stream is behind or stopped, when it is.
    pub detail: Option<String>,
    /// Whole-state sends (restores) since its shipper began.
    pub restores: u64,
}

/// A stream's state, as the document spells it.
pub mod state {
    /// Within the steady bound.
    pub const STEADY: &str = "steady";
    /// Lagging, or the partner slow or briefly unreachable.
    pub const BEHIND: &str = "behind";
    /// Refused, unreachable for long, or reported by no node.
    pub const STOPPED: &str = "stopped";
}
