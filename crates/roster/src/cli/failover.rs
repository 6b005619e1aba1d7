//! `roster pool failover POOL [--disaster]`, `roster pool failback POOL` and `roster cms
//! failover`: ask a node of the pool that acts (the partner taking the users over or giving
//! them back; the partner of the CMS's pool) to run the operation, and print its steps with
//! their durations. A refusal is printed with its reason and exits 1; nothing changed.

use std::path::Path;

use roster::admin_api::{self, AdminToken};
use roster::topology::read_topology;
use roster_pool::failover::OperationReport;
use roster_topology::{Deployment, PoolId};

use super::pool_admin::{call, pick_pool};
use super::runtime;

/// `roster pool failover`: `name`'s users move to its partner.
pub fn fail_over(
    topology: &Path,
    token_file: &Path,
    name: &str,
    disaster: bool,
) -> anyhow::Result<()> {
    let deployment = read_topology(topology)?;
    let home = pick_pool(&deployment, Some(name))?;
    let partner = partner_of(&deployment, home)?;
    run(
        &deployment,
        partner,
        token_file,
        &admin_api::failover_path(home, disaster),
    )
}

/// `roster pool failback`: `name`'s users go back to it from its partner.
pub fn fail_back(topology: &Path, token_file: &Path, name: &str) -> anyhow::Result<()> {
    let deployment = read_topology(topology)?;
    let home = pick_pool(&deployment, Some(name))?;
    let partner = partner_of(&deployment, home)?;
    run(
        &deployment,
        partner,
        token_file,
        &admin_api::failback_path(home),
    )
}

/// `roster cms failover`: the CMS's copy in the partner of the CMS's pool becomes the CMS.
pub fn fail_over_cms(topology: &Path, token_file: &Path) -> anyhow::Result<()> {
    let deployment = read_topology(topology)?;
    let partner = partner_of(&deployment, deployment.cms_pool())?;
    run(
        &deployment,
        partner,
        token_file,
        admin_api::CMS_FAILOVER_PATH,
    )
}

/// The pool paired with `home`, or an error naming `home`.
fn partner_of(deployment: &Deployment, home: PoolId) -> anyhow::Result<PoolId> {
    deployment.partner(home).ok_or_else(|| {
        anyhow::anyhow!(
            "pool {} has no partner in the deployment: there is no pool to fail over to",
            pool_name(deployment, home)
        )
    })
}

fn pool_name(deployment: &Deployment, id: PoolId) -> String {
    deployment
        .pool(id)
        .map_or_else(|| format!("#{id}"), |pool| pool.name.clone())
}

/// Runs the operation at `path` on a node of `acting` and prints its report.
fn run(
    deployment: &Deployment,
    acting: PoolId,
    token_file: &Path,
    path: &str,
) -> anyhow::Result<()> {
    let token = AdminToken::read(token_file)?;
    println!(
        "asking a node of pool {} to run it ...",
        pool_name(deployment, acting)
    );
    let answer = runtime::block_on(call(deployment, acting, None, path, &token))??;
    let report: OperationReport = serde_json::from_value(answer)
        .map_err(|error| anyhow::anyhow!("the node's report is not understood: {error}"))?;
    print!("{}", render(&|id| pool_name(deployment, id), &report));
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
    out.push_str(&format!(
        "pool {} serves pool {}'s users now, at epoch {}\n",
        name(report.owner),
        name(report.pool),
        report.epoch
    ));
    if let Some(paused) = report.paused_ms {
        out.push_str(&format!(
            "their writes were paused for {} (answered 503, Retry-After: 1)\n",
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
    }
}
