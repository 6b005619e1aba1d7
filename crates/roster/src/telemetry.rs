//! The node's metrics: names, descriptions, and the Prometheus recorder they are rendered by.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use roster_pool::gauges;

/// SIP requests handled, by transport.
pub const SIP_REQUESTS: &str = "roster_sip_requests_total";
/// SIP responses sent, by status class (`1xx` … `6xx`).
pub const SIP_RESPONSES: &str = "roster_sip_responses_total";
/// SIP messages dropped because they did not parse or frame.
pub const SIP_MALFORMED: &str = "roster_sip_malformed_total";
/// SIP requests dropped without an answer (no Via, stray ACK).
pub const SIP_DROPPED: &str = "roster_sip_dropped_total";
/// Retransmitted UDP requests answered from the transaction layer.
pub const SIP_RETRANSMISSIONS: &str = "roster_sip_retransmissions_total";
/// SIP responses received (a registrar sends no requests; they are ignored).
pub const SIP_STRAY_RESPONSES: &str = "roster_sip_stray_responses_total";
/// Time from a request's arrival to its answer, in seconds.
pub const SIP_REQUEST_DURATION: &str = "roster_sip_request_duration_seconds";
/// Requests the store could not take (answered `503`).
pub const STORE_UNAVAILABLE: &str = "roster_store_unavailable_total";
/// Counter: wrong answers to digest challenges (password guesses).
pub const AUTH_WRONG_ANSWERS: &str = "roster_auth_wrong_answers_total";
/// Counter: guess bounds reached, by `scope` (user, source); one per window.
pub const AUTH_GUESS_LIMITS: &str = "roster_auth_guess_limits_total";
/// Counter: requests refused unchecked (`503`) while a guess bound holds, by `scope`.
pub const AUTH_GUESS_REFUSED: &str = "roster_auth_guess_refused_total";
/// Counter: messages dropped by the per-source limits, by `transport` (udp: rate; tcp, tls:
/// connections).
pub const SIP_SOURCE_LIMITED: &str = "roster_sip_source_limited_total";
/// Counter: stream connections closed because a message did not complete in time.
pub const SIP_MESSAGE_TIMEOUTS: &str = "roster_sip_message_timeouts_total";
/// Counter: requests shed with `503` because the node is overloaded.
pub const SIP_SHED: &str = "roster_sip_shed_total";
/// Counter: unparsable requests answered with an error status (`400`, `416`, `505`, `513`).
pub const SIP_ANSWERED_UNPARSED: &str = "roster_sip_answered_unparsed_total";

/// Gauge: replicas this node holds (per node: per-group labels would be thousands of series).
pub const NODE_REPLICAS: &str = "roster_node_replicas";
/// Gauge: groups this node leads, by `kind` (routing, backup, cms).
pub const NODE_GROUPS_LED: &str = "roster_node_groups_led";
/// Gauge: groups of which this node holds a replica and knows no leader (their users get
/// `503` until one is elected).
pub const NODE_GROUPS_WITHOUT_LEADER: &str = "roster_node_groups_without_leader";
/// Gauge: groups this node leads that have not heard from a quorum lately (cut off: they
/// refuse requests).
pub const NODE_GROUPS_WITHOUT_QUORUM: &str = "roster_node_groups_without_quorum";
/// Gauge: 1, labelled with the running `version`.
pub const BUILD_INFO: &str = "roster_build_info";
/// Gauge: the largest backup lag of any stream from `source_pool` to `copy_pool`, in seconds,
/// as this node sees the deployment (every node reports every direction: aggregate with `max`).
pub const BACKUP_DIRECTION_LAG_SECONDS: &str = "roster_backup_direction_lag_seconds";
/// Gauge: the largest backup lag of any stream from `source_pool` to `copy_pool`, in entries.
pub const BACKUP_DIRECTION_LAG_ENTRIES: &str = "roster_backup_direction_lag_entries";
/// Gauge: streams from `source_pool` to `copy_pool` by `state` (steady, behind, stopped).
pub const BACKUP_DIRECTION_STREAMS: &str = "roster_backup_direction_streams";
/// Gauge: nodes of either pool that did not answer when the backup status was last gathered.
pub const BACKUP_UNREACHABLE_NODES: &str = "roster_backup_unreachable_nodes";

/// Latency buckets: registrations are answered in well under a millisecond in memory and a few
/// milliseconds through Raft; the top buckets catch stalls.
const DURATION_BUCKETS_S: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
];

