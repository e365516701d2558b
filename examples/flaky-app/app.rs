//! A small web app whose failure mode can be switched at run time: the demo target for
//! `make demo` and the stand-in for application pods in the integration tests.
//!
//! `GET /healthz` (and `GET /`) answers according to the mode; `PUT /mode/{mode}` switches it,
//! `GET /mode` tells it. Modes: `healthy`, a status code such as `503` or `502`, `slow` (answers
//! 200 after `slow_delay`), `hang` (never answers).

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, put},
};

/// How the app answers health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Healthy,
    Status(u16),
    Slow,
    Hang,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "healthy" | "ok" | "200" => Ok(Self::Healthy),
            "slow" => Ok(Self::Slow),
            "hang" => Ok(Self::Hang),
            code => code
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .map(Self::Status)
                .ok_or_else(|| {
                    format!("unknown mode {s:?}: use healthy, slow, hang or a status code such as 503")
                }),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Healthy => f.write_str("healthy"),
            Self::Status(c) => write!(f, "{c}"),
            Self::Slow => f.write_str("slow"),
            Self::Hang => f.write_str("hang"),
        }
    }
}

/// The app's switchable state; clones share it.
#[derive(Clone)]
pub struct Flaky {
    mode: Arc<Mutex<Mode>>,
    hits: Arc<AtomicU64>,
    slow_delay: Duration,
    /// A header (name, value) health checks must carry, else they get 401.
    required_header: Arc<Mutex<Option<(String, String)>>>,
}

impl Flaky {
    pub fn new(slow_delay: Duration) -> Self {
        Self {
            mode: Arc::new(Mutex::new(Mode::Healthy)),
            hits: Arc::default(),
            slow_delay,
            required_header: Arc::default(),
        }
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner) = mode;
    }

    pub fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes health checks without this header (and value) answer 401.
    pub fn require_header(&self, name: &str, value: &str) {
        *self
            .required_header
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((name.to_owned(), value.to_owned()));
    }

    /// Health checks answered (or started) so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(health))
            .route("/healthz", get(health))
            .route(
                "/mode",
                get(|State(app): State<Flaky>| async move {
                    format!("{} ({} health checks)\n", app.mode(), app.hits())
                }),
            )
            .route("/mode/{mode}", put(switch).post(switch))
            .with_state(self.clone())
    }

    /// Serves the app on `listener` until the task is dropped or aborted.
    pub fn serve(&self, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
        let router = self.router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        })
    }
}

async fn health(State(app): State<Flaky>, headers: axum::http::HeaderMap) -> (StatusCode, String) {
    app.hits.fetch_add(1, Ordering::SeqCst);
    let required = app
        .required_header
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some((name, value)) = required
        && headers.get(name.as_str()).and_then(|v| v.to_str().ok()) != Some(value.as_str())
    {
        return (StatusCode::UNAUTHORIZED, "missing or wrong credentials\n".into());
    }
    match app.mode() {
        Mode::Healthy => (StatusCode::OK, "ok\n".into()),
        Mode::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, format!("failing with {code}\n"))
        }
        Mode::Slow => {
            tokio::time::sleep(app.slow_delay).await;
            (StatusCode::OK, "ok, slowly\n".into())
        }
        Mode::Hang => std::future::pending().await,
    }
}

async fn switch(State(app): State<Flaky>, Path(mode): Path<String>) -> (StatusCode, String) {
    match mode.parse::<Mode>() {
        Ok(mode) => {
            app.set(mode);
            (StatusCode::OK, format!("mode is now {mode}\n"))
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}
