//! openraft's `Config` for a routing group: explicit timings, pre-vote on, validated.
//!
//! Raw numbers go in as [`GroupConfigOptions`] (from the node's TOML); [`group_config`] checks
//! them against Roster's bounds, sets every other knob that matters explicitly, and lets
//! openraft validate the result.

use openraft::{Config, SnapshotPolicy};

use crate::codec::ENTRY_SIZE_MAX;

/// Shortest heartbeat interval accepted, in milliseconds: below it, heartbeats of 32+ groups per
/// node cost more than they buy.
pub const HEARTBEAT_INTERVAL_MS_MIN: u64 = 50;
/// Longest heartbeat interval accepted, in milliseconds: a failover within about a second needs
/// several heartbeats per election timeout.
pub const HEARTBEAT_INTERVAL_MS_MAX: u64 = 1_000;
/// Longest election timeout accepted, in milliseconds: writes are back within 2 s of a node's
/// death in the design; 10 s is the most an operator may trade for stability.
pub const ELECTION_TIMEOUT_MS_MAX: u64 = 10_000;
/// An election timeout spans at least this many heartbeats, so that one or two lost heartbeats
/// do not start an election.
pub const ELECTION_HEARTBEATS_MIN: u64 = 3;
/// Entries in one AppendEntries message. With [`ENTRY_SIZE_MAX`] this bounds the message
/// ([`APPEND_ENTRIES_SIZE_MAX`]); typical entries are near 1 KiB, so 256 of them are a few
/// hundred KiB, enough to catch a follower up quickly.
pub const PAYLOAD_ENTRIES_MAX: u64 = 256;
/// Largest encoded AppendEntries request, in bytes: the network's decode limit for it must be at
/// least this (entries plus a vote, log ids and framing, with 64 KiB to spare).
pub const APPEND_ENTRIES_SIZE_MAX: usize =
    ENTRY_SIZE_MAX * PAYLOAD_ENTRIES_MAX as usize + 64 * 1024;
/// Client requests queued to one group's Raft core before `client_write` waits: bounded so that
/// a load spike turns into back-pressure (and `503`s upstream) instead of memory.
pub const PROPOSALS_PENDING_MAX: u64 = 4_096;

/// The raw knobs of a routing group's Raft, before validation. Times are in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfigOptions {
    /// Names the Raft cluster in openraft's logs and spans, e.g. `pool-a/group-7`.
    pub cluster_name: String,
    /// How often a leader sends heartbeats. Default 150, bound
    /// [`HEARTBEAT_INTERVAL_MS_MIN`]..=[`HEARTBEAT_INTERVAL_MS_MAX`].
    pub heartbeat_interval_ms: u64,
    /// Shortest election timeout. Default 450 (three heartbeats); at least
    /// [`ELECTION_HEARTBEATS_MIN`] heartbeats.
    ///
    /// Failover takes about `max` plus up to one more timeout: with pre-vote, a follower grants
    /// no vote while its leader lease (openraft sets it to the maximum election timeout) lasts,
    /// so a pre-candidate whose timer fires before the other followers' leases end is refused
    /// and tries again one timeout later. The defaults give 0.7–1.4 s.
    pub election_timeout_min_ms: u64,
    /// Longest election timeout; each timeout is drawn between min and max. At
    /// least min + one heartbeat (so that split votes resolve), at most
    /// [`ELECTION_TIMEOUT_MS_MAX`]. Default 700.
    pub election_timeout_max_ms: u64,
    /// Entries applied since the last snapshot that trigger a new one. Default 5000, at least 1.
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log behind a snapshot, for followers (and the backup service) that
    /// lag a little. Default 1000.
    pub logs_kept_after_snapshot: u64,
    /// How long sending and installing a snapshot on a follower may take. Default 10000, at least
    /// one election timeout.
    pub install_snapshot_timeout_ms: u64,
}

/// Options that cannot make a working group.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GroupConfigError {
    /// Heartbeat interval outside its bounds.
    #[error(
        "heartbeat interval {0} ms is outside {HEARTBEAT_INTERVAL_MS_MIN}..={HEARTBEAT_INTERVAL_MS_MAX} ms"
    )]
    Heartbeat(u64),
    /// Minimum election timeout shorter than [`ELECTION_HEARTBEATS_MIN`] heartbeats.
    #[error("election timeout minimum {min_ms} ms is shorter than {ELECTION_HEARTBEATS_MIN} heartbeats of {heartbeat_ms} ms")]
    ElectionTooShort {
        /// The minimum election timeout.
        min_ms: u64,
        /// The heartbeat interval.
        heartbeat_ms: u64,
    },
    /// Maximum election timeout not at least one heartbeat above the minimum, or too long.
    #[error("election timeout maximum {max_ms} ms must be between min + heartbeat ({min_ms} + {heartbeat_ms}) and {ELECTION_TIMEOUT_MS_MAX} ms")]
    ElectionRange {
        /// The minimum election timeout.
        min_ms: u64,
        /// The maximum election timeout.
        max_ms: u64,
        /// The heartbeat interval.
        heartbeat_ms: u64,
    },
    /// A snapshot every 0 entries.
    #[error("snapshot_logs_since_last must be at least 1")]
    SnapshotPolicy,
    /// Snapshot installation timeout shorter than an election timeout.
    #[error("install snapshot timeout {timeout_ms} ms is shorter than the election timeout maximum {election_ms} ms")]
    InstallSnapshotTimeout {
        /// The snapshot timeout.
        timeout_ms: u64,
        /// The maximum election timeout.
        election_ms: u64,
    },
    /// openraft's own validation refused the result.
    #[error("openraft refused the configuration: {0}")]
    Openraft(String),
}

