//! Cutting the link between the demo's two sites: every datagram to a node's WAN relay front
//! (the only way one site reaches the other) dropped by iptables, until the [`Cut`] is healed
//! or dropped. Root only; the rules name loopback addresses and the demo's ports alone.

use std::net::SocketAddr;
use std::process::Command;

use anyhow::{bail, Context as _};

/// An inter-site cut in force.
pub struct Cut {
    fronts: Vec<SocketAddr>,
    healed: bool,
}

impl Cut {
    /// Drops every datagram to `fronts`.
    pub fn start(fronts: Vec<SocketAddr>) -> anyhow::Result<Cut> {
        if fronts.is_empty() {
            bail!("the demo has no relay fronts to cut (start it with a WAN latency)");
        }
        let mut cut = Cut {
            fronts: Vec::new(),
            healed: false,
        };
        for front in fronts {
            iptables("-I", front)?;
            cut.fronts.push(front);
        }
        Ok(cut)
    }

    /// Lets datagrams through again.
    pub fn heal(mut self) -> anyhow::Result<()> {
        self.healed = true;
        for front in std::mem::take(&mut self.fronts) {
            iptables("-D", front)?;
        }
        Ok(())
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        if !self.healed {
            for front in &self.fronts {
                let _ = iptables("-D", *front);
            }
        }
    }
}

fn iptables(action: &str, front: SocketAddr) -> anyhow::Result<()> {
    let ip = front.ip().to_string();
    let port = front.port().to_string();
    let status = Command::new("iptables")
        .args([
            "-w", action, "INPUT", "-p", "udp", "-d", &ip, "--dport", &port,
        ])
        .args(["-j", "DROP"])
        .status()
        .context("cannot run iptables (Debian package iptables; root only)")?;
    if !status.success() {
        bail!("iptables {action} INPUT for {front} failed ({status})");
    }
    Ok(())
}
