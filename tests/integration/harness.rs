//! A whole environment for controller scenarios on one tokio runtime: the in-process API test
//! server, "pods" served by the flaky demo app on distinct loopback IPs, and the real operator
//! (`controller::run`) talking to the server through an unchanged `kube::Client`.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use apphealth_operator::{
    clock::{OffsetClock, SystemClock},
    controller,
    observe::reach::Reach,
};
use apphealth_testserver::TestServer;
use serde_json::{Value, json};

pub use crate::support::{condition, merge};
use crate::{
    flaky::{Flaky, Mode},
    support::{wait_on_changes, wait_until},
};

pub const NS: &str = "shop";

/// How long the flaky app takes to answer in `slow` mode: past a 300ms slowResponses threshold,
/// within the 1s probe timeout.
pub const SLOW: Duration = Duration::from_millis(600);

/// How long a scenario waits for the operator to react before failing.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Each harness takes its own block of loopback addresses, so parallel tests never share a port.
static NEXT_BLOCK: AtomicU8 = AtomicU8::new(1);

pub struct Pod {
    pub name: String,
    pub app: Flaky,
    _task: tokio::task::JoinHandle<()>,
}

pub struct Harness {
    pub server: TestServer,
    block: u8,
    pub clock: OffsetClock<SystemClock>,
    pub pods: Vec<Pod>,
    pub port: u16,
    operator: Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some((_, task)) = self.operator.take() {
            task.abort();
        }
    }
}

/// An operator instance run in this process (`controller::run` against the harness's server and
/// clock): stopped gracefully, or aborted as a process would be killed.
pub struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<apphealth_operator::Result<()>>,
}

impl Running {
    pub fn spawn(h: &Harness, client: kube::Client, config: controller::Config) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let clock = Arc::new(h.clock.clone());
        let task = tokio::spawn(async move {
            controller::run(client, config, clock, async move {
                let _ = stopped.await;
            })
            .await
        });
        Self {
            stop: Some(stop),
            task,
        }
    }

    /// Stops it gracefully, and fails the test unless it stops in time and without an error.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the instance stops")
            .unwrap()
            .expect("a graceful stop is not an error");
    }

    /// Ends it without a word, as SIGKILL would: nothing is released.
    pub fn kill(self) {
        self.task.abort();
    }
}

