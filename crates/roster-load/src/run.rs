//! The entry points: [`run_command`] (the `roster load` subcommand), [`run`] (a run from a
//! checked configuration) and [`verify`] (check a ledger against a target).

use std::time::{Duration, Instant};

use roster_auth::Algorithm;
use roster_sip::Uri;
use tokio_util::sync::CancellationToken;

use crate::client::{Client, ClientConfig};
use crate::config::{LoadArgs, LoadConfig, TransportKind};
use crate::driver::{drive, DriveLimits};
use crate::error::LoadError;
use crate::ledger::Ledger;
use crate::link::{Links, Target};
use crate::progress::Progress;
use crate::report::Report;
use crate::stats::Stats;
use crate::transaction::Timers;
use crate::verify::{Verifier, VerifyCredentials, VerifyReport};
use crate::workload::{Contacts, Workload};

/// `roster load ARGS`: checks the flags, runs, prints the table on stdout, writes `--json`,
/// and returns the report, or the error that should make the exit status non-zero.
pub async fn run_command(args: LoadArgs, cancel: CancellationToken) -> Result<Report, LoadError> {
    let config = args.into_config()?;
    let json = config.json.clone();
    let report = run(config, cancel).await?;
    print!("{}", report.table());
    if let Some(path) = json {
        let json_error = |reason: String| LoadError::Json {
            path: path.display().to_string(),
            reason,
        };
        let text = serde_json::to_string_pretty(&report).map_err(|e| json_error(e.to_string()))?;
        std::fs::write(&path, text + "\n").map_err(|e| json_error(e.to_string()))?;
    }
    report.verdict()?;
    Ok(report)
}

/// Runs the load of `config` (and its verification with `--verify`) until its end, or until
/// `cancel`.
pub async fn run(config: LoadConfig, cancel: CancellationToken) -> Result<Report, LoadError> {
    let target = Target::resolve(&config.target).await?;
    let mut links = Links::open(&target, config.connections, config.local_port).await?;
    let domain_uri = domain_uri(&config.population.domain)?;
    let mut client = Client::new(
        client_config(&target, &domain_uri, config.timers, config.algorithm),
        links.local_addresses(),
    );
    let contacts = Contacts {
        link_addresses: links.local_addresses(),
        transport_param: match target.transport {
            TransportKind::Udp => None,
            TransportKind::Tcp => Some("tcp"),
            TransportKind::Tls => Some("tls"),
        },
    };
    let start = Instant::now();
    let mut workload = Workload::new(
        &config.population,
        config.schedule.clone(),
        &contacts,
        &mut client,
        start,
    );
    let mut stats = Stats::new();
    let mut progress = Progress::new("load", start);
    let limits = DriveLimits {
        max_outstanding: config.max_outstanding,
        drain: config.drain,
    };
    let summary = drive(
        &mut client,
        &mut workload,
        &mut links,
        &mut stats,
        &mut progress,
        limits,
        &cancel,
    )
    .await;
    progress.finish();
    let elapsed = start.elapsed();
    let client_counters = client.counters();
    let workload_counters = workload.counters();
    let registered_at_end = workload.registered();
    let ledger = workload.into_ledger();
    let acks = ledger.acks();
    // The load phase's figures; the verification's queries only add their own rows.
    let (completed, errors) = (stats.completed(), stats.errors());
    let verify = match config.verify_rate {
        Some(rate_per_s) if !summary.interrupted => {
            let options = VerifyOptions {
                domain: config.population.domain.clone(),
                password: config.population.password.clone(),
                algorithm: config.algorithm,
                timers: config.timers,
                rate_per_s,
                max_outstanding: config.max_outstanding,
                drain: config.drain.max(config.timers.timer_f()),
            };
            Some(verify_on(&target, &mut links, ledger, &options, &mut stats, &cancel).await?)
        }
        _ => None,
    };
    let active_s = summary.active.as_secs_f64();
    Ok(Report {
        target: target.address.to_string(),
        transport: target.transport,
        users: config.population.users,
        endpoints: config.population.endpoints,
        rate_offered_per_s: config.schedule.rate_per_s,
        rate_achieved_per_s: completed as f64 / elapsed.as_secs_f64().max(1e-3),
        load_s: active_s,
        elapsed_s: elapsed.as_secs_f64(),
        mix: config.schedule.mix,
        seed: config.schedule.seed,
        operations: stats.rows(),
        completed,
        answered: summary.answered,
        errors,
        unfinished: summary.unfinished,
        max_outstanding: config.max_outstanding,
        cap_hits: summary.cap_hits,
        client: client_counters,
        workload: workload_counters,
        send_errors: links.send_errors(),
        acks,
        registered_at_end,
        interrupted: summary.interrupted,
        verify,
    })
}

