//! Finding a node that was started again outside the demo (with the command the demo printed
//! when it ended), so that the demo watches it and `demo.json` names its process: a
//! `roster start --config CONFIG` process found through `/proc`, and the TCP addresses it
//! listens on (its HTTP address, when the demo's was any free port).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Processes looked at in one scan of `/proc` at most: far more than a machine running a demo
/// has, so a scan always ends quickly.
const PROCESSES_SCANNED_MAX: usize = 100_000;

/// The process ids of running `roster SUBCOMMAND --config CONFIG` command lines (`start` for a
/// node, `witness` for the witness), other than `except`: the process, and any wrapper that
/// carries its command line (`timeout 60 roster start …`, `nohup …`), which the caller tells
/// apart by what each listens on.
pub fn find(subcommand: &str, config: &Path, except: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .take(PROCESSES_SCANNED_MAX)
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != except && pid != std::process::id())
        .filter(|&pid| runs_with_config(pid, subcommand, config))
        .collect()
}

/// Whether process `pid` is a `roster SUBCOMMAND` with configuration `config` (a zombie, or a
/// process that got the number since, is not).
pub fn runs_with_config(pid: u32, subcommand: &str, config: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let arguments: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
    // `roster start`, whatever the executable is called and wherever its options are.
    let starts = arguments.contains(&subcommand.as_bytes());
    let named = arguments
        .windows(2)
        .find(|pair| pair[0] == b"--config")
        .and_then(|pair| std::str::from_utf8(pair[1]).ok())
        .map(|named| absolute(pid, Path::new(named)));
    starts && named.as_deref() == Some(config)
}

/// The TCP addresses process `pid` listens on.
pub fn listening(pid: u32) -> BTreeSet<SocketAddr> {
    let inodes = socket_inodes(pid);
    let mut addresses = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        addresses.extend(listening_in(&text, &inodes));
    }
    addresses
}

/// `path` as process `pid` meant it: relative paths are from its working directory.
fn absolute(pid: u32, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    match std::fs::read_link(format!("/proc/{pid}/cwd")) {
        Ok(cwd) => cwd.join(path),
        Err(_) => path.to_path_buf(),
    }
}

/// The inodes of the sockets process `pid` has open (`socket:[INODE]` links in its `fd`).
fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|entry| {
            let target = std::fs::read_link(entry.ok()?.path()).ok()?;
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The local addresses of listening sockets among `inodes`, from the text of
/// `/proc/net/tcp` or `tcp6`: `sl local_address rem_address st … inode`, addresses as hex
/// words in the kernel's byte order, state `0A` for LISTEN.
fn listening_in(table: &str, inodes: &BTreeSet<u64>) -> Vec<SocketAddr> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            if *state != LISTEN || !inodes.contains(&inode.parse().ok()?) {
                return None;
            }
            parse_address(local)
        })
        .collect()
}

/// `0100007F:1F90` → 127.0.0.1:8080; IPv6 as four 32-bit words, each in host byte order.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::from_be);
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?.to_be_bytes())),
        32 => {
            let mut octets = [0u8; 16];
            for (index, chunk) in octets.chunks_mut(4).enumerate() {
                let hex = ip.get(index * 8..index * 8 + 8)?;
                chunk.copy_from_slice(&word(hex)?.to_be_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_the_kernel_writes_them() {
        assert_eq!(
            parse_address("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().expect("address"))
        );
        assert_eq!(
            parse_address("00000000000000000000000001000000:13C4"),
            Some("[::1]:5060".parse().expect("address"))
        );
        assert_eq!(parse_address("zz:1"), None);
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n\
            1: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0 100 0 0 10 0\n\
            2: 0100007F:1F92 0100007F:9000 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0 100 0 0 10 0\n";
        let inodes: BTreeSet<u64> = [111, 333].into();
        assert_eq!(
            listening_in(table, &inodes),
            ["127.0.0.1:8080".parse().expect("address")]
        );
    }

    #[test]
    fn this_process_listens_where_it_bound() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        assert!(listening(std::process::id()).contains(&address));
    }

    #[test]
    fn a_roster_start_is_found_by_its_configuration() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("roster.toml");
        // A stand-in with a roster node's command line, `roster -c 'read line' start
        // --config CONFIG`: a shell waiting on its standard input, with no child of its own.
        let mut child = std::process::Command::new("bash")
            .args([
                "-c",
                "exec -a roster bash -c 'read line' start --config \"$0\"",
            ])
            .arg(&config)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("bash");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut found = None;
        while found.is_none() && std::time::Instant::now() < deadline {
            found = find("start", &config, 0).first().copied();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(found, Some(child.id()));
        assert!(runs_with_config(child.id(), "start", &config));
        assert!(!runs_with_config(
            child.id(),
            "start",
            &dir.path().join("other.toml")
        ));
        assert!(!runs_with_config(child.id(), "witness", &config));
        let _ = child.kill();
        let _ = child.wait();
        assert!(!runs_with_config(child.id(), "start", &config), "reaped");
    }
}
