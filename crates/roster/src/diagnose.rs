//! Who holds what a node could not take: the process with a lock on a data directory, or with
//! a socket on an address, read from Linux's `/proc`, so that an error names the problem and
//! what to do ("in use by pid 4101: roster start --config …") instead of `WouldBlock` or
//! `Address in use`. Best effort: where `/proc` does not tell, the answer is `None`.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// Processes looked at when searching for a socket's owner, at most: a machine running
/// thousands of processes is searched in bounded time.
const PROCESSES_SEARCHED_MAX: usize = 4_096;

/// Open files looked at per process, at most.
const FILES_PER_PROCESS_MAX: usize = 65_536;

/// A running process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// Its id.
    pub pid: u32,
    /// Its command line, arguments separated by spaces (empty if unreadable).
    pub command: String,
}

impl std::fmt::Display for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.command.is_empty() {
            write!(f, "pid {}", self.pid)
        } else {
            write!(f, "pid {}: {}", self.pid, self.command)
        }
    }
}

/// The transport of a socket address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// A UDP socket.
    Udp,
    /// A TCP listener.
    Tcp,
}

/// The process holding an exclusive lock (`flock`) on the database in `data_dir` (sled locks
/// its `db` file), if another process holds it.
pub fn lock_holder(data_dir: &Path) -> Option<Process> {
    let inode = std::fs::metadata(data_dir.join("db")).ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = lock_pid(&locks, inode)?;
    (pid != std::process::id()).then(|| process(pid))
}

/// The process with a socket bound to `address` (a TCP listener, or a UDP socket), if any.
pub fn port_holder(address: SocketAddr, protocol: Protocol) -> Option<Process> {
    let name = match protocol {
        Protocol::Udp => "udp",
        Protocol::Tcp => "tcp",
    };
    let mut inodes = Vec::new();
    for table in [format!("/proc/net/{name}"), format!("/proc/net/{name}6")] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(socket_inodes(&text, address.port(), protocol));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    socket_owner(&inodes)
}

/// What to tell an operator whose node could not bind `address` for `what` (`"SIP UDP"`,
/// `"HTTP"`, ...): who holds it, and to stop that process or change the address.
pub fn bind_advice(
    address: SocketAddr,
    protocol: Protocol,
    what: &str,
    error: &std::io::Error,
) -> String {
    if error.kind() != std::io::ErrorKind::AddrInUse {
        return format!("cannot bind {what} on {address}: {error}");
    }
    let holder = match port_holder(address, protocol) {
        Some(process) => format!("in use by {process}"),
        None => "in use by another process".to_string(),
    };
    format!(
        "cannot bind {what} on {address}: the address is {holder}; stop that process, or give \
         this node another address in its configuration"
    )
}

/// The pid holding a `FLOCK ... WRITE` lock on `inode` in `/proc/locks`' text.
fn lock_pid(locks: &str, inode: u64) -> Option<u32> {
    locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5311636 0 EOF"
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (kind, pid, device_inode) = (fields.get(1)?, fields.get(4)?, fields.get(5)?);
        let lock_inode: u64 = device_inode.rsplit(':').next()?.parse().ok()?;
        (*kind == "FLOCK" && lock_inode == inode)
            .then(|| pid.parse().ok())
            .flatten()
    })
}

/// The inodes of the sockets bound to `port` in a `/proc/net/{tcp,udp}[6]` table (TCP: in
/// the listening state only).
fn socket_inodes(table: &str, port: u16, protocol: Protocol) -> Vec<u64> {
    const TCP_LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode"
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode: u64 = fields.get(9)?.parse().ok()?;
            let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            let listening = protocol == Protocol::Udp || *state == TCP_LISTEN;
            (local_port == port && listening && inode != 0).then_some(inode)
        })
        .collect()
}

/// The first process (other than this one) with an open file descriptor on one of the socket
/// `inodes`.
fn socket_owner(inodes: &[u64]) -> Option<Process> {
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let own = std::process::id();
    let processes = std::fs::read_dir("/proc").ok()?;
    for entry in processes.flatten().take(PROCESSES_SEARCHED_MAX) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Ok(files) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for file in files.flatten().take(FILES_PER_PROCESS_MAX) {
            let Ok(target) = std::fs::read_link(file.path()) else {
                continue;
            };
            if wanted.iter().any(|w| target.as_os_str() == w.as_str()) {
                return Some(process(pid));
            }
        }
    }
    None
}

fn process(pid: u32) -> Process {
    let command = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|&b| b == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    Process { pid, command }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flock_on_the_inode_names_its_pid() {
        let locks = "1: FLOCK  ADVISORY  WRITE 19682 fe:00:5311636 0 EOF\n\
                     2: POSIX  ADVISORY  WRITE 77 fe:00:42 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 4101 fe:00:42 0 EOF\n";
        assert_eq!(lock_pid(locks, 42), Some(4101));
        assert_eq!(lock_pid(locks, 5311636), Some(19682));
        assert_eq!(lock_pid(locks, 7), None);
    }

    #[test]
    fn sockets_on_the_port_are_found_tcp_listening_only() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                   0: 0100007F:13C4 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5551 1\n\
                   1: 0100007F:13C4 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 5552 1\n";
        assert_eq!(socket_inodes(tcp, 5060, Protocol::Tcp), vec![5551]);
        assert_eq!(socket_inodes(tcp, 5060, Protocol::Udp), vec![5551, 5552]);
        assert!(socket_inodes(tcp, 5061, Protocol::Tcp).is_empty());
    }

    #[test]
    fn advice_names_the_holder_or_says_another_process() {
        // The search skips this process, so a socket held here is "another process"'s.
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let address = socket.local_addr().expect("address");
        let error = std::net::UdpSocket::bind(address).expect_err("in use");
        let advice = bind_advice(address, Protocol::Udp, "SIP UDP", &error);
        assert!(
            advice.contains("in use by another process") && advice.contains("stop that process"),
            "{advice}"
        );
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let advice = bind_advice(address, Protocol::Udp, "SIP UDP", &other);
        assert!(advice.starts_with("cannot bind SIP UDP"), "{advice}");
    }
}
