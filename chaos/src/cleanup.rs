//! Everything a run starts or changes outside itself is registered here, so that it is undone
//! however the run ends: normally, on Ctrl-C (SIGINT, SIGTERM), or on a panic.
//!
//! - processes (the `roster start` children): SIGCONT, then SIGKILL, then reaped; each child
//!   also gets `PR_SET_PDEATHSIG`, so it dies with the runner even on a SIGKILL of the runner;
//! - the run's iptables chain (and its jump from `INPUT`): removed; chains left by runs that
//!   died are removed when the next run starts ([`remove_stale_chains`]);
//! - mounts (the tmpfs of a full-disk scenario): unmounted, lazily if busy.
//!
//! The runner removes the nodes' data and certificates itself (unless `--keep`).
//!
//! The registry is a process-wide `Mutex`, locked only for short sections without `.await`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Prefix of every chain this tool creates: `RCHAOS-<pid>`.
pub const CHAIN_PREFIX: &str = "RCHAOS-";

/// What to undo.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Process(u32),
    Chain(String),
    Mount(PathBuf),
}

static REGISTRY: Mutex<Vec<Item>> = Mutex::new(Vec::new());

fn with_registry(f: impl FnOnce(&mut Vec<Item>)) {
    // A poisoned lock only means a panic elsewhere; the list is still what was registered.
    let mut items = match REGISTRY.lock() {
        Ok(items) => items,
        Err(poisoned) => poisoned.into_inner(),
    };
    f(&mut items);
}

/// Registers a child process.
pub fn register_process(pid: u32) {
    with_registry(|items| items.push(Item::Process(pid)));
}

/// Forgets a child that was reaped.
pub fn forget_process(pid: u32) {
    with_registry(|items| items.retain(|item| item != &Item::Process(pid)));
}

/// Registers the run's iptables chain.
pub fn register_chain(name: &str) {
    with_registry(|items| items.push(Item::Chain(name.to_owned())));
}

/// Registers a mount point.
pub fn register_mount(path: PathBuf) {
    with_registry(|items| items.push(Item::Mount(path)));
}

/// Forgets a mount that was unmounted.
pub fn forget_mount(path: &Path) {
    with_registry(|items| items.retain(|item| item != &Item::Mount(path.to_path_buf())));
}

/// Undoes everything registered, newest first (processes before the mounts they use).
/// Idempotent; safe from a panic hook or a signal task.
pub fn run_all() {
    let mut items = Vec::new();
    with_registry(|registered| items = std::mem::take(registered));
    let (processes, others): (Vec<Item>, Vec<Item>) = items
        .into_iter()
        .partition(|item| matches!(item, Item::Process(_)));
    for item in processes.iter().chain(others.iter().rev()) {
        undo(item);
    }
}

fn undo(item: &Item) {
    match item {
        Item::Process(pid) => {
            let Ok(pid) = libc::pid_t::try_from(*pid) else {
                return;
            };
            // SAFETY: plain signals to a child this process started; a stale pid of a reaped
            // child is never registered (children are forgotten when reaped).
            unsafe {
                libc::kill(pid, libc::SIGCONT);
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        Item::Chain(name) => remove_chain(name),
        Item::Mount(path) => {
            let status = Command::new("umount").arg(path).status();
            if !status.is_ok_and(|status| status.success()) {
                let _ = Command::new("umount").arg("-l").arg(path).status();
            }
        }
    }
}

/// Removes chain `name` and its jump from `INPUT` (all errors ignored: it may be half made).
pub fn remove_chain(name: &str) {
    // A jump may have been added more than once by a retried start; remove all.
    for _ in 0..4 {
        let removed = Command::new("iptables")
            .args(["-w", "-D", "INPUT", "-j", name])
            .stderr(std::process::Stdio::null())
            .status();
        if !removed.is_ok_and(|status| status.success()) {
            break;
        }
    }
    let _ = Command::new("iptables")
        .args(["-w", "-F", name])
        .stderr(std::process::Stdio::null())
        .status();
    let _ = Command::new("iptables")
        .args(["-w", "-X", name])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Removes the chains of earlier runs whose process is gone (a runner killed with SIGKILL).
pub fn remove_stale_chains() {
    let Ok(output) = Command::new("iptables").args(["-w", "-S"]).output() else {
        return;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    for line in text.lines() {
        let Some(name) = line.strip_prefix("-N ") else {
            continue;
        };
        let Some(pid) = name.strip_prefix(CHAIN_PREFIX) else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            tracing::info!(
                chain = name,
                "removing the iptables chain of a run that died"
            );
            remove_chain(name);
        }
    }
}

/// Installs a panic hook that undoes everything before the default hook reports the panic.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        run_all();
        default(info);
    }));
}
