//! `loss`: losing pool a, as issue 18's figures ask. Every node of a is killed (SIGKILL); then
//! - the backup registrar: how long until b answers `200` to a REGISTER of a's user;
//! - failover: `roster pool failover a --disaster` at b, its own time and until b answers a's
//!   user as their owner;
//! - capacity: b's highest clean rate for its own users alone, then for both pools' users;
//! - failback: many users of a registered at b under load, a's nodes restarted, `roster pool
//!   failback a` (again while it refuses because a is still catching up), the pause it reports,
//!   and `roster load --verify` checking every binding b acknowledged is there afterwards.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::json;

use crate::demo::Pool;
use crate::load::{self, Slice};
use crate::scenarios::{demo, highest_clean, measured_json, own_users};
use crate::{http, Args, Scenario};

/// The first user number of the users imported for the failback (homed on a).
const FAILBACK_FIRST_USER: u64 = 100_000;

/// How often a probe REGISTER is started while waiting for a `200`.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// How long the probes may wait for a `200`.
const PROBE_DEADLINE: Duration = Duration::from_secs(90);

/// How long restarted nodes may take to report healthy.
const HEALTH_DEADLINE: Duration = Duration::from_secs(90);

/// How long the failback may be retried while a is catching up.
const FAILBACK_DEADLINE: Duration = Duration::from_secs(180);

/// Load time beyond the fill, covering the restart and the failback.
const FAILBACK_WINDOW: Duration = Duration::from_secs(60);

