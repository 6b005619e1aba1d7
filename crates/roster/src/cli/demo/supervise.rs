//! Watching the demo's nodes and its witness: a node that ends is reported (which node of
//! which pool, how it ended, its log, what its pool and its partner do now, the command that
//! starts it again) and the others serve on, as a pool does; so is the witness's end (the pools
//! serve on; nothing is failed over by itself without it). A node or witness started again with
//! that command is found and watched in turn. The demo ends when told to, or when no node is
//! left.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use roster_pool::placement::REPLICAS_PER_GROUP;
use tokio_util::sync::CancellationToken;

use super::layout::{Layout, NODES_PER_POOL};
use super::nodes::{self, DemoNode, Ending};
use super::restarted;

// The reports say a node's death costs each of its pool's groups one replica: every demo node
// holds a replica of every group of its pool.
const _: () = assert!(NODES_PER_POOL as usize == REPLICAS_PER_GROUP);

/// Replicas of a group that must run for it to serve: a majority.
const MAJORITY: usize = REPLICAS_PER_GROUP / 2 + 1;

/// Pause between looks for a node started again outside the demo, while a node is down.
const RESTART_POLL: Duration = Duration::from_secs(1);

/// What the watch needs besides the nodes.
pub struct Watch<'a> {
    /// The demo's pools and nodes.
    pub layout: &'a Layout,
    /// The executable the restart commands name.
    pub roster: &'a Path,
    /// Called whenever a node or the witness ends or is found again (`demo.json` follows),
    /// with the nodes and the witness.
    pub on_change: &'a dyn Fn(&[DemoNode], &[DemoNode]),
}

/// Runs until `shutdown` (then `Ok`), reporting each node that ends and each found started
/// again; an error once none is left.
pub async fn supervise(
    nodes: &mut [DemoNode],
    witness: &mut [DemoNode],
    watch: &Watch<'_>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let some_down = nodes
            .iter()
            .chain(witness.iter())
            .any(|node| !node.running());
        let ended = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            index = nodes::first_exit(nodes) => Some(Ok(index)),
            index = nodes::first_exit(witness) => Some(Err(index)),
            () = tokio::time::sleep(RESTART_POLL), if some_down => None,
        };
        match ended {
            Some(Ok(index)) => report_ended(nodes, witness, index, watch)?,
            Some(Err(index)) => {
                print!("{}", witness_report(&witness[index], watch.roster));
                (watch.on_change)(nodes, witness);
            }
            None => adopt_restarted(nodes, witness, watch),
        }
    }
}

/// Tells how node `nodes[index]` ended and what its pool can still do; an error when no node
/// is left.
fn report_ended(
    nodes: &[DemoNode],
    witness: &[DemoNode],
    index: usize,
    watch: &Watch<'_>,
) -> anyhow::Result<()> {
    let node = &nodes[index];
    let paired = watch.layout.pools.len() > 1;
    let running: Vec<u64> = nodes
        .iter()
        .filter(|other| other.running() && other.pool == node.pool)
        .map(|other| other.id)
        .collect();
    let partner = watch
        .layout
        .pool_of(node.id)
        .and_then(|pool| watch.layout.partner_of(pool))
        .map(|pool| pool.name);
    let ended = Ended {
        id: node.id,
        pool: paired.then_some(node.pool),
        partner,
        pid: node.pid,
        ending: node
            .ended
            .unwrap_or(Ending::Status(ExitStatus::from_raw(0))),
        lived: node.started.elapsed(),
        log: node.started_by_demo().then_some(node.log.as_path()),
        config: &node.config,
        last_words: node.last_words(),
        witness: witness.iter().any(DemoNode::running),
    };
    let goes_on = nodes.iter().any(DemoNode::running);
    print!("{}", report(&ended, &running, goes_on, watch.roster));
    (watch.on_change)(nodes, witness);
    if !goes_on {
        let logs = node.log.parent().unwrap_or(Path::new("."));
        anyhow::bail!(
            "every node of the demo has ended; see {}/node-*.log",
            logs.display()
        );
    }
    Ok(())
}

