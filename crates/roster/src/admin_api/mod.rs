//! What a node's HTTP server and the commands that call it share: the routes of the pool
//! operations (drain, handover, rebalance, failover, failback, CMS failover), the bearer token
//! that guards them, and the JSON documents of the directory's routes ([`users`]) and of the
//! backup service's status ([`backup`]).
//!
//! `roster init` writes the token to `admin.token` (mode 0600); a node reads it from
//! `[http] admin_token_file`, `roster node drain`, `roster pool rebalance` and `roster user`
//! from `--token-file`.

use std::fmt;
use std::path::Path;

use sha2::{Digest as _, Sha256};

pub mod backup;
pub mod users;

/// Shortest admin token accepted, in characters.
pub const ADMIN_TOKEN_LEN_MIN: usize = 32;

/// `POST`: spread replicas and leaders over every node of the topology.
pub const REBALANCE_PATH: &str = "/admin/rebalance";

/// `POST`: move every replica and leader off node `{node}` (the route as the server declares
/// it; [`drain_path`] fills it in).
pub const DRAIN_ROUTE: &str = "/admin/drain/{node}";

/// `POST`: fail pool `{pool}`'s users over to this node's pool, its partner; `?disaster=true`
/// when `{pool}` is lost (see `roster_pool::failover`).
pub const FAILOVER_ROUTE: &str = "/admin/pools/{pool}/failover";

/// `POST`: give pool `{pool}`'s users back to it from this node's pool.
pub const FAILBACK_ROUTE: &str = "/admin/pools/{pool}/failback";

/// `POST`: promote this pool's copy of the CMS (its pool is lost).
pub const CMS_FAILOVER_PATH: &str = "/admin/cms/failover";

/// `POST`: bring the CMS home from this node's pool (after a CMS failover, once its home pool
/// has returned and its copy there has caught up).
pub const CMS_FAILBACK_PATH: &str = "/admin/cms/failback";

/// The failover route for `pool`, planned or after a disaster.
pub fn failover_path(pool: roster_topology::PoolId, disaster: bool) -> String {
    let path = FAILOVER_ROUTE.replace("{pool}", &pool.to_string());
    if disaster {
        format!("{path}?disaster=true")
    } else {
        path
    }
}

/// The failback route for `pool`.
pub fn failback_path(pool: roster_topology::PoolId) -> String {
    FAILBACK_ROUTE.replace("{pool}", &pool.to_string())
}

/// The drain route for `node`.
pub fn drain_path(node: u64) -> String {
    DRAIN_ROUTE.replace("{node}", &node.to_string())
}

/// `POST`: hand every leadership of node `{node}` to the other nodes of its pool (before the
/// node is stopped for an upgrade; [`handover_path`] fills it in).
pub const HANDOVER_ROUTE: &str = "/admin/handover/{node}";

/// The handover route for `node`.
pub fn handover_path(node: u64) -> String {
    HANDOVER_ROUTE.replace("{node}", &node.to_string())
}

/// An admin token file that cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    /// The file could not be read.
    #[error("cannot read admin token file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: std::io::Error,
    },
    /// The file does not hold one token long enough.
    #[error(
        "admin token file {path} must hold one token of at least {ADMIN_TOKEN_LEN_MIN} characters"
    )]
    Invalid {
        /// The file.
        path: String,
    },
}

/// The bearer token of the admin routes. Its `Debug` form hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Reads an admin token file: one line of at least [`ADMIN_TOKEN_LEN_MIN`] characters
    /// without whitespace.
    pub fn read(path: &Path) -> Result<AdminToken, AdminTokenError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|reason| AdminTokenError::Read {
            path: shown.clone(),
            reason,
        })?;
        AdminToken::parse(text.trim()).ok_or(AdminTokenError::Invalid { path: shown })
    }

    /// `text` as a token, if it is one.
    pub fn parse(text: &str) -> Option<AdminToken> {
        (text.len() >= ADMIN_TOKEN_LEN_MIN && !text.contains(char::is_whitespace))
            .then(|| AdminToken(text.to_string()))
    }

    /// The `Authorization` header value that presents this token.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Whether `presented` (an `Authorization` header's value) carries this token. Compares
    /// digests, so the time taken says nothing about how much of the token matched.
    pub fn authorizes(&self, presented: Option<&str>) -> bool {
        let Some(bearer) = presented.and_then(|value| value.strip_prefix("Bearer ")) else {
            return false;
        };
        Sha256::digest(bearer.trim().as_bytes()) == Sha256::digest(self.0.as_bytes())
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("AdminToken(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_must_match() {
        let token = AdminToken::parse(&"t".repeat(40)).expect("long enough");
        assert!(token.authorizes(Some(&token.authorization())));
        assert!(!token.authorizes(Some(&format!("{}x", token.authorization()))));
        assert!(!token.authorizes(Some(&"t".repeat(40))));
        assert!(!token.authorizes(None));
        assert!(!format!("{token:?}").contains("tttt"));
    }

    #[test]
    fn short_or_spaced_tokens_and_missing_files_are_refused_by_name() {
        assert!(AdminToken::parse("short").is_none());
        assert!(AdminToken::parse(&format!("{} {}", "a".repeat(20), "b".repeat(20))).is_none());
        let missing = AdminToken::read(Path::new("/nonexistent/token")).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/token"),
            "{missing}"
        );
    }

    #[test]
    fn the_drain_route_names_its_node() {
        assert_eq!(drain_path(7), "/admin/drain/7");
    }

    #[test]
    fn the_failover_routes_name_their_pool() {
        assert_eq!(failover_path(2, false), "/admin/pools/2/failover");
        assert_eq!(
            failover_path(2, true),
            "/admin/pools/2/failover?disaster=true"
        );
        assert_eq!(failback_path(3), "/admin/pools/3/failback");
    }
}
