//! The demo's node processes: each a `roster start` child that dies with the demo (even by
//! SIGKILL), in its own process group (a terminal's Ctrl-C reaches the demo, which stops them
//! in order), logging to `DIR/node-N.log`.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long a stopping node may drain before it is killed: its own drain deadline (5 s) and
/// the Raft groups' shutdown fit.
const STOP_DEADLINE: Duration = Duration::from_secs(8);

/// The most of a node's log read to find its last words: its final lines fit many times.
const LOG_TAIL_BYTES_MAX: u64 = 16 * 1024;

/// The `pool` of the demo's witness, which is the [`DemoNode`] of a `roster witness`.
pub const WITNESS_LABEL: &str = "witness";

/// One node of the demo (or its witness): its process and what it announced.
pub struct DemoNode {
    /// Its node id.
    pub id: u64,
    /// The name of its pool.
    pub pool: &'static str,
    /// Its configuration file (`roster start --config`).
    pub config: PathBuf,
    /// Its log (standard error) while the demo runs it.
    pub log: PathBuf,
    /// Its process id.
    pub pid: u32,
    /// (transport, address) of each SIP listener, as it announced them.
    pub sip: Vec<(String, String)>,
    /// Its HTTP address, as announced (or found, for a node started outside the demo).
    pub http: Option<String>,
    /// When it was started (or found).
    pub started: Instant,
    /// How it ended; `None` while it runs.
    pub ended: Option<Ending>,
    process: Process,
}

/// How a node's process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The demo's child ended with this status.
    Status(ExitStatus),
    /// A process the demo did not start is gone; how, only its parent knows.
    Gone,
}

/// The process behind a node.
enum Process {
    /// Started by the demo: its child, reaped by it.
    Child(Child),
    /// Started again outside the demo (by the command the demo printed), found by its
    /// command line; watched until it is gone.
    Adopted,
}

/// Pause between looks at a process the demo did not start: whether it still runs.
const ADOPTED_POLL: Duration = Duration::from_millis(500);

impl DemoNode {
    /// Starts `roster start --config config` as node `id` of pool `pool`, logging to `log`.
    pub fn start(
        id: u64,
        pool: &'static str,
        config: &Path,
        log: &Path,
    ) -> anyhow::Result<DemoNode> {
        DemoNode::spawn(id, pool, "start", config, log)
    }

    /// Starts `roster witness --config config` as witness `id`, logging to `log`; its `pool`
    /// is [`WITNESS_LABEL`].
    pub fn start_witness(id: u64, config: &Path, log: &Path) -> anyhow::Result<DemoNode> {
        DemoNode::spawn(id, WITNESS_LABEL, "witness", config, log)
    }