/// Looks for each node (and the witness) that is down among the running processes (the
/// command the demo printed starts it); one found serving is watched from now on.
fn adopt_restarted(nodes: &mut [DemoNode], witness: &mut [DemoNode], watch: &Watch<'_>) {
    let paired = watch.layout.pools.len() > 1;
    let mut changed = false;
    for node in nodes.iter_mut().filter(|node| !node.running()) {
        let Some(plan) = watch.layout.nodes().find(|plan| plan.id == node.id) else {
            continue;
        };
        let sip_ports = [plan.sip.port(), plan.sip.port().saturating_add(1)];
        let Some((pid, http)) = find_restarted(node, plan.http, &sip_ports) else {
            continue;
        };
        node.adopt(pid, Some(http.clone()));
        println!(
            "roster demo: {} is back (pid {pid}, started outside the demo; HTTP http://{http}/); \
             demo.json names it",
            node_name(node.id, paired.then_some(node.pool))
        );
        changed = true;
    }
    if let Some(plan) = watch.layout.witness {
        for node in witness.iter_mut().filter(|node| !node.running()) {
            let Some((pid, http)) = find_restarted(node, plan.http, &[]) else {
                continue;
            };
            node.adopt(pid, Some(http.clone()));
            println!(
                "roster demo: witness {} is back (pid {pid}, started outside the demo; HTTP \
                 http://{http}/status); demo.json names it",
                node.id
            );
            changed = true;
        }
    }
    if changed {
        (watch.on_change)(nodes, witness);
    }
}

/// The process and HTTP address of `node` (a node or the witness) started again, once it
/// listens on its HTTP address `http` (with port 0, any free port: a port on that address
/// other than `sip_ports`).
fn find_restarted(node: &DemoNode, http: SocketAddr, sip_ports: &[u16]) -> Option<(u32, String)> {
    restarted::find(node.subcommand(), &node.config, node.pid)
        .into_iter()
        .find_map(|pid| {
            let listening = restarted::listening(pid);
            let found = if http.port() != 0 {
                listening.contains(&http).then_some(http)
            } else {
                listening
                    .iter()
                    .find(|address| {
                        address.ip() == http.ip() && !sip_ports.contains(&address.port())
                    })
                    .copied()
            };
            Some((pid, found?.to_string()))
        })
}

/// What the user reads when the witness has ended: the pools serve on, and what changes
/// without it.
fn witness_report(witness: &DemoNode, roster: &Path) -> String {
    let ending = witness
        .ended
        .unwrap_or(Ending::Status(ExitStatus::from_raw(0)));
    let log = if witness.started_by_demo() {
        format!("; its log: {}", witness.log.display())
    } else {
        String::new()
    };
    format!(
        "roster demo: witness {} (pid {}) {} after {}{log}\n  \
         both pools serve on: each still hears its partner, so no node fences itself. Without \
         the witness no pool is failed over by itself: a pool whose every node is gone has its \
         users answered by its partner as backup registrar, and `roster pool failover POOL \
         --disaster` makes the partner their owner.\n  \
         to start the witness again, run in another terminal:\n    {} witness --config {}\n",
        witness.id,
        witness.pid,
        ending_phrase(ending),
        duration(witness.started.elapsed()),
        shell_word(&roster.display().to_string()),
        shell_word(&witness.config.display().to_string()),
    )
}

/// A node that has ended, as the report tells it.
struct Ended<'a> {
    id: u64,
    /// Its pool's name, when the demo has two.
    pool: Option<&'a str>,
    /// Its pool's partner, when the demo has two.
    partner: Option<&'a str>,
    pid: u32,
    ending: Ending,
    lived: Duration,
    /// Its log, when the demo started it.
    log: Option<&'a Path>,
    config: &'a Path,
    /// Its log's last words (see [`DemoNode::last_words`]).
    last_words: Option<String>,
    /// Whether the demo's witness runs (with `--witness`): then a pool whose every node is gone
    /// is failed over by its partner by itself.
    witness: bool,
}

