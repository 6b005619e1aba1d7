//! The pool's admin routes (`POST /admin/drain/{node}`, `/admin/rebalance`,
//! `/admin/pools/{pool}/failover`, `/admin/pools/{pool}/failback`, `/admin/cms/failover`): the
//! [`Admin`] operations they run, and the bearer token check in front of them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use roster_topology::{NodeId, PoolId};

use crate::admin_api::AdminToken;

/// A failed admin operation: the HTTP status to answer with and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AdminError {
    /// HTTP status code.
    pub status: u16,
    /// What went wrong, for the operator.
    pub message: String,
}

impl AdminError {
    /// An error answered with `status`.
    pub fn new(status: u16, message: impl Into<String>) -> AdminError {
        AdminError {
            status,
            message: message.into(),
        }
    }
}

/// The answer of an admin operation, as JSON.
pub type AdminFuture = Pin<Box<dyn Future<Output = Result<serde_json::Value, AdminError>> + Send>>;

/// Pool operations the admin routes run.
pub trait Admin: Send + Sync + 'static {
    /// Moves every replica off `node`, then balances leaders over the others.
    fn drain(&self, node: NodeId) -> AdminFuture;
    /// Spreads replicas and leaders over every node of the topology.
    fn rebalance(&self) -> AdminFuture;
    /// Fails pool `pool`'s users over to this node's pool (planned, or after a disaster).
    fn fail_over(&self, pool: PoolId, disaster: bool) -> AdminFuture;
    /// Gives pool `pool`'s users back to it.
    fn fail_back(&self, pool: PoolId) -> AdminFuture;
    /// Promotes this pool's copy of the CMS.
    fn fail_over_cms(&self) -> AdminFuture;
}

/// The admin operations and the token a request must carry (`Authorization: Bearer …`).
pub struct AdminAccess {
    /// The operations.
    pub admin: Arc<dyn Admin>,
    /// The token.
    pub token: AdminToken,
}

/// Runs `operation` when `access` is set and the request carries its token; answers its JSON,
/// or its error's status and message.
pub(super) async fn run(
    access: Option<&AdminAccess>,
    headers: &HeaderMap,
    operation: impl FnOnce(&dyn Admin) -> AdminFuture,
) -> Response {
    let Some(access) = access else {
        return (
            StatusCode::NOT_FOUND,
            "administration is off on this node (no [http] admin_token_file, or not in a pool)\n",
        )
            .into_response();
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if !access.token.authorizes(presented) {
        return (
            StatusCode::UNAUTHORIZED,
            "a valid admin bearer token is required\n",
        )
            .into_response();
    }
    match operation(access.admin.as_ref()).await {
        Ok(answer) => Json(answer).into_response(),
        Err(error) => (
            StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            format!("{}\n", error.message),
        )
            .into_response(),
    }
}
