//! The nemesis: which faults a scenario injects ([`FaultSpec`], [`NemesisSpec`]), the choice
//! of targets from the run's seed, and each fault's injection and heal on the [`World`],
//! recorded as a [`FaultRecord`].
//!
//! One fault at a time: inject, hold, heal, then a quiet interval. Partitions are sets of
//! directed cuts between nodes' addresses ([`partition_cuts`], pure and tested), so every
//! shape (one node isolated, a minority, majorities in a ring, a bridge) and one-way cuts are
//! the same mechanism.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom as _, SliceRandom as _};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::faults::disk::Disk;
use crate::faults::firewall::Firewall;
use crate::faults::relay::{LinkShape, Relays};
use crate::monitor::{http_get, Observed};

/// How a partition splits the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionShape {
    /// One random node cut off from all others.
    Isolate,
    /// A random minority (⌊(n−1)/2⌋ nodes) cut off from the majority.
    Minority,
    /// Each node sees only its neighbours on a ring: every node sees a majority (with 5
    /// nodes), but no two see the same one (Jepsen's majorities ring).
    MajoritiesRing,
    /// Two halves that cannot see each other, and one node that sees both.
    Bridge,
}

/// One kind of fault and its timing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FaultSpec {
    /// SIGKILL a node (`node`, 1-based, or each in turn from a random one), start it again
    /// after `down_s`.
    Kill {
        /// The node, or any.
        node: Option<usize>,
        /// Seconds before the restart.
        down_s: f64,
    },
    /// SIGKILL the leader of a random routing group, start it again after `down_s`.
    LeaderKill {
        /// Seconds before the restart.
        down_s: f64,
    },
    /// SIGSTOP a node (`node`, or each in turn) for `pause_s` (longer than the election
    /// timeout), then SIGCONT.
    Pause {
        /// The node, or any.
        node: Option<usize>,
        /// Seconds paused.
        pause_s: f64,
    },
    /// SIGTERM and start every node in turn, `gap_s` apart.
    RollingRestart {
        /// Seconds between one node being ready and the next one's stop.
        gap_s: f64,
    },
    /// Cut the cluster traffic along a partition for `hold_s`.
    Partition {
        /// How the nodes are split.
        shape: PartitionShape,
        /// Seconds held.
        hold_s: f64,
        /// Only one direction of each cut (from the first side to the second).
        #[serde(default)]
        one_way: bool,
    },
    /// Drop `share` of the packets between a random pair of nodes for `hold_s`.
    Lossy {
        /// Share dropped, 0..=1 (1: a cut).
        share: f64,
        /// Seconds held.
        hold_s: f64,
        /// Only one direction.
        #[serde(default)]
        one_way: bool,
    },
    /// Delay every packet to and from a random node by `delay_ms ± jitter_ms` for `hold_s`
    /// (needs `[cluster] relay = true`).
    Delay {
        /// Mean one-way delay, ms.
        delay_ms: u64,
        /// Jitter, ms.
        jitter_ms: u64,
        /// Seconds held.
        hold_s: f64,
    },
    /// A partition switched on and off every `period_s` for `hold_s`.
    Flap {
        /// How the nodes are split while on.
        shape: PartitionShape,
        /// Seconds on, then seconds off.
        period_s: f64,
        /// Seconds in all.
        hold_s: f64,
    },
    /// Cut the link between the two sites (every relayed path between them drops all) for
    /// `hold_s`.
    SiteCut {
        /// Seconds held.
        hold_s: f64,
    },
    /// Cut the link between the sites and mend it every `period_s`, for `hold_s` in all.
    SiteFlap {
        /// Seconds cut, then seconds up.
        period_s: f64,
        /// Seconds in all.
        hold_s: f64,
    },
    /// Delay every packet between the sites by `delay_ms ± jitter_ms` for `hold_s`.
    WanDelay {
        /// Mean one-way delay, ms.
        delay_ms: u64,
        /// Jitter, ms.
        jitter_ms: u64,
        /// Seconds held.
        hold_s: f64,
    },
    /// Lose a site: SIGKILL every node of `site` (1-based, default 1), wait `down_s` (the
    /// partner serves its users as backup registrar after its detection interval), `roster
    /// cms failover` when the CMS lived there, `roster pool failover POOL --disaster`, serve
    /// `serve_s` from the partner, start the site's nodes again and `roster pool failback
    /// POOL` (retried while the pool catches up).
    SiteLoss {
        /// The site lost, 1-based.
        #[serde(default = "default_site")]
        site: usize,
        /// Seconds down before the failover.
        down_s: f64,
        /// Seconds the partner serves as owner before the site comes back.
        serve_s: f64,
    },
    /// Fill the disk of `[cluster] disk_node` for `hold_s`; with `restart`, the node is
    /// stopped (SIGTERM, as an operator would) while the disk is full and started again once
    /// it is freed.
    FullDisk {
        /// Seconds full.
        hold_s: f64,
        /// Stop while full, free, start.
        #[serde(default)]
        restart: bool,
        /// With `restart`: also try to start the node while the disk is still full (sled
        /// writes its page-table snapshot when it opens), stop it again if it came up, and
        /// only then free the space and start it.
        #[serde(default)]
        start_while_full: bool,
    },
}

