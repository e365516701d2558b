//! One scenario on the local control plane: a namespace of its own, the chart installed by helm into
//! a second one, the operator binary run as a local process with the chart's ServiceAccount identity
//! (a token from the TokenRequest API, so RBAC is enforced exactly as the chart grants it), and the
//! flaky app serving the scenario's kwok pods at their loopback IPs.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use k8s_openapi::api::{
    apps::v1::Deployment,
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::{Namespace, Pod, PodSpec, ServiceAccount},
};
use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use serde_json::{Value, json};

use apphealth_cluster::Access;

pub use crate::support::{condition, merge};

use crate::{
    env::{PATIENCE, env, helm, unique, workspace},
    flaky::{Flaky, Mode},
    pods::Pods,
};

/// How long the flaky app takes to answer in `slow` mode.
pub const SLOW: Duration = Duration::from_millis(600);

/// How the chart is installed.
#[derive(Clone, Debug, Default)]
pub struct Install {
    /// `rbac.namespaced=true`: a Role and RoleBinding in the scenario's namespace, no cluster-wide
    /// right.
    pub namespaced: bool,
    /// More `--set` values, e.g. `permissions.restartPods=false`.
    pub values: Vec<String>,
}

pub struct Operator {
    child: tokio::process::Child,
    pub log: PathBuf,
    pub pod: String,
    /// Where it serves /metrics, /healthz and /readyz.
    pub http: SocketAddr,
}

pub struct Scenario {
    /// The cluster it runs on.
    pub access: Access,
    pub ns: String,
    pub system: String,
    pub release: String,
    pub client: Client,
    pub pods: Pods,
    pods_task: tokio::task::JoinHandle<()>,
    /// The `http` container port of every workload here.
    pub port: u16,
    pub operators: Vec<Option<Operator>>,
    pub dir: PathBuf,
}

impl Drop for Scenario {
    fn drop(&mut self) {
        self.pods_task.abort();
        // The operators are killed with their handles (kill_on_drop).
    }
}

pub fn policy_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "apphealth.io",
        "v1alpha1",
        "AppHealthPolicy",
    ))
}

impl Scenario {
    /// A namespace `<name>-<run>-N` for the workloads and policies, and the chart installed as
    /// release `ah-<name>-<run>-N` in `<name>-<run>-N-op`, watching the first; on the shared cluster.
    pub async fn new(name: &str, install: Install) -> Self {
        Self::on(env().await.cluster.access(), name, install).await
    }

    /// The same, on the cluster `access` reaches (one a test started for itself).
    pub async fn on(access: Access, name: &str, install: Install) -> Self {
        let client = access.client().await.expect("a client for the cluster");
        let ns = unique(name);
        let system = format!("{ns}-op");
        let release = format!("ah-{ns}");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
        let dir = workspace().join("target/cluster-tests").join(&ns);
        std::fs::create_dir_all(&dir).unwrap();

        let chart = workspace().join("charts/apphealth-operator");
        let watch = format!("watchNamespaces={{{ns}}}");
        let mut args = vec![
            "install",
            &release,
            chart.to_str().unwrap(),
            "--namespace",
            &system,
            "--create-namespace",
            "--wait",
            "--timeout=90s",
            "--set",
            "allowLoopback=true",
            "--set",
            &watch,
        ];
        if install.namespaced {
            args.extend(["--set", "rbac.namespaced=true"]);
        }
        for v in &install.values {
            args.extend(["--set", v]);
        }
        helm(&access.kubeconfig, &args).await;

        let pods = Pods::new(SLOW);
        let pods_task = tokio::spawn(pods.clone().run(Api::namespaced(client.clone(), &ns)));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self {
            access,
            ns,
            system,
            release,
            client,
            pods,
            pods_task,
            port,
            operators: Vec::new(),
            dir,
        }
    }

    /// Deployment `name` with `replicas` pods of the flaky app (their template carries
    /// `annotations`), once all of them run and are served.
    pub async fn deploy(&self, name: &str, replicas: i32, annotations: Value) -> Vec<String> {
        self.create_deployment(name, replicas, annotations, false).await;
        self.wait_served(name, replicas as usize).await
    }

