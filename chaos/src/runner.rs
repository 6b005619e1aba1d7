//! One run of one scenario, start to report:
//!
//! 1. the cluster is created (`roster init`), its full-disk tmpfs mounted, its relays bound,
//!    the run's firewall chain made, and every node started until each group has a leader;
//! 2. the load runs on every node (one roster-load client per node, sharing one
//!    [`Scheduler`]), the samplers read every node's status, and the nemesis injects faults
//!    one at a time until the duration is spent;
//! 3. everything is healed, the load runs on for the settle time, then stops and drains;
//! 4. the probes (a write per node and group) and the final reads (every AOR through every
//!    node) run;
//! 5. the nodes are stopped, everything started is undone, the checkers read the history, and
//!    the report is written.
//!
//! The load, the nemesis and the phases share one thread (a `LocalSet`): the scheduler is an
//! `Rc<RefCell<_>>`, never borrowed across an `.await`.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::SeedableRng;
use tokio_util::sync::CancellationToken;

use crate::check::across_sites::{self, SiteLoss};
use crate::check::liveness::FaultWindow;
use crate::check::{self, durability, liveness, split_brain};
use crate::cleanup;
use crate::cluster::Cluster;
use crate::faults::disk::Disk;
use crate::faults::firewall::Firewall;
use crate::faults::relay::{RelayPath, Relays};
use crate::monitor::{sample_node, Observed};
use crate::nemesis::{FaultRecord, World, RPO_MARGIN_S};
use crate::report::{self, RunReport};
use crate::scenario::Scenario;
use crate::workload::{drive_node, Scheduler, EXPIRES_S};

/// How long the probes may take after the settle time: a group elects a leader in about a
/// second, a restarted node catches up in a few.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(30);

/// How long the final reads may take in all.
pub const FINAL_READS_DEADLINE: Duration = Duration::from_secs(120);

/// What the command line decided.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The seed (the scenario's unless given).
    pub seed: u64,
    /// Seconds of load with faults (the scenario's unless given).
    pub duration_s: f64,
    /// The `roster` binary.
    pub roster: PathBuf,
    /// Where the results go: `OUT/<scenario>/`.
    pub out: PathBuf,
    /// Keep the nodes' data and certificates.
    pub keep: bool,
    /// The command that replays this run, for the report.
    pub replay: String,
}

/// Runs `scenario` and writes its report; `interrupt` is Ctrl-C.
pub async fn run(
    scenario: &Scenario,
    options: &RunOptions,
    interrupt: CancellationToken,
) -> anyhow::Result<RunReport> {
    cleanup::remove_stale_chains();
    let results = options.out.join(&scenario.name);
    let _ = std::fs::remove_dir_all(&results);
    std::fs::create_dir_all(&results)
        .with_context(|| format!("cannot create {}", results.display()))?;
    let cluster_dir = results.join("cluster");
    let started = Instant::now();
    let outcome = run_phases(scenario, options, &cluster_dir, interrupt).await;
    cleanup::run_all();
    if !options.keep {
        let _ = std::fs::remove_dir_all(cluster_dir.join("pool"));
    }
    let recorded = outcome?;
    let report = report::build(scenario, options, recorded, started.elapsed());
    report::write(&report, &results)?;
    Ok(report)
}

/// What a run recorded, for the checkers and the report.
pub struct Recorded {
    /// The deployment.
    pub deployment: crate::history::Deployment,
    /// Every operation.
    pub ops: Vec<crate::history::Op>,
    /// Every fault.
    pub faults: Vec<FaultRecord>,
    /// The checkers' results.
    pub checkers: Vec<check::CheckerResult>,
    /// Per-fault liveness.
    pub liveness: Vec<liveness::FaultLiveness>,
    /// The scheduler's counters.
    pub counters: crate::workload::SchedulerCounters,
    /// Interrupted by Ctrl-C.
    pub interrupted: bool,
}