impl Default for GroupConfigOptions {
    fn default() -> Self {
        GroupConfigOptions {
            cluster_name: "roster".into(),
            heartbeat_interval_ms: 150,
            election_timeout_min_ms: 450,
            election_timeout_max_ms: 700,
            snapshot_logs_since_last: 5_000,
            logs_kept_after_snapshot: 1_000,
            install_snapshot_timeout_ms: 10_000,
        }
    }
}

/// Builds and validates openraft's `Config` for a routing group.
///
/// Beyond the timings it sets, explicitly:
/// - `enable_pre_vote = Some(true)`: a node back from a partition asks before it bumps its term,
///   so it does not depose a healthy leader. The network must carry the `pre_vote` RPC (openraft
///   counts a peer whose network does not implement it as granting).
/// - `enable_leader_restore = Some(false)`: a restarted leader goes through an election. Our
///   state machine is in memory and the saved `committed` log id is made durable only by the
///   next flush, so a leader restored at once could serve a read from a state older than one it
///   acknowledged.
/// - `max_payload_entries`, `api_channel_size`, snapshot policy and log retention from the
///   constants and options above.
pub fn group_config(options: &GroupConfigOptions) -> Result<Config, GroupConfigError> {
    check_timings(options)?;
    let config = Config {
        cluster_name: options.cluster_name.clone(),
        heartbeat_interval: options.heartbeat_interval_ms,
        election_timeout_min: options.election_timeout_min_ms,
        election_timeout_max: options.election_timeout_max_ms,
        enable_pre_vote: Some(true),
        // No heartbeat to a follower that acknowledged an append within the last heartbeat
        // interval: under writes, replication proves the same liveness, and 32 groups' heartbeats
        // were hundreds of RPCs a second. Reads still send theirs at once. Safe for elections:
        // a suppressed heartbeat resumes by 2 heartbeats + 1 tick, under the minimum election
        // timeout of `ELECTION_HEARTBEATS_MIN` (3) heartbeats (`check_timings`).
        heartbeat_min_interval: Some(options.heartbeat_interval_ms),
        enable_leader_restore: Some(false),
        install_snapshot_timeout: options.install_snapshot_timeout_ms,
        max_payload_entries: PAYLOAD_ENTRIES_MAX,
        api_channel_size: Some(PROPOSALS_PENDING_MAX),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_logs_since_last),
        max_in_snapshot_log_to_keep: options.logs_kept_after_snapshot,
        ..Config::default()
    };
    let config = config
        .validate()
        .map_err(|error| GroupConfigError::Openraft(error.to_string()))?;
    // Postconditions: what this function promises survived openraft's validation.
    assert_eq!(config.enable_pre_vote, Some(true));
    assert_eq!(config.heartbeat_interval, options.heartbeat_interval_ms);
    Ok(config)
}

fn check_timings(options: &GroupConfigOptions) -> Result<(), GroupConfigError> {
    let heartbeat_ms = options.heartbeat_interval_ms;
    let min_ms = options.election_timeout_min_ms;
    let max_ms = options.election_timeout_max_ms;
    if !(HEARTBEAT_INTERVAL_MS_MIN..=HEARTBEAT_INTERVAL_MS_MAX).contains(&heartbeat_ms) {
        return Err(GroupConfigError::Heartbeat(heartbeat_ms));
    }
    if min_ms < heartbeat_ms * ELECTION_HEARTBEATS_MIN {
        return Err(GroupConfigError::ElectionTooShort {
            min_ms,
            heartbeat_ms,
        });
    }
    if max_ms < min_ms + heartbeat_ms || max_ms > ELECTION_TIMEOUT_MS_MAX {
        return Err(GroupConfigError::ElectionRange {
            min_ms,
            max_ms,
            heartbeat_ms,
        });
    }
    if options.snapshot_logs_since_last == 0 {
        return Err(GroupConfigError::SnapshotPolicy);
    }
    if options.install_snapshot_timeout_ms < max_ms {
        return Err(GroupConfigError::InstallSnapshotTimeout {
            timeout_ms: options.install_snapshot_timeout_ms,
            election_ms: max_ms,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build_with_pre_vote_on() {
        let config = group_config(&GroupConfigOptions::default()).unwrap();
        assert_eq!(config.enable_pre_vote, Some(true));
        assert_eq!(config.enable_leader_restore, Some(false));
        assert_eq!(config.heartbeat_interval, 150);
        assert_eq!(
            (config.election_timeout_min, config.election_timeout_max),
            (450, 700)
        );
        assert_eq!(config.max_payload_entries, PAYLOAD_ENTRIES_MAX);
    }

    #[test]
    fn refuses_bad_timings() {
        let base = GroupConfigOptions::default();
        let cases = [
            GroupConfigOptions {
                heartbeat_interval_ms: 10,
                ..base.clone()
            },
            GroupConfigOptions {
                election_timeout_min_ms: 300,
                ..base.clone()
            },
            GroupConfigOptions {
                election_timeout_max_ms: 500,
                ..base.clone()
            },
            GroupConfigOptions {
                election_timeout_max_ms: 20_000,
                install_snapshot_timeout_ms: 30_000,
                ..base.clone()
            },
            GroupConfigOptions {
                snapshot_logs_since_last: 0,
                ..base.clone()
            },
            GroupConfigOptions {
                install_snapshot_timeout_ms: 600,
                ..base.clone()
            },
        ];
        for options in cases {
            assert!(group_config(&options).is_err(), "{options:?}");
        }
    }
}