impl FaultSpec {
    /// The kind's name in reports.
    pub fn kind(&self) -> &'static str {
        match self {
            FaultSpec::Kill { .. } => "kill",
            FaultSpec::LeaderKill { .. } => "leader-kill",
            FaultSpec::Pause { .. } => "pause",
            FaultSpec::RollingRestart { .. } => "rolling-restart",
            FaultSpec::Partition { .. } => "partition",
            FaultSpec::Lossy { .. } => "lossy",
            FaultSpec::Delay { .. } => "delay",
            FaultSpec::Flap { .. } => "flap",
            FaultSpec::FullDisk { .. } => "full-disk",
            FaultSpec::SiteCut { .. } => "site-cut",
            FaultSpec::SiteFlap { .. } => "site-flap",
            FaultSpec::WanDelay { .. } => "wan-delay",
            FaultSpec::SiteLoss { .. } => "site-loss",
        }
    }

    /// Whether it needs two sites.
    pub fn needs_two_sites(&self) -> bool {
        matches!(
            self,
            FaultSpec::SiteCut { .. }
                | FaultSpec::SiteFlap { .. }
                | FaultSpec::WanDelay { .. }
                | FaultSpec::SiteLoss { .. }
        )
    }
}

fn default_site() -> usize {
    1
}

/// How long a failover or failback command may run (it first asks every node, the dead ones
/// with timeouts of its own, then runs its steps, each retried against electing groups).
const OPERATION_DEADLINE: Duration = Duration::from_secs(120);

/// How long a failback is retried while the returning pool catches up (it is refused until
/// the pool's copies have caught up).
const FAILBACK_RETRY_FOR: Duration = Duration::from_secs(90);

/// Added to the measured backup lag when bounding what a site loss may cost: the lag is
/// sampled once, a moment before the loss, and the stream ships in batches.
pub const RPO_MARGIN_S: f64 = 1.0;

/// The `[nemesis]` of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NemesisSpec {
    /// Seconds of load before the first fault. Default 3.
    #[serde(default = "default_warmup_s")]
    pub warmup_s: f64,
    /// Quiet seconds between a heal and the next fault. Default 4.
    #[serde(default = "default_interval_s")]
    pub interval_s: f64,
    /// Take the faults in a random order (from the seed) instead of in turn.
    #[serde(default)]
    pub random: bool,
    /// The faults.
    pub faults: Vec<FaultSpec>,
}

fn default_warmup_s() -> f64 {
    3.0
}

fn default_interval_s() -> f64 {
    4.0
}

/// One fault as injected.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultRecord {
    /// Its number in the run, from 1.
    pub id: u64,
    /// Its kind.
    pub kind: String,
    /// What was done, in words.
    pub description: String,
    /// The nodes it targeted (1-based ids).
    pub nodes: Vec<usize>,
    /// When it began, seconds from the run's start.
    pub start_s: f64,
    /// When it was healed.
    pub heal_s: f64,
    /// For a site loss: what the across-sites checker needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_loss: Option<SiteLossRecord>,
}

/// One site loss, as the across-sites and split-brain checkers read it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SiteLossRecord {
    /// The pool lost (index into the deployment's pools).
    pub pool: usize,
    /// When its nodes were killed, from the run's start.
    pub lost_at_s: f64,
    /// The backup lag from the lost pool to its partner, measured a moment before the loss
    /// (largest over the groups), seconds; `None` when no node answered.
    pub lag_s: Option<f64>,
    /// Seconds the disaster failover command took (with the CMS failover before it, if any).
    pub failover_s: f64,
    /// Seconds from the pool's restart until a failback command succeeded.
    pub failback_s: Option<f64>,
}

