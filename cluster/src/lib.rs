//! A local Kubernetes control plane built from Kubernetes' own code, run as plain processes on
//! loopback: etcd, kube-apiserver (RBAC, serving certificates, service-account tokens),
//! kube-controller-manager, kube-scheduler, and kwok with fake Nodes whose pods get loopback IPs.
//!
//! `make cluster` starts one in `target/kube` (the binaries come from `tools/kube/build.sh`) and
//! leaves it running; tests start their own. Everything lives in one directory:
//!
//! ```text
//! kubeconfig          the administrator's (system:masters)
//! cluster.json        what runs: pids, command lines, ports (how `down` and `attach` find it)
//! logs/<component>.log
//! pki/  data/  kwok/  kubeconfigs/
//! ```

#![forbid(unsafe_code)]

mod access;
pub mod components;
pub mod kwok;
mod layout;
pub mod pki;
pub mod process;

use std::{
    fs::File,
    future::Future,
    path::{Path, PathBuf},
    process::Child,
    time::Duration,
};

use kube::Client;

pub use access::{Access, client_from};
use access::{certificate_kubeconfig, etcd_healthy, install_crypto_provider, readyz};
pub use components::{Component, Ports};
pub use layout::{Layout, Options, State};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{component} exited while starting ({status}): {reason}\n  its log: {log}")]
    Exited {
        component: String,
        status: String,
        reason: String,
        log: PathBuf,
    },
    #[error("{component} was not ready within {seconds}s ({what}): {reason}\n  its log: {log}")]
    NotReady {
        component: String,
        what: String,
        seconds: u64,
        reason: String,
        log: PathBuf,
    },
    #[error(
        "a local control plane already runs in {dir} (API {api}, kubeconfig {kubeconfig}); `make cluster-down` stops it"
    )]
    AlreadyRunning {
        dir: PathBuf,
        api: String,
        kubeconfig: PathBuf,
    },
    #[error(
        "a local control plane in {dir} is partly down ({stopped} not running); `make cluster-down` stops the rest"
    )]
    PartlyDown { dir: PathBuf, stopped: String },
    #[error("another start-up of a local control plane in {0} is under way")]
    Starting(PathBuf),
    #[error("{name} is missing from {bin}: build the binaries with tools/kube/build.sh (make cluster does)")]
    MissingBinary { name: String, bin: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("certificates: {0}")]
    Pki(#[from] rcgen::Error),
    #[error("{0}: {1}")]
    Kube(String, #[source] kube::Error),
    #[error("{0}")]
    Setup(String),
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub(crate) fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|e| Error::io(path, e))
}

/// How long each component may take to become ready. Generous: the machines have 2 cores, and a
/// cold kube-apiserver installs its bootstrap RBAC policy before /readyz says ok.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A running control plane. Started by [`LocalCluster::start`], it is stopped when dropped unless
/// [`LocalCluster::detach`]ed; found by [`LocalCluster::attach`], it is left running.
#[derive(Debug)]
pub struct LocalCluster {
    pub layout: Layout,
    pub state: State,
    children: Vec<(String, Child)>,
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if !self.children.is_empty() {
            self.stop_processes();
        }
    }
}