pub fn client(server: &TestServer) -> kube::Client {
    let config = kube::Config::new(server.url().parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

/// A client without kube's retries, as the binary's direct client for evictions (a budget's 429
/// is an answer, not a reason to retry).
pub fn direct_client(server: &TestServer) -> kube::Client {
    let mut direct = kube::Config::new(server.url().parse().unwrap());
    direct.default_retry = false;
    kube::Client::try_from(direct).unwrap()
}

impl Harness {
    /// A server with the CRD installed, Deployment `web` in `shop`, and `pods` ready pods serving
    /// the flaky app on one port at 127.0.B.1, 127.0.B.2, …
    pub async fn new(pods: usize) -> Self {
        apphealth_operator::observe::prober::install_crypto_provider();
        let server = TestServer::start().await.unwrap();
        server
            .create(serde_json::to_value(apphealth_operator::api::crd()).unwrap())
            .unwrap();
        server
            .create(serde_json::to_value(apphealth_operator::api::cluster_crd()).unwrap())
            .unwrap();

        let block = NEXT_BLOCK.fetch_add(1, Ordering::SeqCst);
        let (port, listeners) = bind_same_port(block, pods).await;
        server.create(deployment("web", port)).unwrap();
        let mut harness = Self {
            server,
            block,
            clock: OffsetClock::new(SystemClock),
            pods: Vec::new(),
            port,
            operator: None,
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            let ip = listener.local_addr().unwrap().ip();
            let app = Flaky::new(SLOW);
            let task = app.serve(listener);
            let name = format!("web-{}", (b'a' + u8::try_from(i).unwrap()) as char);
            harness.add_pod(&name, ip, "web");
            harness.pods.push(Pod {
                name,
                app,
                _task: task,
            });
        }
        harness
    }

    /// Address `octet` of this harness's block of loopback addresses, 127.0.B.`octet` (the pods of
    /// `new` take the first ones).
    pub fn address(&self, octet: u8) -> IpAddr {
        Ipv4Addr::new(127, 0, self.block, octet).into()
    }

    /// Creates a ready pod of `app` at `ip`, with the `http` container port.
    pub fn add_pod(&self, name: &str, ip: IpAddr, app: &str) {
        self.add_pod_in(NS, name, ip, app);
    }

    /// [`Harness::add_pod`] in `namespace`.
    pub fn add_pod_in(&self, namespace: &str, name: &str, ip: IpAddr, app: &str) {
        self.server
            .create(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
                "spec": {"containers": [{"name": "app", "image": "flaky",
                          "ports": [{"name": "http", "containerPort": self.port}]}]}
            }))
            .unwrap();
        self.server
            .patch_status(
                "v1",
                "Pod",
                Some(namespace),
                name,
                json!({"status": {"phase": "Running", "podIP": ip.to_string(),
                        "conditions": [{"type": "Ready", "status": "True"}]}}),
            )
            .unwrap();
    }

    /// Adds Deployment `name` with one ready pod `{name}-a`, served by its own flaky app on the
    /// harness port at the next loopback address of this harness's block.
    pub async fn add_workload(&mut self, name: &str) -> Flaky {
        self.add_workload_in(NS, name).await
    }

    /// [`Harness::add_workload`] in `namespace`.
    pub async fn add_workload_in(&mut self, namespace: &str, name: &str) -> Flaky {
        let mut workload = deployment(name, self.port);
        workload["metadata"]["namespace"] = json!(namespace);
        self.server.create(workload).unwrap();
        let octet = u8::try_from(self.pods.len() + 1).unwrap();
        let ip: IpAddr = Ipv4Addr::new(127, 0, self.block, octet).into();
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, self.port))
            .await
            .unwrap();
        let app = Flaky::new(SLOW);
        let task = app.serve(listener);
        let pod = format!("{name}-a");
        self.add_pod_in(namespace, &pod, ip, name);
        self.pods.push(Pod {
            name: pod,
            app: app.clone(),
            _task: task,
        });
        app
    }

    /// Merges `status` into pod `name`'s status, as the kubelet would report it.
    pub fn set_pod_status(&self, name: &str, status: Value) {
        self.server
            .patch_status("v1", "Pod", Some(NS), name, json!({ "status": status }))
            .unwrap();
    }

    /// Gives pod `name`'s container resource limits (the test server does not forbid editing a pod spec).
    pub fn set_pod_limits(&self, name: &str, memory: &str, cpu: &str) {
        let mut pod = self.server.get("v1", "Pod", Some(NS), name).unwrap();
        pod["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": memory, "cpu": cpu}});
        self.server.replace(pod).unwrap();
    }

    pub fn pod(&self, name: &str) -> &Pod {
        self.pods.iter().find(|p| p.name == name).unwrap()
    }

    pub fn set_all(&self, mode: Mode) {
        for pod in &self.pods {
            pod.app.set(mode);
        }
    }

    /// Creates a policy `name` targeting Deployment `web`, probing every 2s, after merging `spec`.
    pub fn create_policy(&self, name: &str, spec: Value) {
        let mut base = json!({
            "targetRef": {"kind": "Deployment", "name": "web"},
            "probe": {"http": {"port": "http", "path": "/healthz", "timeoutSeconds": 1}, "periodSeconds": 2},
            "triggers": [{"consecutiveFailures": {"threshold": 2}}],
            "recovery": {"consecutiveSuccesses": 1},
            "remediation": {"steps": [{"action": "RolloutRestart", "timeout": "1h"}], "cooldown": "1h"}
        });
        merge(&mut base, spec);
        self.server
            .create(json!({
                "apiVersion": "apphealth.io/v1alpha1", "kind": "AppHealthPolicy",
                "metadata": {"name": name, "namespace": NS}, "spec": base
            }))
            .unwrap();
    }

    /// The operator's configuration for this harness: its "pods" are on loopback, so
    /// `--allow-loopback`; the test API server's own address stays refused.
    pub fn config(&self) -> controller::Config {
        controller::Config {
            reach: Reach::new(true, [self.server.addr()]),
            ..controller::Config::default()
        }
    }

    /// Starts the operator (all namespaces unless `namespace` is given).
    pub fn start_operator(&mut self, namespace: Option<&str>) {
        self.start_operator_with(controller::Config {
            namespaces: namespace.into_iter().map(str::to_owned).collect(),
            ..self.config()
        });
    }

    /// Starts the operator with `config`, made from [`Harness::config`] (its clients are made here,
    /// against the test server; Notify retries quickly).
    pub fn start_operator_with(&mut self, config: controller::Config) {
        let client = client(&self.server);
        let config = controller::Config {
            direct_client: Some(direct_client(&self.server)),
            notify_backoff: Duration::from_millis(50),
            ..config
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let clock = Arc::new(self.clock.clone());
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            controller::run(client, config, clock, shutdown).await.unwrap();
        });
        self.operator = Some((stop, task));
    }

    /// Whether the operator started by `start_operator*` is still running (it has not returned or
    /// panicked).
    pub fn operator_running(&self) -> bool {
        self.operator
            .as_ref()
            .is_some_and(|(_, task)| !task.is_finished())
    }

    /// Stops the operator gracefully and waits for it.
    pub async fn stop_operator(&mut self) {
        if let Some((stop, task)) = self.operator.take() {
            let _ = stop.send(());
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("operator stops")
                .unwrap();
        }
    }

    /// Kills the operator, as SIGKILL would: whatever it was doing stops where it is (requests in
    /// flight included), and nothing it held in memory survives.
    pub async fn kill_operator(&mut self) {
        if let Some((_, task)) = self.operator.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Merges `status` (`{"status": {...}}`) into policy `name`'s status, as an operator that
    /// stopped would have left it.
    pub fn seed_status(&self, name: &str, status: Value) {
        self.server
            .patch_status("apphealth.io/v1alpha1", "AppHealthPolicy", Some(NS), name, status)
            .unwrap();
    }

    /// Any change to the policy makes the controller look again (after a clock jump, say).
    pub fn touch_policy(&self, name: &str) {
        let mut policy = self.policy(name);
        let n = policy["metadata"]["annotations"]["touched"]
            .as_str()
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0);
        policy["metadata"]["annotations"]["touched"] = json!((n + 1).to_string());
        self.server.replace(policy).unwrap();
    }

    /// Waits until the policy's history has a record of `action` with `result`; returns it.
    pub async fn wait_record(&self, name: &str, action: &str, result: &str) -> Value {
        self.wait_state(&format!("{name}: a {action} record {result}"), || {
            self.policy(name)["status"]["history"]
                .as_array()?
                .iter()
                .find(|r| r["action"] == action && r["result"] == result)
                .cloned()
        })
        .await
    }

    /// Waits until `check` of the server's state returns Some, looking after each change.
    pub async fn wait_state<T>(&self, what: &str, check: impl FnMut() -> Option<T>) -> T {
        wait_on_changes(what, PATIENCE, self.server.changes(), check).await
    }

    pub fn policy(&self, name: &str) -> Value {
        self.server
            .get("apphealth.io/v1alpha1", "AppHealthPolicy", Some(NS), name)
            .unwrap()
    }

    pub fn deployment(&self) -> Value {
        self.server.get("apps/v1", "Deployment", Some(NS), "web").unwrap()
    }

    /// Waits until the policy's condition `type_` has `status` (and `reason`, if given); returns the policy.
    pub async fn wait_condition(&self, name: &str, type_: &str, status: &str, reason: Option<&str>) -> Value {
        let what = format!("{name}: {type_}={status} {reason:?}");
        self.wait_state(&what, || {
            let policy = self.policy(name);
            let c = condition(&policy, type_)?;
            (c["status"] == status && reason.is_none_or(|r| c["reason"] == r)).then_some(policy)
        })
        .await
    }

    /// Waits until `pod` has answered `rounds` more health checks.
    pub async fn wait_rounds(&self, pod: &str, rounds: u64) {
        let app = &self.pod(pod).app;
        let target = app.hits() + rounds;
        wait_until(&format!("{rounds} probe rounds of {pod}"), PATIENCE, || async {
            (app.hits() >= target).then_some(())
        })
        .await;
    }

    /// Asserts that `rounds` probe rounds of `pod` (after one to settle) cost no API writes.
    pub async fn assert_no_writes_over(&self, pod: &str, rounds: u64) {
        self.wait_rounds(pod, 1).await;
        self.server.clear_requests();
        self.wait_rounds(pod, rounds).await;
        let writes: Vec<_> = self
            .server
            .requests()
            .into_iter()
            .filter(|r| r.is_write())
            .collect();
        assert!(writes.is_empty(), "{rounds} steady rounds wrote: {writes:?}");
    }

    /// Waits until the newest record in `status.history` has `result`; returns the policy.
    pub async fn wait_remediation_result(&self, name: &str, result: &str) -> Value {
        self.wait_state(&format!("{name}: history[0].result={result}"), || {
            let p = self.policy(name);
            (p["status"]["history"][0]["result"] == result).then_some(p)
        })
        .await
    }

    /// Events about `policy`, as (reason, note).
    pub fn events(&self, policy: &str) -> Vec<(String, String)> {
        self.server
            .list("events.k8s.io/v1", "Event", Some(NS))
            .into_iter()
            .filter(|e| e["regarding"]["name"] == policy)
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or_default().to_owned(),
                    e["note"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    pub async fn wait_event(&self, policy: &str, reason: &str) -> String {
        self.wait_state(&format!("event {reason} for {policy}"), || {
            self.events(policy)
                .into_iter()
                .find(|(r, _)| r == reason)
                .map(|(_, note)| note)
        })
        .await
    }

    /// Write requests (POST/PUT/PATCH/DELETE) the server has seen whose path contains `fragment`.
    pub fn writes_to(&self, fragment: &str) -> usize {
        self.server
            .requests()
            .iter()
            .filter(|r| r.is_write() && r.path.contains(fragment))
            .count()
    }
}

pub fn restarted_at(deployment: &Value) -> Option<String> {
    deployment["spec"]["template"]["metadata"]["annotations"]["apphealth.io/restartedAt"]
        .as_str()
        .map(str::to_owned)
}

fn deployment(name: &str, port: u16) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "flaky", "ports": [{"name": "http", "containerPort": port}]}]}
            }
        }
    })
}

/// Binds `count` listeners on 127.0.`block`.1, .2, … all on one port (bounded retries).
async fn bind_same_port(block: u8, count: usize) -> (u16, Vec<tokio::net::TcpListener>) {
    'attempt: for _ in 0..20 {
        let first = tokio::net::TcpListener::bind(SocketAddr::new(Ipv4Addr::new(127, 0, block, 1).into(), 0))
            .await
            .unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for i in 2..=count {
            let ip = Ipv4Addr::new(127, 0, block, u8::try_from(i).unwrap());
            match tokio::net::TcpListener::bind(SocketAddr::new(ip.into(), port)).await {
                Ok(l) => listeners.push(l),
                Err(_) => continue 'attempt,
            }
        }
        return (port, listeners);
    }
    panic!("could not bind {count} loopback addresses on one port");
}
