//! The node's HTTP endpoint: Prometheus metrics, health, a JSON status document, the operator's
//! status page with the deployment's overview as JSON (`/api/v1/deployment`), the backup
//! service's status (`GET /api/v1/backup`) and the pool's admin routes ([`admin`]: pool
//! operations, failover and the directory, behind a bearer token).
//!
//! The server knows only the traits it calls: [`StatusSource`] for the status endpoints,
//! [`OverviewSource`] for the overview, [`BackupSource`] for the backup status, [`admin::Admin`]
//! and [`admin::UsersAdmin`] for the admin routes; the node's startup supplies them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::admin_api::backup::BACKUP_PATH;
use crate::admin_api::users::{
    DIRECTORY_PATH, USERS_ENABLED_PATH, USERS_PATH, USERS_REMOVE_PATH, USERS_REQUEST_SIZE_MAX,
    USER_PATH,
};
use crate::admin_api::{
    CMS_FAILBACK_PATH, CMS_FAILOVER_PATH, DRAIN_ROUTE, FAILBACK_ROUTE, FAILOVER_ROUTE,
    HANDOVER_ROUTE, REBALANCE_PATH,
};
use admin::{AdminError, AdminFuture, ErrorForm, UserListQuery, UserQuery};

pub mod admin;

mod page;

/// What the status endpoints report; the node supplies it.
pub trait StatusSource: Send + Sync + 'static {
    /// The JSON status document.
    fn status(&self) -> serde_json::Value;
    /// Whether the node serves (`/health` answers 200) or not (503).
    fn healthy(&self) -> bool;
}

/// The backup service's status document (`admin_api::backup::BackupStatus`), gathered from
/// both pools when asked; a pool node supplies it.
pub trait BackupSource: Send + Sync + 'static {
    /// The document, as JSON.
    fn backup(&self) -> Pin<Box<dyn Future<Output = serde_json::Value> + Send>>;
}

/// The deployment's overview (a pool node's): every node, group, stream; gathered with short
/// timeouts, so it answers within a few seconds whatever is down.
pub trait OverviewSource: Send + Sync + 'static {
    /// The overview as JSON.
    fn overview(&self) -> Pin<Box<dyn Future<Output = serde_json::Value> + Send + '_>>;
    /// The same shape from this node alone, at once: pools, nodes, addresses, ownership, the
    /// CMS's place; no other node asked, so none shows as up.
    fn layout(&self) -> serde_json::Value;
}

/// The path of the overview's JSON.
pub const OVERVIEW_PATH: &str = "/api/v1/deployment";

/// The path of the layout's JSON (the overview without asking other nodes).
pub const LAYOUT_PATH: &str = "/api/v1/deployment/layout";

/// What a pool node adds to the endpoint: the admin routes, the overview and the backup status.
#[derive(Default)]
pub struct PoolEndpoints {
    /// The admin operations and their token; `None`: the admin routes answer 404.
    pub admin: Option<admin::AdminAccess>,
    /// The overview; `None` (a single node): the page shows this node's status alone.
    pub overview: Option<Arc<dyn OverviewSource>>,
    /// `GET /api/v1/backup`; `None` (a single node): 404.
    pub backup: Option<Arc<dyn BackupSource>>,
}

/// What the routes answer from.
struct HttpState {
    status: Arc<dyn StatusSource>,
    prometheus: PrometheusHandle,
    pool: PoolEndpoints,
}

/// Serves HTTP on `listener` until `shutdown`; the admin routes, the overview and the backup
/// status answer only with `pool`'s.
pub async fn serve(
    listener: tokio::net::TcpListener,
    status: Arc<dyn StatusSource>,
    prometheus: PrometheusHandle,
    pool: PoolEndpoints,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state = Arc::new(HttpState {
        status,
        prometheus,
        pool,
    });
    let app = Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/status", get(status_json))
        .route(OVERVIEW_PATH, get(overview_json))
        .route(LAYOUT_PATH, get(layout_json))
        .route("/metrics", get(metrics_text))
        .route(BACKUP_PATH, get(backup_json))
        .route(DRAIN_ROUTE, post(admin_drain))
        .route(HANDOVER_ROUTE, post(admin_handover))
        .route(REBALANCE_PATH, post(admin_rebalance))
        .route(FAILOVER_ROUTE, post(admin_fail_over))
        .route(FAILBACK_ROUTE, post(admin_fail_back))
        .route(CMS_FAILOVER_PATH, post(admin_fail_over_cms))
        .route(CMS_FAILBACK_PATH, post(admin_fail_back_cms))
        .route(DIRECTORY_PATH, get(users_directory))
        .route(USERS_PATH, get(users_list).post(users_put))
        .route(USER_PATH, get(users_show))
        .route(USERS_REMOVE_PATH, post(users_remove))
        .route(USERS_ENABLED_PATH, post(users_enabled))
        .layer(DefaultBodyLimit::max(USERS_REQUEST_SIZE_MAX))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Binds the HTTP listener.
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}

async fn health(State(state): State<Arc<HttpState>>) -> Response {
    if state.status.healthy() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable\n").into_response()
    }
}

async fn status_json(State(state): State<Arc<HttpState>>) -> Json<serde_json::Value> {
    Json(state.status.status())
}