/// Replication delay buckets: tens of milliseconds across a WAN when steady, the RPO target
/// (1 s at the 99th percentile, 2 s at most) in the middle, minutes after a cut link.
const REPLICATION_DELAY_BUCKETS_S: [f64; 17] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Installs the process-wide Prometheus recorder and describes every metric. Call once; a
/// second call (tests running several nodes in one process) returns a fresh, unattached handle.
pub fn install() -> PrometheusHandle {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(SIP_REQUEST_DURATION.to_string()),
            &DURATION_BUCKETS_S,
        )
        .and_then(|builder| {
            builder.set_buckets_for_metric(
                Matcher::Full(roster_pool::shipper::BACKUP_REPLICATION_DELAY.to_string()),
                &REPLICATION_DELAY_BUCKETS_S,
            )
        })
        .unwrap_or_else(|_| PrometheusBuilder::new());
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_ok() {
        describe();
    }
    // Here, once the recorder is in place: a gauge set before goes nowhere. (The pool's gauge
    // task set it at its start, racing this call: most nodes of a demo exported no build info.)
    record_build_info();
    handle
}

fn describe() {
    metrics::describe_counter!(SIP_REQUESTS, "SIP requests handled, by transport");
    metrics::describe_counter!(SIP_RESPONSES, "SIP responses sent, by status class");
    metrics::describe_counter!(SIP_MALFORMED, "SIP messages dropped as malformed");
    metrics::describe_counter!(SIP_DROPPED, "SIP requests dropped without an answer");
    metrics::describe_counter!(
        SIP_RETRANSMISSIONS,
        "retransmitted UDP requests answered from the transaction table"
    );
    metrics::describe_counter!(SIP_STRAY_RESPONSES, "SIP responses received and ignored");
    metrics::describe_histogram!(
        SIP_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "time from a SIP request's arrival to its answer"
    );
    metrics::describe_counter!(STORE_UNAVAILABLE, "requests answered 503 by the store");
    metrics::describe_counter!(AUTH_WRONG_ANSWERS, "wrong answers to digest challenges");
    metrics::describe_counter!(AUTH_GUESS_LIMITS, "password-guess bounds reached, by scope");
    metrics::describe_counter!(
        AUTH_GUESS_REFUSED,
        "requests refused unchecked while a guess bound holds, by scope"
    );
    metrics::describe_counter!(
        SIP_SOURCE_LIMITED,
        "SIP messages or connections refused by per-source limits, by transport"
    );
    metrics::describe_counter!(
        SIP_MESSAGE_TIMEOUTS,
        "stream connections closed because a message did not complete in time"
    );
    metrics::describe_counter!(SIP_SHED, "requests shed with 503 under overload");
    metrics::describe_counter!(
        SIP_ANSWERED_UNPARSED,
        "unparsable requests answered with an error status"
    );
    metrics::describe_gauge!(
        gauges::GROUP_BINDINGS,
        "bindings in this node's replica, by group"
    );
    metrics::describe_gauge!(gauges::GROUP_AORS, "AORs in this node's replica, by group");
    metrics::describe_gauge!(
        gauges::GROUP_APPLIED_INDEX,
        "last applied log index, by group"
    );
    metrics::describe_gauge!(gauges::GROUP_LAST_LOG_INDEX, "last log index, by group");
    metrics::describe_gauge!(gauges::GROUP_LEADER, "1 where this node leads the group");
    metrics::describe_gauge!(gauges::GROUP_TERM, "Raft term, by group");
    metrics::describe_gauge!(
        gauges::NODE_BINDINGS,
        "bindings in all of this node's replicas"
    );
    metrics::describe_gauge!(NODE_REPLICAS, "replicas this node holds");
    metrics::describe_gauge!(NODE_GROUPS_LED, "groups this node leads, by kind");
    metrics::describe_gauge!(
        NODE_GROUPS_WITHOUT_LEADER,
        "groups with a replica on this node and no known leader"
    );
    metrics::describe_gauge!(
        NODE_GROUPS_WITHOUT_QUORUM,
        "groups this node leads that have not heard from a quorum lately"
    );
    metrics::describe_gauge!(BUILD_INFO, "1, labelled with the running version");
    metrics::describe_gauge!(
        roster_pool::shipper::BACKUP_LAG_ENTRIES,
        "entries the partner's copy of a group lacks, by group (on the source's leader)"
    );
    metrics::describe_gauge!(
        roster_pool::shipper::BACKUP_LAG_SECONDS,
        metrics::Unit::Seconds,
        "age of the oldest entry the partner's copy of a group lacks, by group"
    );
    metrics::describe_histogram!(
        roster_pool::shipper::BACKUP_REPLICATION_DELAY,
        metrics::Unit::Seconds,
        "time from a shipped entry's proposal at its source leader to the partner's \
         acknowledgement of its copy"
    );
    metrics::describe_gauge!(
        BACKUP_DIRECTION_LAG_SECONDS,
        metrics::Unit::Seconds,
        "largest backup lag of any stream from source_pool to copy_pool (every node reports \
         the deployment's view: aggregate with max)"
    );
    metrics::describe_gauge!(
        BACKUP_DIRECTION_LAG_ENTRIES,
        "largest backup lag in entries of any stream from source_pool to copy_pool"
    );
    metrics::describe_gauge!(
        BACKUP_DIRECTION_STREAMS,
        "backup streams from source_pool to copy_pool, by state"
    );
    metrics::describe_gauge!(
        BACKUP_UNREACHABLE_NODES,
        "nodes that did not answer when the backup status was last gathered"
    );
    metrics::describe_histogram!(
        roster_pool::BATCH_SIZE,
        "requests per message sent to a peer"
    );
}

