//! A running node, the top of the daemon: reads what its configuration names, builds the
//! request path over its store (memory, or a pool's Raft groups), and serves it on the SIP
//! transports and HTTP until told to stop.
//!
//! Pieces point one way: this module uses [`crate::sip`], [`crate::store`], [`crate::http`]
//! and [`crate::pool_admin`]; none of them knows how a node is started.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use roster_registrar::Transport;
use tokio_util::sync::CancellationToken;

use crate::admin_api::AdminToken;
use crate::config::Config;
use crate::sip::service::Service;
use crate::store::{MemoryStore, Store};

pub mod check;
mod listeners;
mod pool;
mod service;
mod tasks;

/// The addresses a node listens on, once bound.
#[derive(Clone, Debug, Default)]
pub struct Listening {
    /// (transport, address) pairs.
    pub sip: Vec<(Transport, SocketAddr)>,
    /// Metrics, health and status, if configured.
    pub http: Option<SocketAddr>,
}

/// Runs a node until `shutdown`: a pool member when `config` has `[pool]`, else a single node
/// with its bindings in memory. `on_ready` is called once every listener is bound.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(&Listening),
) -> anyhow::Result<()> {
    let admin_token = read_admin_token(&config)?;
    match config.pool.clone() {
        Some(pool) => pool::run(config, pool, admin_token, shutdown, on_ready).await,
        None => {
            let store = MemoryStore::new(config.policy.clone());
            let service = Arc::new(service::build(&config, store)?);
            listeners::serve(&config, service, Default::default(), shutdown, on_ready).await
        }
    }
}

/// The admin routes' token, from `[http] admin_token_file`, read before anything is bound.
fn read_admin_token(config: &Config) -> anyhow::Result<Option<AdminToken>> {
    config
        .admin_token_file
        .as_deref()
        .map(AdminToken::read)
        .transpose()
        .context("http.admin_token_file")
}

/// The status endpoints report the request path's status.
impl<S: Store> crate::http::StatusSource for Service<S> {
    fn status(&self) -> serde_json::Value {
        Service::status(self)
    }

    fn healthy(&self) -> bool {
        Service::healthy(self)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::RawConfig;

    fn config(http: &str) -> Config {
        let text = format!("[sip]\ndomains = [\"a\"]\nudp = [\"127.0.0.1:1\"]\n{http}");
        let raw: RawConfig = toml::from_str(&text).expect("valid TOML");
        Config::from_raw(raw, Path::new("/etc/roster")).expect("valid config")
    }

    #[test]
    fn a_bad_admin_token_file_is_named_before_anything_starts() {
        let error = read_admin_token(&config(
            "[http]\nadmin_token_file = \"/nonexistent/token\"\n",
        ))
        .unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("http.admin_token_file") && message.contains("/nonexistent/token"),
            "{message}"
        );
        assert_eq!(
            message.matches("os error").count(),
            1,
            "the cause once: {message}"
        );
        assert!(read_admin_token(&config("")).expect("no file").is_none());
    }
}
