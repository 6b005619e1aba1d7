//! Real SIP clients and the demo they register with: `roster demo` as a user starts it, baresip
//! (Debian `baresip-core`) and linphonec (Debian `linphone-cli`) run headless from generated
//! configuration. Every child is stopped on drop; every wait has a deadline.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{free_port, free_port_range, roster_bin, TempDir};

/// How long `roster demo` may take to print its banner (three nodes, debug build, a busy CI).
pub const DEMO_START_DEADLINE: Duration = Duration::from_secs(90);

/// A running `roster demo`, stopped with SIGINT (then killed) on drop.
pub struct Demo {
    child: Child,
    /// The demo's directory (credentials, CA, logs).
    pub dir: TempDir,
    /// Node 1's SIP port (UDP and TCP); TLS on the next port; node N at +2(N-1).
    pub base: u16,
    /// The generated password of every demo user.
    pub password: String,
}

impl Demo {
    /// Starts `roster demo` on free loopback ports with its defaults and waits for its banner.
    pub fn start(extra_args: &[&str]) -> Demo {
        let dir = TempDir::new("demo");
        let base = demo_base_port();
        let mut child = Command::new(roster_bin())
            .arg("demo")
            .args(["--sites", "1"])
            .arg("--sip")
            .arg(format!("127.0.0.1:{base}"))
            .arg("--http")
            .arg("127.0.0.1:0")
            .arg("--dir")
            .arg(dir.path())
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn roster demo");
        let stdout = child.stdout.take().expect("stdout piped");
        let (password_tx, password_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(password) = line.strip_prefix("password: ") {
                    let _ = password_tx.send(password.trim().to_string());
                }
            }
        });
        let password = match password_rx.recv_timeout(DEMO_START_DEADLINE) {
            Ok(password) => password,
            Err(_) => {
                let _ = child.kill();
                panic!("roster demo printed no password within {DEMO_START_DEADLINE:?}");
            }
        };
        Demo {
            child,
            dir,
            base,
            password,
        }
    }

    /// Node `id`'s UDP/TCP SIP address.
    pub fn sip(&self, id: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base + 2 * (id - 1)))
    }

    /// The demo CA that signs the nodes' TLS certificates.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("pool/tls/ca.pem")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
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

/// A base port with the demo's SIP ports (base..base+6) and cluster ports (base+1001..+1003)
/// free.
fn demo_base_port() -> u16 {
    for _ in 0..100 {
        let base = free_port_range(6, 0);
        let cluster_free =
            (base + 1001..base + 1004).all(|port| UdpSocket::bind(("127.0.0.1", port)).is_ok());
        if cluster_free {
            return base;
        }
    }
    panic!("no free port range for the demo");
}

/// One account of a SIP client: a user over a transport to a registrar address.
pub struct Account {
    /// The demo or test user, e.g. `u1`.
    pub user: String,
    /// `udp`, `tcp` or `tls`.
    pub transport: &'static str,
    /// Where to register.
    pub registrar: SocketAddr,
}

/// A running baresip with one account per [`Account`], registering every `regint_s`.
pub struct Baresip {
    child: Child,
    _dir: TempDir,
}

impl Baresip {
    /// Starts baresip (`-f` a generated configuration directory) for `run_s` seconds: it
    /// registers at once, refreshes before `regint_s` runs out, and unregisters when it quits.
    pub fn start(
        accounts: &[Account],
        password: &str,
        ca: &Path,
        regint_s: u32,
        run_s: u32,
    ) -> Baresip {
        let dir = TempDir::new("baresip");
        let config = format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{}\nsip_cafile {}\n\
             module_path /usr/lib/baresip/modules\nmodule_app account.so\n",
            free_port(),
            ca.display()
        );
        std::fs::write(dir.path().join("config"), config).expect("write baresip config");
        let lines: Vec<String> = accounts
            .iter()
            .map(|account| {
                format!(
                    "<sip:{}@example.com;transport={}>;auth_pass={password};\
                     outbound=\"sip:{};transport={}\";regint={regint_s}\n",
                    account.user, account.transport, account.registrar, account.transport
                )
            })
            .collect();
        std::fs::write(dir.path().join("accounts"), lines.concat()).expect("write accounts");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(dir.path())
            .arg("-t")
            .arg(run_s.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn baresip (Debian package baresip-core)");
        Baresip { child, _dir: dir }
    }

    /// Waits for baresip to quit (it unregisters first), at most `deadline`.
    pub fn wait(&mut self, deadline: Duration) -> bool {
        wait_child(&mut self.child, deadline)
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running linphonec with one account, driven through its standard input.
///
/// linphonec reads its `[sip]`, `[proxy_0]` and `[auth_info_0]` sections from a file, but in
/// Debian 12's build (liblinphone 5.1) it never opens its SIP listening points on its own: it
/// waits for the network to be declared reachable, which only a host application does. The
/// console command `ports sip N` opens them (UDP only: the command clears the TCP and TLS
/// ports), and the configured account then registers. linphonec therefore registers over UDP
/// only; liblinphone over TCP and TLS would need linphone-daemon or an application.
pub struct Linphonec {
    child: Child,
    stdin: ChildStdin,
    _dir: TempDir,
}

impl Linphonec {
    /// Starts linphonec with an account for `user` at `registrar` (UDP), `expires_s`.
    pub fn start(user: &str, password: &str, registrar: SocketAddr, expires_s: u32) -> Linphonec {
        let dir = TempDir::new("linphonec");
        let port = free_port();
        let config = format!(
            "[sip]\nsip_port={port}\ndefault_proxy=0\nuse_ipv6=0\n\
             register_only_when_network_is_up=0\n\
             [proxy_0]\nreg_proxy=<sip:{registrar};transport=udp>\nreg_identity=sip:{user}@example.com\n\
             reg_expires={expires_s}\nreg_sendregister=1\npublish=0\n\
             [auth_info_0]\nusername={user}\npasswd={password}\nrealm=example.com\ndomain=example.com\n"
        );
        let path = dir.path().join("linphonerc");
        std::fs::write(&path, config).expect("write linphonerc");
        let mut child = Command::new("linphonec")
            .arg("-c")
            .arg(&path)
            .env("HOME", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn linphonec (Debian package linphone-cli)");
        let mut stdin = child.stdin.take().expect("stdin piped");
        // Give the core a moment to read its configuration, then open the SIP ports.
        std::thread::sleep(Duration::from_millis(1_500));
        let _ = writeln!(stdin, "ports sip {port}");
        let _ = stdin.flush();
        Linphonec {
            child,
            stdin,
            _dir: dir,
        }
    }

    /// Unregisters (the console's `unregister`), then quits; waits at most `deadline`.
    pub fn quit(&mut self, deadline: Duration) -> bool {
        let _ = writeln!(self.stdin, "unregister");
        let _ = self.stdin.flush();
        std::thread::sleep(Duration::from_secs(2));
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        wait_child(&mut self.child, deadline)
    }
}

impl Drop for Linphonec {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_child(child: &mut Child, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
