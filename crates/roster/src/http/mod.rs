//! The node's HTTP endpoint: Prometheus metrics, health, a JSON status document, a small status
//! page that renders it, and the pool's admin routes ([`admin`]).
//!
//! The server knows only the traits it calls: [`StatusSource`] for the status endpoints and
//! [`admin::Admin`] for the admin routes; the node's startup supplies both.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::admin_api::{
    CMS_FAILOVER_PATH, DRAIN_ROUTE, FAILBACK_ROUTE, FAILOVER_ROUTE, REBALANCE_PATH,
};

pub mod admin;

mod page;

/// What the status endpoints report; the node supplies it.
pub trait StatusSource: Send + Sync + 'static {
    /// The JSON status document.
    fn status(&self) -> serde_json::Value;
    /// Whether the node serves (`/health` answers 200) or not (503).
    fn healthy(&self) -> bool;
}

/// What the routes answer from.
struct HttpState {
    status: Arc<dyn StatusSource>,
    prometheus: PrometheusHandle,
    admin: Option<admin::AdminAccess>,
}

/// Serves HTTP on `listener` until `shutdown`; the admin routes answer only with `admin`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    status: Arc<dyn StatusSource>,
    prometheus: PrometheusHandle,
    admin: Option<admin::AdminAccess>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state = Arc::new(HttpState {
        status,
        prometheus,
        admin,
    });
    let app = Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/status", get(status_json))
        .route("/metrics", get(metrics_text))
        .route(DRAIN_ROUTE, post(admin_drain))
        .route(REBALANCE_PATH, post(admin_rebalance))
        .route(FAILOVER_ROUTE, post(admin_fail_over))
        .route(FAILBACK_ROUTE, post(admin_fail_back))
        .route(CMS_FAILOVER_PATH, post(admin_fail_over_cms))
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

async fn metrics_text(State(state): State<Arc<HttpState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.prometheus.render(),
    )
        .into_response()
}

async fn admin_drain(
    State(state): State<Arc<HttpState>>,
    Path(node): Path<u64>,
    headers: HeaderMap,
) -> Response {
    admin::run(state.admin.as_ref(), &headers, |admin| admin.drain(node)).await
}

async fn admin_rebalance(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    admin::run(state.admin.as_ref(), &headers, |admin| admin.rebalance()).await
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
    Query(query): Query<FailoverQuery>,
    headers: HeaderMap,
) -> Response {
    admin::run(state.admin.as_ref(), &headers, |admin| {
        admin.fail_over(pool, query.disaster)
    })
    .await
}

async fn admin_fail_back(
    State(state): State<Arc<HttpState>>,
    Path(pool): Path<roster_topology::PoolId>,
    headers: HeaderMap,
) -> Response {
    admin::run(state.admin.as_ref(), &headers, |admin| {
        admin.fail_back(pool)
    })
    .await
}

async fn admin_fail_over_cms(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    admin::run(state.admin.as_ref(), &headers, |admin| {
        admin.fail_over_cms()
    })
    .await
}

async fn page() -> Html<&'static str> {
    Html(page::STATUS_PAGE)
}
