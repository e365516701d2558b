//! The flaky app as the container of every pod that kwok runs. kwok's pods are Running and Ready at
//! loopback IPs (127.10.0.0/16, …) but nothing answers there; this watches the pods of a namespace
//! and serves one flaky app at each running pod's IP and `http` container port, for as long as the
//! pod runs. A pod starts in the mode its `flaky.apphealth.io/mode` annotation names (healthy when
//! absent): a pod template carrying `503` is a bad deploy. Each pod's mode is its own afterwards
//! (`PUT http://<pod IP>:<port>/mode/503`, or [`Pods::app`] in-process).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};

use crate::flaky::{Flaky, Mode};

/// The annotation a pod's first mode is read from.
pub const MODE_ANNOTATION: &str = "flaky.apphealth.io/mode";

struct Served {
    uid: String,
    addr: SocketAddr,
    app: Flaky,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The pods being served; clones share them.
#[derive(Clone)]
pub struct Pods {
    served: Arc<Mutex<BTreeMap<String, Served>>>,
    /// The mode of pods started from now on that name none themselves.
    first_mode: Arc<Mutex<Mode>>,
    slow_delay: Duration,
}

impl Pods {
    pub fn new(slow_delay: Duration) -> Self {
        Self {
            served: Arc::default(),
            first_mode: Arc::new(Mutex::new(Mode::Healthy)),
            slow_delay,
        }
    }

    /// Pods started from now on (replacements, new revisions) start in `mode`, unless their
    /// annotation names another: a fault that a restart does not cure.
    pub fn start_new_pods_in(&self, mode: Mode) {
        *self.first_mode.lock().unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// Serves the pods `api` lists, following its watch, until the watch ends for good.
    pub async fn run(self, api: Api<Pod>) {
        let mut seen = BTreeSet::new();
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
        let mut failing = false;
        while let Some(event) = events.next().await {
            if event.is_ok() {
                failing = false;
            }
            match event {
                Ok(watcher::Event::Init) => seen.clear(),
                Ok(watcher::Event::InitApply(pod)) => {
                    seen.insert(name(&pod));
                    self.apply(&pod).await;
                }
                Ok(watcher::Event::InitDone) => self.retain(|n| seen.contains(n)),
                Ok(watcher::Event::Apply(pod)) => self.apply(&pod).await,
                Ok(watcher::Event::Delete(pod)) => self.retain(|n| *n != name(&pod)),
                // The watcher backs off and resumes by itself; say so once per outage.
                Err(e) if !failing => {
                    failing = true;
                    eprintln!("flaky-app: watching pods: {e} (retrying)");
                }
                Err(_) => {}
            }
        }
    }

    /// The app serving pod `name`, while it runs.
    pub fn app(&self, name: &str) -> Option<Flaky> {
        self.lock().get(name).map(|s| s.app.clone())
    }

    /// Switches every pod served now, and every pod started from now on, to `mode`: a fault outside
    /// the pods (a dependency down), which no restart cures.
    pub fn set_all(&self, mode: Mode) {
        self.start_new_pods_in(mode);
        for served in self.lock().values() {
            served.app.set(mode);
        }
    }

    /// A control endpoint for the whole namespace: `PUT /mode/{mode}` is [`Pods::set_all`], `GET
    /// /pods` lists the pods served with their modes.
    pub fn control(&self) -> axum::Router {
        use axum::{
            extract::{Path, State},
            http::StatusCode,
            routing::{get, put},
        };
        async fn switch(State(pods): State<Pods>, Path(mode): Path<String>) -> (StatusCode, String) {
            match mode.parse::<Mode>() {
                Ok(mode) => {
                    pods.set_all(mode);
                    (StatusCode::OK, format!("every pod is now {mode}\n"))
                }
                Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
            }
        }
        async fn list(State(pods): State<Pods>) -> String {
            pods.lock()
                .iter()
                .map(|(name, s)| format!("{name} {} {}\n", s.addr, s.app.mode()))
                .collect()
        }
        axum::Router::new()
            .route("/mode/{mode}", put(switch).post(switch))
            .route("/pods", get(list))
            .with_state(self.clone())
    }

    /// Every pod served, with its address.
    pub fn served(&self) -> Vec<(String, SocketAddr)> {
        self.lock().iter().map(|(n, s)| (n.clone(), s.addr)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Served>> {
        self.served.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn retain(&self, keep: impl Fn(&String) -> bool) {
        self.lock().retain(|n, _| keep(n));
    }

    /// Serves `pod` if it runs (and is not being deleted), else stops serving it.
    async fn apply(&self, pod: &Pod) {
        let name = name(pod);
        let Some(addr) = running_at(pod) else {
            self.lock().remove(&name);
            return;
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if self
            .lock()
            .get(&name)
            .is_some_and(|s| s.uid == uid && s.addr == addr)
        {
            return;
        }
        self.lock().remove(&name);
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                // The address was a deleted pod's, whose deletion has not reached us yet.
                self.lock().retain(|_, s| s.addr != addr);
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => l,
                    Err(e) => return eprintln!("flaky-app: pod {name}: cannot listen on {addr}: {e}"),
                }
            }
            Err(e) => return eprintln!("flaky-app: pod {name}: cannot listen on {addr}: {e}"),
        };
        let app = Flaky::new(self.slow_delay);
        let mode = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MODE_ANNOTATION))
            .and_then(|m| m.parse::<Mode>().ok())
            .unwrap_or_else(|| *self.first_mode.lock().unwrap_or_else(PoisonError::into_inner));
        app.set(mode);
        let task = app.serve(listener);
        eprintln!(
            "flaky-app: pod {name}: serving on http://{addr}/healthz ({})",
            app.mode()
        );
        self.lock().insert(name, Served { uid, addr, app, task });
    }
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// Where a running pod's `http` container port is, if the pod runs (phase Running, an IP, not
/// being deleted). Loopback IPs only: this serves kwok's pods on this machine and nothing else.
fn running_at(pod: &Pod) -> Option<SocketAddr> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let ip: IpAddr = status.pod_ip.as_deref()?.parse().ok()?;
    if !ip.is_loopback() {
        return None;
    }
    let port = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("http"))?
        .container_port;
    Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
}
