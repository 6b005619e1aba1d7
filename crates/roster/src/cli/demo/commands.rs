//! What to try with the demo, as commands ready to copy: register with SIPp at either site,
//! `roster load`, kill a node, the backup lag, (two sites) the failover and failback
//! commands with the right pool names, `--url` and token file. The banner prints them and
//! `demo.json` lists them; both from here, so that they never disagree.

use std::path::Path;

use serde::Serialize;

use super::files::{CREDENTIALS_FILE, USERS_CSV_FILE};
use super::layout::{Layout, PoolPlan};
use super::nodes::DemoNode;
use super::DemoOptions;

/// SIPp's registrar scenario, relative to the repository's root (where README runs it).
const SIPP_SCENARIO: &str = "tests/sipp/registrar_flow.xml";

/// One thing to try.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DemoCommand {
    /// What it shows, in a few words.
    pub what: String,
    /// The command line, ready to copy.
    pub command: String,
}

/// The commands for the demo's `nodes` laid out as `layout`; `roster` is the executable.
pub fn commands(
    options: &DemoOptions,
    layout: &Layout,
    nodes: &[DemoNode],
    witness: Option<&DemoNode>,
    roster: &Path,
) -> Vec<DemoCommand> {
    let roster = roster.display();
    let dir = &options.dir;
    let password_file = if options.no_auth {
        String::new()
    } else {
        format!(" --password-file {}", dir.join(CREDENTIALS_FILE).display())
    };
    let token_file = dir.join("pool").join(super::super::init::ADMIN_TOKEN_FILE);
    let token = format!(" --token-file {}", token_file.display());
    let mut list = Vec::new();
    let mut add = |what: String, command: String| list.push(DemoCommand { what, command });
    let two_sites = layout.pools.len() > 1;
    for pool in &layout.pools {
        let Some(sip) = first_sip(pool, nodes) else {
            continue;
        };
        let at = if two_sites {
            format!(" at site {} (pool {})", pool.site, pool.name)
        } else {
            String::new()
        };
        // SIPp takes the injection file's users in order from u0, homed on the first pool:
        // at the second site they are forwarded there.
        let sipp_users = match layout.home_of(0) {
            Some(home) if two_sites && home.id != pool.id => {
                format!(", users u0 … u9 (homed on pool {}: forwarded)", home.name)
            }
            _ => ", users u0 … u9".to_string(),
        };
        add(
            format!("register with SIPp{at}{sipp_users}, from the repository's root"),
            format!(
                "sipp {sip} -sf {SIPP_SCENARIO} -inf {} -m 10",
                dir.join(USERS_CSV_FILE).display()
            ),
        );
        let users = if two_sites {
            format!(
                " --first-user {} --users {}",
                pool.users.start(),
                pool.users.clone().count()
            )
        } else {
            String::new()
        };
        let whose = if two_sites {
            format!(", its own users {}", pool.users_text())
        } else {
            String::new()
        };
        add(
            format!("load{at}{whose}: REGISTERs, refreshes, queries, lookups for 10 s"),
            format!("{roster} load {sip}{users} --duration 10s{password_file}"),
        );
    }
    if let Some(victim) = layout
        .pools
        .first()
        .and_then(|pool| pool.nodes.get(1))
        .and_then(|plan| nodes.iter().find(|node| node.id == plan.id))
    {
        let pool = if two_sites {
            format!(" of pool {}", victim.pool)
        } else {
            String::new()
        };
        add(
            format!(
                "kill node {}{pool}: the demo reports it and the others serve on",
                victim.id
            ),
            format!("kill -9 {}", victim.pid),
        );
    }
    if !two_sites {
        return list;
    }
    let Some(first) = layout.pools.first() else {
        return list;
    };
    let Some(partner) = layout.partner_of(first) else {
        return list;
    };
    if let Some(url) = admin_url(first, nodes) {
        add(
            "the backup streams both ways: per group, lag in entries and seconds".to_string(),
            format!("{roster} backup status --url {url}"),
        );
    }
    if let Some(http) = witness.and_then(|witness| witness.http.as_deref()) {
        add(
            "what the witness hears of each pool, and who owns whose users".to_string(),
            format!("{roster} witness status --http {http}"),
        );
        let victims: Vec<String> = first
            .nodes
            .iter()
            .filter_map(|plan| nodes.iter().find(|node| node.id == plan.id))
            .map(|node| node.pid.to_string())
            .collect();
        add(
            format!(
                "lose site {}: kill every node of pool {}; pool {} takes its users over by \
                 itself (no command) within the detection interval and a few seconds",
                first.site, first.name, partner.name
            ),
            format!("kill -9 {}", victims.join(" ")),
        );
    }
    // A pool is failed over and back from its partner, which is alive when the pool is not.
    if let Some(url) = admin_url(partner, nodes) {
        let (a, b) = (first.name, partner.name);
        add(
            format!("fail pool {a} over to pool {b}, planned: {b} catches up first, nothing lost"),
            format!("{roster} pool failover {a} --url {url}{token}"),
        );
        add(
            format!(
                "fail pool {a} over to pool {b} after losing site {}: from what {b} has",
                first.site
            ),
            format!("{roster} pool failover {a} --disaster --url {url}{token}"),
        );
        add(
            format!("move the CMS to pool {b} (before failing over its pool {a} when {a} is lost)"),
            format!("{roster} cms failover --url {url}{token}"),
        );
        add(
            format!("give pool {a} its users back from pool {b}"),
            format!("{roster} pool failback {a} --url {url}{token}"),
        );
        add(
            format!("bring the CMS home to pool {a} from pool {b} (after a CMS failover)"),
            format!("{roster} cms failback --url {url}{token}"),
        );
    }
    list
}

