//! Builds a node's request path ([`Service`]) from its configuration: the users directory, the
//! digest authenticator with its nonce key, and the registrar front, over a store.

use anyhow::Context as _;
use roster_auth::{DigestAuthenticator, DigestConfig};
use roster_registrar::{Directory, Front, FrontConfig};

use crate::config::Config;
use crate::sip::service::Service;
use crate::store::Store;
use crate::users;

/// Builds the request path of a node from its configuration, over `store`. A single node's
/// directory is its users file; a pool node's starts empty and follows its copy of the CMS
/// (`tasks::sync_directory`).
pub(super) fn build<S: Store>(config: &Config, store: S) -> anyhow::Result<Service<S>> {
    let directory = match &config.users_file {
        Some(path) if config.pool.is_none() => users::load(path)?,
        _ => Directory::default(),
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
