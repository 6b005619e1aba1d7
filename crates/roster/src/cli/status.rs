//! `roster node status` (every node: up, version, groups held and led, lag, witness) and
//! `roster pool status` (each pool's summary, its nodes' witness leases and its groups), as
//! tables or as the overview's JSON, from any node's `/api/v1/deployment`.

use std::fmt::Write as _;

use serde_json::Value;

use super::access::{Access, Format};
use super::runtime;

/// `roster node status`.
pub fn node_status(access: &Access, format: Format) -> anyhow::Result<()> {
    let overview = runtime::block_on(access.overview())??;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&overview)?),
        Format::Table => print!("{}", nodes_table(&overview)),
    }
    Ok(())
}

/// `roster pool status`, of every pool or of the one named.
pub fn pool_status(access: &Access, pool: Option<&str>, format: Format) -> anyhow::Result<()> {
    let overview = runtime::block_on(access.overview())??;
    let pools: Vec<&Value> = overview["pools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| pool.is_none_or(|name| p["name"] == name))
        .collect();
    if let Some(name) = pool {
        anyhow::ensure!(!pools.is_empty(), "no pool {name:?} in the deployment");
    }
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&pools)?),
        Format::Table => {
            for pool in pools {
                print!("{}", pool_table(pool));
            }
        }
    }
    Ok(())
}

/// The width of `roster node status`'s WITNESS column: `100 FENCED, heard 12.3 s ago` fits.
const WITNESS_WIDTH: usize = 26;

