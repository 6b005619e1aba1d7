//! The systems under test and their processes: Kamailio on one node, Kamailio as three nodes
//! replicating with DMQ, and Roster's three-node durable pool (`roster demo`). `Running`
//! owns the processes it started and stops them when dropped, on error paths too.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::procfs;

/// A registrar under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SystemKind {
    /// Kamailio, one node, bindings in memory.
    KamailioSingle,
    /// Kamailio, three nodes replicating bindings with DMQ (`dmq_usrloc`); load goes to node 1.
    KamailioDmq,
    /// Roster, `roster demo`: three nodes, Raft groups on sled; load goes to node 1.
    Roster,
}

impl SystemKind {
    /// The name in tables and on the chart.
    pub fn name(self) -> &'static str {
        match self {
            SystemKind::KamailioSingle => "kamailio-single",
            SystemKind::KamailioDmq => "kamailio-dmq",
            SystemKind::Roster => "roster",
        }
    }
}

/// Whether REGISTERs are challenged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Auth {
    /// No challenge (`roster demo --no-auth`, Kamailio without the auth module).
    None,
    /// Digest (RFC 8760 / RFC 2617), qop=auth.
    Digest,
}

impl Auth {
    /// The name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::Digest => "digest",
        }
    }
}

/// The digest algorithm Kamailio challenges with (Roster's demo offers MD5 then SHA-256; the
/// driver picks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// What SIPp 3.6 can answer.
    Md5,
    /// What `roster load` answers when asked.
    Sha256,
}

impl Algorithm {
    /// The name in Kamailio's `algorithm` parameter and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }
}

/// How to start a system.
pub struct Launch<'a> {
    /// Which one.
    pub kind: SystemKind,
    /// With or without digest.
    pub auth: Auth,
    /// Kamailio's challenge algorithm.
    pub algorithm: Algorithm,
    /// A fresh directory for its files and logs.
    pub dir: PathBuf,
    /// Kamailio configurations.
    pub assets: &'a Path,
    /// The `roster` binary.
    pub roster: &'a Path,
    /// Kamailio's shared memory, MiB (`-m`).
    pub shm_mib: u64,
    /// Kamailio's `children`.
    pub children: u32,
    /// Roster's routing groups.
    pub groups: u32,
}

/// Started processes of one system.
pub struct Running {
    children: Vec<Child>,
    dir: PathBuf,
    /// Where load goes: node 1.
    pub target: SocketAddr,
    /// SIPp injection file: `user;domain;[authentication ...]` for u0 … u9999.
    pub users_csv: PathBuf,
    /// Every user's password, with digest.
    pub password: Option<String>,
}

/// Kamailio's UDP port on one node; the DMQ nodes use 5111, 5112, 5113.
const KAMAILIO_SINGLE_PORT: u16 = 5100;
const KAMAILIO_DMQ_PORT_FIRST: u16 = 5111;
/// Roster's demo: node 1's SIP port (the others at +2, +4) and HTTP port.
const ROSTER_SIP_PORT: u16 = 5200;
const ROSTER_HTTP_PORT: u16 = 18200;
/// Kamailio's private memory per process, MiB (`-M`): ample for REGISTER without a database.
const KAMAILIO_PKG_MIB: u64 = 16;
/// UDP socket buffers every process of a run gets: what Roster's nodes
/// (`UDP_RECEIVE_BUFFER_SIZE`) and `roster load` ask for; Kamailio's `-b`, SIPp's
/// `-buff_size`. Linux caps them at net.core.rmem_max and wmem_max.
pub const SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Users every system knows: u0 … u9999, as `roster demo` creates them.
pub const USERS: u32 = 10_000;
/// How long a system may take to answer SIP after its start (a pool elects 32 leaders).
const READY_DEADLINE: Duration = Duration::from_secs(90);
/// How long processes get between SIGTERM and SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(15);

impl Running {
    /// Starts a system and waits until node 1 (every node, for Kamailio DMQ) answers SIP.
    pub fn start(launch: &Launch) -> anyhow::Result<Running> {
        std::fs::create_dir_all(&launch.dir)
            .with_context(|| format!("cannot create {}", launch.dir.display()))?;
        match launch.kind {
            SystemKind::KamailioSingle | SystemKind::KamailioDmq => start_kamailio(launch),
            SystemKind::Roster => start_roster(launch),
        }
    }

