//! The node's HTTP endpoint: Prometheus metrics, health, a JSON status document and a small
//! status page that renders it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::Admin;

/// What the status endpoints report; the node supplies it.
pub trait StatusSource: Send + Sync + 'static {
    /// The JSON status document.
    fn status(&self) -> serde_json::Value;
    /// Whether the node serves (`/health` answers 200) or not (503).
    fn healthy(&self) -> bool;
}

/// Pool administration behind a bearer token: `POST /admin/drain/{node}` and
/// `POST /admin/rebalance`.
pub struct AdminAccess {
    /// The operations.
    pub admin: Arc<dyn Admin>,
    /// The token a request must carry (`Authorization: Bearer …`).
    pub token: String,
}

struct HttpState {
    status: Arc<dyn StatusSource>,
    prometheus: PrometheusHandle,
    admin: Option<AdminAccess>,
}

/// Serves HTTP on `listener` until `shutdown`; the admin routes answer only with `admin`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    status: Arc<dyn StatusSource>,
    prometheus: PrometheusHandle,
    admin: Option<AdminAccess>,
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
        .route("/admin/drain/{node}", post(admin_drain))
        .route("/admin/rebalance", post(admin_rebalance))
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
    run_admin(&state, &headers, |admin| admin.drain(node)).await
}

async fn admin_rebalance(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    run_admin(&state, &headers, |admin| admin.rebalance()).await
}

async fn run_admin(
    state: &HttpState,
    headers: &HeaderMap,
    operation: impl FnOnce(&dyn Admin) -> crate::admin::AdminFuture,
) -> Response {
    let Some(access) = &state.admin else {
        return (
            StatusCode::NOT_FOUND,
            "administration is off on this node (no [http] admin_token_file, or not in a pool)\n",
        )
            .into_response();
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if !crate::admin::authorized(&access.token, presented) {
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

async fn page() -> Html<&'static str> {
    Html(STATUS_PAGE)
}

/// A page that fetches `/status` every two seconds and shows it.
const STATUS_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Roster node</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}pre{background:#f4f4f4;padding:1em}</style>
</head><body><h1>Roster node</h1><p><a href="/metrics">metrics</a> · <a href="/health">health</a> · <a href="/status">status (JSON)</a></p>
<pre id="status">loading…</pre>
<script>
async function refresh(){try{const r=await fetch('/status');document.getElementById('status').textContent=JSON.stringify(await r.json(),null,2)}catch(e){document.getElementById('status').textContent='unreachable: '+e}}
refresh();setInterval(refresh,2000);
</script></body></html>
"#;
