//! The memory phase: fill a system with N distinct users (`roster load --users N --count N`,
//! no authentication) and compare the PSS of all its processes before and after.

use std::time::{Duration, Instant};

use crate::cli::Config;
use crate::driver::{self, DriverKind, Step};
use crate::procfs;
use crate::series::work_dir;
use crate::system::{Auth, Launch, Running, SystemKind};

/// One system's memory per binding.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemoryRecord {
    /// The system.
    pub system: SystemKind,
    /// Distinct users registered.
    pub bindings_offered: u64,
    /// Of which acknowledged.
    pub bindings_registered: u64,
    /// Registrations that failed.
    pub failures: u64,
    /// Offered REGISTER/s while filling.
    pub fill_rate: u32,
    /// How long the fill took, s.
    pub fill_s: f64,
    /// PSS summed over the system's processes, idle after start, KiB.
    pub pss_before_kib: u64,
    /// The same once the fill's transactions have expired (35 s after it), KiB.
    pub pss_after_kib: u64,
    /// PSS growth per acknowledged binding, bytes (every replica's copy included).
    pub bytes_per_binding: Option<f64>,
}

/// Kamailio's shared memory per expected binding, bytes: a usrloc record and contact take
/// about 1 KiB; four leave room for the allocator and the hash table.
const SHM_PER_BINDING_BYTES: u64 = 4096;
/// Kamailio's shared memory besides the bindings, MiB.
const SHM_BASE_MIB: u64 = 256;
/// Quiet time before the first reading, for the system to finish starting.
const SETTLE: Duration = Duration::from_secs(5);
/// Quiet time after the fill before the second reading: past RFC 3261's timer J (32 s), so
/// that the reading counts the bindings, not the fill's server transactions (Roster keeps
/// each one with its response for timer J; Kamailio's `save` answers statelessly).
const SETTLE_AFTER_FILL: Duration = Duration::from_secs(35);

/// Fills one system with `bindings` users at `fill_rate` and measures its PSS.
pub fn run(
    config: &Config,
    kind: SystemKind,
    bindings: u64,
    fill_rate: u32,
) -> anyhow::Result<MemoryRecord> {
    let dir = work_dir(config, &format!("{}-memory", kind.name()));
    let running = Running::start(&Launch {
        kind,
        auth: Auth::None,
        algorithm: DriverKind::RosterLoad.algorithm(),
        dir: dir.join("system"),
        assets: &config.assets,
        roster: &config.roster,
        shm_mib: SHM_BASE_MIB + bindings * SHM_PER_BINDING_BYTES / (1024 * 1024),
        children: config.kamailio_children,
        groups: config.roster_groups,
    })?;
    std::thread::sleep(SETTLE);
    let pss_before_kib = procfs::pss_kib(&running.pids())?;
    let started = Instant::now();
    let measured = driver::fill(
        &Step {
            driver: DriverKind::RosterLoad,
            rate: fill_rate,
            duration: Duration::ZERO,
            auth: Auth::None,
            running: &running,
            dir: dir.join("fill"),
            roster: &config.roster,
            assets: &config.assets,
        },
        bindings,
    )?;
    let fill_s = started.elapsed().as_secs_f64();
    std::thread::sleep(SETTLE_AFTER_FILL);
    let pss_after_kib = procfs::pss_kib(&running.pids())?;
    running.stop()?;
    let growth_bytes = (pss_after_kib as f64 - pss_before_kib as f64) * 1024.0;
    Ok(MemoryRecord {
        system: kind,
        bindings_offered: bindings,
        bindings_registered: measured.registered,
        failures: measured.failed,
        fill_rate,
        fill_s,
        pss_before_kib,
        pss_after_kib,
        bytes_per_binding: (measured.registered > 0)
            .then(|| growth_bytes / measured.registered as f64),
    })
}