/// How [`verify`] queries.
#[derive(Clone)]
pub struct VerifyOptions {
    /// The registrar's domain (REGISTER's Request-URI is `sip:DOMAIN`).
    pub domain: String,
    /// The users' password, when the target challenges.
    pub password: Option<String>,
    /// Only this digest algorithm, if set.
    pub algorithm: Option<Algorithm>,
    /// T1 and T2.
    pub timers: Timers,
    /// Queries per second.
    pub rate_per_s: f64,
    /// Most queries in flight.
    pub max_outstanding: usize,
    /// Longest wait for the last queries.
    pub drain: Duration,
}

/// Queries every AOR of `ledger` at `target` and reports the acknowledged bindings that are
/// missing or wrong. For the chaos suite and other tools holding a [`Ledger`].
pub async fn verify(
    target: &Target,
    ledger: Ledger,
    options: &VerifyOptions,
    cancel: &CancellationToken,
) -> Result<VerifyReport, LoadError> {
    let mut links = Links::open(target, 1, None).await?;
    let mut stats = Stats::new();
    verify_on(target, &mut links, ledger, options, &mut stats, cancel).await
}

async fn verify_on(
    target: &Target,
    links: &mut Links,
    ledger: Ledger,
    options: &VerifyOptions,
    stats: &mut Stats,
    cancel: &CancellationToken,
) -> Result<VerifyReport, LoadError> {
    let domain_uri = domain_uri(&options.domain)?;
    let mut client = Client::new(
        client_config(target, &domain_uri, options.timers, options.algorithm),
        links.local_addresses(),
    );
    let start = Instant::now();
    let credentials = VerifyCredentials {
        password: options.password.clone(),
    };
    let mut verifier = Verifier::new(
        ledger,
        &mut client,
        links.len(),
        &credentials,
        (start, options.rate_per_s),
    );
    let mut progress = Progress::new("verify", start);
    let limits = DriveLimits {
        max_outstanding: options.max_outstanding,
        drain: options.drain,
    };
    drive(
        &mut client,
        &mut verifier,
        links,
        stats,
        &mut progress,
        limits,
        cancel,
    )
    .await;
    progress.finish();
    Ok(verifier.into_report())
}

fn client_config(
    target: &Target,
    domain_uri: &Uri,
    timers: Timers,
    algorithm: Option<Algorithm>,
) -> ClientConfig {
    ClientConfig {
        domain_uri: domain_uri.clone(),
        via_transport: target.transport.via_token(),
        reliable: target.transport.reliable(),
        timers,
        algorithm,
        // Random per run, never from --seed: a registrar orders CSeqs per Call-ID, so two runs
        // must never share Call-IDs.
        run_tag: format!("{:08x}", rand::random::<u32>()),
    }
}

fn domain_uri(domain: &str) -> Result<Uri, LoadError> {
    Uri::parse(&format!("sip:{domain}"))
        .map_err(|error| LoadError::flag("--domain", format!("{domain:?}: {error}")))
}
