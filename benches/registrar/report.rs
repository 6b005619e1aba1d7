//! The results: every step, each series' highest clean rate, the ratios of Roster to
//! Kamailio, and memory per binding, as `results.json` and `results.md`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::driver::DriverKind;
use crate::memory::MemoryRecord;
use crate::series::StepRecord;
use crate::system::{Auth, SystemKind};

/// Everything a run measured.
#[derive(Debug, serde::Serialize)]
pub struct Results {
    /// Where it ran.
    pub machine: Machine,
    /// How a step was judged and run.
    pub settings: Settings,
    /// Every step of every series.
    pub steps: Vec<StepRecord>,
    /// Each series' highest clean rate.
    pub summary: Vec<MaxRate>,
    /// Roster's highest clean rate over Kamailio's, per driver and round.
    pub ratios: Vec<Ratio>,
    /// The memory phase.
    pub memory: Vec<MemoryRecord>,
}

/// The machine, as /proc and the tools say.
#[derive(Debug, serde::Serialize)]
pub struct Machine {
    /// Online CPUs.
    pub cpus: usize,
    /// From /proc/cpuinfo.
    pub cpu_model: String,
    /// MemTotal, MiB.
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// `kamailio -v`, first line.
    pub kamailio: String,
    /// `sipp -v`, the version line.
    pub sipp: String,
    /// Seconds since the epoch when the run started.
    pub started_unix_s: u64,
}

/// The rules of a run.
#[derive(Debug, serde::Serialize)]
pub struct Settings {
    /// Seconds per step.
    pub step_s: u64,
    /// A clean step's p99 bound, ms.
    pub p99_max_ms: f64,
    /// Offered rates.
    pub rates: Vec<u32>,
    /// Where load goes.
    pub target: &'static str,
    /// Kamailio's `children` per node.
    pub kamailio_children: u32,
    /// Roster's routing groups.
    pub roster_groups: u32,
    /// Extra runs of an unclean rate before a series stops.
    pub retries: u32,
}

/// A series' best.
#[derive(Debug, serde::Serialize)]
pub struct MaxRate {
    /// The system.
    pub system: SystemKind,
    /// The generator.
    pub driver: DriverKind,
    /// The round.
    pub auth: Auth,
    /// Highest clean offered rate, REGISTER/s; `None` if no step was clean.
    pub max_clean_rate: Option<u32>,
}

/// Roster against Kamailio for one driver and round.
#[derive(Debug, serde::Serialize)]
pub struct Ratio {
    /// The generator.
    pub driver: DriverKind,
    /// The round.
    pub auth: Auth,
    /// Roster's max clean rate / Kamailio DMQ's.
    pub roster_over_kamailio_dmq: Option<f64>,
    /// Roster's max clean rate / Kamailio single's.
    pub roster_over_kamailio_single: Option<f64>,
}

impl Results {
    /// Fills `summary` and `ratios` from `steps`.
    pub fn summarize(&mut self) {
        let mut series: Vec<(SystemKind, DriverKind, Auth)> = Vec::new();
        for step in &self.steps {
            let key = (step.system, step.driver, step.auth);
            if !series.contains(&key) {
                series.push(key);
            }
        }
        self.summary = series
            .iter()
            .map(|&(system, driver, auth)| MaxRate {
                system,
                driver,
                auth,
                max_clean_rate: self.max_clean_rate(system, driver, auth),
            })
            .collect();
        let mut rounds: Vec<(DriverKind, Auth)> = Vec::new();
        for &(_, driver, auth) in &series {
            if !rounds.contains(&(driver, auth)) {
                rounds.push((driver, auth));
            }
        }
        self.ratios = rounds
            .into_iter()
            .filter(|(driver, auth)| series.contains(&(SystemKind::Roster, *driver, *auth)))
            .map(|(driver, auth)| {
                let over = |other| {
                    let roster = self.max_clean_rate(SystemKind::Roster, driver, auth)?;
                    let other = self.max_clean_rate(other, driver, auth)?;
                    Some(f64::from(roster) / f64::from(other))
                };
                Ratio {
                    driver,
                    auth,
                    roster_over_kamailio_dmq: over(SystemKind::KamailioDmq),
                    roster_over_kamailio_single: over(SystemKind::KamailioSingle),
                }
            })
            .collect();
    }

    fn max_clean_rate(&self, system: SystemKind, driver: DriverKind, auth: Auth) -> Option<u32> {
        self.steps
            .iter()
            .filter(|s| s.system == system && s.driver == driver && s.auth == auth && s.clean)
            .map(|s| s.rate_offered)
            .max()
    }

