//! What `/proc` says about a system's processes: who descends from whom, CPU time, and
//! proportional set size (PSS: shared pages divided among the processes sharing them, so
//! Kamailio's forked workers, which share its shm, are not counted once per process).

use anyhow::Context as _;

/// The process `root` and every process descending from it, `root` first.
pub fn descendants(root: u32) -> Vec<u32> {
    let parents = parent_table();
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        index += 1;
    }
    found
}

/// User plus system CPU seconds of `pids`; processes gone meanwhile count nothing.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    let ticks: u64 = pids
        .iter()
        .filter_map(|pid| stat_fields(*pid))
        .filter_map(|fields| {
            // After the command name: state is field 3 of stat(5), utime 14, stime 15.
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .sum();
    ticks as f64 / clock_ticks_per_second()
}

/// Summed PSS of `pids`, KiB.
pub fn pss_kib(pids: &[u32]) -> anyhow::Result<u64> {
    let mut total = 0;
    for pid in pids {
        let path = format!("/proc/{pid}/smaps_rollup");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let pss = text
            .lines()
            .find_map(|line| line.strip_prefix("Pss:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .with_context(|| format!("no Pss line in {path}"))?;
        total += pss;
    }
    Ok(total)
}

/// Whether `pid` runs (exists and is not a zombie waiting for its parent).
pub fn is_running(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|fields| fields.first().is_some_and(|state| state != "Z"))
}

/// (pid, parent pid) of every process.
fn parent_table() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let ppid = stat_fields(pid)?.get(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// The fields of `/proc/PID/stat` after the command name (which may hold spaces), from the
/// state on.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_descends_from_itself_and_uses_cpu() {
        let me = std::process::id();
        assert_eq!(descendants(me)[0], me);
        assert!(is_running(me));
        assert!(cpu_seconds(&[me]) >= 0.0);
        assert!(pss_kib(&[me]).is_ok_and(|kib| kib > 0));
    }
}