pub fn run(args: &Args) -> anyhow::Result<serde_json::Value> {
    let Scenario::Loss {
        failback_users,
        fill_rate,
        ref steps,
        wan_latency,
    } = args.scenario
    else {
        bail!("not the loss scenario");
    };
    let demo = demo(args, "loss", 2, wan_latency)?;
    let (a, b) = (demo.pool("a")?.clone(), demo.pool("b")?.clone());
    let dir = demo.dir().to_path_buf();
    let token_file = demo.manifest.admin_token_file.clone();
    let b_url = b.nodes[0]
        .admin_url
        .clone()
        .context("node 4 has no admin URL")?;
    let b_sip = b.nodes[0].sip_udp;
    let (a_first, _) = a.user_range();

    let csv = dir.join("failback-users.csv");
    write_users(&csv, FAILBACK_FIRST_USER, failback_users)?;
    let (seconds, _) = cli(
        args,
        &dir,
        "import",
        &["user", "import"],
        &[
            csv.as_os_str().to_str().unwrap_or_default(),
            "--url",
            &b_url,
            "--token-file",
            path_str(&token_file),
            "--realm",
            "example.com",
        ],
    )?;
    println!("{failback_users} users homed on a imported in {seconds:.1} s");

    for node in &a.nodes {
        // SAFETY: kill(2) of a process the demo started and reported.
        unsafe {
            libc::kill(node.pid as libc::pid_t, libc::SIGKILL);
        }
    }
    let killed = Instant::now();
    println!("killed every node of pool a (SIGKILL)");
    let backup_s = first_200(args, &dir, b_sip, a_first, killed)?;
    println!("backup registrar: b answered 200 for a's user {backup_s:.2} s after the kill");

    // The CMS lives on a: it moves first, as a pool failover of the CMS's pool needs.
    let (cms_s, cms_out) = cli(
        args,
        &dir,
        "cms failover",
        &["cms", "failover"],
        &["--url", &b_url, "--token-file", path_str(&token_file)],
    )?;
    println!("cms failover: the command took {cms_s:.2} s\n{cms_out}");
    let failover_started = Instant::now();
    let (failover_s, failover_out) = cli(
        args,
        &dir,
        "failover",
        &["pool", "failover", "a", "--disaster"],
        &["--url", &b_url, "--token-file", path_str(&token_file)],
    )?;
    let owner_200_s = first_200(args, &dir, b_sip, a_first + 1, failover_started)?;
    println!("failover: the command took {failover_s:.2} s; b answered a's user as owner {owner_200_s:.2} s after it began\n{failover_out}");

    println!("b's capacity, its own users alone:");
    let (alone, alone_steps) = highest_clean(args, &dir, "capacity-own", steps, |rate| {
        own_users(&b, 5000, rate)
    })?;
    println!("b's capacity, both pools' users:");
    let (both, both_steps) = highest_clean(args, &dir, "capacity-both", steps, |rate| {
        let mut slices = own_users(&b, 5000, rate / 2);
        slices.extend(users_at(&b, a_first, 5000, rate - rate / 2));
        slices
    })?;
    println!("b's highest clean rate: {alone}/s for its own users, {both}/s for both pools' users");

    let fill = Duration::from_secs(failback_users.div_ceil(u64::from(fill_rate)));
    println!("registering {failback_users} users of a at b ({fill_rate}/s), then failing back under that load");
    let running = load::start(
        &args.roster,
        &dir,
        "failback-load",
        &users_at(&b, FAILBACK_FIRST_USER, failback_users, fill_rate),
        fill + FAILBACK_WINDOW,
        true,
    )?;
    std::thread::sleep(fill + Duration::from_secs(3));
    let restarted = Instant::now();
    let mut nodes = Restarted::start(args, &dir, &a)?;
    nodes.wait_healthy(&a)?;
    println!(
        "a's nodes restarted and healthy in {:.1} s",
        restarted.elapsed().as_secs_f64()
    );
    let mut attempts = 0;
    let (failback_s, failback_out) = loop {
        attempts += 1;
        let (seconds, output) = cli(
            args,
            &dir,
            "failback",
            &["pool", "failback", "a"],
            &["--url", &b_url, "--token-file", path_str(&token_file)],
        )
        .or_else(|error| {
            if restarted.elapsed() < FAILBACK_DEADLINE {
                Ok((f64::NAN, format!("{error:#}")))
            } else {
                Err(error)
            }
        })?;
        if seconds.is_finite() {
            break (seconds, output);
        }
        println!(
            "  failback refused (attempt {attempts}): {}",
            output.lines().last().unwrap_or_default()
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    let failback_total_s = restarted.elapsed().as_secs_f64();
    println!("failback: the command took {failback_s:.2} s (attempt {attempts}); {failback_total_s:.1} s from a's restart\n{failback_out}");
    let (measured, verified) = running.finish()?;
    println!("load through the failback: {measured:?}; verify: {verified:?}");
    drop(nodes);
    Ok(json!({
        "users_imported": failback_users,
        "backup_registrar_after_kill_s": backup_s,
        "cms_failover_command_s": cms_s,
        "cms_failover_output": cms_out,
        "failover_command_s": failover_s,
        "failover_owner_200_after_command_start_s": owner_200_s,
        "failover_output": failover_out,
        "capacity": { "own_users_alone_per_s": alone, "both_pools_per_s": both, "own_steps": alone_steps, "both_steps": both_steps },
        "failback": {
            "users": failback_users, "fill_rate": fill_rate, "command_s": failback_s, "attempts": attempts,
            "from_restart_s": failback_total_s, "output": failback_out,
            "load": measured_json(&measured),
            "verify": verified.map(|v| json!({ "aors": v.aors, "bindings": v.bindings, "missing": v.missing, "unverified": v.unverified })),
        },
    }))
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// `users` users from `first`, homed on a, password `bench`.
fn write_users(path: &Path, first: u64, users: u64) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(file, "aor,password,pool")?;
    for n in first..first + users {
        writeln!(file, "sip:u{n}@example.com,bench,a")?;
    }
    file.flush()?;
    Ok(())
}

/// Slices of `users` users from `first` (of any pool) sent to `pool`'s nodes.
fn users_at(pool: &Pool, first: u64, users: u64, rate: u32) -> Vec<Slice> {
    let targets: Vec<SocketAddr> = pool.nodes.iter().map(|node| node.sip_udp).collect();
    load::spread(&targets, first, users, rate)
}

/// Runs `roster ARGS… EXTRA…`; its time and output, or an error with its output when it
/// exits non-zero.
fn cli(
    args: &Args,
    dir: &Path,
    name: &str,
    words: &[&str],
    extra: &[&str],
) -> anyhow::Result<(f64, String)> {
    let started = Instant::now();
    let output = Command::new(&args.roster)
        .args(words)
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run roster {name}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!(
            "roster {} exited with {}: {text}",
            words.join(" "),
            output.status
        );
    }
    Ok((seconds, text))
}

/// Seconds from `since` until a REGISTER of user `u{user}` sent to `target` is answered
/// `200`: a probe starts every [`PROBE_EVERY`], each a `roster load` of one REGISTER; the
/// first probe answered `200` counts at its end.
fn first_200(
    args: &Args,
    dir: &Path,
    target: SocketAddr,
    user: u64,
    since: Instant,
) -> anyhow::Result<f64> {
    let (sender, receiver) = mpsc::channel::<Instant>();
    let deadline = Instant::now() + PROBE_DEADLINE;
    let mut probe = 0u64;
    loop {
        if let Ok(at) = receiver.try_recv() {
            return Ok(at.saturating_duration_since(since).as_secs_f64());
        }
        if Instant::now() >= deadline {
            bail!("no 200 from {target} for u{user} within {PROBE_DEADLINE:?}");
        }
        probe += 1;
        let json = dir.join(format!("probe-{user}-{probe}.json"));
        let mut command = Command::new(&args.roster);
        command
            .arg("load")
            .arg(target.to_string())
            .args([
                "--users",
                "1",
                "--first-user",
                &user.to_string(),
                "--count",
                "1",
                "--rate",
                "1",
            ])
            .args([
                "--mix",
                "register=1",
                "--t1-ms",
                "100",
                "--drain",
                "8s",
                "--json",
            ])
            .arg(&json)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let sender = sender.clone();
        std::thread::spawn(move || {
            let finished = command.status().is_ok();
            let answered = finished
                && std::fs::read_to_string(&json)
                    .ok()
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                    .is_some_and(|report| {
                        report["answered"].as_u64() == Some(1)
                            && report["errors"].as_u64() == Some(0)
                    });
            if answered {
                let _ = sender.send(Instant::now());
            }
        });
        std::thread::sleep(PROBE_EVERY);
    }
}

/// Pool a's nodes started again from their configurations, stopped when dropped.
struct Restarted {
    children: Vec<Child>,
}

impl Restarted {
    fn start(args: &Args, dir: &Path, pool: &Pool) -> anyhow::Result<Restarted> {
        let mut children = Vec::new();
        for node in &pool.nodes {
            let log: PathBuf = dir.join(format!("restarted-node-{}.log", node.id));
            let out = std::fs::File::create(&log)?;
            let mut command = Command::new(&args.roster);
            command
                .arg("start")
                .arg("--config")
                .arg(&node.config)
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out);
            roster_benches::driving::die_with_parent(&mut command);
            children.push(command.spawn().context("cannot restart a node")?);
        }
        Ok(Restarted { children })
    }

    fn wait_healthy(&mut self, pool: &Pool) -> anyhow::Result<()> {
        let deadline = Instant::now() + HEALTH_DEADLINE;
        for address in pool.http_addresses() {
            while http::get(address, "/health", None).is_err() {
                if Instant::now() >= deadline {
                    bail!("node at {address} not healthy within {HEALTH_DEADLINE:?}");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(())
    }
}

impl Drop for Restarted {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