    /// Every process of the system, the started ones and what they forked.
    pub fn pids(&self) -> Vec<u32> {
        self.children
            .iter()
            .flat_map(|child| procfs::descendants(child.id()))
            .collect()
    }

    /// Stops every process (SIGTERM, then SIGKILL after a deadline) and deletes Roster's
    /// pool files (its sled databases can be large); logs stay.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown();
        let pool = self.dir.join("demo").join("pool");
        if pool.exists() {
            std::fs::remove_dir_all(&pool)
                .with_context(|| format!("cannot remove {}", pool.display()))?;
        }
        Ok(())
    }

    fn shutdown(&mut self) {
        let forked = self.pids();
        for child in &self.children {
            signal(child.id(), libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        while Instant::now() < deadline
            && !self
                .children
                .iter_mut()
                .all(|child| matches!(child.try_wait(), Ok(Some(_))))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for child in &mut self.children {
            if !matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Forked workers outlive a killed parent; they were ours, seen a moment ago.
        for pid in forked {
            signal(pid, libc::SIGKILL);
        }
        self.children.clear();
    }

    /// An error if a started process has exited, for callers holding it shared.
    pub fn check_running(&self) -> anyhow::Result<()> {
        match self
            .children
            .iter()
            .find(|child| !procfs::is_running(child.id()))
        {
            Some(child) => Err(anyhow::anyhow!(
                "process {} exited; see {}",
                child.id(),
                self.dir.display()
            )),
            None => Ok(()),
        }
    }

    /// An error if a started process has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        for child in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                anyhow::bail!(
                    "process {} exited ({status}); see {}",
                    child.id(),
                    self.dir.display()
                );
            }
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn start_kamailio(launch: &Launch) -> anyhow::Result<Running> {
    let password = (launch.auth == Auth::Digest)
        .then(random_password)
        .transpose()?;
    let (config, nodes): (&str, Vec<(String, u16)>) = match launch.kind {
        SystemKind::KamailioSingle => ("single.cfg", vec![(String::new(), KAMAILIO_SINGLE_PORT)]),
        _ => (
            "dmq.cfg",
            (1..=3)
                .map(|n| (format!("NODE{n}"), KAMAILIO_DMQ_PORT_FIRST + n - 1))
                .collect(),
        ),
    };
    let config = launch.assets.join("kamailio").join(config);
    let mut running = Running {
        children: Vec::new(),
        dir: launch.dir.clone(),
        target: loopback(nodes[0].1),
        users_csv: launch.dir.join("users.csv"),
        password: password.clone(),
    };
    write_users_csv(&running.users_csv, password.as_deref().unwrap_or("none"))?;
    for (index, (node_define, _)) in nodes.iter().enumerate() {
        let node_dir = launch.dir.join(format!("node-{}", index + 1));
        std::fs::create_dir_all(&node_dir)
            .with_context(|| format!("cannot create {}", node_dir.display()))?;
        let mut command = Command::new("kamailio");
        command
            .arg("-f")
            .arg(&config)
            .args(["-DD", "-E"])
            .args(["-m", &launch.shm_mib.to_string()])
            .args(["-M", &KAMAILIO_PKG_MIB.to_string()])
            // The UDP receive buffer Roster asks for: Kamailio probes up to 256 KiB by
            // default, which at these rates overflowed (RcvbufErrors on its ports).
            .args(["-b", &SOCKET_BUFFER_BYTES.to_string()])
            .arg("-P")
            .arg(node_dir.join("kamailio.pid"))
            .arg("-Y")
            .arg(&node_dir)
            .args(["-A", &format!("CHILDREN={}", launch.children)])
            .current_dir(&node_dir);
        if !node_define.is_empty() {
            command.args(["-A", node_define]);
        }
        if let Some(password) = &password {
            command
                .args(["-A", "WITH_AUTH"])
                .args(["-A", &format!("BENCH_PASSWORD=\"{password}\"")])
                .args([
                    "-A",
                    &format!("AUTH_ALGORITHM=\"{}\"", launch.algorithm.name()),
                ]);
        }
        running
            .children
            .push(spawn(command, &node_dir.join("kamailio.log"))?);
    }
    for (_, port) in &nodes {
        wait_sip(&mut running, loopback(*port))?;
    }
    Ok(running)
}

fn start_roster(launch: &Launch) -> anyhow::Result<Running> {
    let demo_dir = launch.dir.join("demo");
    // The demo prints its banner (with the password) once every node is ready.
    let log = launch.dir.join("demo.log");
    let mut command = Command::new(launch.roster);
    command
        .arg("demo")
        // The three-node pool the figures are of.
        .args(["--sites", "1"])
        .args(["--sip", &loopback(ROSTER_SIP_PORT).to_string()])
        .args(["--http", &loopback(ROSTER_HTTP_PORT).to_string()])
        .args(["--groups", &launch.groups.to_string()])
        // The drivers send thousands of requests a second from 127.0.0.1: trusted, so that
        // the nodes' per-source limits do not apply to them.
        .args(["--trusted", "127.0.0.1"])
        .arg("--dir")
        .arg(&demo_dir);
    if launch.auth == Auth::None {
        command.arg("--no-auth");
    }
    let mut running = Running {
        children: vec![spawn(command, &log)?],
        dir: launch.dir.clone(),
        target: loopback(ROSTER_SIP_PORT),
        users_csv: demo_dir.join("users.csv"),
        password: None,
    };
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        running.check_alive()?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(password) = text.lines().find_map(|l| l.strip_prefix("password: ")) {
            if launch.auth == Auth::Digest {
                running.password = Some(password.trim().to_owned());
            }
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "roster demo not ready within {READY_DEADLINE:?}; see {}",
            launch.dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let target = running.target;
    wait_sip(&mut running, target)?;
    Ok(running)
}

/// Spawns with stdin closed, stdout and stderr to `log`, and a parent-death
/// signal so nothing outlives the benchmark.
fn spawn(mut command: Command, log: &Path) -> anyhow::Result<Child> {
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let stdout = file
        .try_clone()
        .with_context(|| format!("cannot reopen {}", log.display()))?;
    roster_benches::driving::die_with_parent(&mut command);
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .stdin(Stdio::null())
        .stderr(file)
        .stdout(stdout)
        .spawn()
        .with_context(|| format!("cannot start {program}"))
}

/// Waits until `address` answers an OPTIONS (any status will do).
fn wait_sip(running: &mut Running, address: SocketAddr) -> anyhow::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0").context("cannot bind a UDP socket")?;
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .context("cannot set a socket timeout")?;
    let local = socket.local_addr().context("no local address")?;
    let deadline = Instant::now() + READY_DEADLINE;
    let mut buffer = [0_u8; 4096];
    for attempt in 0_u32.. {
        running.check_alive()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "{address} did not answer SIP within {READY_DEADLINE:?}; see {}",
            running.dir.display()
        );
        let options = format!(
            "OPTIONS sip:{address} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-probe{attempt}\r\n\
             From: <sip:probe@example.com>;tag=probe\r\nTo: <sip:{address}>\r\n\
             Call-ID: probe-{attempt}@bench\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = socket.send_to(options.as_bytes(), address);
        if let Ok((size, _)) = socket.recv_from(&mut buffer) {
            if buffer[..size].starts_with(b"SIP/2.0 ") {
                return Ok(());
            }
        }
    }
    unreachable!("the loop above returns or fails before u32 wraps")
}

/// The same injection file `roster demo` writes, for Kamailio.
fn write_users_csv(path: &Path, password: &str) -> anyhow::Result<()> {
    let mut text = String::from("SEQUENTIAL\n");
    for user in 0..USERS {
        text.push_str(&format!(
            "u{user};example.com;[authentication username=u{user} password={password}]\n"
        ));
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// 20 hexadecimal characters from the kernel's random source.
fn random_password() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0_u8; 10];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn signal(pid: u32, signal: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) only sends a signal; the pid is one this benchmark started.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}