/// What the nemesis acts on.
pub struct World {
    /// The processes.
    pub cluster: Cluster,
    /// Link cuts.
    pub firewall: Firewall,
    /// Delays, when the scenario routes through relays.
    pub relays: Option<Relays>,
    /// The full-disk node's tmpfs.
    pub disk: Option<Disk>,
    /// What the samplers see (leaders) and the incarnations they stamp.
    pub observed: Arc<Mutex<Observed>>,
    /// Things that went wrong that only an anomaly explains (a node that does not start).
    pub failures: Vec<String>,
    /// Interrupted (Ctrl-C): holds end at once.
    pub cancel: CancellationToken,
    /// The run's start.
    pub start: Instant,
    /// Kills and pauses without a named node take the nodes in turn from a random first one,
    /// so that every node is hit: (first, taken so far).
    pub victims: Option<(usize, usize)>,
    /// The site whose pool holds the CMS (it moves with `roster cms failover`).
    pub cms_site: usize,
}

impl World {
    fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The next node for a kill or pause that names none.
    fn next_victim(&mut self, rng: &mut StdRng) -> usize {
        let nodes = self.cluster.node_count();
        let (first, taken) = *self
            .victims
            .get_or_insert_with(|| (rng.random_range(0..nodes), 0));
        self.victims = Some((first, taken + 1));
        (first + taken) % nodes
    }

    /// Sleeps `seconds`, or less when interrupted.
    pub async fn hold(&self, seconds: f64) {
        let duration = Duration::from_secs_f64(seconds.max(0.0));
        tokio::select! {
            () = self.cancel.cancelled() => {}
            () = tokio::time::sleep(duration) => {}
        }
    }

    /// Starts node `index` again; a failure is recorded (the run goes on). The samplers are
    /// told the new incarnation before the process can answer them.
    async fn restart(&mut self, index: usize) {
        if let Ok(mut observed) = self.observed.lock() {
            if let Some(incarnation) = observed.incarnations.get_mut(index) {
                *incarnation = self.cluster.incarnation(index) + 1;
            }
        }
        if let Err(error) = self.cluster.start(index).await {
            let at = self.now_s();
            self.failures.push(format!(
                "node {} did not start again at {at:.1} s: {error:#}",
                index + 1
            ));
        }
        self.stamp_incarnations();
    }

    fn stamp_incarnations(&self) {
        if let Ok(mut observed) = self.observed.lock() {
            observed.incarnations = (0..self.cluster.node_count())
                .map(|index| self.cluster.incarnation(index))
                .collect();
        }
    }

    /// Undoes everything: cuts, delays, a full disk, paused and stopped nodes. Also notes
    /// nodes that exited by themselves.
    pub async fn heal_all(&mut self) {
        self.check_crashes();
        if let Err(error) = self.firewall.heal().await {
            self.failures
                .push(format!("cannot remove the cuts: {error:#}"));
        }
        if let Some(relays) = &self.relays {
            relays.heal();
        }
        if let Some(disk) = &self.disk {
            disk.free();
        }
        for index in 0..self.cluster.node_count() {
            self.cluster.resume(index);
            if self.cluster.is_stopped(index) {
                self.restart(index).await;
            }
        }
    }

    /// Records nodes whose process exited without being told to, and starts them again, as a
    /// supervisor (systemd) would.
    pub async fn restart_crashed(&mut self) {
        for index in self.check_crashes() {
            self.restart(index).await;
        }
    }

    /// Records nodes whose process exited without being told to; returns them (stopped).
    pub fn check_crashes(&mut self) -> Vec<usize> {
        let exited = self.cluster.reap_exited();
        for &index in &exited {
            let at = self.now_s();
            let cause = self
                .cluster
                .last_panic(index)
                .unwrap_or_else(|| format!("its log ends:\n{}", self.cluster.log_tail(index, 10)));
            self.failures.push(format!(
                "node {} exited by itself at {at:.1} s: {cause}",
                index + 1
            ));
        }
        exited
    }

