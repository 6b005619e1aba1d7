//! The scenarios `rpo`, `cost` and `catch-up` (`loss` is in its own module), and what they
//! share: a demo per run, the figures printed and written as JSON.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use roster_benches::driving::Measured;
use serde_json::json;

use crate::cut::Cut;
use crate::demo::{Demo, DemoSpec, Pool};
use crate::lag::{self, Samplers, Spread};
use crate::load::{self, Slice};
use crate::{Args, Scenario, Steps};

/// Time for elections and the first backup streams to settle after a demo is ready.
pub const SETTLE: Duration = Duration::from_secs(5);

/// Runs the scenario `args` names.
pub fn run(args: &Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    if !args.roster.is_file() {
        anyhow::bail!(
            "{} is not the roster executable (cargo build --release -p roster --bin roster)",
            args.roster.display()
        );
    }
    let (name, figures) = match args.scenario {
        Scenario::Rpo {
            rate,
            wan_latency,
            seconds,
        } => ("rpo", rpo(args, rate, wan_latency, seconds)?),
        Scenario::Cost {
            ref steps,
            rounds,
            wan_latency,
        } => ("cost", cost(args, steps, rounds, wan_latency)?),
        Scenario::CatchUp {
            rate,
            cut_seconds,
            wan_latency,
        } => ("catch-up", catch_up(args, rate, cut_seconds, wan_latency)?),
        Scenario::Loss { .. } => ("loss", crate::loss::run(args)?),
    };
    let path = args.out.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&figures)?)?;
    println!("figures written to {}", path.display());
    Ok(())
}

/// A demo of `sites` sites for this run, in `OUT/name`.
pub fn demo(args: &Args, name: &str, sites: u8, wan_latency_ms: u64) -> anyhow::Result<Demo> {
    println!("starting a demo of {sites} site(s), WAN {wan_latency_ms} ms ({name})");
    let demo = Demo::start(
        &args.roster,
        &args.out.join(name),
        &DemoSpec {
            sites,
            wan_latency_ms,
            sip_port: args.sip_port,
            http_port: args.http_port,
        },
    )?;
    std::thread::sleep(SETTLE);
    Ok(demo)
}

/// Samplers of both directions of the demo's pools `a` and `b`, each at its source's first node.
fn samplers(demo: &Demo, a: &Pool, b: &Pool) -> anyhow::Result<Samplers> {
    let http = |pool: &Pool| {
        pool.nodes
            .first()
            .and_then(|node| node.http)
            .with_context(|| format!("pool {}'s first node has no HTTP address", pool.name))
    };
    Ok(Samplers::start(
        (&a.name, http(a)?),
        (&b.name, http(b)?),
        &demo.token,
    ))
}

/// Slices sending `rate` REGISTER/s for up to `users` of `pool`'s own users (from its first)
/// to its nodes.
pub fn own_users(pool: &Pool, users: u64, rate: u32) -> Vec<Slice> {
    let (first, count) = pool.user_range();
    let targets: Vec<SocketAddr> = pool.nodes.iter().map(|node| node.sip_udp).collect();
    load::spread(&targets, first, count.min(users), rate)
}

/// A load's figures as JSON.
pub fn measured_json(measured: &Measured) -> serde_json::Value {
    json!({
        "achieved_per_s": measured.achieved_per_s,
        "p50_ms": measured.p50_ms,
        "p99_ms": measured.p99_ms,
        "registered": measured.registered,
        "failed": measured.failed,
    })
}

fn spread_json(spread: &Spread) -> serde_json::Value {
    json!({ "samples": spread.count, "p50_s": spread.p50, "p99_s": spread.p99, "max_s": spread.max })
}