    /// Starts `roster COMMAND --config config` (see [`DemoNode::start`]).
    fn spawn(
        id: u64,
        pool: &'static str,
        subcommand: &str,
        config: &Path,
        log: &Path,
    ) -> anyhow::Result<DemoNode> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let exe = std::env::current_exe().context("cannot find the roster executable")?;
        let mut command = Command::new(exe);
        let demo = libc::pid_t::try_from(std::process::id()).context("process id")?;
        // SAFETY: setpgid, prctl and getppid are async-signal-safe, and the closure neither
        // allocates nor touches the parent's memory; it runs in the child between fork and
        // exec.
        unsafe {
            command.pre_exec(move || {
                // Its own process group: a terminal's Ctrl-C goes to the demo alone, which
                // stops its nodes in order (and reports none of them as dead).
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // SIGTERM when the demo dies, even by SIGKILL.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The demo may have died before prctl: then nothing would signal this child.
                if libc::getppid() != demo {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let child = command
            .arg(subcommand)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                let what = if subcommand == "start" {
                    "node"
                } else {
                    subcommand
                };
                format!("cannot start demo {what} {id}")
            })?;
        let pid = child
            .id()
            .context("a just started child has a process id")?;
        Ok(DemoNode {
            id,
            pool,
            config: config.to_path_buf(),
            log: log.to_path_buf(),
            pid,
            sip: Vec::new(),
            http: None,
            started: Instant::now(),
            ended: None,
            process: Process::Child(child),
        })
    }

    /// Takes process `pid`, started again outside the demo for this node, as the node's;
    /// `http` is its HTTP address when known.
    pub fn adopt(&mut self, pid: u32, http: Option<String>) {
        self.pid = pid;
        if http.is_some() {
            self.http = http;
        }
        self.started = Instant::now();
        self.ended = None;
        self.process = Process::Adopted;
    }

    /// A node as it announced itself, for the tests of what the demo prints about its nodes.
    #[cfg(test)]
    pub fn announced(id: u64, pool: &'static str, pid: u32, sip: &str, http: &str) -> DemoNode {
        DemoNode {
            id,
            pool,
            config: PathBuf::from(format!("/tmp/roster-demo/pool/node-{id}/roster.toml")),
            log: PathBuf::from(format!("/tmp/roster-demo/node-{id}.log")),
            pid,
            sip: vec![("udp".to_string(), sip.to_string())],
            http: Some(http.to_string()),
            started: Instant::now(),
            ended: None,
            process: Process::Adopted,
        }
    }

    /// Whether the node still runs, as far as the demo has seen.
    pub fn running(&self) -> bool {
        self.ended.is_none()
    }

    /// The `roster` subcommand that runs it: `witness` for the witness, else `start`.
    pub fn subcommand(&self) -> &'static str {
        if self.pool == WITNESS_LABEL {
            "witness"
        } else {
            "start"
        }
    }

    /// Whether its process is the demo's own child (else it was started again outside).
    pub fn started_by_demo(&self) -> bool {
        matches!(self.process, Process::Child(_))
    }

    /// Its data directory (beside its configuration, as `roster init` writes it).
    pub fn data_dir(&self) -> PathBuf {
        self.config
            .parent()
            .map_or_else(|| PathBuf::from("data"), |dir| dir.join("data"))
    }

