//! A real Kubernetes control plane for the realapi scenario: apphealth-cluster's [`LocalCluster`]
//! (etcd and kube-apiserver; with kube-controller-manager, kube-scheduler and kwok when pods must
//! really be made, scheduled and run), stopped when dropped. It gets the operator's CRD, the
//! bench's namespace and a ServiceAccount for the operator, bound to `cluster-admin`: the operator
//! runs with a token of its own, as the chart runs it, so that the API server can tell its
//! requests from the bench's.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use apphealth_cluster::{Component, LocalCluster, Options};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::ServiceAccount,
};
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};

use crate::{
    Result,
    cluster::{self, NS, condition},
    exposition::Exposition,
    scenario::Ctx,
};

/// Where the operator's ServiceAccount lives.
pub const OPERATOR_NS: &str = "apphealth-system";
pub const OPERATOR_SA: &str = "apphealth-operator";

pub struct Plane {
    /// Stops every process of the control plane when dropped.
    pub cluster: LocalCluster,
    /// The administrator's client (`system:masters`), for the bench's own requests.
    pub client: Client,
    pub dir: PathBuf,
}

/// kube-apiserver's `gitVersion`, once a control plane has run.
static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn version() -> String {
    VERSION.get().cloned().unwrap_or_else(|| "kube-apiserver".into())
}

/// The kind of object a manifest is, as the API serves it.
fn resource_of(obj: &Value) -> Result<(ApiResource, bool)> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let (plural, namespaced) = match kind {
        "Pod" => ("pods", true),
        "Deployment" => ("deployments", true),
        "ServiceAccount" => ("serviceaccounts", true),
        "AppHealthPolicy" => ("apphealthpolicies", true),
        "Namespace" => ("namespaces", false),
        "ClusterRoleBinding" => ("clusterrolebindings", false),
        "CustomResourceDefinition" => ("customresourcedefinitions", false),
        "FlowSchema" => ("flowschemas", false),
        "PriorityLevelConfiguration" => ("prioritylevelconfigurations", false),
        other => return Err(format!("the bench does not create {other} objects").into()),
    };
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Ok((ApiResource::from_gvk_with_plural(&gvk, plural), namespaced))
}