async fn run_phases(
    scenario: &Scenario,
    options: &RunOptions,
    dir: &Path,
    interrupt: CancellationToken,
) -> anyhow::Result<Recorded> {
    let spec = &scenario.cluster;
    let users = crate::workload::users(&scenario.workload, spec.sites, spec.groups);
    let mut cluster = Cluster::create(spec, &options.roster, dir, &users).await?;
    let disk = match spec.disk_node {
        Some(node) => Some(Disk::mount(cluster.data_dir(node - 1), spec.disk_mb).await?),
        None => None,
    };
    let relays = if spec.relay || spec.sites > 1 {
        Some(Relays::start(relay_paths(&cluster), options.seed)?)
    } else {
        None
    };
    let firewall = Firewall::create().await?;
    cluster.start_all(users.len()).await?;
    let deployment = cluster.deployment().clone();
    let start = Instant::now();
    let observed = Arc::new(Mutex::new(Observed {
        incarnations: vec![0; cluster.node_count()],
        ..Observed::default()
    }));
    let samplers_stop = CancellationToken::new();
    for node in 0..cluster.node_count() {
        tokio::spawn(sample_node(
            node,
            cluster.http(node),
            start,
            deployment.clone(),
            observed.clone(),
            samplers_stop.clone(),
        ));
    }
    let scheduler = Rc::new(RefCell::new(Scheduler::new(
        &scenario.workload,
        cluster.node_count(),
        spec.sites,
        spec.groups,
        options.seed,
        start,
    )));
    let timers = scenario.workload.timers();
    let drivers_stop = CancellationToken::new();
    let targets: Vec<_> = (0..cluster.node_count())
        .map(|node| cluster.sip(node))
        .collect();
    let mut world = World {
        cluster,
        firewall,
        relays,
        disk,
        observed: observed.clone(),
        failures: Vec::new(),
        cancel: interrupt.clone(),
        start,
        victims: None,
        cms_site: 0,
    };
    let local = tokio::task::LocalSet::new();
    let (faults, final_targets, running_at_end, settled_at) = local
        .run_until(async {
            let mut handles = Vec::new();
            for (node, target) in targets.into_iter().enumerate() {
                handles.push(tokio::task::spawn_local(drive_node(
                    node,
                    target,
                    scheduler.clone(),
                    timers,
                    drivers_stop.clone(),
                )));
            }
            let outcome = script(scenario, options, &mut world, &scheduler, timers.timer_f()).await;
            scheduler.borrow_mut().stop();
            for handle in handles {
                match handle.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => world
                        .failures
                        .push(format!("a load driver failed: {error:#}")),
                    Err(error) => world
                        .failures
                        .push(format!("a load driver panicked: {error}")),
                }
            }
            outcome
        })
        .await;
    samplers_stop.cancel();
    world.cluster.shutdown().await;
    drop(world.relays.take());
    if let Some(disk) = world.disk.take() {
        disk.unmount().await;
    }
    world.firewall.remove();
    let interrupted = interrupt.is_cancelled();
    let ops = Rc::try_unwrap(scheduler)
        .map_err(|_| anyhow::anyhow!("the scheduler is still shared"))?
        .into_inner();
    let counters = ops.counters();
    let ops = ops.into_ops();
    let windows: Vec<FaultWindow> = faults
        .iter()
        .map(|fault| FaultWindow {
            id: fault.id,
            start: Duration::from_secs_f64(fault.start_s),
            heal: Duration::from_secs_f64(fault.heal_s),
        })
        .collect();
    let observed = observed
        .lock()
        .map_err(|_| anyhow::anyhow!("a sampler panicked"))?;
    let expires = Duration::from_secs(u64::from(EXPIRES_S));
    let losses = site_losses(&faults);
    let at_risk = across_sites::at_risk(&ops, &deployment, &losses);
    let mut checkers = vec![
        durability::check(&ops, &deployment, &final_targets, start, expires, &at_risk),
        check::linearizability(&across_sites::linearizable_view(&ops, &deployment, &losses)),
        observed.raft.result(&deployment, settled_at),
    ];
    if deployment.pools.len() > 1 {
        checkers.push(across_sites::check(&ops, &deployment, &losses, &at_risk));
        checkers.push(split_brain::check(&ops, &deployment));
    }
    let (liveness_result, liveness) = liveness::check(
        &ops,
        &deployment,
        &windows,
        &running_at_end,
        &world.failures,
    );
    checkers.push(liveness_result);
    write_history(&ops, &dir.join("..").join("history.jsonl"))?;
    Ok(Recorded {
        deployment,
        ops,
        faults,
        checkers,
        liveness,
        counters,
        interrupted,
    })
}