    /// Injects `fault`, holds it, heals it; returns the record.
    pub async fn run_fault(&mut self, id: u64, fault: &FaultSpec, rng: &mut StdRng) -> FaultRecord {
        let nodes = self.cluster.node_count();
        let start_s = self.now_s();
        let mut targets = Vec::new();
        let mut site_loss = None;
        let description = match *fault {
            FaultSpec::Kill { node, down_s } => {
                let index = node.map_or_else(|| self.next_victim(rng), |n| n - 1);
                targets.push(index);
                self.cluster.kill(index).await;
                self.hold(down_s).await;
                self.restart(index).await;
                format!("SIGKILL node {}, restarted after {down_s} s", index + 1)
            }
            FaultSpec::LeaderKill { down_s } => {
                let leaders = self
                    .observed
                    .lock()
                    .map(|observed| observed.raft.leaders())
                    .unwrap_or_default();
                let (group, index) = leaders
                    .choose(rng)
                    .copied()
                    .unwrap_or((0, rng.random_range(0..nodes)));
                targets.push(index);
                self.cluster.kill(index).await;
                self.hold(down_s).await;
                self.restart(index).await;
                format!(
                    "SIGKILL node {} (leader of group {group}), restarted after {down_s} s",
                    index + 1
                )
            }
            FaultSpec::Pause { node, pause_s } => {
                let index = node.map_or_else(|| self.next_victim(rng), |n| n - 1);
                targets.push(index);
                self.cluster.pause(index);
                self.hold(pause_s).await;
                self.cluster.resume(index);
                format!("SIGSTOP node {} for {pause_s} s", index + 1)
            }
            FaultSpec::RollingRestart { gap_s } => {
                for index in 0..nodes {
                    targets.push(index);
                    self.cluster.stop(index).await;
                    self.restart(index).await;
                    if index + 1 < nodes {
                        self.hold(gap_s).await;
                    }
                }
                format!("SIGTERM and start each node in turn, {gap_s} s apart")
            }
            FaultSpec::Partition {
                shape,
                hold_s,
                one_way,
            } => {
                let cuts = partition_cuts(shape, nodes, one_way, rng);
                targets = touched(&cuts);
                self.apply_cuts(&cuts, 1.0).await;
                self.hold(hold_s).await;
                self.heal_cuts().await;
                format!(
                    "{}partition {shape:?}: {} for {hold_s} s",
                    if one_way { "one-way " } else { "" },
                    describe_cuts(&cuts)
                )
            }
            FaultSpec::Lossy {
                share,
                hold_s,
                one_way,
            } => {
                let a = rng.random_range(0..nodes);
                let b = (a + rng.random_range(1..nodes)) % nodes;
                let mut cuts = vec![(a, b)];
                if !one_way {
                    cuts.push((b, a));
                }
                targets = vec![a, b];
                self.apply_cuts(&cuts, share).await;
                self.hold(hold_s).await;
                self.heal_cuts().await;
                format!(
                    "drop {:.0} % of {} for {hold_s} s",
                    share * 100.0,
                    describe_cuts(&cuts)
                )
            }
            FaultSpec::Delay {
                delay_ms,
                jitter_ms,
                hold_s,
            } => {
                let index = rng.random_range(0..nodes);
                targets.push(index);
                let shape = LinkShape {
                    delay: Duration::from_millis(delay_ms),
                    jitter: Duration::from_millis(jitter_ms),
                    loss: 0.0,
                };
                match &self.relays {
                    Some(relays) => relays.shape_node(index, shape),
                    None => self
                        .failures
                        .push("a delay fault needs [cluster] relay = true".to_owned()),
                }
                self.hold(hold_s).await;
                if let Some(relays) = &self.relays {
                    relays.heal();
                }
                format!(
                    "delay node {}'s links {delay_ms} ± {jitter_ms} ms for {hold_s} s",
                    index + 1
                )
            }
            FaultSpec::Flap {
                shape,
                period_s,
                hold_s,
            } => {
                let cuts = partition_cuts(shape, nodes, false, rng);
                targets = touched(&cuts);
                let until = Instant::now() + Duration::from_secs_f64(hold_s);
                let mut flips = 0;
                while Instant::now() < until && !self.cancel.is_cancelled() {
                    self.apply_cuts(&cuts, 1.0).await;
                    self.hold(period_s).await;
                    self.heal_cuts().await;
                    self.hold(period_s).await;
                    flips += 1;
                }
                format!(
                    "flap {shape:?} ({}) {flips} times, {period_s} s on and off",
                    describe_cuts(&cuts)
                )
            }
            FaultSpec::FullDisk {
                hold_s,
                restart,
                start_while_full,
            } => {
                self.full_disk(hold_s, restart, start_while_full, &mut targets)
                    .await
            }
            FaultSpec::SiteCut { hold_s } => {
                targets = (0..nodes).collect();
                self.shape_sites(LinkShape {
                    loss: 1.0,
                    ..LinkShape::default()
                });
                self.hold(hold_s).await;
                self.shape_sites(LinkShape::default());
                format!("cut the link between the sites for {hold_s} s")
            }
            FaultSpec::SiteFlap { period_s, hold_s } => {
                targets = (0..nodes).collect();
                let until = Instant::now() + Duration::from_secs_f64(hold_s);
                let mut flips = 0;
                while Instant::now() < until && !self.cancel.is_cancelled() {
                    self.shape_sites(LinkShape {
                        loss: 1.0,
                        ..LinkShape::default()
                    });
                    self.hold(period_s).await;
                    self.shape_sites(LinkShape::default());
                    self.hold(period_s).await;
                    flips += 1;
                }
                format!("flap the link between the sites {flips} times, {period_s} s cut and up")
            }
            FaultSpec::WanDelay {
                delay_ms,
                jitter_ms,
                hold_s,
            } => {
                targets = (0..nodes).collect();
                self.shape_sites(LinkShape {
                    delay: Duration::from_millis(delay_ms),
                    jitter: Duration::from_millis(jitter_ms),
                    loss: 0.0,
                });
                self.hold(hold_s).await;
                self.shape_sites(LinkShape::default());
                format!(
                    "delay the link between the sites {delay_ms} ± {jitter_ms} ms for {hold_s} s"
                )
            }
            FaultSpec::SiteLoss {
                site,
                down_s,
                serve_s,
            } => {
                let (description, record) = self.site_loss(site - 1, down_s, serve_s).await;
                targets = self.cluster.site_nodes(site - 1);
                site_loss = record;
                description
            }
        };
        self.restart_crashed().await;
        FaultRecord {
            id,
            kind: fault.kind().to_owned(),
            description,
            nodes: targets.iter().map(|index| index + 1).collect(),
            start_s,
            heal_s: self.now_s(),
            site_loss,
        }
    }

