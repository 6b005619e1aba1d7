//! What the operator's page and the dashboard are checked against: the Grafana dashboard's
//! queries and the metric names they read (the deployment itself is `paired::Paired`, started
//! with pools `a` and `b`).

/// Every query of the Grafana dashboard (`deploy/grafana/roster.json`).
pub fn dashboard_queries() -> Vec<String> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/roster.json");
    let text = std::fs::read_to_string(&path).expect("deploy/grafana/roster.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| target["expr"].as_str().map(str::to_string))
        .collect()
}

/// The Roster metric names a PromQL query reads (`roster_…`; `_bucket`, `_sum`, `_count` kept,
/// as the exposition names them).
pub fn metric_names(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(start) = rest.find("roster_") {
        let preceded = rest[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded {
            names.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// The metric names a `/metrics` exposition has samples of.
pub fn exposed_names(exposition: &str) -> std::collections::BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}
