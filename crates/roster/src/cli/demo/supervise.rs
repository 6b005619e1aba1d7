//! Watching the demo's nodes: a node that ends is reported (which node, how it ended, its log,
//! the command that starts it again) and the others serve on, as a pool does; the demo ends
//! when told to, or when no node is left.

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use roster_pool::placement::REPLICAS_PER_GROUP;
use tokio_util::sync::CancellationToken;

use super::nodes::{self, DemoNode};
use super::DEMO_NODES;

// The reports say a node's death costs each routing group one replica: every demo node holds
// a replica of every group.
const _: () = assert!(DEMO_NODES as usize == REPLICAS_PER_GROUP);

/// Replicas of a group that must run for it to serve: a majority.
const MAJORITY: usize = REPLICAS_PER_GROUP / 2 + 1;

/// Runs until `shutdown` (then `Ok`), reporting each node that ends; an error once none is
/// left. `roster` is the executable the restart commands name.
pub async fn supervise(
    nodes: &mut [DemoNode],
    roster: &Path,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let index = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            index = nodes::first_exit(nodes) => index,
        };
        let running: Vec<u64> = nodes
            .iter()
            .filter(|node| node.running())
            .map(|node| node.id)
            .collect();
        let node = &nodes[index];
        let ended = Ended {
            id: node.id,
            pid: node.pid,
            status: node.ended.unwrap_or_else(|| ExitStatus::from_raw(0)),
            lived: node.started.elapsed(),
            log: &node.log,
            config: &node.config,
            last_words: node.last_words(),
        };
        print!("{}", report(&ended, &running, roster));
        if running.is_empty() {
            let logs = node.log.parent().unwrap_or(Path::new("."));
            anyhow::bail!(
                "every node of the demo has ended; see {}/node-*.log",
                logs.display()
            );
        }
    }
}

/// A node that has ended, as the report tells it.
struct Ended<'a> {
    id: u64,
    pid: u32,
    status: ExitStatus,
    lived: Duration,
    log: &'a Path,
    config: &'a Path,
    /// Its log's last words (see [`DemoNode::last_words`]).
    last_words: Option<String>,
}

/// What the user reads when a node has ended while the nodes `running` go on.
fn report(ended: &Ended<'_>, running: &[u64], roster: &Path) -> String {
    let mut text = format!(
        "roster demo: node {} (pid {}) {} after {}; its log: {}\n",
        ended.id,
        ended.pid,
        ending(ended.status),
        duration(ended.lived),
        ended.log.display()
    );
    let failed = ended.status.signal().is_none() && ended.status.code() != Some(0);
    if let (true, Some(words)) = (failed, &ended.last_words) {
        text.push_str(&format!("  its last words: {words}\n"));
    }
    text.push_str(&format!("  {}\n", serving(running)));
    if !running.is_empty() {
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

/// How a process ended, as a phrase: "was killed by signal 9 (SIGKILL)".
fn ending(status: ExitStatus) -> String {
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

/// What the pool can do with the nodes `running`.
fn serving(running: &[u64]) -> String {
    let names = nodes_phrase(running);
    if running.len() >= MAJORITY {
        format!(
            "{names} serve on: every routing group has a replica on each node and keeps a \
             majority ({MAJORITY} of {REPLICAS_PER_GROUP})."
        )
    } else if running.is_empty() {
        "no node of the demo is left; the demo stops.".into()
    } else {
        format!(
            "only {names} is left: no routing group has a majority of its replicas ({MAJORITY} \
             of {REPLICAS_PER_GROUP}), so registrations and lookups get 503 until another node is back."
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
        assert_eq!(
            ending(ExitStatus::from_raw(libc::SIGKILL)),
            "was killed by signal 9 (SIGKILL)"
        );
        assert_eq!(ending(ExitStatus::from_raw(1 << 8)), "failed (exit code 1)");
        assert!(ending(ExitStatus::from_raw(0)).starts_with("stopped (exit code 0"));
        assert_eq!(ending(ExitStatus::from_raw(64)), "was killed by signal 64");
    }

    #[test]
    fn serving_follows_the_majority() {
        assert!(serving(&[1, 3]).starts_with("nodes 1 and 3 serve on"));
        assert!(serving(&[2]).starts_with("only node 2 is left"));
        assert!(serving(&[2]).contains("503"));
        assert!(serving(&[]).starts_with("no node of the demo is left"));
        assert_eq!(nodes_phrase(&[1, 2, 4]), "nodes 1, 2 and 4");
    }

    #[test]
    fn a_report_names_the_node_its_end_its_log_and_the_restart() {
        let ended = Ended {
            id: 2,
            pid: 4242,
            status: ExitStatus::from_raw(libc::SIGKILL),
            lived: Duration::from_secs(75),
            log: Path::new("/tmp/roster-demo/node-2.log"),
            config: Path::new("/tmp/roster-demo/pool/node-2/roster.toml"),
            last_words: Some("INFO something".into()),
        };
        let text = report(&ended, &[1, 3], Path::new("/usr/bin/roster"));
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
            status: ExitStatus::from_raw(1 << 8),
            last_words: Some("roster: error: cannot bind SIP UDP on 127.0.0.1:5060".into()),
            ..ended
        };
        let text = report(&failed, &[], Path::new("/usr/bin/roster"));
        assert!(text.contains("failed (exit code 1)"), "{text}");
        assert!(
            text.contains("its last words: roster: error: cannot bind"),
            "{text}"
        );
        assert!(text.contains("no node of the demo is left"), "{text}");
        assert!(!text.contains("start --config"), "{text}");
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
