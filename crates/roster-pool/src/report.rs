//! The backup service's status across both pools (Lync's `Get-CsBackupServiceStatus`): every
//! stream as its source's leader sees it, and every copy as its leader sees it, gathered from
//! every node of this pool and of the partner. A direction whose source pool cannot be reached
//! shows its copies' positions, stopped.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use roster_net::Network;
use roster_raft::GroupKey;
use serde::{Deserialize, Serialize};

use crate::node::PoolNode;
use crate::pair::{PairRequest, PairResponse};
use crate::protocol::{PoolRequest, PoolResponse};
use crate::shipper::{StreamState, StreamStatus};

/// How long one node may take to say what it ships: status must not hang on a dead node.
const STREAMS_TIMEOUT: Duration = Duration::from_secs(2);

/// What one node ships and leads.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeStreams {
    /// The streams it ships (it leads their sources).
    pub streams: Vec<StreamStatus>,
    /// The copies it leads, with their positions.
    pub copies: Vec<CopyStatus>,
}

/// A copy as its leader sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyStatus {
    /// The copy.
    pub copy: String,
    /// Its source.
    pub source: String,
    /// Its leader.
    pub leader: u64,
    /// The last source index it applied.
    pub position: Option<u64>,
}

/// Every stream between the two pools, and the nodes that could not be asked.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BackupReport {
    /// One line per source group, both directions, sorted by source.
    pub streams: Vec<StreamStatus>,
    /// Nodes that did not answer (`pool P node N: why`).
    pub unreachable: Vec<String>,
}

impl<N: Network> PoolNode<N> {
    /// What this node ships and which copies it leads.
    pub fn node_streams(&self) -> NodeStreams {
        let mut copies = Vec::new();
        for (key, replica) in self.replica_list() {
            let Some(source) = crate::shipper::counterpart(key) else {
                continue;
            };
            if self.ships(key) {
                continue;
            }
            let leads = replica.raft.metrics().borrow_watched().current_leader
                == Some(self.options.node_id);
            if !leads {
                continue;
            }
            let position = replica
                .state
                .read(|state| state.stream().map(|stream| stream.index))
                .ok()
                .flatten();
            copies.push(CopyStatus {
                copy: key.to_string(),
                source: source.to_string(),
                leader: self.options.node_id,
                position,
            });
        }
        NodeStreams {
            streams: self.streams(),
            copies,
        }
    }

    /// The backup service's status in both directions, gathered from every node of this pool
    /// and of the partner (each within a short timeout).
    pub async fn backup_report(&self) -> BackupReport {
        let mut gathered: Vec<NodeStreams> = vec![self.node_streams()];
        let mut unreachable = Vec::new();
        let own: Vec<_> = self
            .hints
            .peers()
            .into_iter()
            .filter(|peer| *peer != self.options.node_id)
            .collect();
        let asks = own.iter().map(|&peer| async move {
            let answer = self
                .router
                .call(peer, &PoolRequest::Streams, STREAMS_TIMEOUT)
                .await;
            (peer, answer)
        });
        for (peer, answer) in futures_util::future::join_all(asks).await {
            match answer {
                Ok(PoolResponse::Streams(streams)) => gathered.push(streams),
                Ok(other) => unreachable.push(format!("node {peer}: {other:?}")),
                Err(error) => unreachable.push(format!("node {peer}: {error}")),
            }
        }
        if let Some(partner) = self.options.partner.clone() {
            for node in partner.nodes {
                let answer = self.ask_partner_node(node, &PairRequest::Streams).await;
                match answer {
                    Ok(PairResponse::Streams(streams)) => gathered.push(streams),
                    Ok(other) => {
                        unreachable.push(format!("pool {} node {node}: {other:?}", partner.pool))
                    }
                    Err(error) => {
                        unreachable.push(format!("pool {} node {node}: {error}", partner.pool))
                    }
                }
            }
        }
        BackupReport {
            streams: merge(gathered),
            unreachable,
        }
    }
}

/// One line per source: the shipper's view where a node ships it, else the copy's position
/// alone, stopped (its source's pool did not answer, or no node ships it now).
fn merge(gathered: Vec<NodeStreams>) -> Vec<StreamStatus> {
    let mut streams: BTreeMap<String, StreamStatus> = BTreeMap::new();
    let mut copies: BTreeMap<String, CopyStatus> = BTreeMap::new();
    for node in gathered {
        for stream in node.streams {
            streams.insert(stream.source.clone(), stream);
        }
        for copy in node.copies {
            copies.insert(copy.source.clone(), copy);
        }
    }
    for (source, copy) in copies {
        streams.entry(source).or_insert_with(|| StreamStatus {
            source: copy.source.clone(),
            copy: copy.copy.clone(),
            leader: 0,
            source_index: 0,
            source_time_ms: 0,
            partner_index: copy.position,
            lag_entries: 0,
            lag_ms: 0,
            state: StreamState::Stopped,
            detail: Some("no node of the source's pool ships it (unreachable, or electing)".into()),
            restores: 0,
        });
    }
    let mut all: Vec<StreamStatus> = streams.into_values().collect();
    all.sort_by_key(|stream| stream.source.parse::<GroupKey>().ok());
    all
}