/// Seconds, to a tenth, of a JSON count of milliseconds.
fn seconds(milliseconds: &Value) -> String {
    milliseconds
        .as_u64()
        .map_or_else(|| "-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0))
}

/// A node's witness in a few words: `none`, or the witness's id, when it last answered and the
/// lease left (or `FENCED`).
fn witness_summary(witness: &Value) -> String {
    if witness.is_null() {
        return "none".into();
    }
    let heard = match &witness["heard_ms_ago"] {
        Value::Null => "never heard".to_string(),
        ago => format!("heard {} ago", seconds(ago)),
    };
    if witness["self_fenced"] == true {
        format!("{} FENCED, {heard}", text(&witness["witness"]))
    } else {
        format!(
            "{} lease {}, {}",
            text(&witness["witness"]),
            seconds(&witness["lease_left_ms"]),
            heard.replace("heard ", "")
        )
    }
}

/// One pool's nodes and their witness: configured, last heard, lease left, fenced.
fn witness_table(nodes: &[&Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>6}  {:<5} {:<7} {:>12} {:>10}  FENCED",
        "NODE", "STATE", "WITNESS", "HEARD AGO", "LEASE LEFT"
    );
    for node in nodes {
        let witness = &node["witness"];
        let (state, id, heard, lease, fenced) = match (node["up"] == true, witness.is_null()) {
            (false, _) => ("DOWN", "-".into(), "-".into(), "-".into(), "-"),
            (true, true) => ("up", "none".into(), "-".into(), "-".into(), "-"),
            (true, false) => (
                "up",
                text(&witness["witness"]),
                match &witness["heard_ms_ago"] {
                    Value::Null => "never".into(),
                    ago => seconds(ago),
                },
                seconds(&witness["lease_left_ms"]),
                if witness["self_fenced"] == true {
                    "YES"
                } else {
                    "no"
                },
            ),
        };
        let _ = writeln!(
            out,
            "{:>6}  {:<5} {:<7} {:>12} {:>10}  {fenced}",
            text(&node["id"]),
            state,
            id,
            heard,
            lease
        );
    }
    out
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The deployment's health line, its problems, every node, and replication per direction.
pub fn nodes_table(overview: &Value) -> String {
    let mut out = String::new();
    let problems: Vec<&Value> = overview["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let verdict = if problems.is_empty() {
        "healthy".to_string()
    } else {
        format!("{} problem(s)", problems.len())
    };
    let _ = writeln!(
        out,
        "deployment {}, seen by node {}: {verdict}",
        text(&overview["deployment"]),
        text(&overview["seen_by"])
    );
    for problem in problems {
        let _ = writeln!(out, "  ! {}", text(problem));
    }
    let _ = writeln!(
        out,
        "\n{:>4}  {:<8} {:<8} {:<5} {:<8} {:>8}  {:<13} {:>9} {:>9}  {:<WITNESS_WIDTH$}  SIP",
        "NODE",
        "POOL",
        "SITE",
        "STATE",
        "VERSION",
        "REPLICAS",
        "LEADS R/B/C",
        "BINDINGS",
        "APPLY LAG",
        "WITNESS",
    );
    for pool in overview["pools"].as_array().into_iter().flatten() {
        for node in pool["nodes"].as_array().into_iter().flatten() {
            let up = node["up"] == true;
            let leads = ["routing", "backup", "cms"]
                .map(|kind| node["leads"][kind].as_u64().unwrap_or(0).to_string())
                .join("/");
            let (replicas, leads, bindings, lag, witness) = if up {
                (
                    text(&node["replicas"]),
                    leads,
                    text(&node["bindings"]),
                    text(&node["apply_lag_entries"]),
                    witness_summary(&node["witness"]),
                )
            } else {
                ("-".into(), "-".into(), "-".into(), "-".into(), "-".into())
            };
            let _ = writeln!(
                out,
                "{:>4}  {:<8} {:<8} {:<5} {:<8} {:>8}  {:<13} {:>9} {:>9}  {:<WITNESS_WIDTH$}  {}{}",
                text(&node["id"]),
                text(&pool["name"]),
                text(&pool["site"]),
                if up { "up" } else { "DOWN" },
                if up {
                    text(&node["version"])
                } else {
                    "-".into()
                },
                replicas,
                leads,
                bindings,
                lag,
                witness,
                text(&node["sip"]),
                node["error"]
                    .as_str()
                    .map_or_else(String::new, |error| format!("  ({error})")),
            );
        }
    }
    let directions: Vec<&Value> = overview["replication"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    if !directions.is_empty() {
        let _ = writeln!(
            out,
            "\nreplication (RPO target {} ms):",
            text(&overview["rpo_target_ms"])
        );
        for d in directions {
            let _ = writeln!(
                out,
                "  {} -> {}: {} streams, {} steady, {} behind, {} stopped, largest lag {} ms ({} entries){}",
                text(&d["from"]),
                text(&d["to"]),
                text(&d["streams"]),
                text(&d["steady"]),
                text(&d["behind"]),
                text(&d["stopped"]),
                text(&d["lag_ms_max"]),
                text(&d["lag_entries_max"]),
                if d["within_rpo"] == true { "" } else { "  AT RISK" }
            );
        }
    }
    out
}

/// One pool: its summary, then one line per group hosted on its nodes.
pub fn pool_table(pool: &Value) -> String {
    let mut out = String::new();
    let list = |key: &str| {
        let items: Vec<String> = pool[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    let nodes: Vec<&Value> = pool["nodes"].as_array().into_iter().flatten().collect();
    let up = nodes.iter().filter(|n| n["up"] == true).count();
    let _ = writeln!(
        out,
        "pool {} (id {}, site {}, partner {}): {up}/{} nodes up, {} routing groups, served by {} \
         at epoch {}, {} users homed, {} AORs / {} bindings registered",
        text(&pool["name"]),
        text(&pool["id"]),
        text(&pool["site"]),
        text(&pool["partner"]),
        nodes.len(),
        text(&pool["groups"]),
        text(&pool["owner"]),
        text(&pool["epoch"]),
        text(&pool["users"]),
        text(&pool["aors"]),
        text(&pool["bindings"]),
    );
    let _ = writeln!(
        out,
        "  groups without a leader: {}",
        list("groups_without_leader")
    );
    let _ = writeln!(
        out,
        "  groups without a quorum: {}",
        list("groups_without_quorum")
    );
    out.push_str(&witness_table(&nodes));
    let _ = writeln!(
        out,
        "{:<16} {:>6} {:>5} {:>9} {:>8}  replicas (node:state@applied)",
        "GROUP", "LEADER", "TERM", "COMMITTED", "AORS"
    );
    for group in pool["group_table"].as_array().into_iter().flatten() {
        let replicas: Vec<String> = group["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                format!(
                    "{}:{}@{}",
                    text(&r["node"]),
                    text(&r["state"]),
                    text(&r["applied"])
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<16} {:>6} {:>5} {:>9} {:>8}  {}",
            text(&group["key"]),
            text(&group["leader"]),
            text(&group["term"]),
            text(&group["committed"]),
            text(&group["aors"]),
            replicas.join(" ")
        );
    }
    let _ = writeln!(out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn overview() -> Value {
        json!({
            "deployment": "acme", "seen_by": 1, "rpo_target_ms": 1000,
            "problems": ["node 2 of pool a is down: connection refused"],
            "pools": [{
                "id": 1, "name": "a", "site": "dc1", "partner": "b", "groups": 2, "owner": "a",
                "epoch": 1, "users": 3, "aors": 5, "bindings": 6,
                "groups_without_leader": [], "groups_without_quorum": ["1/routing-1"],
                "nodes": [
                    {"id": 1, "up": true, "version": "0.1.0", "replicas": 5,
                     "leads": {"routing": 2, "cms": 1}, "bindings": 6, "apply_lag_entries": 0,
                     "sip": "10.0.1.1:5060", "witness": {"witness": 100, "heard_ms_ago": 400,
                     "lease_left_ms": 7600, "self_fenced": false}},
                    {"id": 2, "up": false, "error": "connection refused", "sip": "10.0.1.2:5060"},
                    {"id": 3, "up": true, "version": "0.1.0", "replicas": 5, "leads": {},
                     "bindings": 0, "apply_lag_entries": 0, "sip": "10.0.1.3:5060",
                     "witness": {"witness": 100, "heard_ms_ago": null, "lease_left_ms": 0,
                     "self_fenced": true}},
                    {"id": 4, "up": true, "version": "0.1.0", "replicas": 5, "leads": {},
                     "bindings": 0, "apply_lag_entries": 0, "sip": "10.0.1.4:5060",
                     "witness": null}
                ],
                "group_table": [{"key": "1/routing-0", "leader": 1, "term": 3, "committed": 9,
                    "aors": 5, "replicas": [{"node": 1, "state": "Leader", "applied": 9}]}]
            }],
            "replication": [{"from": "a", "to": "b", "streams": 3, "steady": 2, "behind": 1,
                "stopped": 0, "lag_ms_max": 1500, "lag_entries_max": 4, "within_rpo": false}]
        })
    }

    #[test]
    fn the_nodes_table_says_who_is_down_and_what_is_at_risk() {
        let table = nodes_table(&overview());
        assert!(table.contains("seen by node 1: 1 problem(s)"), "{table}");
        assert!(table.contains("! node 2 of pool a is down"), "{table}");
        let row = table
            .lines()
            .find(|l| l.trim_start().starts_with("1 "))
            .unwrap();
        assert!(row.contains(" up ") && row.contains("2/0/1"), "{row}");
        assert!(row.contains("100 lease 7.6 s, 0.4 s ago"), "{row}");
        let fenced = table
            .lines()
            .find(|l| l.trim_start().starts_with("3 "))
            .unwrap();
        assert!(fenced.contains("100 FENCED, never heard"), "{fenced}");
        let none = table
            .lines()
            .find(|l| l.trim_start().starts_with("4 "))
            .unwrap();
        assert!(none.contains(" none "), "{none}");
        let down = table
            .lines()
            .find(|l| l.trim_start().starts_with("2 "))
            .unwrap();
        assert!(
            down.contains("DOWN") && down.contains("(connection refused)"),
            "{down}"
        );
        assert!(
            table.contains("a -> b: 3 streams") && table.contains("AT RISK"),
            "{table}"
        );
    }

    #[test]
    fn the_pool_table_lists_groups_and_what_lacks_a_quorum() {
        let table = pool_table(&overview()["pools"][0]);
        assert!(table.contains("3/4 nodes up"), "{table}");
        let row = |id: &str| {
            table
                .lines()
                .find(|l| l.split_whitespace().next() == Some(id))
                .unwrap_or_else(|| panic!("no row {id}: {table}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(row("1"), "1 up 100 0.4 s 7.6 s no");
        assert_eq!(row("2"), "2 DOWN - - - -");
        assert_eq!(row("3"), "3 up 100 never 0.0 s YES");
        assert_eq!(row("4"), "4 up none - - -");
        assert!(
            table.contains("groups without a quorum: 1/routing-1"),
            "{table}"
        );
        assert!(table.contains("1:Leader@9"), "{table}");
    }
}