/// What the user reads when a node has ended while the nodes `running` of its pool go on
/// (and the demo `goes_on`: some node of any pool runs).
fn report(ended: &Ended<'_>, running: &[u64], goes_on: bool, roster: &Path) -> String {
    let log = ended
        .log
        .map(|log| format!("; its log: {}", log.display()))
        .unwrap_or_default();
    let mut text = format!(
        "roster demo: {} (pid {}) {} after {}{log}\n",
        node_name(ended.id, ended.pool),
        ended.pid,
        ending_phrase(ended.ending),
        duration(ended.lived),
    );
    let failed = matches!(ended.ending, Ending::Status(status)
        if status.signal().is_none() && status.code() != Some(0));
    if let (true, Some(words)) = (failed, &ended.last_words) {
        text.push_str(&format!("  its last words: {words}\n"));
    }
    text.push_str(&format!(
        "  {}\n",
        serving(running, ended.pool, ended.partner, ended.witness)
    ));
    if goes_on {
        text.push_str(&format!(
            "  to start node {} again (it catches up from its disk and its peers), run in \
             another terminal:\n    {} start --config {}\n  \
             (Ctrl-C there stops it; Ctrl-C here stops the demo and the nodes it started)\n",
            ended.id,
            shell_word(&roster.display().to_string()),
            shell_word(&ended.config.display().to_string()),
        ));
    }
    text
}

/// "node 4", or "node 4 of pool b" when the demo has two pools.
fn node_name(id: u64, pool: Option<&str>) -> String {
    match pool {
        Some(pool) => format!("node {id} of pool {pool}"),
        None => format!("node {id}"),
    }
}

/// How a process ended, as a phrase: "was killed by signal 9 (SIGKILL)".
fn ending_phrase(ending: Ending) -> String {
    let status = match ending {
        Ending::Status(status) => status,
        Ending::Gone => {
            return "is gone (it was started outside the demo, so how it ended shows where it \
                    was started)"
                .into()
        }
    };
    match (status.signal(), status.code()) {
        (Some(signal), _) => {
            let core = if status.core_dumped() {
                ", core dumped"
            } else {
                ""
            };
            match signal_name(signal) {
                Some(name) => format!("was killed by signal {signal} ({name}{core})"),
                None => format!("was killed by signal {signal}{core}"),
            }
        }
        (None, Some(0)) => "stopped (exit code 0: it was asked to, by SIGTERM or SIGINT)".into(),
        (None, Some(code)) => format!("failed (exit code {code})"),
        (None, None) => format!("ended ({status})"),
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => return None,
    })
}

/// What the pool (`pool`, named when the demo has two, with its `partner`, and a `witness`
/// running or not) can do with its nodes `running`.
fn serving(running: &[u64], pool: Option<&str>, partner: Option<&str>, witness: bool) -> String {
    let names = nodes_phrase(running);
    let Some(pool) = pool else {
        return if running.len() >= MAJORITY {
            format!(
                "{names} serve on: every routing group has a replica on each node and keeps a \
                 majority ({MAJORITY} of {REPLICAS_PER_GROUP})."
            )
        } else if running.is_empty() {
            "no node of the demo is left; the demo stops.".into()
        } else {
            format!(
                "only {names} is left: no routing group has a majority of its replicas \
                 ({MAJORITY} of {REPLICAS_PER_GROUP}), so registrations and lookups get 503 \
                 until another node is back."
            )
        };
    };
    let partner = partner.unwrap_or("the partner");
    if running.len() >= MAJORITY {
        format!(
            "{names} of pool {pool} serve on: each of its groups (its routing groups, the backup \
             copies of pool {partner}'s, the CMS or its copy) has a replica on each node and keeps \
             a majority ({MAJORITY} of {REPLICAS_PER_GROUP}); pool {partner} is untouched."
        )
    } else if running.is_empty() && witness {
        format!(
            "no node of pool {pool} is left: once pool {partner} has not heard it for the \
             detection interval (10 s), {partner} answers pool {pool}'s users from its backup \
             copies (the backup registrar), and, as the witness has not heard pool {pool} \
             either, fails pool {pool} over by itself: {partner} owns its users (`roster pool \
             status` shows the owner). Once pool {pool}'s nodes are back, `roster pool failback \
             {pool}` gives them back."
        )
    } else if running.is_empty() {
        format!(
            "no node of pool {pool} is left: once pool {partner} has not heard it for the \
             detection interval (10 s), {partner} answers pool {pool}'s users from its backup \
             copies (the backup registrar: registrations and lookups, no directory changes); \
             `roster pool failover {pool} --disaster` makes {partner} their owner."
        )
    } else {
        format!(
            "only {names} of pool {pool} is left: no group of pool {pool} has a majority of its \
             replicas ({MAJORITY} of {REPLICAS_PER_GROUP}), so its users get 503 until another \
             of its nodes is back; pool {partner} serves its own users."
        )
    }
}