    /// Like [`Scenario::deploy`], but every pod the Deployment makes waits for [`Scenario::release`]
    /// before it is scheduled (a scheduling gate): a replacement stays Pending, and not Ready, until
    /// the test says so.
    pub async fn deploy_gated(&self, name: &str, replicas: i32) -> Vec<String> {
        self.create_deployment(name, replicas, json!({}), true).await;
        self.wait(&format!("{replicas} pods of {name} released"), || async {
            self.release(name).await;
            (self.running_pods(name).await.len() == replicas as usize).then_some(())
        })
        .await;
        self.wait_served(name, replicas as usize).await
    }

    /// Lets `app`'s gated pods be scheduled; returns how many were released.
    pub async fn release(&self, app: &str) -> usize {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let gated: Vec<String> = pods
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| {
                p.spec
                    .as_ref()
                    .is_some_and(|s| s.scheduling_gates.as_ref().is_some_and(|g| !g.is_empty()))
            })
            .filter_map(|p| p.metadata.name)
            .collect();
        for pod in &gated {
            pods.patch(
                pod,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"schedulingGates": null}})),
            )
            .await
            .unwrap();
        }
        gated.len()
    }

    async fn create_deployment(&self, name: &str, replicas: i32, annotations: Value, gated: bool) {
        let gates = if gated {
            json!([{"name": "apphealth.io/test-hold"}])
        } else {
            json!([])
        };
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}, "annotations": annotations},
                    "spec": {
                        "terminationGracePeriodSeconds": 0,
                        "schedulingGates": gates,
                        "containers": [{"name": "app", "image": "flaky",
                                         "ports": [{"name": "http", "containerPort": self.port}],
                                         "resources": {"requests": {"memory": "64Mi", "cpu": "50m"},
                                                       "limits": {"memory": "128Mi", "cpu": "200m"}}}]
                    }
                }
            }
        });
        self.deployments()
            .create(
                &PostParams::default(),
                &serde_json::from_value(deployment).unwrap(),
            )
            .await
            .unwrap();
    }

    /// Waits until `count` running pods of `app` are served; returns their names.
    pub async fn wait_served(&self, app: &str, count: usize) -> Vec<String> {
        self.wait(&format!("{count} pods of {app} running and served"), || async {
            let pods = self.running_pods(app).await;
            let served = self.pods.served();
            (pods.len() == count && pods.iter().all(|p| served.iter().any(|(n, _)| n == p))).then_some(pods)
        })
        .await
    }

    /// The names of `app`'s pods that run and are not being deleted.
    pub async fn running_pods(&self, app: &str) -> Vec<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let mut names: Vec<String> = pods
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| p.metadata.name)
            .collect();
        names.sort();
        names
    }

    pub fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn deployment(&self, name: &str) -> Value {
        serde_json::to_value(self.deployments().get(name).await.unwrap()).unwrap()
    }

    /// The app serving pod `pod`.
    pub fn app(&self, pod: &str) -> Flaky {
        self.pods
            .app(pod)
            .unwrap_or_else(|| panic!("pod {pod} is not served"))
    }

    /// Switches every served pod of `app` to `mode`.
    pub async fn set_all(&self, app: &str, mode: Mode) {
        for pod in self.running_pods(app).await {
            if let Some(a) = self.pods.app(&pod) {
                a.set(mode);
            }
        }
    }

    pub fn policies(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.ns, &policy_resource())
    }

    /// Creates policy `name` targeting Deployment `target`, probing every 2s, after merging `spec`
    /// (a null removes a field).
    pub async fn create_policy(&self, name: &str, target: &str, spec: Value) {
        let mut base = json!({
            "targetRef": {"kind": "Deployment", "name": target},
            "probe": {"http": {"port": "http", "path": "/healthz", "timeoutSeconds": 1}, "periodSeconds": 2},
            "triggers": [{"consecutiveFailures": {"threshold": 2}}],
            "recovery": {"consecutiveSuccesses": 1},
            "remediation": {"steps": [{"action": "RolloutRestart", "timeout": "1h"}], "cooldown": "1h"}
        });
        merge(&mut base, spec);
        let policy = json!({
            "apiVersion": "apphealth.io/v1alpha1", "kind": "AppHealthPolicy",
            "metadata": {"name": name, "namespace": self.ns}, "spec": base
        });
        self.policies()
            .create(&PostParams::default(), &serde_json::from_value(policy).unwrap())
            .await
            .unwrap();
    }

    pub async fn policy(&self, name: &str) -> Value {
        serde_json::to_value(self.policies().get(name).await.unwrap()).unwrap()
    }

    /// Starts one more operator process with the chart's identity and arguments, as the chart's
    /// Deployment would run it: its args and environment are read from the installed Deployment
    /// (POD_NAME is one of its pods, POD_NAMESPACE the release's namespace), its kubeconfig holds a
    /// token of the chart's ServiceAccount. Returns its index.
    pub async fn start_operator(&mut self) -> usize {
        let index = self.operators.len();
        let pod = self.chart_pod(index).await;
        let (pod_spec, args, env, http) = self.chart_command(&pod).await;
        let account = pod_spec
            .service_account_name
            .expect("the chart names a ServiceAccount");
        let token = self.token(&account).await;
        let kubeconfig = self.dir.join(format!("operator-{index}.kubeconfig"));
        std::fs::write(&kubeconfig, self.access.token_kubeconfig(&token, &self.system)).unwrap();
        let log = self.dir.join(format!("operator-{index}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_apphealth-operator"))
            .args(&args)
            .envs(env)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("the operator binary starts");
        self.operators.push(Some(Operator {
            child,
            log,
            pod,
            http,
        }));
        index
    }

    /// The name of the chart's pod number `index` (kwok runs them, and nothing in them): the
    /// operator process started `index`-th stands in for it.
    async fn chart_pod(&self, index: usize) -> String {
        let chart_pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.system);
        let mut names: Vec<String> = chart_pods
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={}", self.release)))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        names.sort();
        names
            .get(index)
            .cloned()
            .unwrap_or_else(|| format!("{}-local-{index}", self.release))
    }

    /// The chart's pod spec, and the arguments and environment its container runs with as pod
    /// `pod` (its `--http-addr` moved to a free port on loopback).
    async fn chart_command(&self, pod: &str) -> (PodSpec, Vec<String>, Vec<(String, String)>, SocketAddr) {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.system);
        let chart = deployments
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={}", self.release)))
            .await
            .unwrap()
            .items
            .into_iter()
            .next()
            .expect("the chart's Deployment");
        let pod_spec = chart.spec.expect("spec").template.spec.expect("pod spec");
        let container = pod_spec.containers[0].clone();
        let http: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let args = container
            .args
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                if a.starts_with("--http-addr=") {
                    format!("--http-addr={http}")
                } else {
                    a
                }
            })
            .collect();
        let env = container
            .env
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let value = match (e.value, e.value_from.and_then(|f| f.field_ref)) {
                    (Some(v), _) => v,
                    (None, Some(f)) if f.field_path == "metadata.namespace" => self.system.clone(),
                    (None, Some(f)) if f.field_path == "metadata.name" => pod.to_owned(),
                    (None, other) => panic!(
                        "the chart sets {} from {other:?}, which this harness cannot",
                        e.name
                    ),
                };
                (e.name, value)
            })
            .collect();
        (pod_spec, args, env, http)
    }

    /// A token of ServiceAccount `account` of the chart, from the TokenRequest API.
    async fn token(&self, account: &str) -> String {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.system);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        accounts
            .create_token_request(account, &PostParams::default(), &request)
            .await
            .unwrap()
            .status
            .expect("a token")
            .token
    }

    /// Kills operator `i` as SIGKILL would.
    pub async fn kill_operator(&mut self, i: usize) {
        if let Some(mut op) = self.operators[i].take() {
            let _ = op.child.kill().await;
        }
    }

    pub fn operator(&self, i: usize) -> &Operator {
        self.operators[i].as_ref().expect("a running operator")
    }

    /// Everything the operators logged, for a failing test's message.
    fn operator_logs(&self) -> String {
        let mut out = String::new();
        for (i, op) in self.operators.iter().enumerate() {
            let path = self.dir.join(format!("operator-{i}.log"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out += &format!(
                "--- operator {i}{} ({}), last lines:\n",
                if op.is_some() { "" } else { " (stopped)" },
                path.display()
            );
            for line in tail.into_iter().rev() {
                out += line;
                out.push('\n');
            }
        }
        out
    }

    /// Polls `check` until it returns Some; after [`PATIENCE`] fails the test with the operators'
    /// last log lines and the policies' status.
    pub async fn wait<T, F, Fut>(&self, what: &str, check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        self.wait_for(what, PATIENCE, check).await
    }

    pub async fn wait_for<T, F, Fut>(&self, what: &str, limit: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                let policies = self
                    .policies()
                    .list(&ListParams::default())
                    .await
                    .map(|l| {
                        l.items
                            .iter()
                            .map(|p| serde_json::to_string_pretty(&p.data["status"]).unwrap_or_default())
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                panic!(
                    "timed out after {limit:?} waiting for {what} in {}\n{}--- policies' status:\n{policies}",
                    self.ns,
                    self.operator_logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until policy `name`'s condition `type_` has `status` (and `reason`, if given).
    pub async fn wait_condition(&self, name: &str, type_: &str, status: &str, reason: Option<&str>) -> Value {
        self.wait(&format!("{name}: {type_}={status} {reason:?}"), || async {
            let policy = self.policy(name).await;
            let c = condition(&policy, type_)?;
            (c["status"] == status && reason.is_none_or(|r| c["reason"] == r)).then_some(policy)
        })
        .await
    }

    /// Waits until policy `name`'s history has a record of `action` with `result`; returns it.
    pub async fn wait_record(&self, name: &str, action: &str, result: &str) -> Value {
        self.wait(&format!("{name}: a {action} record {result}"), || async {
            self.policy(name).await["status"]["history"]
                .as_array()?
                .iter()
                .find(|r| r["action"] == action && r["result"] == result)
                .cloned()
        })
        .await
    }

    /// Events in the scenario's namespace about `regarding` (any kind), as (reason, note).
    pub async fn events(&self, regarding: &str) -> Vec<(String, String)> {
        self.events_about(regarding)
            .await
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// Events in the scenario's namespace about `regarding` (any kind).
    async fn events_about(&self, regarding: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.client.clone(), &self.ns);
        events
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding))
            .collect()
    }

    /// The first Event `reason` about `regarding`, once there is one.
    pub async fn wait_event_object(
        &self,
        regarding: &str,
        reason: &str,
    ) -> k8s_openapi::api::events::v1::Event {
        self.wait(&format!("an event {reason} about {regarding}"), || async {
            self.events_about(regarding)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))
        })
        .await
    }

    pub async fn wait_event(&self, regarding: &str, reason: &str) -> String {
        self.wait(&format!("an event {reason} about {regarding}"), || async {
            self.events(regarding)
                .await
                .into_iter()
                .find(|(r, _)| r == reason)
                .map(|(_, note)| note)
        })
        .await
    }

    /// Removes what the scenario made: the operators, the release, both namespaces.
    pub async fn finish(mut self) {
        for i in 0..self.operators.len() {
            self.kill_operator(i).await;
        }
        let uninstall = [
            "uninstall",
            &self.release,
            "--namespace",
            &self.system,
            "--wait=false",
        ];
        helm(&self.access.kubeconfig, &uninstall).await;
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for ns in [&self.ns, &self.system] {
            let _ = namespaces.delete(ns, &DeleteParams::default()).await;
        }
    }
}