fn rpo(
    args: &Args,
    rate: u32,
    wan_latency: u64,
    seconds: u64,
) -> anyhow::Result<serde_json::Value> {
    let demo = demo(args, "rpo", 2, wan_latency)?;
    let (a, b) = (demo.pool("a")?, demo.pool("b")?);
    let sampler = samplers(&demo, a, b)?;
    let mut slices = own_users(a, u64::MAX, rate);
    slices.extend(own_users(b, u64::MAX, rate));
    println!("{rate} REGISTER/s into each pool for {seconds} s, WAN {wan_latency} ms one way");
    let began = sampler.elapsed();
    let measured = load::run(
        &args.roster,
        demo.dir(),
        "rpo-load",
        &slices,
        Duration::from_secs(seconds),
    )?;
    let ended = sampler.elapsed();
    // The last entries' lag drains after the load: sample a little longer.
    std::thread::sleep(Duration::from_secs(3));
    let (samples, errors) = sampler.stop();
    let sampled = lag::sampled_lag(&samples, began..ended + Duration::from_secs(3));
    let a_to_b = lag::delays(&a.http_addresses())?;
    let b_to_a = lag::delays(&b.http_addresses())?;
    println!("load: {measured:?}");
    let mut directions = serde_json::Map::new();
    for (name, delays) in [("a→b", &a_to_b), ("b→a", &b_to_a)] {
        let spread = sampled.get(name).copied().unwrap_or_default();
        println!(
            "{name}: sampled lag p50 {:.3} s, p99 {:.3} s, max {:.3} s ({} samples); \
             per entry ({}): p50 ≤ {} s, p99 ≤ {} s, max ≤ {} s, over 1 s {:.4}%",
            spread.p50,
            spread.p99,
            spread.max,
            spread.count,
            delays.count(),
            delays.quantile_bound(0.5),
            delays.quantile_bound(0.99),
            delays.quantile_bound(1.0),
            delays.share_over(1.0) * 100.0
        );
        directions.insert(
            name.to_string(),
            json!({
                "sampled_lag": spread_json(&spread),
                "entries": delays.count(),
                "entry_delay_p50_le_s": delays.quantile_bound(0.5),
                "entry_delay_p99_le_s": delays.quantile_bound(0.99),
                "entry_delay_max_le_s": delays.quantile_bound(1.0),
                "entries_over_1s_share": delays.share_over(1.0),
            }),
        );
    }
    Ok(json!({
        "rate_per_pool": rate, "wan_latency_ms": wan_latency, "seconds": seconds,
        "load": measured_json(&measured), "sampler_errors": errors,
        "directions": directions,
    }))
}

/// The highest clean rate of `slices_at(rate)`, stepping through `rates` until a step is not
/// clean; every step's figures.
pub fn highest_clean(
    args: &Args,
    dir: &Path,
    name: &str,
    steps: &Steps,
    slices_at: impl Fn(u32) -> Vec<Slice>,
) -> anyhow::Result<(u32, Vec<serde_json::Value>)> {
    let (step, p99_max_ms) = (Duration::from_secs(steps.step_seconds), steps.p99_max_ms);
    let mut best = 0;
    let mut figures_of_steps = Vec::new();
    for &rate in &steps.rates {
        let mut measured = load::run(&args.roster, dir, name, &slices_at(rate), step)?;
        let mut clean = load::clean(&measured, p99_max_ms);
        for _ in 0..steps.retries {
            if clean {
                break;
            }
            // One stall of a shared machine can push a 10 s step's p99 over the bound.
            println!(
                "  {name} {rate}/s: p99 {:.1} ms, failed {}: once more",
                measured.p99_ms, measured.failed
            );
            measured = load::run(&args.roster, dir, name, &slices_at(rate), step)?;
            clean = load::clean(&measured, p99_max_ms);
        }
        println!(
            "  {name} {rate}/s: achieved {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, failed {}{}",
            measured.achieved_per_s,
            measured.p50_ms,
            measured.p99_ms,
            measured.failed,
            if clean { "" } else { "  (not clean)" }
        );
        let mut figures = measured_json(&measured);
        figures["offered_per_s"] = json!(rate);
        figures["clean"] = json!(clean);
        figures_of_steps.push(figures);
        if !clean {
            break;
        }
        best = rate;
    }
    Ok((best, figures_of_steps))
}