    /// Waits for the process to end (cancel-safe) and records how it did.
    pub async fn wait(&mut self) -> Ending {
        let ending = match &mut self.process {
            Process::Child(child) => match child.wait().await {
                Ok(status) => Ending::Status(status),
                // Waiting failed (the child is not ours to wait for any more): say it ended,
                // as a failure.
                Err(_) => Ending::Status(std::os::unix::process::ExitStatusExt::from_raw(1 << 8)),
            },
            Process::Adopted => {
                while super::restarted::runs_with_config(self.pid, self.subcommand(), &self.config)
                {
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
                Ending::Gone
            }
        };
        self.ended = Some(ending);
        ending
    }

    /// The last line of its log that says why it stopped (`roster: error: …`), else the last
    /// line; `None` for an empty or unreadable log, or a node the demo did not start.
    pub fn last_words(&self) -> Option<String> {
        if !self.started_by_demo() {
            return None;
        }
        last_words(&self.log)
    }
}

/// Reads each node's announcements until it says `roster: ready`, recording its addresses; a
/// node that exits first is an error naming its log.
pub async fn wait_ready(nodes: &mut [DemoNode]) -> anyhow::Result<()> {
    for node in nodes.iter_mut() {
        let Process::Child(child) = &mut node.process else {
            continue;
        };
        let stdout = child
            .stdout
            .take()
            .context("demo node stdout not captured")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        loop {
            let Some(line) = lines.next_line().await? else {
                let words = node
                    .last_words()
                    .map(|words| format!(": {words}"))
                    .unwrap_or_default();
                anyhow::bail!(
                    "demo node {} exited before it was ready{words} (its log: {})",
                    node.id,
                    node.log.display()
                );
            };
            if let Some(rest) = line.strip_prefix("roster: sip ") {
                if let Some((transport, address)) = rest.split_once(' ') {
                    node.sip.push((transport.to_string(), address.to_string()));
                }
            } else if let Some(address) = line.strip_prefix("roster: http ") {
                node.http = Some(address.to_string());
            } else if line == "roster: ready" {
                break;
            }
        }
        // Keep draining its stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    }
    Ok(())
}

/// Pause between looks at the nodes' directories while the CMS seeds them.
const DIRECTORY_POLL: Duration = Duration::from_millis(200);

/// Waits until every node's directory (its copy of the CMS's users, in `/status`) holds at
/// least `users` users.
pub async fn wait_directory(nodes: &[DemoNode], users: usize) -> anyhow::Result<()> {
    if users == 0 {
        return Ok(());
    }
    for node in nodes {
        let Some(http) = node.http.as_deref().and_then(|http| http.parse().ok()) else {
            continue;
        };
        loop {
            let request = format!("GET /status HTTP/1.0\r\nHost: {http}\r\n\r\n");
            let known = roster::http_client::exchange(
                http,
                &request,
                4 * 1024 * 1024,
                Duration::from_secs(2),
            )
            .await
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|status| status["directory_users"].as_u64())
            .unwrap_or(0);
            if known >= users as u64 {
                break;
            }
            tokio::time::sleep(DIRECTORY_POLL).await;
        }
    }
    Ok(())
}

/// Waits until one running node ends; returns its index. Pending forever when none runs.
pub async fn first_exit(nodes: &mut [DemoNode]) -> usize {
    let waits: Vec<_> = nodes
        .iter_mut()
        .enumerate()
        .filter(|(_, node)| node.running())
        .map(|(index, node)| {
            Box::pin(async move {
                node.wait().await;
                index
            })
        })
        .collect();
    if waits.is_empty() {
        return std::future::pending().await;
    }
    futures_util::future::select_all(waits).await.0
}

/// Stops every running node the demo started: SIGTERM (it drains in-flight requests), then
/// SIGKILL past [`STOP_DEADLINE`]. A node started again outside the demo is left to whoever
/// started it.
pub async fn stop(nodes: &mut [DemoNode]) {
    let ours = |node: &&mut DemoNode| node.running() && node.started_by_demo();
    for node in nodes
        .iter()
        .filter(|node| node.running() && node.started_by_demo())
    {
        if let Ok(pid) = libc::pid_t::try_from(node.pid) {
            // SAFETY: kill has no memory effects; the pid is our child's, not yet reaped
            // (we reap it below), so it names no other process.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + STOP_DEADLINE;
    for node in nodes.iter_mut().filter(ours) {
        if tokio::time::timeout_at(deadline, node.wait())
            .await
            .is_err()
        {
            if let Process::Child(child) = &mut node.process {
                let _ = child.kill().await;
            }
            node.wait().await;
        }
    }
}

/// See [`DemoNode::last_words`].
fn last_words(log: &Path) -> Option<String> {
    let mut file = std::fs::File::open(log).ok()?;
    let length = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(LOG_TAIL_BYTES_MAX)))
        .ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find(|line| line.starts_with("roster: error:"))
        .or(lines.last())
        .map(|line| line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_words_prefer_the_error_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("node-1.log");
        std::fs::write(
            &log,
            "INFO listening\nroster: error: cannot bind SIP UDP on 127.0.0.1:5060\n\nINFO bye\n",
        )
        .expect("write log");
        assert_eq!(
            last_words(&log).as_deref(),
            Some("roster: error: cannot bind SIP UDP on 127.0.0.1:5060")
        );
        std::fs::write(&log, "INFO one\nINFO two\n").expect("write log");
        assert_eq!(last_words(&log).as_deref(), Some("INFO two"));
        std::fs::write(&log, "").expect("write log");
        assert_eq!(last_words(&log), None);
        assert_eq!(last_words(&dir.path().join("absent.log")), None);
    }
}