/// "node 1", "nodes 1 and 3", "nodes 1, 2 and 4".
fn nodes_phrase(ids: &[u64]) -> String {
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    match ids.as_slice() {
        [] => "no node".into(),
        [one] => format!("node {one}"),
        [rest @ .., last] => format!("nodes {} and {last}", rest.join(", ")),
    }
}

/// "42 s", "3 min 5 s", "2 h 0 min".
fn duration(lived: Duration) -> String {
    let seconds = lived.as_secs();
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}

/// `word` as one shell word: as it is when it holds only safe characters, else single-quoted.
fn shell_word(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_say_how() {
        let status = |raw| ending_phrase(Ending::Status(ExitStatus::from_raw(raw)));
        assert_eq!(status(libc::SIGKILL), "was killed by signal 9 (SIGKILL)");
        assert_eq!(status(1 << 8), "failed (exit code 1)");
        assert!(status(0).starts_with("stopped (exit code 0"));
        assert_eq!(status(64), "was killed by signal 64");
        assert!(ending_phrase(Ending::Gone).starts_with("is gone (it was started outside the demo"));
    }

    #[test]
    fn serving_follows_the_majority() {
        assert!(serving(&[1, 3], None, None, false).starts_with("nodes 1 and 3 serve on"));
        assert!(serving(&[2], None, None, false).starts_with("only node 2 is left"));
        assert!(serving(&[2], None, None, false).contains("503"));
        assert!(serving(&[], None, None, false).starts_with("no node of the demo is left"));
        assert_eq!(nodes_phrase(&[1, 2, 4]), "nodes 1, 2 and 4");
    }

    #[test]
    fn with_two_pools_serving_names_the_pool_and_its_partner() {
        let on = serving(&[5, 6], Some("b"), Some("a"), false);
        assert!(on.starts_with("nodes 5 and 6 of pool b serve on"), "{on}");
        assert!(on.contains("pool a is untouched"), "{on}");
        let alone = serving(&[5], Some("b"), Some("a"), false);
        assert!(
            alone.starts_with("only node 5 of pool b is left"),
            "{alone}"
        );
        assert!(
            alone.contains("503") && alone.contains("pool a serves"),
            "{alone}"
        );
        let none = serving(&[], Some("b"), Some("a"), false);
        assert!(none.starts_with("no node of pool b is left"), "{none}");
        assert!(none.contains("roster pool failover b --disaster"), "{none}");
        let watched = serving(&[], Some("b"), Some("a"), true);
        assert!(
            watched.contains("fails pool b over by itself")
                && watched.contains("roster pool failback b")
                && !watched.contains("--disaster"),
            "{watched}"
        );
    }

    fn killed_node_2() -> Ended<'static> {
        Ended {
            id: 2,
            pool: None,
            partner: None,
            pid: 4242,
            ending: Ending::Status(ExitStatus::from_raw(libc::SIGKILL)),
            lived: Duration::from_secs(75),
            log: Some(Path::new("/tmp/roster-demo/node-2.log")),
            config: Path::new("/tmp/roster-demo/pool/node-2/roster.toml"),
            last_words: Some("INFO something".into()),
            witness: false,
        }
    }

    #[test]
    fn a_report_names_the_node_its_end_its_log_and_the_restart() {
        let ended = killed_node_2();
        let text = report(&ended, &[1, 3], true, Path::new("/usr/bin/roster"));
        assert!(
            text.starts_with(
                "roster demo: node 2 (pid 4242) was killed by signal 9 (SIGKILL) after 1 min \
                 15 s; its log: /tmp/roster-demo/node-2.log\n"
            ),
            "{text}"
        );
        assert!(!text.contains("last words"), "{text}");
        assert!(text.contains("nodes 1 and 3 serve on"), "{text}");
        assert!(
            text.contains(
                "\n    /usr/bin/roster start --config /tmp/roster-demo/pool/node-2/roster.toml\n"
            ),
            "{text}"
        );
        let failed = Ended {
            ending: Ending::Status(ExitStatus::from_raw(1 << 8)),
            last_words: Some("roster: error: cannot bind SIP UDP on 127.0.0.1:5060".into()),
            ..killed_node_2()
        };
        let text = report(&failed, &[], false, Path::new("/usr/bin/roster"));
        assert!(text.contains("failed (exit code 1)"), "{text}");
        assert!(
            text.contains("its last words: roster: error: cannot bind"),
            "{text}"
        );
        assert!(text.contains("no node of the demo is left"), "{text}");
        assert!(!text.contains("start --config"), "{text}");
    }

    #[test]
    fn with_two_pools_a_report_names_the_pool_and_a_restart_while_the_other_serves() {
        let ended = Ended {
            id: 5,
            pool: Some("b"),
            partner: Some("a"),
            ..killed_node_2()
        };
        let text = report(&ended, &[], true, Path::new("/usr/bin/roster"));
        assert!(
            text.starts_with("roster demo: node 5 of pool b (pid 4242) was killed"),
            "{text}"
        );
        assert!(text.contains("no node of pool b is left"), "{text}");
        assert!(text.contains("start --config"), "{text}");
        let adopted = Ended {
            ending: Ending::Gone,
            log: None,
            ..ended
        };
        let text = report(&adopted, &[4, 6], true, Path::new("/usr/bin/roster"));
        assert!(text.contains("(pid 4242) is gone"), "{text}");
        assert!(!text.contains("its log"), "{text}");
    }

    #[test]
    fn a_witness_that_ends_is_reported_with_what_changes_and_its_restart() {
        let mut witness = DemoNode::announced(
            100,
            super::super::nodes::WITNESS_LABEL,
            4343,
            "127.0.0.7:5060",
            "127.0.0.7:8080",
        );
        witness.config = "/tmp/roster-demo/pool/witness-100/witness.toml".into();
        witness.ended = Some(Ending::Status(ExitStatus::from_raw(libc::SIGKILL)));
        let text = witness_report(&witness, Path::new("/usr/bin/roster"));
        assert!(
            text.starts_with(
                "roster demo: witness 100 (pid 4343) was killed by signal 9 (SIGKILL) after"
            ),
            "{text}"
        );
        assert!(text.contains("both pools serve on"), "{text}");
        assert!(text.contains("no pool is failed over by itself"), "{text}");
        assert!(
            text.contains(
                "\n    /usr/bin/roster witness --config \
                 /tmp/roster-demo/pool/witness-100/witness.toml\n"
            ),
            "{text}"
        );
        assert_eq!(witness.subcommand(), "witness");
    }

    #[test]
    fn words_and_durations_read_well() {
        assert_eq!(
            shell_word("/tmp/roster-demo/pool/node-1/roster.toml"),
            "/tmp/roster-demo/pool/node-1/roster.toml"
        );
        assert_eq!(shell_word("/tmp/my demo/it's"), r"'/tmp/my demo/it'\''s'");
        assert_eq!(duration(Duration::from_secs(42)), "42 s");
        assert_eq!(duration(Duration::from_secs(185)), "3 min 5 s");
        assert_eq!(duration(Duration::from_secs(7260)), "2 h 1 min");
    }
}
