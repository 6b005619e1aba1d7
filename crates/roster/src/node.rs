//! A running node: binds the SIP listeners of a [`Config`], serves until told to stop, then
//! lets in-flight requests finish within a drain deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use roster_auth::{DigestAuthenticator, DigestConfig};
use roster_registrar::{Directory, Front, FrontConfig, Transport};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::clock::now_ms;
use crate::config::Config;
use crate::service::Service;
use crate::store::{MemoryStore, Store};
use crate::stream::StreamSettings;
use crate::{stream, tls, udp, users};

/// How long shutdown waits for in-flight requests.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// The addresses a node listens on, once bound.
#[derive(Clone, Debug, Default)]
pub struct Listening {
    /// (transport, address) pairs.
    pub sip: Vec<(Transport, SocketAddr)>,
    /// Metrics, health and status, if configured.
    pub http: Option<SocketAddr>,
}

/// Builds the request path of a node from its configuration, over `store`.
pub fn build_service<S: Store>(config: &Config, store: S) -> anyhow::Result<Service<S>> {
    let directory = match &config.users_file {
        Some(path) => users::load(path)?,
        None => Directory::default(),
    };
    let authenticator = match &config.auth {
        None => None,
        Some(auth) => {
            let digest = DigestConfig {
                realm: auth.realm.clone(),
                algorithms: auth.algorithms.clone(),
                challenge: auth.challenge,
                nonce_lifetime_ms: auth.nonce_lifetime_s * 1000,
                ..DigestConfig::new(auth.realm.clone())
            };
            digest
                .validate()
                .map_err(|error| anyhow::anyhow!("invalid [auth] settings: {error}"))?;
            let key = nonce_key(config)?;
            // Nonces are bound to this process: no other node and no later boot counts them.
            let boot = rand::random::<u64>();
            Some(DigestAuthenticator::new(digest, key).with_boot(boot))
        }
    };
    let front = Front::new(
        FrontConfig {
            domains: config.domains.clone(),
            policy: config.policy.clone(),
            open_directory: config.open_directory,
            server: format!(
                "Roster/{} ({})",
                env!("CARGO_PKG_VERSION"),
                config.node_name
            ),
            own_hosts: config.own_hosts.clone(),
            trusted: config.trusted_networks.clone(),
        },
        directory,
        authenticator,
    );
    let front = match &config.auth {
        Some(auth) => front.with_guess_limiter(roster_auth::GuessLimiter::new(
            auth.guesses,
            std::collections::hash_map::RandomState::new(),
        )),
        None => front,
    };
    Ok(Service::new(config.node_name.clone(), front, store))
}

/// The digest nonce key: from `auth.nonce_key_file` (shared by a pool's nodes), else random.
fn nonce_key(config: &Config) -> anyhow::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    match &config.nonce_key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read nonce key file {}", path.display()))?;
            hex::decode_to_slice(text.trim(), &mut key).map_err(|_| {
                anyhow::anyhow!("nonce key file {} must hold 64 hex digits", path.display())
            })?;
        }
        None => rand::Fill::fill(&mut key, &mut rand::rng()),
    }
    Ok(key)
}

/// Runs a node: a pool member when `config` has `[pool]`, else a single node with its
/// bindings in memory.
pub async fn run_any(
    config: Config,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(&Listening),
) -> anyhow::Result<()> {
    match config.pool.clone() {
        Some(pool) => crate::pool::run(config, pool, shutdown, on_ready).await,
        None => run(config, shutdown, on_ready).await,
    }
}

/// Runs a single node with its bindings in memory: binds every listener of `config` and serves
/// until `shutdown` is cancelled. `on_ready` is called once every listener is bound.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(&Listening),
) -> anyhow::Result<()> {
    let store = MemoryStore::new(config.policy.clone());
    let service = Arc::new(build_service(&config, store)?);
    serve(&config, service, None, shutdown, on_ready).await
}

/// Serves `service` on every SIP listener of `config` (and HTTP, with the pool's `admin`
/// operations when given) until `shutdown` is cancelled, then drains in-flight requests.
pub async fn serve<S: Store>(
    config: &Config,
    service: Arc<Service<S>>,
    admin: Option<Arc<dyn crate::admin::Admin>>,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(&Listening),
) -> anyhow::Result<()> {
    let tracker = TaskTracker::new();
    let mut listening = Listening::default();
    for &address in &config.udp {
        let socket = udp::bind(address)
            .await
            .with_context(|| format!("cannot bind SIP UDP on {address}"))?;
        listening.sip.push((Transport::Udp, socket.local_addr()?));
        let settings = udp::UdpSettings {
            source_requests_per_s_max: config.source_requests_per_s_max,
            trusted: config.trusted_networks.clone(),
        };
        tracker.spawn(udp::serve(
            socket,
            service.clone(),
            settings,
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    let connections = Arc::new(Semaphore::new(config.connections_max));
    let per_source = Arc::new(crate::source_limit::SourceConnections::new(
        config.connections_per_source_max,
        config.trusted_networks.clone(),
    ));
    let idle_timeout = Duration::from_secs(config.connection_idle_timeout_s);
    let tls_acceptor = match &config.tls_files {
        Some((certificate, key)) if !config.tls.is_empty() => {
            Some(tls::acceptor(certificate, key)?)
        }
        _ => None,
    };
    let streams = config.tcp.iter().map(|a| (Transport::Tcp, *a, None)).chain(
        config
            .tls
            .iter()
            .map(|a| (Transport::Tls, *a, tls_acceptor.clone())),
    );
    for (transport, address, tls) in streams {
        let listener = stream::bind(address).await.with_context(|| {
            format!(
                "cannot bind SIP {} on {address}",
                transport.as_str().to_uppercase()
            )
        })?;
        listening.sip.push((transport, listener.local_addr()?));
        let settings = StreamSettings {
            transport,
            tls,
            connections: connections.clone(),
            idle_timeout,
            message_timeout: Duration::from_secs(config.message_timeout_s),
            per_source: per_source.clone(),
        };
        tracker.spawn(stream::serve(
            listener,
            settings,
            service.clone(),
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    if let Some(address) = config.http {
        let listener = crate::http::bind(address)
            .await
            .with_context(|| format!("cannot bind HTTP on {address}"))?;
        listening.http = Some(listener.local_addr()?);
        let prometheus = crate::telemetry::install();
        let status: Arc<dyn crate::http::StatusSource> = service.clone();
        let admin = admin
            .zip(config.admin_token.clone())
            .map(|(admin, token)| crate::http::AdminAccess { admin, token });
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            if let Err(error) =
                crate::http::serve(listener, status, prometheus, admin, shutdown).await
            {
                warn!(%error, "HTTP server stopped");
            }
        });
    }
    tracker.spawn(purge_loop(
        service.clone(),
        Duration::from_secs(config.purge_interval_s),
        shutdown.clone(),
    ));
    for (transport, address) in &listening.sip {
        info!(node = %config.node_name, transport = transport.as_str(), %address, "listening");
    }
    on_ready(&listening);
    shutdown.cancelled().await;
    tracker.close();
    if tokio::time::timeout(DRAIN_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        warn!("drain deadline passed with requests still in flight");
    }
    info!("stopped");
    Ok(())
}

/// Removes expired bindings every `interval`, with an ordinary command.
async fn purge_loop<S: Store>(
    service: Arc<Service<S>>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(error) = service.store().purge_expired(now_ms()).await {
            warn!(%error, "purge failed");
        }
    }
}

/// Resolves when the process gets SIGINT or SIGTERM.
pub async fn termination_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