    /// Shapes every relayed path between the two sites.
    fn shape_sites(&mut self, shape: LinkShape) {
        let spec = self.cluster.spec().clone();
        match &self.relays {
            Some(relays) if spec.sites > 1 => {
                relays.shape_where(|from, to| spec.site_of(from) != spec.site_of(to), shape);
            }
            _ => self
                .failures
                .push("a fault between sites needs [cluster] sites = 2".to_owned()),
        }
    }

    /// The largest backup lag, in seconds, of the streams from site `site`'s pool to its
    /// partner, as a node of the partner reports it (`GET /api/v1/backup`).
    async fn backup_lag_s(&self, site: usize) -> Option<f64> {
        let source = crate::cluster::POOL_NAMES.get(site)?;
        for node in self.cluster.site_nodes(1 - site.min(1)) {
            let Ok((200, body)) = http_get(
                self.cluster.http(node),
                "/api/v1/backup",
                Duration::from_secs(2),
            )
            .await
            else {
                continue;
            };
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&body) else {
                continue;
            };
            let lag = value["directions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|direction| direction["source"]["name"].as_str() == Some(source))
                .and_then(|direction| direction["lag_seconds_max"].as_f64());
            if lag.is_some() {
                return lag;
            }
        }
        None
    }

    /// Runs `roster ARGS` through the first running node of `site`; a failure is recorded.
    async fn operate(&mut self, args: &[&str], site: usize) -> (bool, String) {
        let Some(via) = self
            .cluster
            .site_nodes(site)
            .into_iter()
            .find(|&node| self.cluster.is_running(node))
        else {
            return (false, format!("no node of site {} runs", site + 1));
        };
        match self.cluster.operate(args, via, OPERATION_DEADLINE).await {
            Ok((ok, output)) => (ok, output),
            Err(error) => (false, format!("{error:#}")),
        }
    }

