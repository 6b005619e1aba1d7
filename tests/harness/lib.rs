//! Test harness: starts real `roster` processes on loopback, runs SIPp against them, and
//! cleans up. Every wait has a deadline; every child is killed on drop.
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use roster::users::{UserEntry, UsersFile};

pub mod clients;
pub mod deployment;
pub mod paired;
pub mod prometheus;
pub mod sip_client;

/// How long a node may take to print `roster: ready`.
pub const NODE_START_DEADLINE: Duration = Duration::from_secs(20);

/// The `roster` binary built by `cargo test` for this workspace.
pub fn roster_bin() -> PathBuf {
    if let Ok(path) = std::env::var("ROSTER_BIN") {
        return PathBuf::from(path);
    }
    // Test binaries live in target/<profile>/deps; the roster binary one level up.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let bin = profile_dir.join("roster");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo test --workspace builds it) or set ROSTER_BIN",
        bin.display()
    );
    bin
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates it.
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "roster-test-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // A failed test's files (nodes' logs, data) are what explains it: kept on request.
        if std::thread::panicking() && std::env::var_os("ROSTER_TEST_KEEP").is_some() {
            eprintln!("ROSTER_TEST_KEEP: kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port free for UDP and TCP, with the next port free for TCP too (for TLS).
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let Ok(udp) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(address) = udp.local_addr() else {
            continue;
        };
        let port = address.port();
        if port >= 65_000 {
            continue;
        }
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let tls = TcpListener::bind(("127.0.0.1", port + 1));
        if tcp.is_ok() && tls.is_ok() {
            return port;
        }
    }
    panic!("no free loopback port found");
}

/// Test users `t0` … `t{count-1}` of `example.com`, sharing `password`.
pub struct Users {
    /// How many.
    pub count: usize,
    /// Their password.
    pub password: String,
}

impl Users {
    /// Writes `users.toml` (for roster) and `users.csv` (for SIPp) into `dir`.
    pub fn write(&self, dir: &Path) {
        let file = UsersFile {
            user: (0..self.count)
                .map(|i| {
                    let name = format!("t{i}");
                    let aor = format!("sip:{name}@example.com");
                    UserEntry::from_password(&aor, &name, "example.com", &self.password)
                })
                .collect(),
        };
        std::fs::write(
            dir.join("users.toml"),
            toml::to_string(&file).expect("toml"),
        )
        .expect("write users.toml");
        let mut csv = String::from("SEQUENTIAL\n");
        for i in 0..self.count {
            csv.push_str(&sipp_csv_line(&format!("t{i}"), &self.password));
        }
        std::fs::write(dir.join("users.csv"), csv).expect("write users.csv");
    }
}

/// One line of a SIPp injection file: `user;domain;[authentication ...]`. SIPp 3.6 does not
/// expand `[field]` inside `[authentication]`, but expands a whole keyword held in a field.
pub fn sipp_csv_line(user: &str, password: &str) -> String {
    format!("{user};example.com;[authentication username={user} password={password}]\n")
}

/// Starts `roster start --config CONFIG` with its log appended to `log` (a restarted node's
/// log follows its first life's); the receiver gets its HTTP address (if any) once it is ready.
pub(crate) fn spawn_node(
    config: &std::path::Path,
    log: &std::path::Path,
) -> (std::process::Child, mpsc::Receiver<Option<SocketAddr>>) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("node log");
    let mut child = Command::new(roster_bin())
        .arg("start")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info,openraft=warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn roster start");
    let stdout = child.stdout.take().expect("stdout piped");
    (child, watch_ready(stdout))
}

/// Reads a `roster start` process's announcements; the receiver gets its HTTP address (if it
/// serves HTTP) once it prints `roster: ready`.
pub fn watch_ready(stdout: std::process::ChildStdout) -> mpsc::Receiver<Option<SocketAddr>> {
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut http = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(address) = line.strip_prefix("roster: http ") {
                http = address.parse().ok();
            }
            if line == "roster: ready" {
                let _ = ready_tx.send(http);
            }
        }
    });
    ready_rx
}