    /// Writes `results.json` and `results.md` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self).context("cannot encode the results")?;
        write(&dir.join("results.json"), &json)?;
        write(&dir.join("results.md"), &self.markdown())
    }

    /// The tables, in Markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(
            md,
            "Machine: {} CPUs ({}), {} MiB, Linux {}; {}; SIPp {}.",
            m.cpus, m.cpu_model, m.memory_mib, m.kernel, m.kamailio, m.sipp
        );
        let s = &self.settings;
        let _ = writeln!(
            md,
            "Steps of {} s, open loop over UDP, {}; clean: no failure, p99 under {} ms, at least 90 % of the offer achieved; an unclean rate run again {} time(s) before a series stops. Kamailio: {} UDP children per node; Roster: {} routing groups.\n",
            s.step_s, s.target, s.p99_max_ms, s.retries, s.kamailio_children, s.roster_groups
        );
        if !self.steps.is_empty() {
            self.steps_markdown(&mut md);
        }
        if !self.memory.is_empty() {
            self.memory_markdown(&mut md);
        }
        md
    }

    fn steps_markdown(&self, md: &mut String) {
        md.push_str("| system | driver | auth | offered/s | achieved/s | p50 ms | p99 ms | failures | CPU s per 1000 | clean |\n");
        md.push_str("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
        for step in &self.steps {
            let auth = match step.algorithm {
                Some(algorithm) => format!("digest {algorithm}"),
                None => step.auth.name().to_owned(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} |",
                step.system.name(),
                step.driver.name(),
                auth,
                step.rate_offered,
                step.rate_achieved,
                step.p50_ms,
                step.p99_ms,
                step.failures,
                step.cpu_s_per_1000
                    .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.3}")),
                match (&step.unclean, step.attempts) {
                    (None, 1) => "yes".to_owned(),
                    (None, runs) => format!("yes (run {runs})"),
                    (Some(why), 1) => format!("no ({why})"),
                    (Some(why), runs) => format!("no ({why}; {runs} runs)"),
                }
            );
        }
        md.push_str(
            "\n| system | driver | auth | highest clean rate/s |\n| --- | --- | --- | ---: |\n",
        );
        for max in &self.summary {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                max.system.name(),
                max.driver.name(),
                max.auth.name(),
                max.max_clean_rate
                    .map_or_else(|| "none".to_owned(), |r| r.to_string())
            );
        }
        if !self.ratios.is_empty() {
            md.push_str("\n| driver | auth | Roster / Kamailio DMQ | Roster / Kamailio single |\n| --- | --- | ---: | ---: |\n");
            let ratio = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
            for r in &self.ratios {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    r.driver.name(),
                    r.auth.name(),
                    ratio(r.roster_over_kamailio_dmq),
                    ratio(r.roster_over_kamailio_single)
                );
            }
        }
    }

    fn memory_markdown(&self, md: &mut String) {
        {
            md.push_str("\n| system | bindings registered | failures | fill s | PSS before MiB | PSS after MiB | bytes per binding |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
            for r in &self.memory {
                let _ = writeln!(
                    md,
                    "| {} | {} of {} | {} | {:.0} | {:.1} | {:.1} | {} |",
                    r.system.name(),
                    r.bindings_registered,
                    r.bindings_offered,
                    r.failures,
                    r.fill_s,
                    r.pss_before_kib as f64 / 1024.0,
                    r.pss_after_kib as f64 / 1024.0,
                    r.bytes_per_binding
                        .map_or_else(|| "-".to_owned(), |b| format!("{b:.0}"))
                );
            }
        }
    }
}

impl Machine {
    /// Reads /proc and asks the tools for their versions.
    pub fn probe() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        let first_line = |program: &str, arg: &str, pattern: &str| {
            std::process::Command::new(program)
                .arg(arg)
                .output()
                .ok()
                .and_then(|out| {
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    text.lines()
                        .find(|line| line.contains(pattern))
                        .map(|line| line.trim().to_owned())
                })
                .unwrap_or_else(|| format!("{program}: unknown version"))
        };
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            cpu_model: cpuinfo
                .lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map_or_else(String::new, |(_, model)| model.trim().to_owned()),
            memory_mib: meminfo
                .lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |kib| kib / 1024),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            kamailio: first_line("kamailio", "-v", "version"),
            sipp: first_line("sipp", "-v", "SIPp v")
                .trim_start_matches("SIPp ")
                .to_owned(),
            started_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
