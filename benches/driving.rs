//! Running benchmark drivers as child processes and reading what `roster load` reports: shared
//! by `registrar-bench` and `sites-bench`.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// What a step measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Measured {
    /// Completed registrations per second.
    pub achieved_per_s: f64,
    /// Median latency of a registration (challenge included), ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Registrations acknowledged with 200.
    pub registered: u64,
    /// Registrations that failed, timed out or never finished.
    pub failed: u64,
}

/// Registrations of a `roster load` report: the storm's `register` rows and the `refresh`
/// rows (a user registering again). Their p99 is the larger of the two rows' p99s, an upper
/// bound of the merged 99th percentile; the p50 is their count-weighted mean.
pub fn measured_from_report(report: &serde_json::Value) -> Measured {
    let number = |key: &str| {
        report
            .get(key)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    let rows: Vec<&serde_json::Value> = report
        .get("operations")
        .and_then(serde_json::Value::as_array)
        .map(|rows| {
            rows.iter()
                .filter(|row| row["outcome"] == "all")
                .filter(|row| row["operation"] == "register" || row["operation"] == "refresh")
                .collect()
        })
        .unwrap_or_default();
    let field = |row: &serde_json::Value, key: &str| row[key].as_f64().unwrap_or(0.0);
    let count: f64 = rows.iter().map(|row| field(row, "count")).sum();
    let p50_ms = if count > 0.0 {
        rows.iter()
            .map(|row| field(row, "p50_ms") * field(row, "count"))
            .sum::<f64>()
            / count
    } else {
        0.0
    };
    let p99_ms = rows
        .iter()
        .map(|row| field(row, "p99_ms"))
        .fold(0.0, f64::max);
    let failed = (number("errors") + number("unfinished")) as u64;
    Measured {
        achieved_per_s: number("rate_achieved_per_s"),
        p50_ms,
        p99_ms,
        registered: (number("completed") as u64).saturating_sub(number("errors") as u64),
        failed,
    }
}

/// Runs `command` in `dir` with its output to `output`, killed at `deadline`.
pub fn run_with_deadline(
    mut command: Command,
    dir: &Path,
    output: &Path,
    deadline: Duration,
) -> anyhow::Result<()> {
    let file = std::fs::File::create(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    let stderr = file
        .try_clone()
        .with_context(|| format!("cannot reopen {}", output.display()))?;
    let program = command.get_program().to_string_lossy().into_owned();
    die_with_parent(&mut command);
    let mut child = command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let end = Instant::now() + deadline;
    loop {
        if child
            .try_wait()
            .with_context(|| format!("cannot wait for {program}"))?
            .is_some()
        {
            // A non-zero exit (failed calls, nothing answered) is a result, not an error.
            return Ok(());
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("  {program} killed after {deadline:?}");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Makes the command's process receive SIGTERM when the benchmark dies, even by SIGKILL.
pub fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent; it runs in the
    // child between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}
