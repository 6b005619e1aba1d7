//! A full disk for one node: its data directory on a small tmpfs of its own, filled with a file
//! of zeros until the kernel says `ENOSPC`, and freed by deleting that file.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tokio::process::Command;

use crate::cleanup;

/// The name of the filler file inside the data directory's mount.
const FILL_NAME: &str = "chaos-fill";

/// A tmpfs mounted on a node's data directory.
pub struct Disk {
    mount: PathBuf,
}

impl Disk {
    /// Mounts a tmpfs of `size_mb` MiB on `path` (which must be empty: before the node's first
    /// start); registered for cleanup.
    pub async fn mount(path: &Path, size_mb: u64) -> anyhow::Result<Disk> {
        std::fs::create_dir_all(path)?;
        cleanup::register_mount(path.to_path_buf());
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(path)
            .output()
            .await
            .context("cannot run mount")?;
        anyhow::ensure!(
            output.status.success(),
            "mount tmpfs on {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(Disk {
            mount: path.to_path_buf(),
        })
    }

    /// Fills the mount to the last page; returns the bytes written.
    pub async fn fill(&self) -> anyhow::Result<u64> {
        // Large blocks first, then pages for the rest; both end with ENOSPC (status 1).
        for (block, name) in [("1M", FILL_NAME), ("4k", "chaos-fill-tail")] {
            Command::new("dd")
                .arg("if=/dev/zero")
                .arg(format!("of={}", self.mount.join(name).display()))
                .arg(format!("bs={block}"))
                .stderr(std::process::Stdio::null())
                .status()
                .await
                .context("cannot run dd")?;
        }
        let size = |name: &str| std::fs::metadata(self.mount.join(name)).map_or(0, |m| m.len());
        Ok(size(FILL_NAME) + size("chaos-fill-tail"))
    }

    /// Deletes the filler.
    pub fn free(&self) {
        for name in [FILL_NAME, "chaos-fill-tail"] {
            let _ = std::fs::remove_file(self.mount.join(name));
        }
    }

    /// Unmounts (the node must be stopped); a mount still busy stays registered, and the
    /// final cleanup unmounts it lazily.
    pub async fn unmount(self) {
        let status = Command::new("umount").arg(&self.mount).status().await;
        if status.is_ok_and(|status| status.success()) {
            cleanup::forget_mount(&self.mount);
        }
    }
}
