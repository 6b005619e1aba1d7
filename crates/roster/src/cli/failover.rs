//! `roster pool failover POOL [--disaster]`, `roster pool failback POOL`, `roster cms
//! failover` and `roster cms failback`: ask a node of the pool that acts (the partner taking the
//! users over or giving them back; the partner of the CMS's pool, which takes the CMS over and
//! gives it back) to run the operation, and print its steps with their durations. A refusal is
//! printed with its reason and exits 1; nothing changed.

use std::path::Path;

use roster::admin_api::{self, AdminToken};
use roster_pool::failover::OperationReport;
use roster_topology::PoolId;
use serde_json::Value;

use super::access::{self, Access};
use super::pool_admin::{call, candidates};
use super::runtime;

/// What the operation is, before the deployment says which pools it concerns.
enum Asked<'a> {
    /// `roster pool failover POOL [--disaster]`.
    Failover { pool: &'a str, disaster: bool },
    /// `roster pool failback POOL`.
    Failback { pool: &'a str },
    /// `roster cms failover`.
    CmsFailover,
    /// `roster cms failback`.
    CmsFailback,
}

/// `roster pool failover`: `name`'s users move to its partner.
pub fn fail_over(
    access: &Access,
    token_file: &Path,
    name: &str,
    disaster: bool,
) -> anyhow::Result<()> {
    run(
        access,
        token_file,
        Asked::Failover {
            pool: name,
            disaster,
        },
    )
}

/// `roster pool failback`: `name`'s users go back to it from its partner.
pub fn fail_back(access: &Access, token_file: &Path, name: &str) -> anyhow::Result<()> {
    run(access, token_file, Asked::Failback { pool: name })
}

/// `roster cms failover`: the CMS's copy in the partner of the CMS's pool becomes the CMS.
pub fn fail_over_cms(access: &Access, token_file: &Path) -> anyhow::Result<()> {
    run(access, token_file, Asked::CmsFailover)
}

/// `roster cms failback`: the CMS goes home from the partner of its pool.
pub fn fail_back_cms(access: &Access, token_file: &Path) -> anyhow::Result<()> {
    run(access, token_file, Asked::CmsFailback)
}

/// The name of the partner of the CMS's home pool in the overview: the pool that takes the
/// CMS over and gives it back.
fn cms_partner(overview: &Value) -> anyhow::Result<String> {
    let Some(cms) = overview["cms"]["pool"].as_str() else {
        anyhow::bail!("the deployment has no CMS (no pool holds it)");
    };
    Ok(pool_and_partner(overview, cms)?.1)
}

/// The pool named `name` in the overview: its id and its partner's name.
fn pool_and_partner(overview: &Value, name: &str) -> anyhow::Result<(PoolId, String)> {
    let pools = overview["pools"].as_array().cloned().unwrap_or_default();
    let Some(pool) = pools.iter().find(|pool| pool["name"] == name) else {
        let names: Vec<&str> = pools.iter().filter_map(|p| p["name"].as_str()).collect();
        anyhow::bail!(
            "no pool {name:?} in the deployment (pools: {})",
            names.join(", ")
        );
    };
    let id = pool["id"]
        .as_u64()
        .and_then(|id| PoolId::try_from(id).ok())
        .ok_or_else(|| anyhow::anyhow!("the overview gives pool {name:?} no id"))?;
    let partner = pool["partner"].as_str().ok_or_else(|| {
        anyhow::anyhow!(
            "pool {name} has no partner in the deployment: there is no pool to fail over to"
        )
    })?;
    Ok((id, partner.to_string()))
}

/// Runs the operation on a node of the pool that acts and prints its report.
fn run(access: &Access, token_file: &Path, asked: Asked<'_>) -> anyhow::Result<()> {
    let token = AdminToken::read(token_file)?;
    let (report, names) = runtime::block_on(async {
        // The layout, not the overview: a failover runs when nodes are dead, and must not
        // wait on them.
        let overview = access.layout().await?;
        let (acting, path) = match asked {
            Asked::Failover { pool, disaster } => {
                let (id, partner) = pool_and_partner(&overview, pool)?;
                (partner, admin_api::failover_path(id, disaster))
            }
            Asked::Failback { pool } => {
                let (id, partner) = pool_and_partner(&overview, pool)?;
                (partner, admin_api::failback_path(id))
            }
            Asked::CmsFailover => (
                cms_partner(&overview)?,
                admin_api::CMS_FAILOVER_PATH.to_string(),
            ),
            Asked::CmsFailback => (
                cms_partner(&overview)?,
                admin_api::CMS_FAILBACK_PATH.to_string(),
            ),
        };
        println!("asking a node of pool {acting} to run it ...");
        let nodes = access::nodes(&overview);
        let answer = call(&candidates(&nodes, &acting, None), &path, &token).await?;
        let report: OperationReport = serde_json::from_value(answer)
            .map_err(|error| anyhow::anyhow!("the node's report is not understood: {error}"))?;
        let names: Vec<(PoolId, String)> = overview["pools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|pool| {
                let id = PoolId::try_from(pool["id"].as_u64()?).ok()?;
                Some((id, pool["name"].as_str()?.to_string()))
            })
            .collect();
        Ok::<_, anyhow::Error>((report, names))
    })??;
    let name = |id: PoolId| {
        names
            .iter()
            .find(|(pool, _)| *pool == id)
            .map_or_else(|| format!("#{id}"), |(_, name)| name.clone())
    };
    print!("{}", render(&name, &report));
    Ok(())
}