impl LocalCluster {
    /// Starts a control plane and returns once a pod can be scheduled and run (or, without the
    /// scheduler and kwok, once the API server is ready). On failure everything it started is
    /// stopped and the error names the component and the log line that says why.
    pub async fn start(opts: Options) -> Result<Self, Error> {
        install_crypto_provider();
        let layout = Layout::new(&opts.dir);
        std::fs::create_dir_all(&layout.dir).map_err(|e| Error::io(&layout.dir, e))?;
        let lock_path = layout.dir.join("lock");
        let lock = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(Error::Starting(layout.dir.clone()));
        }
        if let Some(running) = Self::attach(&layout.dir)? {
            return Err(Error::AlreadyRunning {
                dir: layout.dir.clone(),
                api: running.state.api.clone(),
                kubeconfig: layout.kubeconfig.clone(),
            });
        }
        let ports = prepare(&layout, &opts)?;
        let stages = if opts.components.contains(&Component::Kwok) {
            kwok::configure(&opts.bin, &layout.kwok)?
        } else {
            Vec::new()
        };
        let processes = opts
            .components
            .iter()
            .map(|c| process::Spec {
                name: c.name().into(),
                program: components::program(&opts.bin, *c),
                args: components::args(*c, &layout, &ports, &stages),
                env: if *c == Component::Kwok {
                    // kwok also reads ~/.kwok; a home of its own keeps it to the files given.
                    vec![("HOME".into(), layout.kwok.display().to_string())]
                } else {
                    Vec::new()
                },
                log: layout.log(c.name()),
                pid: 0,
            })
            .collect();
        let mut cluster = Self {
            state: State {
                api: format!("https://127.0.0.1:{}", ports.apiserver),
                etcd: format!("http://127.0.0.1:{}", ports.etcd),
                ports,
                bin: opts.bin.clone(),
                nodes: opts.nodes,
                started: jiff::Timestamp::now().to_string(),
                processes,
            },
            layout,
            children: Vec::new(),
        };
        cluster.boot(&opts).await?;
        Ok(cluster)
    }

    /// Records what runs, after every start: a launcher killed half-way leaves enough behind for
    /// `down` to stop what it started.
    fn save(&self) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(&self.state).map_err(|e| Error::Setup(format!("state: {e}")))?;
        write_file(&self.layout.state, json)
    }

    async fn boot(&mut self, opts: &Options) -> Result<(), Error> {
        let has = |c: Component| opts.components.contains(&c);
        if has(Component::Etcd) {
            self.start_component(Component::Etcd).await?;
        }
        self.start_component(Component::KubeApiserver).await?;
        let client = self.client().await?;
        for c in [
            Component::KubeControllerManager,
            Component::KubeScheduler,
            Component::Kwok,
        ] {
            if has(c) {
                self.spawn(c)?;
            }
        }
        if has(Component::Kwok) {
            kwok::create_nodes(&client, opts.nodes).await?;
        }
        if has(Component::KubeScheduler) && has(Component::Kwok) {
            self.wait_for(Component::KubeScheduler, "a pod scheduled and running", || {
                kwok::run_a_pod(&client)
            })
            .await?;
        }
        Ok(())
    }

    fn spawn(&mut self, component: Component) -> Result<(), Error> {
        let Some(spec) = self
            .state
            .processes
            .iter_mut()
            .find(|p| p.name == component.name())
        else {
            return Ok(());
        };
        let child = spec.spawn()?;
        self.children.push((spec.name.clone(), child));
        self.save()
    }

    /// Polls `check` until it answers, failing as soon as any started component exits.
    async fn wait_for<T, F, Fut>(
        &mut self,
        component: Component,
        what: &str,
        mut check: F,
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            self.check_children()?;
            if let Some(v) = check().await {
                return Ok(v);
            }
            if tokio::time::Instant::now() > deadline {
                let log = self.layout.log(component.name());
                return Err(Error::NotReady {
                    component: component.name().into(),
                    what: what.into(),
                    seconds: READY_TIMEOUT.as_secs(),
                    reason: process::reason(&log),
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn check_children(&mut self) -> Result<(), Error> {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let log = self.layout.log(name);
                return Err(Error::Exited {
                    component: name.clone(),
                    status: status.to_string(),
                    reason: process::reason(&log),
                    log,
                });
            }
        }
        Ok(())
    }

    /// The cluster running in `dir`, if one does (every component it started still runs). A
    /// cluster whose components have all stopped is forgotten.
    pub fn attach(dir: &Path) -> Result<Option<Self>, Error> {
        let layout = Layout::new(dir);
        let Ok(bytes) = std::fs::read(&layout.state) else {
            return Ok(None);
        };
        let state: State = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Setup(format!("{}: {e}", layout.state.display())))?;
        let stopped: Vec<&str> = state
            .processes
            .iter()
            .filter(|p| !p.running())
            .map(|p| p.name.as_str())
            .collect();
        if stopped.len() == state.processes.len() {
            let _ = std::fs::remove_file(&layout.state);
            return Ok(None);
        }
        if !stopped.is_empty() {
            return Err(Error::PartlyDown {
                dir: dir.to_path_buf(),
                stopped: stopped.join(", "),
            });
        }
        Ok(Some(Self {
            layout,
            state,
            children: Vec::new(),
        }))
    }

    /// Stops whatever the cluster in `dir` still runs; returns the components it stopped.
    pub fn stop(dir: &Path) -> Result<Vec<String>, Error> {
        let layout = Layout::new(dir);
        let Ok(bytes) = std::fs::read(&layout.state) else {
            return Ok(Vec::new());
        };
        let state: State = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Setup(format!("{}: {e}", layout.state.display())))?;
        let mut stopped = Vec::new();
        for p in state.processes.iter().rev() {
            if p.running() {
                p.stop(Duration::from_secs(10));
                stopped.push(p.name.clone());
            }
        }
        let _ = std::fs::remove_file(&layout.state);
        Ok(stopped)
    }

    /// Leaves the processes running after this value is gone (what `make cluster` does).
    pub fn detach(mut self) -> State {
        self.children.clear();
        self.state.clone()
    }

    fn stop_processes(&mut self) {
        for p in self.state.processes.iter().rev() {
            p.stop(Duration::from_secs(10));
        }
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
        let _ = std::fs::remove_file(&self.layout.state);
    }

    /// A client with the administrator's identity.
    pub async fn client(&self) -> Result<Client, Error> {
        self.access().client().await
    }

    /// How to reach it: what a test needs, cheap to clone and to keep.
    pub fn access(&self) -> Access {
        Access {
            api: self.state.api.clone(),
            etcd: self.state.etcd.clone(),
            ca: self.layout.pki.ca(),
            kubeconfig: self.layout.kubeconfig.clone(),
        }
    }

    /// Stops one component (the others run on). Only for a cluster this process started.
    pub fn stop_component(&mut self, component: Component) {
        if let Some(p) = self.state.processes.iter().find(|p| p.name == component.name()) {
            p.stop(Duration::from_secs(10));
        }
        self.children.retain_mut(|(name, child)| {
            if name == component.name() {
                let _ = child.wait();
                false
            } else {
                true
            }
        });
    }

    /// Starts a component (again, after [`LocalCluster::stop_component`]: the same ports, the
    /// same data) and, for etcd and the API server, returns once it answers as ready.
    pub async fn start_component(&mut self, component: Component) -> Result<(), Error> {
        self.spawn(component)?;
        match component {
            Component::Etcd => {
                let port = self.state.ports.etcd;
                self.wait_for(component, "GET /health", || etcd_healthy(port))
                    .await
            }
            Component::KubeApiserver => {
                let client = self.client().await?;
                self.wait_for(component, "GET /readyz", || {
                    let client = client.clone();
                    async move { readyz(&client).await.then_some(()) }
                })
                .await
            }
            _ => Ok(()),
        }
    }
}

/// Makes `layout`'s directory ready for a new cluster: every binary there, a stopped cluster's
/// files gone, certificates and the components' kubeconfigs written for free ports; returns the
/// ports.
fn prepare(layout: &Layout, opts: &Options) -> Result<Ports, Error> {
    for c in &opts.components {
        if !components::program(&opts.bin, *c).is_file() {
            return Err(Error::MissingBinary {
                name: c.name().into(),
                bin: opts.bin.clone(),
            });
        }
    }
    for stale in [&layout.data, &layout.pki.dir, &layout.logs, &layout.kwok] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).map_err(|e| Error::io(stale, e))?;
        }
    }
    for d in [&layout.data, &layout.logs, &layout.dir.join("kubeconfigs")] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let ports = Ports::free().map_err(|e| Error::io(Path::new("127.0.0.1"), e))?;
    pki::Pki::generate(&layout.pki.dir, &["127.0.0.1"])?;
    let api = format!("https://127.0.0.1:{}", ports.apiserver);
    for id in [pki::ADMIN, pki::CONTROLLER_MANAGER, pki::SCHEDULER] {
        write_file(
            &layout.kubeconfig_for(id),
            certificate_kubeconfig(layout, &api, id),
        )?;
    }
    Ok(ports)
}