    /// The site loss: see [`FaultSpec::SiteLoss`].
    async fn site_loss(
        &mut self,
        site: usize,
        down_s: f64,
        serve_s: f64,
    ) -> (String, Option<SiteLossRecord>) {
        if self.cluster.spec().sites < 2 || site > 1 {
            self.failures
                .push("a site loss needs [cluster] sites = 2 and site 1 or 2".to_owned());
            return ("site loss: no such site".to_owned(), None);
        }
        let partner = 1 - site;
        let pool = crate::cluster::POOL_NAMES[site];
        let lag_s = self.backup_lag_s(site).await;
        let lost_at_s = self.now_s();
        for node in self.cluster.site_nodes(site) {
            self.cluster.kill(node).await;
        }
        self.hold(down_s).await;
        let failover_started = Instant::now();
        let mut steps = Vec::new();
        if self.cms_site == site {
            let (ok, output) = self.operate(&["cms", "failover"], partner).await;
            if ok {
                self.cms_site = partner;
                steps.push("roster cms failover".to_owned());
            } else {
                self.failures
                    .push(format!("roster cms failover failed: {}", output.trim()));
            }
        }
        let (ok, output) = self
            .operate(&["pool", "failover", pool, "--disaster"], partner)
            .await;
        if ok {
            steps.push(format!("roster pool failover {pool} --disaster"));
        } else {
            self.failures.push(format!(
                "roster pool failover {pool} --disaster failed: {}",
                output.trim()
            ));
        }
        let failover_s = failover_started.elapsed().as_secs_f64();
        self.hold(serve_s).await;
        for node in self.cluster.site_nodes(site) {
            self.restart(node).await;
        }
        let back = Instant::now();
        let mut failback_s = None;
        let mut last = String::new();
        while back.elapsed() < FAILBACK_RETRY_FOR && !self.cancel.is_cancelled() {
            let (ok, output) = self.operate(&["pool", "failback", pool], partner).await;
            if ok {
                failback_s = Some(back.elapsed().as_secs_f64());
                steps.push(format!("roster pool failback {pool}"));
                break;
            }
            last = output;
            self.hold(2.0).await;
        }
        if failback_s.is_none() {
            self.failures.push(format!(
                "roster pool failback {pool} did not succeed within {FAILBACK_RETRY_FOR:?}: {}",
                last.trim()
            ));
        }
        let description = format!(
            "lose site {} (SIGKILL every node of {pool}; backup lag before {}), {down_s} s down, {} ({failover_s:.1} s), {serve_s} s served by the partner, start {pool} again, failback after {}",
            site + 1,
            lag_s.map_or_else(|| "unknown".to_owned(), |lag| format!("{lag:.3} s")),
            steps.join(", "),
            failback_s.map_or_else(|| "none".to_owned(), |s| format!("{s:.1} s")),
        );
        let record = SiteLossRecord {
            pool: site,
            lost_at_s,
            lag_s,
            failover_s,
            failback_s,
        };
        (description, Some(record))
    }

    async fn full_disk(
        &mut self,
        hold_s: f64,
        restart: bool,
        start_while_full: bool,
        targets: &mut Vec<usize>,
    ) -> String {
        let Some(index) = self.cluster.spec().disk_node.map(|node| node - 1) else {
            self.failures
                .push("a full-disk fault needs [cluster] disk_node".to_owned());
            return "full disk: no disk node".to_owned();
        };
        targets.push(index);
        let filled = match &self.disk {
            Some(disk) => disk.fill().await.unwrap_or(0),
            None => 0,
        };
        self.hold(hold_s).await;
        let mut while_full = String::new();
        if restart {
            self.cluster.stop(index).await;
            if start_while_full {
                // Expected to fail for want of space; what matters is the next start.
                while_full = match self.cluster.start(index).await {
                    Ok(()) => {
                        self.cluster.stop(index).await;
                        ", started while full (it came up) and stopped".to_owned()
                    }
                    Err(error) => format!(
                        ", started while full: {}",
                        format!("{error:#}").lines().next().unwrap_or_default()
                    ),
                };
            }
        }
        if let Some(disk) = &self.disk {
            disk.free();
        }
        if restart {
            self.restart(index).await;
        }
        format!(
            "fill node {}'s disk ({} MiB written) for {hold_s} s{while_full}{}",
            index + 1,
            filled / (1024 * 1024),
            if restart {
                ", stop it (SIGTERM) while full, free, start"
            } else {
                ", then free it"
            }
        )
    }

    async fn apply_cuts(&mut self, cuts: &[(usize, usize)], share: f64) {
        for &(from, to) in cuts {
            let (a, b) = (self.cluster.ip(from), self.cluster.ip(to));
            if let Err(error) = self.firewall.cut(a, b, share).await {
                self.failures.push(format!("cannot cut: {error:#}"));
            }
        }
    }