/// The report as an operator reads it: what happened, each step with its duration.
fn render(name: &dyn Fn(PoolId) -> String, report: &OperationReport) -> String {
    let mut out = format!(
        "{} of pool {}: done in {}\n",
        report.operation,
        name(report.pool),
        seconds(report.total_ms)
    );
    let width = report
        .steps
        .iter()
        .map(|step| step.what.len())
        .max()
        .unwrap_or(0);
    for (n, step) in report.steps.iter().enumerate() {
        out.push_str(&format!(
            "  {}. {:width$}  {:>8}\n",
            n + 1,
            step.what,
            seconds(step.millis)
        ));
    }
    let cms = report.operation.starts_with("cms");
    if cms {
        out.push_str(&format!(
            "pool {} holds the CMS now, at epoch {}\n",
            name(report.owner),
            report.epoch
        ));
    } else {
        out.push_str(&format!(
            "pool {} serves pool {}'s users now, at epoch {}\n",
            name(report.owner),
            name(report.pool),
            report.epoch
        ));
    }
    if let Some(paused) = report.paused_ms {
        let what = if cms {
            "directory changes"
        } else {
            "their writes"
        };
        out.push_str(&format!(
            "{what} were paused for {} (answered 503, Retry-After: 1)\n",
            seconds(paused)
        ));
    }
    out
}

fn seconds(millis: u64) -> String {
    format!("{}.{:03} s", millis / 1000, millis % 1000)
}

#[cfg(test)]
mod tests {
    use roster_pool::failover::Step;

    use super::*;

    #[test]
    fn a_report_names_pools_steps_and_the_pause() {
        let name = |id: PoolId| ["", "east", "west"][usize::from(id)].to_string();
        let report = OperationReport {
            operation: "failback".into(),
            pool: 1,
            owner: 1,
            epoch: 3,
            steps: vec![
                Step {
                    what: "recorded".into(),
                    millis: 21,
                },
                Step {
                    what: "caught up".into(),
                    millis: 1_450,
                },
            ],
            paused_ms: Some(115),
            total_ms: 1_471,
        };
        let text = render(&name, &report);
        assert!(
            text.starts_with("failback of pool east: done in 1.471 s\n"),
            "{text}"
        );
        assert!(text.contains("  2. caught up   1.450 s\n"), "{text}");
        assert!(
            text.contains("pool east serves pool east's users now, at epoch 3"),
            "{text}"
        );
        assert!(text.contains("paused for 0.115 s"), "{text}");
        let cms = OperationReport {
            operation: "cms failback".into(),
            steps: Vec::new(),
            ..report
        };
        let text = render(&name, &cms);
        assert!(
            text.starts_with("cms failback of pool east: done in 1.471 s\n"),
            "{text}"
        );
        assert!(
            text.contains("pool east holds the CMS now, at epoch 3\n"),
            "{text}"
        );
        assert!(
            text.contains("directory changes were paused for 0.115 s"),
            "{text}"
        );
    }

    #[test]
    fn a_cms_failover_says_where_the_cms_lives() {
        let name = |id: PoolId| ["", "east", "west"][usize::from(id)].to_string();
        let report = OperationReport {
            operation: "cms failover".into(),
            pool: 1,
            owner: 2,
            epoch: 2,
            steps: Vec::new(),
            paused_ms: None,
            total_ms: 7,
        };
        let text = render(&name, &report);
        assert!(
            text.contains("pool west holds the CMS now, at epoch 2\n"),
            "{text}"
        );
        assert!(!text.contains("users"), "{text}");
    }
}