/// A running `roster start` process, killed on drop.
pub struct Node {
    child: Child,
    /// The SIP port (UDP and TCP); TLS is on the next port.
    pub port: u16,
    /// Its directory (config, users, certificates).
    pub dir: TempDir,
    /// Its HTTP address (metrics, health, status).
    pub http: Option<SocketAddr>,
}

/// What kind of node to start.
pub struct NodeOptions {
    /// Require digest authentication.
    pub auth: bool,
    /// Extra TOML appended to `[registrar]`.
    pub registrar: String,
    /// Challenge algorithms, e.g. `["MD5"]`; default both.
    pub algorithms: Option<Vec<&'static str>>,
    /// Extra TOML appended to `[sip]`.
    pub sip: String,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            auth: true,
            registrar: String::new(),
            algorithms: None,
            sip: String::new(),
        }
    }
}

impl Node {
    /// Starts a node on a free loopback port with `users` and waits until it is ready.
    pub fn start(users: &Users, options: NodeOptions) -> Node {
        let dir = TempDir::new("node");
        users.write(dir.path());
        let port = free_port();
        let (certificate, key) =
            roster::sip::tls::self_signed(&["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("certificate");
        std::fs::write(dir.path().join("cert.pem"), certificate).expect("write cert");
        std::fs::write(dir.path().join("key.pem"), key).expect("write key");
        let algorithms = options
            .algorithms
            .map(|names| {
                let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
                format!("algorithms = [{}]\n", quoted.join(", "))
            })
            .unwrap_or_default();
        let config = format!(
            "[node]\nname = \"test\"\n[sip]\ndomains = [\"example.com\"]\n\
             udp = [\"127.0.0.1:{port}\"]\ntcp = [\"127.0.0.1:{port}\"]\ntls = [\"127.0.0.1:{}\"]\n\
             tls_certificate = \"cert.pem\"\ntls_private_key = \"key.pem\"\n{}\n\
             [registrar]\n{}\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [auth]\nenabled = {}\nusers_file = \"users.toml\"\n{algorithms}",
            port + 1,
            options.sip,
            options.registrar,
            options.auth,
        );
        let config_path = dir.path().join("roster.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut child = Command::new(roster_bin())
            .arg("start")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn roster");
        let stdout = child.stdout.take().expect("stdout piped");
        let ready_rx = watch_ready(stdout);
        let mut node = Node {
            child,
            port,
            dir,
            http: None,
        };
        match ready_rx.recv_timeout(NODE_START_DEADLINE) {
            Ok(http) => node.http = http,
            Err(_) => panic!("roster did not become ready within {NODE_START_DEADLINE:?}"),
        }
        node
    }

    /// The UDP/TCP SIP address.
    pub fn sip(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The TLS SIP address.
    pub fn sip_tls(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port + 1))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on `address` over plain HTTP/1.0; returns (status code, body). Bounded by a
/// 5 s timeout.
pub fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    http_request(address, "GET", path, "", "")
}

/// `METHOD path` on `address` with extra `headers` (each ending in CRLF) and `body`; the
/// status and the body. A 5 s connect timeout, 10 s to read the answer.
pub fn http_request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .expect("connect to HTTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let length = if method == "GET" {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\n{headers}{length}\r\n{body}"
    )
    .expect("send");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read response");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Waits until every node of `http` (id → HTTP address) says in `/status` that its directory
/// holds at least `count` users, at most `within`; `log` gives a node's log for the message.
pub fn await_directory_users(
    http: &std::collections::BTreeMap<u64, SocketAddr>,
    count: usize,
    within: Duration,
    log: impl Fn(u64) -> String,
) {
    let deadline = Instant::now() + within;
    for (&id, &address) in http {
        loop {
            let (_, body) = http_get(address, "/status");
            let known = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|status| status["directory_users"].as_u64())
                .unwrap_or(0);
            if known >= count as u64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} knows {known} of {count} users after {within:?}{}",
                log(id)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A finished command's exit status, standard output and standard error, for a failure message.
pub fn output_text(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs a child to completion, killing it past `deadline`.
pub fn run_with_deadline(command: &mut Command, deadline: Duration) -> Output {
    run_with_input(command, Stdio::null(), deadline)
}

/// Runs a child with `stdin` to completion, killing it past `deadline`.
pub fn run_with_input(command: &mut Command, stdin: Stdio, deadline: Duration) -> Output {
    let mut child = command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > deadline => {
                let _ = child.kill();
                let output = child.wait_with_output().expect("wait");
                panic!(
                    "{command:?} passed its deadline of {deadline:?}\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(error) => panic!("wait failed: {error}"),
        }
    }
    child.wait_with_output().expect("collect output")
}

/// Path of a SIPp scenario under tests/sipp.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sipp")
        .join(name)
}

/// The result of one SIPp run.
pub struct SippRun {
    /// Exit code: 0 when every call succeeded.
    pub code: Option<i32>,
    /// Everything SIPp printed, and its error file.
    pub report: String,
}

/// Runs SIPp with `args` against `target`, with a deadline, and collects its report.
pub fn sipp(target: SocketAddr, args: &[&str], deadline: Duration) -> SippRun {
    let dir = TempDir::new("sipp");
    let error_file = dir.path().join("errors.log");
    let mut command = Command::new("sipp");
    command
        .arg(target.to_string())
        .args(["-i", "127.0.0.1", "-nostdin", "-timeout_error"])
        // A lost answer fails its call after 5 s; SIPp stops on its own before our deadline.
        .args(["-recv_timeout", "5000"])
        .arg("-timeout")
        .arg(format!("{}s", deadline.as_secs().saturating_sub(10).max(5)))
        .arg("-trace_err")
        .arg("-error_file")
        .arg(&error_file)
        .args(args)
        .current_dir(dir.path());
    let output = run_with_deadline(&mut command, deadline);
    let errors = std::fs::read_to_string(&error_file).unwrap_or_default();
    SippRun {
        code: output.status.code(),
        report: format!(
            "sipp {args:?}\n--- stdout\n{}\n--- stderr\n{}\n--- error file\n{errors}",
            tail(&String::from_utf8_lossy(&output.stdout), 4000),
            tail(&String::from_utf8_lossy(&output.stderr), 4000),
        ),
    }
}

fn tail(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    let mut start = start;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A REGISTER for `user` of example.com with one contact (or none: a query), over UDP to
/// `target`; the response text, or `None` after `timeout`.
pub fn register_udp(
    target: SocketAddr,
    user: &str,
    call_id: &str,
    cseq: u32,
    contact: Option<&str>,
    timeout: Duration,
) -> Option<String> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket.set_read_timeout(Some(timeout)).ok()?;
    let port = socket.local_addr().ok()?.port();
    let contact = contact
        .map(|c| format!("Contact: <{c}>\r\n"))
        .unwrap_or_default();
    let request = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bK-{call_id}-{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag={call_id}\r\nTo: <sip:{user}@example.com>\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n{contact}Content-Length: 0\r\n\r\n"
    );
    socket.send_to(request.as_bytes(), target).ok()?;
    let mut buffer = vec![0u8; 65_536];
    let (length, _) = socket.recv_from(&mut buffer).ok()?;
    Some(String::from_utf8_lossy(&buffer[..length]).into_owned())
}

/// The status code of a SIP response's text.
pub fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// A pool of three `roster start` processes made by `roster init`, on loopback.
pub struct Pool {
    /// The pool's files.
    pub dir: TempDir,
    /// SIP address of each node, by id (1..=n).
    pub sip: BTreeMap<u64, SocketAddr>,
    /// HTTP address of each running node.
    pub http: BTreeMap<u64, SocketAddr>,
    children: BTreeMap<u64, Child>,
    configs: BTreeMap<u64, PathBuf>,
    /// Each node's `[[node]]` table, by id.
    entries: BTreeMap<u64, String>,
    /// Lines added to every node's `[pool]` table.
    pool_lines: Vec<String>,
    /// Digest authentication on, with the users file.
    auth: bool,
}

impl Pool {
    /// Creates and starts a pool of three nodes with `users` and no authentication.
    pub fn start(users: &Users) -> Pool {
        Pool::start_nodes(users, 3)
    }

    /// Creates and starts a pool of `count` nodes (ids 1..=count) with `users` and no
    /// authentication; every node's HTTP address is in the topology.
    pub fn start_nodes(users: &Users, count: u64) -> Pool {
        Pool::start_growable(users, count, count)
    }

    /// Creates a pool of the first `running` of `count` nodes and starts them; the others get
    /// their ports now and join with [`Pool::add_node`].
    pub fn start_growable(users: &Users, count: u64, running: u64) -> Pool {
        Pool::start_configured(users, count, running, &[])
    }

    /// [`Pool::start_growable`] with `pool_lines` added to every node's `[pool]` table (for
    /// example `leader_balance_interval_s = 5`).
    pub fn start_configured(users: &Users, count: u64, running: u64, pool_lines: &[&str]) -> Pool {
        Pool::create(users, count, running, pool_lines, false)
    }

    /// A pool of three nodes that authenticate `users` with the default `[auth]`.
    pub fn start_authenticated(users: &Users) -> Pool {
        Pool::create(users, 3, 3, &[], true)
    }

    fn create(users: &Users, count: u64, running: u64, pool_lines: &[&str], auth: bool) -> Pool {
        let dir = TempDir::new("pool");
        users.write(dir.path());
        let count16 = u16::try_from(count).expect("a small pool");
        // Per node: SIP UDP/TCP, TLS, then the HTTP ports after all of them.
        let base = free_port_range(3 * count16, count16);
        let mut entries = BTreeMap::new();
        let mut sip = BTreeMap::new();
        for id in 1..=count {
            let index = id as u16 - 1;
            let sip_address = SocketAddr::from(([127, 0, 0, 1], base + 2 * index));
            let http_address = SocketAddr::from(([127, 0, 0, 1], base + 2 * count16 + index));
            let cluster = SocketAddr::from(([127, 0, 0, 1], base + 101 + index));
            sip.insert(id, sip_address);
            entries.insert(
                id,
                format!(
                    "\n[[node]]\nid = {id}\ncluster = \"{cluster}\"\nsip = \"{sip_address}\"\nhttp = \"{http_address}\"\n"
                ),
            );
        }
        let mut pool = Pool {
            dir,
            sip,
            http: BTreeMap::new(),
            children: BTreeMap::new(),
            configs: BTreeMap::new(),
            entries,
            pool_lines: pool_lines.iter().map(|line| (*line).to_owned()).collect(),
            auth,
        };
        pool.init(running);
        let ids: Vec<u64> = (1..=running).collect();
        let waits: Vec<_> = ids.iter().map(|&id| pool.spawn(id)).collect();
        for (id, ready) in ids.into_iter().zip(waits) {
            pool.await_ready(id, ready);
        }
        if auth {
            pool.await_directory(users.count);
        }
        pool
    }

    /// Waits (at most 60 s) until every running node's directory, its copy of the CMS's users,
    /// holds `count` users: the users file seeds the CMS after the pool starts.
    pub fn await_directory(&self, count: usize) {
        await_directory_users(&self.http, count, Duration::from_secs(60), |_| {
            String::new()
        });
    }

    /// Writes the topology of nodes 1..=`count` and runs `roster init` on it.
    fn init(&mut self, count: u64) {
        let mut topology = String::from(
            "[deployment]\nname = \"test\"\n[[site]]\nname = \"s1\"\n\
             [[pool]]\nid = 1\nname = \"test\"\nsite = \"s1\"\ngroups = 8\n",
        );
        for id in 1..=count {
            topology.push_str(&in_pool(&self.entries[&id], "test"));
        }
        let topology_path = self.dir.path().join("topology.toml");
        std::fs::write(&topology_path, topology).expect("write topology");
        let mut init = Command::new(roster_bin());
        init.arg("init")
            .arg("--topology")
            .arg(&topology_path)
            .arg("--dir")
            .arg(self.dir.path().join("pool"));
        if self.auth {
            init.arg("--users").arg(self.dir.path().join("users.toml"));
        } else {
            init.arg("--no-auth");
        }
        // The tests' load drivers (SIPp, roster load) send from 127.0.0.1; attackers in the
        // tests use other loopback addresses.
        init.arg("--trusted").arg("127.0.0.1");
        let output = init.output().expect("run roster init");
        assert!(
            output.status.success(),
            "roster init failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.configs = (1..=count)
            .map(|id| {
                (
                    id,
                    self.dir.path().join(format!("pool/node-{id}/roster.toml")),
                )
            })
            .collect();
        for config in self.configs.values() {
            let text = std::fs::read_to_string(config).expect("read node config");
            let extra: String = self.pool_lines.iter().map(|l| format!("{l}\n")).collect();
            let text = text.replacen("[pool]\n", &format!("[pool]\n{extra}"), 1);
            std::fs::write(config, text).expect("write node config");
        }
    }

    /// Adds node `id` (one of the `count` of [`Pool::start_growable`]) to the topology, runs
    /// `roster init` again and starts it: it joins the running pool, holding no replica yet.
    pub fn add_node(&mut self, id: u64) {
        self.init(id);
        let ready = self.spawn(id);
        self.await_ready(id, ready);
    }

    fn spawn(&mut self, id: u64) -> mpsc::Receiver<Option<SocketAddr>> {
        let log = self.dir.path().join(format!("node-{id}.log"));
        let (child, ready_rx) = spawn_node(&self.configs[&id], &log);
        self.children.insert(id, child);
        ready_rx
    }

    fn await_ready(&mut self, id: u64, ready: mpsc::Receiver<Option<SocketAddr>>) {
        match ready.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(http)) => {
                self.http.insert(id, http);
            }
            _ => panic!(
                "pool node {id} not ready within 60 s; log: {}",
                std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log")))
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }

    /// `kill -9` node `id`.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.http.remove(&id);
    }

    /// Starts node `id` again from its disk and waits until it is ready.
    pub fn restart(&mut self, id: u64) {
        let ready = self.spawn(id);
        self.await_ready(id, ready);
    }

    /// Node `id`'s view of each routing group, from its JSON status.
    pub fn groups(&self, id: u64) -> Vec<GroupRow> {
        let Some(&http) = self.http.get(&id) else {
            return Vec::new();
        };
        let (_, body) = http_get(http, "/status");
        parse_groups(&body)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One routing group as a node reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupRow {
    /// The group.
    pub group: u64,
    /// The leader the node knows of.
    pub leader: Option<u64>,
    /// The commit index.
    pub committed: Option<u64>,
    /// The applied index.
    pub applied: Option<u64>,
}

/// Group rows from a node's `/status` JSON, read without a JSON library: each group object
/// lists these keys.
fn parse_groups(body: &str) -> Vec<GroupRow> {
    let number = |object: &str, key: &str| -> Option<u64> {
        let start = object.find(&format!("\"{key}\":"))? + key.len() + 3;
        let digits: String = object[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    body.split('{')
        .filter(|object| object.contains("\"group\":"))
        .filter_map(|object| {
            Some(GroupRow {
                group: number(object, "group")?,
                leader: number(object, "leader"),
                committed: number(object, "committed"),
                applied: number(object, "applied"),
            })
        })
        .collect()
}

/// A base port such that `udp_tcp` consecutive ports are free for UDP and TCP and `cluster`
/// ports at base+101.. are free for UDP.
pub fn free_port_range(udp_tcp: u16, cluster: u16) -> u16 {
    free_ports(udp_tcp, 101, cluster)
}

/// A base port such that `udp_tcp` consecutive ports are free for UDP and TCP and `cluster`
/// ports at base+`cluster_offset`.. are free for UDP.
pub fn free_ports(udp_tcp: u16, cluster_offset: u16, cluster: u16) -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    for _ in 0..500 {
        let step = NEXT.fetch_add(1, Ordering::Relaxed) as u16;
        let base = 30_000 + (std::process::id() % 300) as u16 * 90 + (step % 60) * 200;
        if base > 60_000 {
            continue;
        }
        let sip_free = (base..base + udp_tcp).all(|port| {
            UdpSocket::bind(("127.0.0.1", port)).is_ok()
                && TcpListener::bind(("127.0.0.1", port)).is_ok()
        });
        let cluster_start = base + cluster_offset;
        let cluster_free = (cluster_start..cluster_start + cluster)
            .all(|port| UdpSocket::bind(("127.0.0.1", port)).is_ok());
        if sip_free && cluster_free {
            return base;
        }
    }
    panic!("no free port range");
}

/// How long `roster demo` may take to print its banner: it hashes 10,000 users' passwords,
/// makes a CA and three certificates, and starts three nodes (a debug build, on CPUs other
/// tests share).
pub const DEMO_START_DEADLINE: Duration = Duration::from_secs(120);

/// How long the two-site demo may take to print its banner: six nodes, and the second
/// pool's learn the 10,000 users through the CMS's backup copy.
pub const DEMO_TWO_SITES_START_DEADLINE: Duration = Duration::from_secs(240);

/// The first of six consecutive loopback addresses (127.X.Y.1 … 127.X.Y.6, X and Y from this
/// process's id and a counter) and a port free on all six for what the two-site demo binds:
/// SIP UDP and TCP at the port, TLS one above, QUIC 1000 and the WAN relay 1010 above.
pub fn free_two_site_block() -> (std::net::Ipv4Addr, u16) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    for _ in 0..200 {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let x = 100 + (std::process::id() % 100) as u8;
        let y = (step % 250) as u8 + 1;
        let port = 20_000 + ((std::process::id() + step * 7) % 300) as u16 * 100;
        let first = std::net::Ipv4Addr::new(127, x, y, 1);
        let free = (1..=6u8).all(|n| {
            let ip = std::net::Ipv4Addr::new(127, x, y, n);
            UdpSocket::bind((ip, port)).is_ok()
                && TcpListener::bind((ip, port)).is_ok()
                && TcpListener::bind((ip, port + 1)).is_ok()
                && UdpSocket::bind((ip, port + 1000)).is_ok()
                && UdpSocket::bind((ip, port + 1010)).is_ok()
        });
        if free {
            return (first, port);
        }
    }
    panic!("no free loopback block for a two-site demo");
}

/// A `roster demo` process on free loopback ports in a temporary directory; stopped on drop
/// (SIGTERM, then SIGKILL after a bounded wait).
pub struct Demo {
    child: Child,
    /// Its directory (`--dir`).
    pub dir: TempDir,
    /// Its nodes as its banner lists them, by id.
    pub nodes: BTreeMap<u64, DemoNode>,
    /// Every line it printed on standard output so far.
    pub output: String,
    lines: mpsc::Receiver<String>,
}

/// One node of a [`Demo`], as the demo's banner shows it.
#[derive(Clone, Debug)]
pub struct DemoNode {
    /// Its process id.
    pub pid: u32,
    /// Its SIP UDP address.
    pub sip: SocketAddr,
}

impl Demo {
    /// Starts a one-pool `roster demo` (`--sites 1`) with `args` (besides `--sip`, `--http`
    /// and `--dir`, which it picks) and waits for its banner.
    pub fn start(args: &[&str]) -> Demo {
        // Three nodes: SIP UDP/TCP on base..base+5, the cluster transport at base+1001..1003.
        let base = free_ports(6, 1001, 3);
        let mut all = vec!["--sites", "1"];
        all.extend_from_slice(args);
        Demo::spawn(
            &format!("127.0.0.1:{base}"),
            "127.0.0.1:0",
            &all,
            3,
            DEMO_START_DEADLINE,
        )
    }

    /// Starts the two-site `roster demo` with `args` (besides `--sip`, `--http` and `--dir`)
    /// on a block of six loopback addresses of its own, and waits for its banner.
    pub fn start_two_sites(args: &[&str]) -> Demo {
        let (first, port) = free_two_site_block();
        Demo::spawn(
            &format!("{first}:{port}"),
            &format!("{first}:0"),
            args,
            6,
            DEMO_TWO_SITES_START_DEADLINE,
        )
    }

    fn spawn(sip: &str, http: &str, args: &[&str], nodes: usize, deadline: Duration) -> Demo {
        let dir = TempDir::new("demo");
        let mut child = Command::new(roster_bin())
            .arg("demo")
            .args(["--sip", sip, "--http", http, "--dir"])
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("demo.err")).expect("demo.err"))
            .spawn()
            .expect("spawn roster demo");
        let stdout = child.stdout.take().expect("stdout piped");
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut demo = Demo {
            child,
            dir,
            nodes: BTreeMap::new(),
            output: String::new(),
            lines,
        };
        demo.wait_for_line("Ctrl-C stops the demo", deadline);
        demo.nodes = parse_demo_nodes(&demo.output);
        assert_eq!(
            demo.nodes.len(),
            nodes,
            "{nodes} nodes in the banner:\n{}",
            demo.output
        );
        demo
    }

    /// The demo's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line of the demo's standard output that contains `needle`, and returns
    /// it; panics with everything it printed (and its standard error) after `deadline`.
    pub fn wait_for_line(&mut self, needle: &str, deadline: Duration) -> String {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.output.push_str(&line);
                    self.output.push('\n');
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "roster demo printed no line with {needle:?} within {deadline:?}:\n{}\n\
                     --- its standard error:\n{}",
                    self.output,
                    std::fs::read_to_string(self.dir.path().join("demo.err")).unwrap_or_default()
                ),
            }
        }
    }

    /// Whether the demo process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (`"INT"`, `"KILL"`, …) to the demo process.
    pub fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// Waits for the demo to exit; its status, or `None` past `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.is_running() {
            self.signal("TERM");
            if self.wait_exit(Duration::from_secs(15)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// The nodes of a demo banner: `  node N  SIP UDP ADDR …`, then `          pid P, log …`.
fn parse_demo_nodes(banner: &str) -> BTreeMap<u64, DemoNode> {
    let mut nodes = BTreeMap::new();
    let mut current: Option<(u64, SocketAddr)> = None;
    for line in banner.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("node ") {
            let mut words = rest.split_whitespace();
            let id = words.next().and_then(|id| id.parse().ok());
            let udp = words
                .skip_while(|word| *word != "UDP")
                .nth(1)
                .and_then(|address| address.parse().ok());
            current = id.zip(udp);
        } else if let Some(rest) = line.strip_prefix("pid ") {
            let pid = rest.split(',').next().and_then(|pid| pid.parse().ok());
            if let (Some((id, sip)), Some(pid)) = (current.take(), pid) {
                nodes.insert(id, DemoNode { pid, sip });
            }
        }
    }
    nodes
}

/// Sends `signal` (`"INT"`, `"KILL"`, …) to process `pid` with kill(1).
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Whether process `pid` runs with `marker` in its command line (a zombie, or another process
/// that got the number since, does not count).
pub fn process_runs(pid: u32, marker: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker))
        .unwrap_or(false)
}

/// A `[[node]]` entry of a topology, placed in pool `pool` (its `id` line followed by the pool's).
pub fn in_pool(entry: &str, pool: &str) -> String {
    let mut placed = String::new();
    for line in entry.lines() {
        placed.push_str(line);
        placed.push('\n');
        if line.starts_with("id = ") {
            placed.push_str(&format!("pool = \"{pool}\"\n"));
        }
    }
    placed
}