/// The SIP UDP address of `pool`'s first node, as it announced it.
fn first_sip(pool: &PoolPlan, nodes: &[DemoNode]) -> Option<String> {
    let plan = pool.nodes.first()?;
    let node = nodes.iter().find(|node| node.id == plan.id)?;
    node.sip
        .iter()
        .find(|(transport, _)| transport == "udp")
        .map(|(_, address)| address.clone())
        .or_else(|| Some(plan.sip.to_string()))
}

/// The HTTP URL of `pool`'s first node whose address is known.
fn admin_url(pool: &PoolPlan, nodes: &[DemoNode]) -> Option<String> {
    pool.nodes.iter().find_map(|plan| {
        let node = nodes.iter().find(|node| node.id == plan.id)?;
        let http = node
            .http
            .clone()
            .or_else(|| (plan.http.port() != 0).then(|| plan.http.to_string()))?;
        Some(format!("http://{http}"))
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    fn options(sites: u8) -> DemoOptions {
        DemoOptions {
            sip: "127.0.0.1:5060".parse().expect("address"),
            dir: PathBuf::from("/tmp/roster-demo"),
            no_auth: false,
            http: "127.0.0.1:8080".parse().expect("address"),
            groups: 32,
            trusted_networks: Vec::new(),
            sites,
            wan_latency: Duration::from_millis(20),
            witness: false,
        }
    }

    fn nodes(layout: &Layout) -> Vec<DemoNode> {
        layout
            .pools
            .iter()
            .flat_map(|pool| pool.nodes.iter().map(move |plan| (pool.name, plan)))
            .map(|(pool, plan)| {
                let pid = 4100 + u32::try_from(plan.id).expect("small");
                DemoNode::announced(
                    plan.id,
                    pool,
                    pid,
                    &plan.sip.to_string(),
                    &plan.http.to_string(),
                )
            })
            .collect()
    }

    fn find<'a>(list: &'a [DemoCommand], start: &str) -> &'a str {
        list.iter()
            .find(|command| command.command.starts_with(start))
            .map(|command| command.command.as_str())
            .unwrap_or_else(|| panic!("{start}… in {list:#?}"))
    }

    #[test]
    fn two_sites_name_both_pools_and_fail_over_through_the_partner() {
        let options = options(2);
        let layout = Layout::of(&options);
        let list = commands(
            &options,
            &layout,
            &nodes(&layout),
            None,
            Path::new("/usr/bin/roster"),
        );
        let token = "--token-file /tmp/roster-demo/pool/admin.token";
        assert_eq!(
            find(&list, "sipp 127.0.0.4:5060"),
            "sipp 127.0.0.4:5060 -sf tests/sipp/registrar_flow.xml \
             -inf /tmp/roster-demo/users.csv -m 10"
        );
        assert!(list
            .iter()
            .any(|command| command.what.contains("forwarded")));
        assert_eq!(
            find(&list, "/usr/bin/roster load 127.0.0.4"),
            "/usr/bin/roster load 127.0.0.4:5060 --first-user 5000 --users 5000 --duration 10s \
             --password-file /tmp/roster-demo/credentials"
        );
        assert_eq!(find(&list, "kill -9"), "kill -9 4102");
        assert_eq!(
            find(&list, "/usr/bin/roster backup"),
            "/usr/bin/roster backup status --url http://127.0.0.1:8080"
        );
        assert_eq!(
            find(&list, "/usr/bin/roster pool failover a --disaster"),
            format!(
                "/usr/bin/roster pool failover a --disaster --url http://127.0.0.4:8080 {token}"
            )
        );
        assert_eq!(
            find(&list, "/usr/bin/roster pool failback"),
            format!("/usr/bin/roster pool failback a --url http://127.0.0.4:8080 {token}")
        );
        assert_eq!(
            find(&list, "/usr/bin/roster cms"),
            format!("/usr/bin/roster cms failover --url http://127.0.0.4:8080 {token}")
        );
        assert_eq!(
            find(&list, "/usr/bin/roster cms failback"),
            format!("/usr/bin/roster cms failback --url http://127.0.0.4:8080 {token}")
        );
    }

    #[test]
    fn a_witness_adds_its_status_and_the_loss_of_a_site() {
        let mut options = options(2);
        options.witness = true;
        let layout = Layout::of(&options);
        let plan = layout.witness.expect("a witness");
        let witness = DemoNode::announced(
            plan.id,
            super::super::nodes::WITNESS_LABEL,
            4200,
            &plan.address.to_string(),
            &plan.http.to_string(),
        );
        let list = commands(
            &options,
            &layout,
            &nodes(&layout),
            Some(&witness),
            Path::new("roster"),
        );
        assert_eq!(
            find(&list, "roster witness"),
            "roster witness status --http 127.0.0.7:8080"
        );
        let lose = list
            .iter()
            .find(|command| command.what.starts_with("lose site dc1"))
            .unwrap_or_else(|| panic!("{list:#?}"));
        assert_eq!(lose.command, "kill -9 4101 4102 4103");
        let without = commands(
            &options,
            &layout,
            &nodes(&layout),
            None,
            Path::new("roster"),
        );
        assert!(without.iter().all(|c| !c.command.contains("witness")));
    }

    #[test]
    fn one_site_has_no_partner_to_fail_over_to() {
        let mut options = options(1);
        options.no_auth = true;
        let layout = Layout::of(&options);
        let list = commands(
            &options,
            &layout,
            &nodes(&layout),
            None,
            Path::new("roster"),
        );
        assert_eq!(
            find(&list, "roster load"),
            "roster load 127.0.0.1:5060 --duration 10s"
        );
        assert!(
            list.iter()
                .all(|command| !command.command.contains("fail")
                    && !command.command.contains("backup")),
            "{list:#?}"
        );
    }
}