/// The directory of the control plane's binaries: `--kube-bin`, or what `tools/kube/build.sh`
/// prints (it builds them once, then answers from its cache).
fn binaries(ctx: &Ctx) -> Result<PathBuf> {
    if let Some(bin) = &ctx.kube_bin {
        return Ok(bin.clone());
    }
    let script = Path::new("tools/kube/build.sh");
    let output = Command::new(script)
        .output()
        .map_err(|e| format!("{}: {e} (or pass --kube-bin)", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let stdout = String::from_utf8(output.stdout)?;
    let dir = stdout.lines().last().unwrap_or_default().trim();
    Ok(PathBuf::from(dir))
}

impl Plane {
    /// Starts a control plane in `<work>/<case>/kube`: every component with `full`, else etcd and
    /// kube-apiserver alone (an API-only plane, as envtest runs). Installs the CRD (waiting until
    /// it is established), namespace `bench` and the operator's ServiceAccount.
    pub async fn start(ctx: &Ctx, case: &str, full: bool) -> Result<Plane> {
        // Absolute: the control plane's files name each other by path.
        let dir = std::path::absolute(ctx.case_dir(case)?)?;
        let mut options = Options::new(dir.join("kube"), binaries(ctx)?);
        if !full {
            options.components = vec![Component::Etcd, Component::KubeApiserver];
        }
        // The launcher picks free ports and frees them for the components to bind; another
        // process's connection can take one meanwhile. Then it is started again.
        let mut tries = 1;
        let cluster = loop {
            match LocalCluster::start(options.clone()).await {
                Ok(c) => break c,
                Err(e) if tries < 3 && e.to_string().contains("address already in use") => {
                    ctx.incident(format!(
                        "{case}: a port was taken while the control plane started ({e}); started again"
                    ));
                    tries += 1;
                }
                Err(e) => return Err(format!("the local control plane did not start: {e}").into()),
            }
        };
        let client = cluster
            .client()
            .await
            .map_err(|e| format!("a client for the local control plane: {e}"))?;
        let plane = Plane { cluster, client, dir };
        if let Some(v) = plane.get_json("/version").await?["gitVersion"].as_str() {
            let _ = VERSION.set(format!("kube-apiserver {v}"));
        }
        for crd in &ctx.crds {
            plane.create(crd.clone()).await?;
        }
        plane.wait_established().await?;
        for ns in [NS, OPERATOR_NS] {
            plane
                .create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
                .await?;
        }
        plane
            .create(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                           "metadata": {"name": OPERATOR_SA, "namespace": OPERATOR_NS}}))
            .await?;
        if !full {
            // What kube-controller-manager would make: admission wants a pod's ServiceAccount to exist.
            plane
                .create(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                               "metadata": {"name": "default", "namespace": NS}}))
                .await?;
        }
        plane
            .create(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": OPERATOR_SA},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": OPERATOR_NS}]
            }))
            .await?;
        Ok(plane)
    }

    fn dynamic(&self, obj: &Value) -> Result<Api<DynamicObject>> {
        let (resource, namespaced) = resource_of(obj)?;
        Ok(if namespaced {
            let ns = obj["metadata"]["namespace"].as_str().unwrap_or(NS);
            Api::namespaced_with(self.client.clone(), ns, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        })
    }

    /// Creates `obj` (any kind [`resource_of`] knows) as the administrator. A resource the API
    /// server does not serve yet (a CRD just established) is tried again for a few seconds.
    pub async fn create(&self, obj: Value) -> Result<()> {
        let api = self.dynamic(&obj)?;
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let object: DynamicObject = serde_json::from_value(obj)?;
        let mut tries = 0;
        loop {
            match api.create(&PostParams::default(), &object).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 && tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(kube::Error::Api(s)) => return Err(format!("create {name}: {}", s.message).into()),
                Err(e) => return Err(format!("create {name}: {e}").into()),
            }
        }
    }

    /// Creates every object, `concurrency` at a time.
    pub async fn create_all(&self, objects: Vec<Value>, concurrency: usize) -> Result<()> {
        futures::stream::iter(objects)
            .map(|o| self.create(o))
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    /// Deployment `name` (label `app: name`) whose pods serve `http` on `port`, as the test
    /// server's (no controller runs on an API-only plane: nothing makes its pods).
    pub async fn add_deployment(&self, name: &str, replicas: usize, port: u16) -> Result<()> {
        self.create(cluster::deployment(name, replicas, port)).await
    }

    /// A small pod of `app` at `ip`, made ready by the bench (as a kubelet would report it): the
    /// test server's pods, on a real API server.
    pub async fn add_pod(&self, name: &str, app: &str, ip: Ipv4Addr, port: u16) -> Result<()> {
        self.add_pending_pod(name, app, port).await?;
        self.set_pod_ready(name, ip).await
    }

    /// A pod of `app` just created: no status yet.
    pub async fn add_pending_pod(&self, name: &str, app: &str, port: u16) -> Result<()> {
        self.create(cluster::small_pod(name, app, port)).await
    }

    /// Pod `name` runs, ready, at `ip` (what a kubelet would report).
    pub async fn set_pod_ready(&self, name: &str, ip: Ipv4Addr) -> Result<()> {
        self.set_pod_status(
            name,
            json!({"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}],
                   "conditions": [{"type": "Ready", "status": "True"}]}),
        )
        .await
    }

    /// Sets the status of pod `name` in `bench` (what a kubelet would write).
    pub async fn set_pod_status(&self, name: &str, status: Value) -> Result<()> {
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(self.client.clone(), NS);
        pods.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("status of pod {name}: {e}").into())
    }

    async fn wait_established(&self) -> Result<()> {
        let path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/apphealthpolicies.apphealth.io";
        let started = Instant::now();
        loop {
            let established = self
                .get_json(path)
                .await
                .is_ok_and(|crd| condition(&crd, "Established") == Some("True"));
            if established {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err("the CRD was not established within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A kubeconfig (written to `<case>/operator.kubeconfig`) with a token of the operator's
    /// ServiceAccount, from the TokenRequest API, valid for two hours.
    pub async fn operator_kubeconfig(&self) -> Result<PathBuf> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), OPERATOR_NS);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(7200),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let token = accounts
            .create_token_request(OPERATOR_SA, &PostParams::default(), &request)
            .await
            .map_err(|e| format!("a token for the operator: {e}"))?
            .status
            .ok_or("no token in the TokenRequest's answer")?
            .token;
        let path = self.dir.join("operator.kubeconfig");
        std::fs::write(&path, self.cluster.access().token_kubeconfig(&token, OPERATOR_NS))?;
        Ok(path)
    }

    /// kube-apiserver's own metrics (reading them is not counted in `apiserver_request_total`).
    pub async fn metrics(&self) -> Result<Exposition> {
        let request = http::Request::get("/metrics").body(Vec::new())?;
        let text = self
            .client
            .request_text(request)
            .await
            .map_err(|e| format!("GET /metrics of kube-apiserver: {e}"))?;
        Ok(Exposition::parse(&text))
    }

    /// Raw GET of `path` (JSON).
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let request = http::Request::get(path).body(Vec::new())?;
        let text = self
            .client
            .request_text(request)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// CPU seconds kube-apiserver and etcd have used so far.
    pub fn server_cpu_seconds(&self, ticks_per_second: f64) -> f64 {
        self.cluster
            .state
            .processes
            .iter()
            .filter(|p| p.name == "kube-apiserver" || p.name == "etcd")
            .filter_map(|p| crate::process::cpu_seconds_of(p.pid, ticks_per_second).ok())
            .sum()
    }

    pub fn policies(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), NS, &policy_resource())
    }
}