async fn overview_json(State(state): State<Arc<HttpState>>) -> Response {
    match &state.pool.overview {
        Some(overview) => Json(overview.overview().await).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no deployment overview: this node is not in a pool (see /status)\n",
        )
            .into_response(),
    }
}

async fn layout_json(State(state): State<Arc<HttpState>>) -> Response {
    match &state.pool.overview {
        Some(overview) => Json(overview.layout()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no deployment layout: this node is not in a pool (see /status)\n",
        )
            .into_response(),
    }
}

async fn metrics_text(State(state): State<Arc<HttpState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.prometheus.render(),
    )
        .into_response()
}

async fn backup_json(State(state): State<Arc<HttpState>>) -> Response {
    match &state.pool.backup {
        Some(backup) => Json(backup.backup().await).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "this node is not in a pool: it has no backup stream\n",
        )
            .into_response(),
    }
}

async fn admin_drain(
    State(state): State<Arc<HttpState>>,
    Path(node): Path<u64>,
    headers: HeaderMap,
) -> Response {
    admin::run(
        state.pool.admin.as_ref(),
        &headers,
        ErrorForm::Text,
        |access| access.admin.drain(node),
    )
    .await
}

async fn admin_rebalance(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    admin::run(
        state.pool.admin.as_ref(),
        &headers,
        ErrorForm::Text,
        |access| access.admin.rebalance(),
    )
    .await
}

async fn admin_handover(
    State(state): State<Arc<HttpState>>,
    Path(node): Path<u64>,
    headers: HeaderMap,
) -> Response {
    admin::run(
        state.pool.admin.as_ref(),
        &headers,
        ErrorForm::Text,
        |access| access.admin.hand_over(node),
    )
    .await
}

/// `?disaster=true` on a failover.
#[derive(serde::Deserialize)]
struct FailoverQuery {
    #[serde(default)]
    disaster: bool,
}

async fn admin_fail_over(
    State(state): State<Arc<HttpState>>,
    Path(pool): Path<roster_topology::PoolId>,
    query: Result<Query<FailoverQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    admin::run(
        state.pool.admin.as_ref(),
        &headers,
        ErrorForm::Text,
        |access| match query {
            Ok(Query(query)) => access.admin.fail_over(pool, query.disaster),
            Err(rejection) => failed(AdminError::new(400, rejection.body_text())),
        },
    )
    .await
}

async fn admin_fail_back(
    State(state): State<Arc<HttpState>>,
    Path(pool): Path<roster_topology::PoolId>,
    headers: HeaderMap,
) -> Response {
    admin::run(
        state.pool.admin.as_ref(),
        &headers,
        ErrorForm::Text,
        |access| access.admin.fail_back(pool),
    )
    .await
}

async fn admin_fail_over_cms(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    admin::run(
        state.pool.admin.as_ref(),
        &headers,
        ErrorForm::Text,
        |access| access.admin.fail_over_cms(),
    )
    .await
}

async fn admin_fail_back_cms(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    admin::run(
        state.pool.admin.as_ref(),
        &headers,
        ErrorForm::Text,
        |access| access.admin.fail_back_cms(),
    )
    .await
}

async fn users_directory(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    admin::run(
        state.pool.admin.as_ref(),
        &headers,
        ErrorForm::Json,
        |access| access.users.directory(),
    )
    .await
}

async fn users_list(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    query: Result<Query<UserListQuery>, QueryRejection>,
) -> Response {
    admin::run(
        state.pool.admin.as_ref(),
        &headers,
        ErrorForm::Json,
        |access| match query {
            Ok(Query(query)) => access.users.list(query),
            Err(rejection) => failed(AdminError::new(400, rejection.body_text())),
        },
    )
    .await
}

async fn users_show(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> Response {
    admin::run(
        state.pool.admin.as_ref(),
        &headers,
        ErrorForm::Json,
        |access| match query {
            Ok(Query(query)) => access.users.show(query.aor),
            Err(rejection) => failed(AdminError::new(400, rejection.body_text())),
        },
    )
    .await
}

async fn users_put(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    with_body(&state, &headers, &body, |users, request| users.put(request)).await
}

async fn users_remove(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    with_body(&state, &headers, &body, |users, request| {
        users.remove(request)
    })
    .await
}

async fn users_enabled(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    with_body(&state, &headers, &body, |users, request| {
        users.set_enabled(request)
    })
    .await
}

/// Runs the directory's `operation` on the request `body` as JSON, once the token is checked.
async fn with_body<T: DeserializeOwned>(
    state: &HttpState,
    headers: &HeaderMap,
    body: &[u8],
    operation: impl FnOnce(&dyn admin::UsersAdmin, T) -> AdminFuture,
) -> Response {
    admin::run(
        state.pool.admin.as_ref(),
        headers,
        ErrorForm::Json,
        |access| match parse_body(body) {
            Ok(request) => operation(access.users.as_ref(), request),
            Err(error) => failed(error),
        },
    )
    .await
}

/// A JSON request body, read once the token is checked.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body)
        .map_err(|error| AdminError::new(400, format!("invalid JSON request body: {error}")))
}

/// An operation that fails before it starts.
fn failed(error: AdminError) -> AdminFuture {
    Box::pin(std::future::ready(Err(error)))
}

async fn page() -> Html<&'static str> {
    Html(page::STATUS_PAGE)
}
