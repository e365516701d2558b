//! The operator's own HTTP endpoints, on one port: `/metrics` (Prometheus), `/healthz` (the
//! process is alive) and `/readyz` (its caches are synced and, when it leads, probing has started).

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};

use crate::metrics::Metrics;

/// What `/readyz` answers from (the process; a policy's Ready condition is `report::Readiness`).
#[derive(Debug, Default)]
pub struct Readyz {
    caches_synced: AtomicBool,
    /// Only the leader probes; a standby is ready once its caches are.
    leading: AtomicBool,
    probing: AtomicBool,
}

impl Readyz {
    pub fn caches_synced(&self) {
        self.caches_synced.store(true, Ordering::SeqCst);
    }

    /// This replica leads (or stopped leading).
    pub fn leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
        if !leading {
            self.probing.store(false, Ordering::SeqCst);
        }
    }

    pub fn probing_started(&self) {
        self.probing.store(true, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.caches_synced.load(Ordering::SeqCst)
            && (!self.leading.load(Ordering::SeqCst) || self.probing.load(Ordering::SeqCst))
    }
}

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    readiness: Arc<Readyz>,
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<Shared>) -> (StatusCode, &'static str) {
    if s.readiness.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: caches syncing or probing not started",
        )
    }
}

/// The router, for tests and for [`serve`].
pub fn router(metrics_registry: Arc<Metrics>, readiness: Arc<Readyz>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Shared {
            metrics: metrics_registry,
            readiness,
        })
}

/// Serves the endpoints on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readyz>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, router(metrics, readiness))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_synced_and_for_a_leader_once_probing() {
        let r = Readyz::default();
        assert!(!r.is_ready());
        r.caches_synced();
        assert!(r.is_ready(), "a standby is ready with its caches");
        r.leading(true);
        assert!(!r.is_ready(), "a leader that has not started probing is not");
        r.probing_started();
        assert!(r.is_ready());
        r.leading(false);
        assert!(r.is_ready());
    }
}