/// A pool node's per-node gauges, counted from its status document (`PoolNode::status`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NodeGauges {
    /// Replicas held.
    pub replicas: u64,
    /// Groups led, by kind: routing, backup, cms.
    pub led: [u64; 3],
    /// Replicas whose group has no known leader.
    pub without_leader: u64,
    /// Groups led that have not heard from a quorum for longer than the limit.
    pub without_quorum: u64,
}

/// The group kinds of [`NodeGauges::led`], in order.
pub const GROUP_KINDS: [&str; 3] = ["routing", "backup", "cms"];

impl NodeGauges {
    /// Counts `status`'s groups; a leader that has not heard from a quorum for more than
    /// `quorum_ack_limit_ms` has lost it.
    pub fn count(status: &serde_json::Value, quorum_ack_limit_ms: u64) -> NodeGauges {
        let mut gauges = NodeGauges::default();
        for group in status["groups"].as_array().into_iter().flatten() {
            gauges.replicas += 1;
            if group["leader"].is_null() {
                gauges.without_leader += 1;
            }
            if group["state"] != "Leader" {
                continue;
            }
            let kind = crate::overview::model::kind_of(group["key"].as_str().unwrap_or(""));
            if let Some(slot) = GROUP_KINDS.iter().position(|k| *k == kind) {
                gauges.led[slot] += 1;
            }
            if group["millis_since_quorum_ack"]
                .as_u64()
                .is_some_and(|millis| millis > quorum_ack_limit_ms)
            {
                gauges.without_quorum += 1;
            }
        }
        gauges
    }

    /// Sets the gauges.
    pub fn record(&self) {
        metrics::gauge!(NODE_REPLICAS).set(self.replicas as f64);
        for (kind, led) in GROUP_KINDS.iter().zip(self.led) {
            metrics::gauge!(NODE_GROUPS_LED, "kind" => *kind).set(led as f64);
        }
        metrics::gauge!(NODE_GROUPS_WITHOUT_LEADER).set(self.without_leader as f64);
        metrics::gauge!(NODE_GROUPS_WITHOUT_QUORUM).set(self.without_quorum as f64);
    }
}

/// Sets [`BUILD_INFO`] for this build.
fn record_build_info() {
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// The `class` label of a status code.
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "6xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_installed_recorder_reports_the_build_at_once() {
        let text = install().render();
        let line = format!(
            "{BUILD_INFO}{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&line), "{text}");
    }

    #[test]
    fn node_gauges_count_replicas_leaders_and_lost_quorums() {
        let status = json!({"groups": [
            {"key": "1/routing-0", "state": "Leader", "leader": 1, "millis_since_quorum_ack": 20},
            {"key": "1/routing-1", "state": "Leader", "leader": 1, "millis_since_quorum_ack": 9000},
            {"key": "2/backup-0", "state": "Follower", "leader": 4},
            {"key": "1/cms", "state": "Leader", "leader": 1, "millis_since_quorum_ack": null},
            {"key": "1/routing-2", "state": "Candidate", "leader": null},
        ]});
        let gauges = NodeGauges::count(&status, 1_400);
        assert_eq!(
            gauges,
            NodeGauges {
                replicas: 5,
                led: [2, 0, 1],
                without_leader: 1,
                without_quorum: 1,
            }
        );
    }
}
