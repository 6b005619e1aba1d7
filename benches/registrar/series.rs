//! A series: one system, one driver, one round (with or without digest), the rate stepped up
//! until the first step that is not clean. CPU comes from `/proc` before and after each step.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::Config;
use crate::driver::{self, DriverKind, Step};
use crate::procfs;
use crate::system::{Auth, Launch, Running, SystemKind};

/// One step as the results show it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepRecord {
    /// The system.
    pub system: SystemKind,
    /// The load generator.
    pub driver: DriverKind,
    /// The round.
    pub auth: Auth,
    /// The digest algorithm answered, with digest.
    pub algorithm: Option<&'static str>,
    /// Offered REGISTER/s.
    pub rate_offered: u32,
    /// Completed REGISTER/s.
    pub rate_achieved: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Registrations acknowledged.
    pub registered: u64,
    /// Registrations failed or unfinished.
    pub failures: u64,
    /// CPU seconds (user + system) of all the system's processes during the step.
    pub cpu_s: f64,
    /// CPU seconds per 1,000 acknowledged registrations.
    pub cpu_s_per_1000: Option<f64>,
    /// No failure, p99 under the bound, and at least `ACHIEVED_FRACTION_MIN` of the offer.
    pub clean: bool,
    /// Why not, if not: `failures`, `p99`, `achieved`, `exited` (comma-separated).
    pub unclean: Option<String>,
    /// Runs of this rate: 1, or more when an unclean run was retried (`--retries`).
    pub attempts: u32,
}

/// Kamailio's shared memory for the rate steps, MiB: 10,000 users need a few MiB.
const STEP_SHM_MIB: u64 = 256;
/// A step whose generator achieved less than this fraction of the offered rate is not clean
/// (the generator, or the system, could not keep up).
const ACHIEVED_FRACTION_MIN: f64 = 0.9;
/// Warm-up before the first step, not recorded: a pool's leaders settle after its start.
const WARM_UP_RATE: u32 = 200;
const WARM_UP: Duration = Duration::from_secs(5);
/// Pause between steps, for retransmissions and timers of the previous one to settle.
const STEP_PAUSE: Duration = Duration::from_secs(2);

/// Runs one series and returns its steps, the first unclean one last.
pub fn run(
    config: &Config,
    kind: SystemKind,
    driver: DriverKind,
    auth: Auth,
) -> anyhow::Result<Vec<StepRecord>> {
    let dir = work_dir(
        config,
        &format!("{}-{}-{}", kind.name(), driver.name(), auth.name()),
    );
    let running = Running::start(&Launch {
        kind,
        auth,
        algorithm: driver.algorithm(),
        dir: dir.join("system"),
        assets: &config.assets,
        roster: &config.roster,
        shm_mib: STEP_SHM_MIB,
        children: config.kamailio_children,
        groups: config.roster_groups,
    })?;
    let step = |rate: u32, duration: Duration, name: &str| Step {
        driver,
        rate,
        duration,
        auth,
        running: &running,
        dir: dir.join(name),
        roster: &config.roster,
        assets: &config.assets,
    };
    driver::run(&step(WARM_UP_RATE, WARM_UP, "warm-up"))?;
    let mut records = Vec::new();
    let series = Series { kind, driver, auth };
    'rates: for &rate in &config.rates {
        for attempt in 1..=1 + config.retries {
            std::thread::sleep(STEP_PAUSE);
            let cpu_before = procfs::cpu_seconds(&running.pids());
            let name = format!("rate-{rate}-{attempt}");
            let measured = driver::run(&step(rate, config.step, &name))?;
            let cpu_s = procfs::cpu_seconds(&running.pids()) - cpu_before;
            let exited = running.check_running().err();
            if let Some(error) = &exited {
                eprintln!("  {error:#}");
            }
            let mut record =
                series.record(rate, &measured, cpu_s, exited.is_some(), config.p99_max_ms);
            record.attempts = attempt;
            let retry = !record.clean && exited.is_none() && attempt <= config.retries;
            print(&record, retry);
            if retry {
                continue;
            }
            let clean = record.clean;
            records.push(record);
            if !clean {
                break 'rates;
            }
            break;
        }
    }
    if config.overload {
        overload(config, &records, &step)?;
    }
    running.stop()?;
    Ok(records)
}

