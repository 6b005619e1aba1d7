//! Link cuts with iptables: one chain per run (`RCHAOS-<pid>`, jumped to from `INPUT`), one
//! `DROP` rule per cut direction, matched on the two nodes' loopback addresses and UDP (the
//! cluster transport is QUIC). A share below one uses the `statistic` match (random drops).
//! SIP from the clients (127.0.0.1) and HTTP (TCP) are never matched.

use std::net::Ipv4Addr;

use anyhow::Context as _;
use tokio::process::Command;

use crate::cleanup;

/// The run's chain.
pub struct Firewall {
    chain: String,
    rules: usize,
}

impl Firewall {
    /// Creates the chain and its jump; registered for cleanup.
    pub async fn create() -> anyhow::Result<Firewall> {
        let chain = format!("{}{}", cleanup::CHAIN_PREFIX, std::process::id());
        cleanup::remove_chain(&chain);
        cleanup::register_chain(&chain);
        iptables(&["-N", &chain]).await?;
        iptables(&["-I", "INPUT", "-j", &chain]).await?;
        Ok(Firewall { chain, rules: 0 })
    }

    /// Drops `share` (0 < share ≤ 1) of the UDP packets from `from` to `to`.
    pub async fn cut(&mut self, from: Ipv4Addr, to: Ipv4Addr, share: f64) -> anyhow::Result<()> {
        let (from, to) = (from.to_string(), to.to_string());
        let probability = format!("{:.4}", share.clamp(0.0001, 1.0));
        let mut args = vec!["-A", &self.chain, "-s", &from, "-d", &to, "-p", "udp"];
        if share < 1.0 {
            args.extend([
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &probability,
            ]);
        }
        args.extend(["-j", "DROP"]);
        iptables(&args).await?;
        self.rules += 1;
        Ok(())
    }

    /// Removes every cut.
    pub async fn heal(&mut self) -> anyhow::Result<()> {
        if self.rules > 0 {
            iptables(&["-F", &self.chain]).await?;
            self.rules = 0;
        }
        Ok(())
    }

    /// Removes the chain.
    pub fn remove(self) {
        cleanup::remove_chain(&self.chain);
    }
}

async fn iptables(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .await
        .context("cannot run iptables (Debian package iptables; the suite runs as root)")?;
    anyhow::ensure!(
        output.status.success(),
        "iptables {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}
