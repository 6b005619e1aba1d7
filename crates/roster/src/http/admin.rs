//! The pool's admin routes, behind a bearer token: the pool operations (`POST
//! /admin/drain/{node}`, `/admin/handover/{node}`, `/admin/rebalance`,
//! `/admin/pools/{pool}/failover`, `/admin/pools/{pool}/failback`, `/admin/cms/failover`) that
//! [`Admin`] runs, and the directory's
//! routes (`/api/v1/directory`, `/api/v1/users...`, see `admin_api::users`) that [`UsersAdmin`]
//! runs.
//!
//! The token is checked before a request's body or query is read. Errors of the pool
//! operations are answered as text; those of the directory's routes as JSON
//! (`admin_api::users::ErrorAnswer`), so that a script can tell which user a refusal is about.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use roster_topology::{NodeId, PoolId};

use crate::admin_api::users::{ErrorAnswer, PutUsers, RemoveUsers, SetEnabled};
use crate::admin_api::AdminToken;

/// A failed admin operation: the HTTP status to answer with and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AdminError {
    /// HTTP status code.
    pub status: u16,
    /// What went wrong, for the operator.
    pub message: String,
    /// The user the error is about, when one.
    pub aor: Option<String>,
    /// The digest user name the error is about, when one.
    pub username: Option<String>,
    /// When to try again, in seconds (`Retry-After`, with `503`).
    pub retry_after_s: Option<u32>,
}

impl AdminError {
    /// An error answered with `status`.
    pub fn new(status: u16, message: impl Into<String>) -> AdminError {
        AdminError {
            status,
            message: message.into(),
            aor: None,
            username: None,
            retry_after_s: None,
        }
    }

    /// `503` with `Retry-After: retry_after_s`.
    pub fn unavailable(message: impl Into<String>, retry_after_s: u32) -> AdminError {
        AdminError {
            retry_after_s: Some(retry_after_s),
            ..AdminError::new(503, message)
        }
    }

    /// The same error, about user `aor`.
    pub fn about(mut self, aor: impl Into<String>) -> AdminError {
        self.aor = Some(aor.into());
        self
    }

    /// The same error, about digest user name `username`.
    pub fn about_username(mut self, username: impl Into<String>) -> AdminError {
        self.username = Some(username.into());
        self
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
    /// Hands every leadership `node` holds to the other nodes of its pool.
    fn hand_over(&self, node: NodeId) -> AdminFuture;
    /// Fails pool `pool`'s users over to this node's pool (planned, or after a disaster).
    fn fail_over(&self, pool: PoolId, disaster: bool) -> AdminFuture;
    /// Gives pool `pool`'s users back to it.
    fn fail_back(&self, pool: PoolId) -> AdminFuture;
    /// Promotes this pool's copy of the CMS.
    fn fail_over_cms(&self) -> AdminFuture;
    /// Brings the CMS home from this pool after a CMS failover.
    fn fail_back_cms(&self) -> AdminFuture;
}

/// A page of users asked for (`GET /api/v1/users?offset=&limit=&pool=`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserListQuery {
    /// The first user's position, by AOR (default 0).
    pub offset: Option<usize>,
    /// Users in the page (default `USERS_PAGE_DEFAULT`, at most `USERS_PAGE_MAX`).
    pub limit: Option<usize>,
    /// Only users homed on this pool, by name.
    pub pool: Option<String>,
}

/// One user asked for (`GET /api/v1/users/one?aor=`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserQuery {
    /// The user's AOR.
    pub aor: String,
}

/// The directory's operations (the CMS's users) the admin routes run.
pub trait UsersAdmin: Send + Sync + 'static {
    /// The realm, pools, counts and limits (`DirectoryInfo`).
    fn directory(&self) -> AdminFuture;
    /// A page of users (`UserPage`).
    fn list(&self, query: UserListQuery) -> AdminFuture;
    /// One user (`UserView`), `404` when absent.
    fn show(&self, aor: String) -> AdminFuture;
    /// Puts users in one CMS command (`PutUsersAnswer`).
    fn put(&self, request: PutUsers) -> AdminFuture;
    /// Removes users in one CMS command (`RemoveUsersAnswer`).
    fn remove(&self, request: RemoveUsers) -> AdminFuture;
    /// Enables or disables a user.
    fn set_enabled(&self, request: SetEnabled) -> AdminFuture;
}

/// The admin operations and the token a request must carry (`Authorization: Bearer …`).
pub struct AdminAccess {
    /// The pool operations.
    pub admin: Arc<dyn Admin>,
    /// The directory's operations.
    pub users: Arc<dyn UsersAdmin>,
    /// The token.
    pub token: AdminToken,
}

/// How a route answers its errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ErrorForm {
    /// The message as text (the pool operations).
    Text,
    /// An `ErrorAnswer` (the directory's routes).
    Json,
}

/// Runs `operation` when `access` is set and the request carries its token; answers its JSON,
/// or its error's status and message in `form`.
pub(super) async fn run(
    access: Option<&AdminAccess>,
    headers: &HeaderMap,
    form: ErrorForm,
    operation: impl FnOnce(&AdminAccess) -> AdminFuture,
) -> Response {
    let Some(access) = access else {
        return refuse(
            AdminError::new(
                404,
                "administration is off on this node (no [http] admin_token_file, or not in a pool)",
            ),
            form,
        );
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if !access.token.authorizes(presented) {
        return refuse(
            AdminError::new(401, "a valid admin bearer token is required"),
            form,
        );
    }
    match operation(access).await {
        Ok(answer) => Json(answer).into_response(),
        Err(error) => refuse(error, form),
    }
}

/// The answer to a refused request.
fn refuse(error: AdminError, form: ErrorForm) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let retry_after = error.retry_after_s;
    let mut response = match form {
        ErrorForm::Text => (status, format!("{}\n", error.message)).into_response(),
        ErrorForm::Json => (
            status,
            Json(ErrorAnswer {
                error: error.message,
                aor: error.aor,
                username: error.username,
                retry_after_s: retry_after,
            }),
        )
            .into_response(),
    };
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