pub fn policy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apphealth.io", "v1alpha1", "AppHealthPolicy"),
        "apphealthpolicies",
    )
}

/// What the bench's own watch of the policies in `bench` sees: which have a `Ready` condition,
/// and which are settled (`Healthy=True`, not `Remediating`). The watch is the administrator's.
pub struct PolicyWatch {
    seen: Arc<Mutex<HashMap<String, (bool, bool)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PolicyWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PolicyWatch {
    pub fn start(plane: &Plane) -> PolicyWatch {
        let seen: Arc<Mutex<HashMap<String, (bool, bool)>>> = Arc::default();
        let events = watcher(plane.policies(), watcher::Config::default()).default_backoff();
        let state = seen.clone();
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            let mut buffer = HashMap::new();
            while let Some(event) = events.next().await {
                let Ok(event) = event else { continue };
                // `data` holds every field but `metadata`: `status` among them.
                let judge = |p: &DynamicObject| {
                    let ready = condition(&p.data, "Ready").is_some();
                    let settled = condition(&p.data, "Healthy") == Some("True")
                        && condition(&p.data, "Remediating") != Some("True");
                    (p.metadata.name.clone().unwrap_or_default(), (ready, settled))
                };
                let mut seen = state.lock().unwrap_or_else(PoisonError::into_inner);
                match event {
                    watcher::Event::Init => buffer.clear(),
                    watcher::Event::InitApply(p) => {
                        let (name, v) = judge(&p);
                        buffer.insert(name, v);
                    }
                    watcher::Event::InitDone => *seen = std::mem::take(&mut buffer),
                    watcher::Event::Apply(p) => {
                        let (name, v) = judge(&p);
                        seen.insert(name, v);
                    }
                    watcher::Event::Delete(p) => {
                        seen.remove(p.metadata.name.as_deref().unwrap_or_default());
                    }
                }
            }
        });
        PolicyWatch { seen, task }
    }

    fn count(&self, which: impl Fn(&(bool, bool)) -> bool) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|v| which(v))
            .count()
    }

    /// Policies seen.
    pub fn seen(&self) -> usize {
        self.count(|_| true)
    }

    /// Whether policy `name` is `Healthy=True` and not remediating.
    pub fn is_settled(&self, name: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .is_some_and(|(_, settled)| *settled)
    }

    /// Policies with a `Ready` condition.
    pub fn ready(&self) -> usize {
        self.count(|(ready, _)| *ready)
    }

    /// Policies `Healthy=True` and not remediating.
    pub fn settled(&self) -> usize {
        self.count(|(_, settled)| *settled)
    }
}
