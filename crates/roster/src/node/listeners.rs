//! Serving a node's request path: binds every SIP listener and the HTTP endpoint of a
//! [`Config`], serves until shutdown, then lets in-flight requests finish within a drain
//! deadline (one cancellation token, one task tracker).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use roster_registrar::Transport;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::{tasks, Listening};
use crate::config::Config;
use crate::diagnose::{bind_advice, Protocol};
use crate::http::PoolEndpoints;
use crate::sip::service::Service;
use crate::sip::stream::{self, StreamSettings};
use crate::sip::{tls, udp};
use crate::store::Store;
use crate::{http, telemetry};

/// How long shutdown waits for in-flight requests.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Serves `service` on every SIP listener of `config` (and HTTP, with a pool node's admin
/// operations, overview and backup status when given) until `shutdown` is cancelled, then drains in-flight
/// requests.
pub(super) async fn serve<S: Store>(
    config: &Config,
    service: Arc<Service<S>>,
    pool: PoolEndpoints,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(&Listening),
) -> anyhow::Result<()> {
    let tracker = TaskTracker::new();
    let mut listening = Listening::default();
    let work = Work {
        service: &service,
        shutdown: &shutdown,
        tracker: &tracker,
    };
    listening.sip = serve_sip(config, &work).await?;
    if let Some(address) = config.http {
        listening.http = Some(serve_http(address, pool, &work).await?);
    }
    tracker.spawn(tasks::purge_expired(
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

/// What every listener's task shares: the request path, the stop signal and the tracker that
/// shutdown waits on.
struct Work<'a, S> {
    service: &'a Arc<Service<S>>,
    shutdown: &'a CancellationToken,
    tracker: &'a TaskTracker,
}

/// Binds every SIP listener of `config` and spawns its task; returns what is bound.
async fn serve_sip<S: Store>(
    config: &Config,
    work: &Work<'_, S>,
) -> anyhow::Result<Vec<(Transport, SocketAddr)>> {
    let mut bound = Vec::new();
    for &address in &config.udp {
        let socket = udp::bind(address).await.map_err(|error| {
            anyhow::anyhow!(bind_advice(address, Protocol::Udp, "SIP UDP", &error))
        })?;
        bound.push((Transport::Udp, socket.local_addr()?));
        let settings = udp::UdpSettings {
            source_requests_per_s_max: config.source_requests_per_s_max,
            trusted: config.trusted_networks.clone(),
        };
        work.tracker.spawn(udp::serve(
            socket,
            work.service.clone(),
            settings,
            work.shutdown.clone(),
            work.tracker.clone(),
        ));
    }
    let connections = Arc::new(Semaphore::new(config.connections_max));
    let per_source = Arc::new(crate::sip::source_limit::SourceConnections::new(
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
        let listener = stream::bind(address).await.map_err(|error| {
            let what = format!("SIP {}", transport.as_str().to_uppercase());
            anyhow::anyhow!(bind_advice(address, Protocol::Tcp, &what, &error))
        })?;
        bound.push((transport, listener.local_addr()?));
        let settings = StreamSettings {
            transport,
            tls,
            connections: connections.clone(),
            idle_timeout,
            message_timeout: Duration::from_secs(config.message_timeout_s),
            per_source: per_source.clone(),
        };
        work.tracker.spawn(stream::serve(
            listener,
            settings,
            work.service.clone(),
            work.shutdown.clone(),
            work.tracker.clone(),
        ));
    }
    Ok(bound)
}

/// Binds the HTTP endpoint on `address` and spawns its server; returns the bound address.
async fn serve_http<S: Store>(
    address: SocketAddr,
    pool: PoolEndpoints,
    work: &Work<'_, S>,
) -> anyhow::Result<SocketAddr> {
    let listener = http::bind(address)
        .await
        .map_err(|error| anyhow::anyhow!(bind_advice(address, Protocol::Tcp, "HTTP", &error)))?;
    let bound = listener.local_addr()?;
    let prometheus = telemetry::install();
    let status: Arc<dyn http::StatusSource> = work.service.clone();
    let shutdown = work.shutdown.clone();
    work.tracker.spawn(async move {
        if let Err(error) = http::serve(listener, status, prometheus, pool, shutdown).await {
            warn!(%error, "HTTP server stopped");
        }
    });
    Ok(bound)
}