    async fn heal_cuts(&mut self) {
        if let Err(error) = self.firewall.heal().await {
            self.failures.push(format!("cannot heal cuts: {error:#}"));
        }
    }
}

/// The directed cuts (from, to) of a partition of `nodes` nodes.
pub fn partition_cuts(
    shape: PartitionShape,
    nodes: usize,
    one_way: bool,
    rng: &mut StdRng,
) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..nodes).collect();
    order.shuffle(rng);
    let mut cuts = BTreeSet::new();
    let cut_sides = |left: &[usize], right: &[usize], cuts: &mut BTreeSet<(usize, usize)>| {
        for &a in left {
            for &b in right {
                cuts.insert((a, b));
                if !one_way {
                    cuts.insert((b, a));
                }
            }
        }
    };
    match shape {
        PartitionShape::Isolate => cut_sides(&order[..1], &order[1..], &mut cuts),
        PartitionShape::Minority => {
            let minority = ((nodes - 1) / 2).max(1);
            cut_sides(&order[..minority], &order[minority..], &mut cuts);
        }
        PartitionShape::Bridge => {
            // order[0] is the bridge; the rest split in two halves.
            let rest = &order[1..];
            let half = rest.len() / 2;
            cut_sides(&rest[..half], &rest[half..], &mut cuts);
        }
        PartitionShape::MajoritiesRing => {
            for (position, &a) in order.iter().enumerate() {
                let left = order[(position + nodes - 1) % nodes];
                let right = order[(position + 1) % nodes];
                for &b in &order {
                    if b != a && b != left && b != right {
                        cuts.insert((a, b));
                    }
                }
            }
        }
    }
    cuts.into_iter().collect()
}

fn touched(cuts: &[(usize, usize)]) -> Vec<usize> {
    let nodes: BTreeSet<usize> = cuts.iter().flat_map(|&(a, b)| [a, b]).collect();
    nodes.into_iter().collect()
}

fn describe_cuts(cuts: &[(usize, usize)]) -> String {
    let pairs: Vec<String> = cuts
        .iter()
        .map(|(a, b)| format!("{}→{}", a + 1, b + 1))
        .collect();
    if pairs.is_empty() {
        "no cut".to_owned()
    } else {
        pairs.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn sees(cuts: &[(usize, usize)], a: usize, b: usize) -> bool {
        !cuts.contains(&(a, b))
    }

    #[test]
    fn partitions_cut_what_their_shape_says() {
        let mut rng = StdRng::seed_from_u64(3);
        let isolate = partition_cuts(PartitionShape::Isolate, 3, false, &mut rng);
        assert_eq!(isolate.len(), 4, "one node, both directions to two others");
        let minority = partition_cuts(PartitionShape::Minority, 5, false, &mut rng);
        assert_eq!(minority.len(), 2 * 2 * 3);
        let one_way = partition_cuts(PartitionShape::Minority, 5, true, &mut rng);
        assert_eq!(one_way.len(), 2 * 3);
        let bridge = partition_cuts(PartitionShape::Bridge, 5, false, &mut rng);
        assert_eq!(bridge.len(), 2 * 2 * 2);
        let bridge_node = (0..5).find(|&n| bridge.iter().all(|&(a, b)| a != n && b != n));
        assert!(
            bridge_node.is_some(),
            "the bridge sees everyone: {bridge:?}"
        );
        let ring = partition_cuts(PartitionShape::MajoritiesRing, 5, false, &mut rng);
        for a in 0..5 {
            let visible = (0..5).filter(|&b| b != a && sees(&ring, a, b)).count();
            assert_eq!(
                visible, 2,
                "node {a} sees two neighbours, a majority with itself"
            );
        }
    }

    #[test]
    fn fault_specs_parse_from_toml() {
        let spec: NemesisSpec = toml::from_str(
            r#"
            interval_s = 2
            faults = [
                { kind = "kill", down_s = 3 },
                { kind = "partition", shape = "majorities-ring", hold_s = 5 },
                { kind = "lossy", share = 0.3, hold_s = 4, one_way = true },
                { kind = "full-disk", hold_s = 5, restart = true },
            ]
            "#,
        )
        .expect("parses");
        assert_eq!(spec.faults.len(), 4);
        assert_eq!(spec.warmup_s, 3.0);
        assert_eq!(spec.faults[1].kind(), "partition");
    }
}