fn cost(
    args: &Args,
    steps: &Steps,
    rounds: u32,
    wan_latency: u64,
) -> anyhow::Result<serde_json::Value> {
    // The first pool's first 5,000 users in both layouts (one site's pool has all 10,000).
    const USERS: u64 = 5000;
    let mut runs = Vec::new();
    for round in 1..=rounds {
        for sites in [1u8, 2] {
            let label = if sites == 1 { "unpaired" } else { "paired" };
            let demo = demo(args, &format!("cost-{label}"), sites, wan_latency)?;
            // The first pool: `a` of two sites, `demo` of one.
            let pool = demo
                .manifest
                .pools
                .first()
                .context("the demo has no pool")?
                .clone();
            println!("round {round}, pool a {label}:");
            let (best, figures) = highest_clean(args, demo.dir(), "cost-load", steps, |rate| {
                own_users(&pool, USERS, rate)
            })?;
            println!("round {round}, pool a {label}: highest clean rate {best}/s");
            runs.push(json!({ "round": round, "pairing": sites == 2, "highest_clean_per_s": best, "steps": figures }));
        }
    }
    Ok(json!({ "p99_max_ms": steps.p99_max_ms, "step_seconds": steps.step_seconds, "runs": runs }))
}

fn catch_up(
    args: &Args,
    rate: u32,
    cut_seconds: u64,
    wan_latency: u64,
) -> anyhow::Result<serde_json::Value> {
    const BEFORE: Duration = Duration::from_secs(15);
    const AFTER_MAX: Duration = Duration::from_secs(60);
    let demo = demo(args, "catch-up", 2, wan_latency)?;
    let (a, b) = (demo.pool("a")?, demo.pool("b")?);
    let fronts: Vec<SocketAddr> = a
        .nodes
        .iter()
        .chain(&b.nodes)
        .filter_map(|node| node.wan)
        .collect();
    let sampler = samplers(&demo, a, b)?;
    let mut slices = own_users(a, u64::MAX, rate);
    slices.extend(own_users(b, u64::MAX, rate));
    let cut_for = Duration::from_secs(cut_seconds);
    let total = BEFORE + cut_for + AFTER_MAX;
    let running = load::start(
        &args.roster,
        demo.dir(),
        "catch-up-load",
        &slices,
        total,
        false,
    )?;
    std::thread::sleep(BEFORE);
    println!("cutting the inter-site link for {cut_seconds} s under {rate} REGISTER/s per pool");
    let cut = Cut::start(fronts)?;
    let cut_at = sampler.elapsed();
    std::thread::sleep(cut_for);
    cut.heal()?;
    let healed_at = sampler.elapsed();
    println!("healed; waiting until every direction lags under 1 s");
    let deadline = Instant::now() + AFTER_MAX;
    let mut directions = sampler.first_under(healed_at, 1.0);
    while Instant::now() < deadline
        && (directions.len() < 2 || directions.iter().any(|(_, at)| at.is_none()))
    {
        std::thread::sleep(lag::SAMPLE_EVERY);
        directions = sampler.first_under(healed_at, 1.0);
    }
    for (name, at) in &directions {
        match at {
            Some(at) => println!("{name}: under 1 s {:.2} s after the heal", at.as_secs_f64()),
            None => println!("{name}: NOT under 1 s within {AFTER_MAX:?} of the heal"),
        }
    }
    let caught_up = if directions.len() == 2 {
        directions
            .iter()
            .map(|(_, at)| *at)
            .try_fold(Duration::ZERO, |most, at| at.map(|at| most.max(at)))
    } else {
        None
    };
    let (measured, _) = running.finish()?;
    let (samples, errors) = sampler.stop();
    let during = lag::sampled_lag(&samples, cut_at..healed_at);
    for (name, spread) in &during {
        println!("{name} during the cut: lag max {:.1} s", spread.max);
    }
    match caught_up {
        Some(after) => println!("caught up {:.2} s after the heal", after.as_secs_f64()),
        None => println!("NOT caught up within {AFTER_MAX:?} of the heal"),
    }
    println!("load: {measured:?}");
    Ok(json!({
        "rate_per_pool": rate, "cut_s": cut_seconds, "wan_latency_ms": wan_latency,
        "caught_up_after_heal_s": caught_up.map(|after| after.as_secs_f64()),
        "under_1s_after_heal_s": directions.iter().map(|(name, at)| (name.clone(), at.map(|at| at.as_secs_f64()))).collect::<std::collections::BTreeMap<_, _>>(),
        "lag_max_during_cut_s": during.iter().map(|(name, spread)| (name.clone(), spread.max)).collect::<std::collections::BTreeMap<_, _>>(),
        "load": measured_json(&measured), "sampler_errors": errors,
    }))
}