/// One step at twice the series' highest clean rate: goodput (registrations acknowledged per
/// second) against that clean rate. Printed, and written to `overload.json` in the series'
/// directory.
fn overload<'a>(
    config: &Config,
    records: &[StepRecord],
    step: &dyn Fn(u32, Duration, &str) -> Step<'a>,
) -> anyhow::Result<()> {
    let Some(clean) = records
        .iter()
        .filter(|r| r.clean)
        .map(|r| r.rate_offered)
        .max()
    else {
        return Ok(());
    };
    let offered = clean * 2;
    std::thread::sleep(STEP_PAUSE * 5);
    let step = step(offered, config.step, "overload");
    let measured = driver::run(&step)?;
    let goodput = measured.registered as f64 / config.step.as_secs_f64();
    let fraction = goodput / f64::from(clean);
    println!(
        "  overload: {offered}/s offered (2x the clean {clean}/s): goodput {goodput:.0}/s \
         ({:.0} % of the clean rate), {} failed, p99 {:.2} ms",
        fraction * 100.0,
        measured.failed,
        measured.p99_ms
    );
    let json = serde_json::json!({
        "clean_per_s": clean,
        "offered_per_s": offered,
        "goodput_per_s": goodput,
        "goodput_fraction_of_clean": fraction,
        "failed": measured.failed,
        "p99_ms": measured.p99_ms,
    });
    let path = step.dir.join("overload.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Which series a step belongs to.
struct Series {
    kind: SystemKind,
    driver: DriverKind,
    auth: Auth,
}

impl Series {
    /// Judges a step and makes its record.
    fn record(
        &self,
        rate: u32,
        measured: &driver::Measured,
        cpu_s: f64,
        exited: bool,
        p99_max_ms: f64,
    ) -> StepRecord {
        let mut unclean = unclean_reasons(measured, rate, p99_max_ms);
        if exited {
            unclean.push("exited");
        }
        StepRecord {
            system: self.kind,
            driver: self.driver,
            auth: self.auth,
            algorithm: (self.auth == Auth::Digest).then(|| self.driver.algorithm().name()),
            rate_offered: rate,
            rate_achieved: measured.achieved_per_s,
            p50_ms: measured.p50_ms,
            p99_ms: measured.p99_ms,
            registered: measured.registered,
            failures: measured.failed,
            cpu_s,
            // A process that exited took its CPU time with it: no figure then.
            cpu_s_per_1000: (measured.registered > 0 && !exited)
                .then(|| cpu_s * 1000.0 / measured.registered as f64),
            clean: unclean.is_empty(),
            unclean: (!unclean.is_empty()).then(|| unclean.join(",")),
            attempts: 1,
        }
    }
}

fn print(record: &StepRecord, retry: bool) {
    eprintln!(
        "  {:>6}/s offered: {:>8.0}/s achieved, p50 {:>7.2} ms, p99 {:>8.2} ms, {} failed, {:.3} CPU s/1000{}",
        record.rate_offered,
        record.rate_achieved,
        record.p50_ms,
        record.p99_ms,
        record.failures,
        record.cpu_s_per_1000.unwrap_or(f64::NAN),
        match (&record.unclean, retry) {
            (Some(why), true) => format!("  (not clean: {why}; again)"),
            (Some(why), false) => format!("  (not clean: {why}; stop)"),
            (None, _) => String::new(),
        }
    );
}

/// What makes a step not clean; empty if it is.
fn unclean_reasons(measured: &driver::Measured, rate: u32, p99_max_ms: f64) -> Vec<&'static str> {
    let mut reasons = Vec::new();
    if measured.failed > 0 || measured.registered == 0 {
        reasons.push("failures");
    }
    if measured.p99_ms >= p99_max_ms {
        reasons.push("p99");
    }
    if measured.achieved_per_s < ACHIEVED_FRACTION_MIN * f64::from(rate) {
        reasons.push("achieved");
    }
    reasons
}

/// A fresh directory under the output's `work/`.
pub fn work_dir(config: &Config, name: &str) -> PathBuf {
    let dir = config.out.join("work").join(name);
    // Leftovers of an earlier run would mix with this one's files.
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
