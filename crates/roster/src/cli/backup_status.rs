//! `roster backup status`: the backup service's status (`GET /api/v1/backup`) from any node of
//! either pool, as a table per direction with a summary line, or as its JSON document.

use std::fmt::Write as _;

use roster::admin_api::backup::{BackupStatus, Direction, BACKUP_PATH};

use super::args::{Format, NodeTarget};
use super::node_client::{NodeClient, NodeOrder};
use super::runtime;
use super::user::print_json;

/// Prints the status as the first node of `target` that answers sees it.
pub fn print(target: &NodeTarget, format: Format) -> anyhow::Result<()> {
    let mut client = NodeClient::new(target, NodeOrder::Any, None)?;
    let status: BackupStatus = runtime::block_on(client.get(BACKUP_PATH))??.value;
    match format {
        Format::Json => print_json(&status)?,
        Format::Table => print!("{}", render(&status, client.node())),
    }
    Ok(())
}

/// The status as text: per direction a headline and a table, then the nodes that did not
/// answer and a summary line (the largest lag of each direction).
pub fn render(status: &BackupStatus, asked: &str) -> String {
    let mut text = String::new();
    if status.directions.is_empty() {
        let _ = writeln!(
            text,
            "pool {} has no partner: nothing is backed up (asked {asked})",
            status.pool.name
        );
        return text;
    }
    for direction in &status.directions {
        let _ = writeln!(text, "{}", headline(direction));
        let _ = writeln!(
            text,
            "{:<16} {:<16} {:>6} {:>12} {:>10} {:>13} {:>8} {:>8}  {:<8} detail",
            "source",
            "copy",
            "leader",
            "source index",
            "applied",
            "partner index",
            "lag",
            "lag s",
            "state"
        );
        for group in &direction.groups {
            let dash = || "-".to_string();
            let applied_ago = group.source_time_ms.map_or_else(dash, |time| {
                let ago_ms = status.generated_at_ms.saturating_sub(time);
                format!("{:.1} s ago", ago_ms as f64 / 1000.0)
            });
            let _ = writeln!(
                text,
                "{:<16} {:<16} {:>6} {:>12} {:>10} {:>13} {:>8} {:>8.3}  {:<8} {}",
                group.source,
                group.copy,
                group.leader.map_or_else(dash, |leader| leader.to_string()),
                group
                    .source_index
                    .map_or_else(dash, |index| index.to_string()),
                applied_ago,
                group
                    .partner_index
                    .map_or_else(dash, |index| index.to_string()),
                group.lag_entries,
                group.lag_seconds,
                group.state,
                group.detail.as_deref().unwrap_or("")
            );
        }
        let _ = writeln!(text);
    }
    for node in &status.unreachable {
        let _ = writeln!(text, "did not answer: {node}");
    }
    let summary: Vec<String> = status
        .directions
        .iter()
        .map(|direction| {
            format!(
                "{} → {} max lag {:.3} s ({} entries)",
                direction.source.name,
                direction.copy.name,
                direction.lag_seconds_max,
                direction.lag_entries_max
            )
        })
        .collect();
    let _ = writeln!(
        text,
        "summary: {}; seen by node {} of pool {} ({asked})",
        summary.join("; "),
        status.node,
        status.pool.name
    );
    text
}

/// `east → west: 33 streams: 33 steady, 0 behind, 0 stopped; max lag 0.004 s (2 entries)`.
fn headline(direction: &Direction) -> String {
    format!(
        "{} → {}: {} streams: {} steady, {} behind, {} stopped; max lag {:.3} s ({} entries)",
        direction.source.name,
        direction.copy.name,
        direction.streams,
        direction.steady,
        direction.behind,
        direction.stopped,
        direction.lag_seconds_max,
        direction.lag_entries_max
    )
}

#[cfg(test)]
mod tests {
    use roster::admin_api::backup::StreamView;
    use roster::admin_api::users::PoolName;

    use super::*;

    fn direction(source: &str, copy: &str, groups: Vec<StreamView>) -> Direction {
        Direction {
            source: PoolName {
                id: 1,
                name: source.into(),
            },
            copy: PoolName {
                id: 2,
                name: copy.into(),
            },
            streams: groups.len(),
            steady: groups.iter().filter(|g| g.state == "steady").count(),
            behind: 0,
            stopped: groups.iter().filter(|g| g.state == "stopped").count(),
            lag_entries_max: 3,
            lag_seconds_max: 0.25,
            groups,
        }
    }

    fn group(source: &str, state: &str, leader: Option<u64>) -> StreamView {
        StreamView {
            source: source.into(),
            copy: source.replace("routing", "backup"),
            leader,
            source_index: leader.map(|_| 120),
            source_time_ms: leader.map(|_| 9_000),
            partner_index: Some(117),
            lag_entries: 3,
            lag_seconds: 0.25,
            state: state.into(),
            detail: (state == "stopped").then(|| "no node reported this stream".into()),
            restores: 0,
        }
    }

    #[test]
    fn a_table_per_direction_and_a_summary() {
        let status = BackupStatus {
            pool: PoolName {
                id: 1,
                name: "east".into(),
            },
            node: 1,
            generated_at_ms: 10_000,
            steady_lag_s: 1.0,
            directions: vec![
                direction(
                    "east",
                    "west",
                    vec![group("1/routing-0", "steady", Some(2))],
                ),
                direction("west", "east", vec![group("2/routing-0", "stopped", None)]),
            ],
            unreachable: vec!["pool 2 node 4: timed out".into()],
        };
        let text = render(&status, "http://127.0.0.1:8080");
        assert!(
            text.contains("east → west: 1 streams: 1 steady, 0 behind, 0 stopped; max lag 0.250 s (3 entries)"),
            "{text}"
        );
        let steady = text
            .lines()
            .find(|line| line.starts_with("1/routing-0"))
            .expect("a line for the group");
        assert!(
            steady.contains("1.0 s ago") && steady.contains("steady"),
            "{steady}"
        );
        let stopped = text
            .lines()
            .find(|line| line.starts_with("2/routing-0"))
            .expect("a line for the group");
        assert!(
            stopped.contains("stopped") && stopped.contains("no node reported"),
            "{stopped}"
        );
        assert!(
            text.contains("did not answer: pool 2 node 4: timed out"),
            "{text}"
        );
        let summary = text.lines().last().expect("a summary");
        assert!(
            summary.starts_with("summary: east → west max lag 0.250 s (3 entries); west → east"),
            "{summary}"
        );
    }
}
