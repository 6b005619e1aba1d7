//! Test harness: starts real `roster` processes on loopback, runs SIPp against them, and
//! cleans up. Every wait has a deadline; every child is killed on drop.
#![deny(missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use roster::users::{UserEntry, UsersFile};

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
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            auth: true,
            registrar: String::new(),
            algorithms: None,
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
            roster::tls::self_signed(&["127.0.0.1".to_string(), "localhost".to_string()])
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
             tls_certificate = \"cert.pem\"\ntls_private_key = \"key.pem\"\n\
             [registrar]\n{}\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [auth]\nenabled = {}\nusers_file = \"users.toml\"\n{algorithms}",
            port + 1,
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
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .expect("connect to HTTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("send");
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

/// Runs a child to completion, killing it past `deadline`.
pub fn run_with_deadline(command: &mut Command, deadline: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
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
