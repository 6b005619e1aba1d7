//! A `roster demo` run by the benchmark: started with the benchmark's ports, waited for until
//! `demo.json` says it is ready, read from `demo.json`, and stopped (Ctrl-C, then SIGKILL) when
//! dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Deserialize;

/// How long a demo may take to become ready (a release build takes a few seconds).
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// How long a stopping demo may take before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How a demo is started.
#[derive(Clone, Debug)]
pub struct DemoSpec {
    /// Sites: 1 (one pool, no pairing) or 2 (two paired pools).
    pub sites: u8,
    /// One-way delay between the sites, ms.
    pub wan_latency_ms: u64,
    /// Node 1's SIP port (every node of two sites listens on its own 127.0.0.x, same port).
    pub sip_port: u16,
    /// Node 1's HTTP port.
    pub http_port: u16,
}

/// `demo.json`, the parts the benchmark reads.
#[derive(Clone, Debug, Deserialize)]
pub struct Manifest {
    /// `starting`, `ready` or `stopped`.
    pub state: String,
    /// The admin token file.
    pub admin_token_file: PathBuf,
    /// Pools, in the demo's order (a, then b).
    pub pools: Vec<Pool>,
}

/// One pool of the demo.
#[derive(Clone, Debug, Deserialize)]
pub struct Pool {
    /// The pool's name.
    pub name: String,
    /// The users homed here (one range).
    pub users: Vec<UserRange>,
    /// Its nodes.
    pub nodes: Vec<Node>,
}

/// Users `prefix{first..=last}`.
#[derive(Clone, Debug, Deserialize)]
pub struct UserRange {
    /// The first user's number.
    pub first: u64,
    /// How many.
    pub count: u64,
}

/// One node of the demo.
#[derive(Clone, Debug, Deserialize)]
pub struct Node {
    /// The node's id.
    pub id: u64,
    /// Its process.
    pub pid: u32,
    /// SIP over UDP.
    pub sip_udp: SocketAddr,
    /// HTTP (metrics, health, admin API).
    pub http: Option<SocketAddr>,
    /// `http://…`, for the CLI's `--url`.
    pub admin_url: Option<String>,
    /// The relay front the other site dials (two sites with a WAN latency).
    pub wan: Option<SocketAddr>,
    /// Its configuration file.
    pub config: PathBuf,
}

/// A running demo.
pub struct Demo {
    child: Child,
    dir: PathBuf,
    /// `demo.json` as last read.
    pub manifest: Manifest,
    /// The admin bearer token.
    pub token: String,
}

impl Demo {
    /// Starts `roster demo` in `dir` (removed first) and waits until it is ready.
    pub fn start(roster: &Path, dir: &Path, spec: &DemoSpec) -> anyhow::Result<Demo> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let log = std::fs::File::create(dir.join("demo.out"))?;
        let mut command = Command::new(roster);
        command
            .arg("demo")
            .arg("--dir")
            .arg(dir)
            .args(["--sites", &spec.sites.to_string()])
            .args(["--sip", &format!("127.0.0.1:{}", spec.sip_port)])
            .args(["--http", &format!("127.0.0.1:{}", spec.http_port)])
            // The benchmark's drivers send thousands of requests a second from one address.
            .args(["--no-auth", "--trusted", "127.0.0.0/8"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if spec.sites > 1 {
            command.args(["--wan-latency", &spec.wan_latency_ms.to_string()]);
        }
        roster_benches::driving::die_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", roster.display()))?;
        let mut demo = Demo {
            child,
            dir: dir.to_path_buf(),
            manifest: Manifest {
                state: "starting".into(),
                admin_token_file: PathBuf::new(),
                pools: Vec::new(),
            },
            token: String::new(),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = demo.child.try_wait()? {
                bail!(
                    "the demo exited ({status}) before it was ready; see {}",
                    dir.join("demo.out").display()
                );
            }
            if demo.reload().is_ok() && demo.manifest.state == "ready" {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "the demo was not ready within {READY_TIMEOUT:?}; see {}",
                    dir.join("demo.out").display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        demo.token = std::fs::read_to_string(&demo.manifest.admin_token_file)
            .context("cannot read the admin token")?
            .trim()
            .to_string();
        Ok(demo)
    }

    /// Reads `demo.json` again.
    pub fn reload(&mut self) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(self.dir.join("demo.json"))?;
        self.manifest = serde_json::from_str(&text).context("bad demo.json")?;
        Ok(())
    }

    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> anyhow::Result<&Pool> {
        self.manifest
            .pools
            .iter()
            .find(|pool| pool.name == name)
            .with_context(|| format!("the demo has no pool {name}"))
    }

    /// The demo's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a pid this process started and has not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pool {
    /// The first user number and how many users are homed here.
    pub fn user_range(&self) -> (u64, u64) {
        self.users
            .first()
            .map_or((0, 0), |range| (range.first, range.count))
    }

    /// Every node's HTTP address.
    pub fn http_addresses(&self) -> Vec<SocketAddr> {
        self.nodes.iter().filter_map(|node| node.http).collect()
    }
}