/// The phases after the cluster is up: faults, heal, settle, drain, probes, final reads.
async fn script(
    scenario: &Scenario,
    options: &RunOptions,
    world: &mut World,
    scheduler: &Rc<RefCell<Scheduler>>,
    timer_f: Duration,
) -> (
    Vec<FaultRecord>,
    BTreeSet<(String, usize)>,
    BTreeSet<usize>,
    Duration,
) {
    let nemesis = &scenario.nemesis;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let end = world.start + Duration::from_secs_f64(options.duration_s);
    let mut faults = Vec::new();
    world.hold(nemesis.warmup_s).await;
    let mut turn = 0usize;
    while Instant::now() < end && !world.cancel.is_cancelled() {
        let fault = if nemesis.random {
            nemesis.faults.choose(&mut rng).cloned()
        } else {
            nemesis.faults.get(turn % nemesis.faults.len()).cloned()
        };
        turn += 1;
        let Some(fault) = fault else { break };
        let record = world
            .run_fault(faults.len() as u64 + 1, &fault, &mut rng)
            .await;
        tracing::info!(
            id = record.id,
            start_s = format!("{:.1}", record.start_s),
            heal_s = format!("{:.1}", record.heal_s),
            "{}",
            record.description
        );
        faults.push(record);
        let quiet = nemesis
            .interval_s
            .min(end.saturating_duration_since(Instant::now()).as_secs_f64());
        world.hold(quiet).await;
        world.restart_crashed().await;
    }
    world.heal_all().await;
    world.hold(scenario.settle_s).await;
    let settled_at = world.start.elapsed();
    scheduler.borrow_mut().stop_arrivals();
    wait_until(timer_f + Duration::from_secs(2), || {
        scheduler.borrow().outstanding() == 0
    })
    .await;
    // A node that crashed or did not come back is not probed; the liveness checker says so.
    let _crashed = world.check_crashes();
    let running = world.cluster.running();
    let now = Instant::now();
    scheduler
        .borrow_mut()
        .enqueue_probes(&running, now, now + PROBE_DEADLINE);
    wait_until(PROBE_DEADLINE + timer_f + Duration::from_secs(2), || {
        scheduler.borrow().outstanding() == 0
    })
    .await;
    let targets = scheduler
        .borrow_mut()
        .enqueue_final_reads(&running, Instant::now());
    wait_until(FINAL_READS_DEADLINE, || {
        scheduler.borrow().outstanding() == 0
    })
    .await;
    (faults, targets, running, settled_at)
}

/// Polls `done` every 100 ms for at most `deadline`.
async fn wait_until(deadline: Duration, done: impl Fn() -> bool) {
    let until = Instant::now() + deadline;
    while !done() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The site losses of a run, as the checkers need them.
fn site_losses(faults: &[FaultRecord]) -> Vec<SiteLoss> {
    faults
        .iter()
        .filter_map(|fault| fault.site_loss.as_ref())
        .map(|loss| SiteLoss {
            pool: loss.pool,
            lost_at: Duration::from_secs_f64(loss.lost_at_s),
            window: Duration::from_secs_f64(loss.lag_s.unwrap_or(0.0) + RPO_MARGIN_S),
        })
        .collect()
}

/// A relay for every ordered pair of nodes the cluster relays (see `cluster`).
fn relay_paths(cluster: &Cluster) -> Vec<RelayPath> {
    let mut paths = Vec::new();
    for from in 0..cluster.node_count() {
        for to in 0..cluster.node_count() {
            if !cluster.spec().relayed(from, to) {
                continue;
            }
            let plan = cluster.plan();
            paths.push(RelayPath {
                from,
                to,
                listen: plan.relay_listen(from, to),
                upstream_bind: plan.relay_upstream(from, to),
                target: (cluster.ip(to), plan.cluster_port()).into(),
            });
        }
    }
    paths
}

/// One operation per line, for post-mortems.
fn write_history(ops: &[crate::history::Op], path: &Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    for op in ops {
        serde_json::to_writer(&mut writer, op)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()?;
    Ok(())
}
