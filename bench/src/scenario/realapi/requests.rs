//! The API requests of a healthy hour and of one remediation, counted by kube-apiserver itself.
//!
//! An API-only control plane (etcd and kube-apiserver) holds 100 Deployments of one ready pod each
//! at farm addresses (their status written by the bench, as a kubelet would) and a policy over each,
//! with a real one-step ladder (`RestartPods`). The operator runs as a ServiceAccount of its own.
//! kube-apiserver's `apiserver_request_total` counts every client's requests, its own controllers'
//! included (lease renewals, OpenAPI aggregation, and the watches of its internal informers — pods,
//! secrets and configmaps among them — re-opened every 5 to 10 minutes); API Priority and Fairness
//! tells clients apart: a FlowSchema for each verb and resource, matching only the operator's
//! ServiceAccount, counts the operator's requests by verb and resource
//! (`apiserver_flowcontrol_dispatched_requests_total`). The bench's own requests (as the
//! administrator) and its reads of `/metrics` never match them. The same is run on the API test
//! server, whose request log holds only the operator's requests.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::{Value, json};

use super::{
    plane::{OPERATOR_NS, OPERATOR_SA, Plane, PolicyWatch},
    tally::{Key, Tally},
};
use crate::{
    Result,
    cluster::{self, Cluster, NS},
    exposition::Exposition,
    farm,
    operator::Operator,
    scenario::{Ctx, PERIOD},
};

pub const POLICIES: usize = 100;
/// The steady-state window: one cycle of the operator's watches (kube-rs' watcher asks the API
/// server to end each watch after 290 s, and opens it again), so each watch's re-opening is
/// counted once whatever the phase.
pub const WINDOW: Duration = Duration::from_secs(290);

/// [`WINDOW`], or a minute with `--quick`.
pub fn window(ctx: &Ctx) -> Duration {
    if ctx.quick {
        Duration::from_secs(60)
    } else {
        WINDOW
    }
}
/// Steady means: the operator's own count of its API requests has not moved for this long.
const QUIET: Duration = Duration::from_secs(30);
const REMEDIATION_PATIENCE: Duration = Duration::from_secs(240);
/// How often the bench looks for the eviction (a ReplicaSet would see it at once).
const POLL: Duration = Duration::from_millis(100);
/// How long the replacement pod takes to run and be ready once created (scheduling, image, start:
/// a few seconds in a cluster).
const START_UP: Duration = Duration::from_secs(2);
/// The test server's pods are at farm targets from here on (the two runs share the farm).
const TEST_SERVER_TARGETS: usize = POLICIES;
/// The operator's own count of its requests to the API, by HTTP verb and code.
const OPERATOR_COUNT: &str = "apphealth_kubernetes_api_requests_total";

/// Verbs and resources a FlowSchema is made for (everything the operator's RBAC allows, and
/// more); a request of the operator's matching none of them is counted as `other`.
const VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];
const RESOURCES: [(&str, &str); 25] = [
    ("", "pods"),
    ("", "pods/eviction"),
    ("", "pods/status"),
    ("", "pods/log"),
    ("", "pods/exec"),
    ("", "pods/resize"),
    ("", "configmaps"),
    ("", "secrets"),
    ("", "services"),
    ("", "events"),
    ("", "namespaces"),
    ("apps", "deployments"),
    ("apps", "deployments/scale"),
    ("apps", "statefulsets"),
    ("apps", "statefulsets/scale"),
    ("apps", "replicasets"),
    ("apps", "controllerrevisions"),
    ("events.k8s.io", "events"),
    ("apphealth.io", "apphealthpolicies"),
    ("apphealth.io", "apphealthpolicies/status"),
    ("coordination.k8s.io", "leases"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("metrics.k8s.io", "pods"),
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
];
const PRIORITY_LEVEL: &str = "apphealth-bench";

/// One run's counts.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// The operator's requests over the steady-state window.
    pub steady: Tally,
    pub steady_seconds: f64,
    /// The operator's requests from the moment its pod turned 503 until the ladder closed,
    /// watches left out (they are re-opened on their own schedule).
    pub remediation: Tally,
    /// Watches re-opened during the remediation (left out of it).
    pub remediation_watches: f64,
    pub remediation_seconds: f64,
    /// Seconds from the pod turning 503 to its eviction being seen.
    pub evicted_after: f64,
    /// The operator's own count of its requests in each window (`apphealth_kubernetes_api_requests_total`).
    pub counted: (f64, f64),
    /// Real API server only: every client's requests (`apiserver_request_total`) in each window,
    /// the server-side applies among the remediation's, and the bench's own requests in it.
    pub all: Option<(Tally, Tally)>,
    pub applies: Option<f64>,
    pub bench_requests: usize,
}

impl Figures {
    /// The steady-state window's requests scaled to an hour (none without a window).
    pub fn per_hour(&self) -> Tally {
        self.steady.scaled(if self.steady_seconds > 0.0 {
            3600.0 / self.steady_seconds
        } else {
            0.0
        })
    }
}

fn app(i: usize) -> String {
    format!("app-{i:05}")
}

fn policy_spec(app: &str) -> Value {
    json!({
        "targetRef": {"kind": "Deployment", "name": app},
        "probe": {"http": {"port": "http", "path": "/healthz", "timeoutSeconds": 2},
                  "periodSeconds": PERIOD.as_secs()},
        "triggers": [{"consecutiveFailures": {"threshold": 3}}],
        "recovery": {"consecutiveSuccesses": 2},
        "remediation": {"steps": [{"action": "RestartPods", "timeout": "1m"}], "cooldown": "10m"}
    })
}

/// A FlowSchema per verb and resource (and two catch-alls), each matching only the operator's
/// ServiceAccount, at a priority level of their own; returns what each counts, by name.
async fn flow_schemas(plane: &Plane) -> Result<BTreeMap<String, Key>> {
    plane
        .create(json!({
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
            "metadata": {"name": PRIORITY_LEVEL},
            "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 100, "lendablePercent": 0,
                     "limitResponse": {"type": "Queue",
                                       "queuing": {"queues": 64, "handSize": 6, "queueLengthLimit": 50}}}}
        }))
        .await?;
    let subject = json!([{"kind": "ServiceAccount",
                          "serviceAccount": {"name": OPERATOR_SA, "namespace": OPERATOR_NS}}]);
    let schema = |name: &str, precedence: u32, rule: Value| {
        let mut rule = rule;
        rule["subjects"] = subject.clone();
        json!({
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
            "metadata": {"name": name},
            "spec": {"priorityLevelConfiguration": {"name": PRIORITY_LEVEL},
                     "matchingPrecedence": precedence, "distinguisherMethod": {"type": "ByUser"},
                     "rules": [rule]}
        })
    };
    let mut flows = BTreeMap::new();
    let mut objects = Vec::new();
    for verb in VERBS {
        for (i, (group, resource)) in RESOURCES.iter().enumerate() {
            let name = format!("apphealth-bench-{verb}-{i:02}");
            objects.push(schema(
                &name,
                300,
                json!({"resourceRules": [{"verbs": [verb], "apiGroups": [group], "resources": [resource],
                                          "clusterScope": true, "namespaces": ["*"]}]}),
            ));
            flows.insert(name, Key::new(verb, group, resource));
        }
    }
    let last = "apphealth-bench-other";
    objects.push(schema(
        last,
        301,
        json!({"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                  "clusterScope": true, "namespaces": ["*"]}],
               "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}),
    ));
    flows.insert(last.into(), Key::new("other", "", "other"));
    plane.create_all(objects, 16).await?;
    // API Priority and Fairness marks each FlowSchema (condition `Dangling`) once it uses it.
    let started = Instant::now();
    let path = format!("/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas/{last}");
    loop {
        let schema = plane.get_json(&path).await?;
        let digested = schema["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Dangling"));
        if digested {
            return Ok(flows);
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(
                "API Priority and Fairness did not take up the bench's FlowSchemas within 60 s".into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The operator's own count of its API requests.
async fn counted(operator: &Operator) -> Result<f64> {
    Ok(operator.metrics().await?.sum(OPERATOR_COUNT, &[]).unwrap_or(0.0))
}

/// Waits until the operator has made no API request for [`QUIET`].
async fn quiet(operator: &mut Operator) -> Result<()> {
    let started = Instant::now();
    let mut last = counted(operator).await?;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        operator.process.check_running()?;
        let now = counted(operator).await?;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= QUIET {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err(format!(
                "the operator kept making API requests ({last} so far) for 300 s after every policy was healthy"
            )
            .into());
        }
    }
}

/// What is read at the start and the end of a window on the real API server.
struct Reading {
    server: Exposition,
    operator: f64,
}

async fn read(plane: &Plane, operator: &Operator) -> Result<Reading> {
    Ok(Reading {
        server: plane.metrics().await?,
        operator: counted(operator).await?,
    })
}

/// What the remediation needs of an API server, to play a ReplicaSet and a kubelet.
trait Server {
    /// Whether policy `name` is `Healthy=True` and not remediating.
    fn is_settled(&self, policy: &str) -> bool;
    /// Whether pod `name` is gone (or being deleted).
    async fn pod_gone(&self, name: &str) -> Result<bool>;
    /// A pod of `app` just created, no status yet.
    async fn create_pod(&self, name: &str, app: &str, port: u16) -> Result<()>;
    /// Pod `name` runs, ready, at `ip`.
    async fn make_ready(&self, name: &str, ip: Ipv4Addr) -> Result<()>;
}

/// The real API server: the bench's watch says how a policy stands.
struct Real<'a> {
    plane: &'a Plane,
    watch: &'a PolicyWatch,
    pods: Api<Pod>,
}

impl Server for Real<'_> {
    fn is_settled(&self, policy: &str) -> bool {
        self.watch.is_settled(policy)
    }

    async fn pod_gone(&self, name: &str) -> Result<bool> {
        Ok(self
            .pods
            .get_opt(name)
            .await?
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some()))
    }

    async fn create_pod(&self, name: &str, app: &str, port: u16) -> Result<()> {
        self.plane.add_pending_pod(name, app, port).await
    }

    async fn make_ready(&self, name: &str, ip: Ipv4Addr) -> Result<()> {
        self.plane.set_pod_ready(name, ip).await
    }
}

impl Server for Cluster {
    fn is_settled(&self, policy: &str) -> bool {
        self.condition(policy, "Healthy").as_deref() == Some("True")
            && self.condition(policy, "Remediating").as_deref() != Some("True")
    }

    async fn pod_gone(&self, name: &str) -> Result<bool> {
        Ok(self.server.get("v1", "Pod", Some(NS), name).is_none())
    }

    async fn create_pod(&self, name: &str, app: &str, port: u16) -> Result<()> {
        self.add_pending_pod(name, app, port)
    }

    async fn make_ready(&self, name: &str, ip: Ipv4Addr) -> Result<()> {
        self.set_pod_ready(name, ip)
    }
}

/// One remediation, from `t0`: the first policy's pod (at farm target `target`) turns 503; once
/// its eviction is seen it is replaced at the same address, answering 200: created at once, as
/// its ReplicaSet would, and made ready [`START_UP`] later. Returns once the ladder is closed
/// (the policy left `Healthy=True` and is back, not remediating): when the eviction was seen,
/// and how many requests the bench made of `server`.
async fn remediate(ctx: &Ctx, server: &impl Server, t0: Instant, target: usize) -> Result<(Duration, usize)> {
    let port = ctx.farm.port();
    let (policy, pod) = (app(0), format!("{}-0", app(0)));
    let replacement = format!("{pod}-r1");
    let mut requests = 0;
    ctx.farm.set_failing(target, true).await?;
    let (mut left, mut evicted, mut started_up) = (false, None, false);
    loop {
        tokio::time::sleep(POLL).await;
        left |= !server.is_settled(&policy);
        match evicted {
            None => {
                requests += 1;
                if server.pod_gone(&pod).await? {
                    evicted = Some(t0.elapsed());
                    ctx.farm.set_failing(target, false).await?;
                    requests += 1;
                    server.create_pod(&replacement, &policy, port).await?;
                }
            }
            Some(at) if !started_up => {
                if t0.elapsed() >= at + START_UP {
                    requests += 1;
                    server.make_ready(&replacement, farm::address(target)?).await?;
                    started_up = true;
                }
            }
            Some(at) => {
                if left && server.is_settled(&policy) {
                    return Ok((at, requests));
                }
            }
        }
        if t0.elapsed() > REMEDIATION_PATIENCE {
            return Err(format!(
                "the ladder was not closed {} s after the pod turned 503 (evicted after: {evicted:?})",
                REMEDIATION_PATIENCE.as_secs()
            )
            .into());
        }
    }
}

/// On an API-only control plane.
pub async fn real(ctx: &Ctx) -> Result<Figures> {
    let plane = Plane::start(ctx, "realapi-requests", false).await?;
    let flows = flow_schemas(&plane).await?;
    let port = ctx.farm.port();
    for i in 0..POLICIES {
        let app = app(i);
        plane.add_deployment(&app, 1, port).await?;
        plane
            .add_pod(&format!("{app}-0"), &app, farm::address(i)?, port)
            .await?;
        plane.create(cluster::policy(&app, policy_spec(&app))).await?;
    }
    let kubeconfig = plane.operator_kubeconfig().await?;
    let watch = PolicyWatch::start(&plane);
    let mut operator = Operator::start(
        &ctx.operator,
        &kubeconfig,
        &plane.dir.join("operator.log"),
        ctx.ticks_per_second,
    )?;
    let started = Instant::now();
    while watch.settled() < POLICIES {
        operator.process.check_running()?;
        if started.elapsed() > ctx.patience {
            return Err(format!(
                "{} of {POLICIES} policies were healthy after {} s",
                watch.settled(),
                ctx.patience.as_secs()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    quiet(&mut operator).await?;
    eprintln!(
        "bench: realapi requests: real API server steady; window of {} s",
        window(ctx).as_secs()
    );
    let a = read(&plane, &operator).await?;
    let began = Instant::now();
    tokio::time::sleep(window(ctx)).await;
    let b = read(&plane, &operator).await?;
    let steady_seconds = began.elapsed().as_secs_f64();

    // The bench's requests, as the administrator: reads of the failing pod, the replacement pod
    // and its status.
    let real = Real {
        plane: &plane,
        watch: &watch,
        pods: Api::namespaced(plane.client.clone(), NS),
    };
    let t0 = Instant::now();
    let (evicted, bench_requests) = remediate(ctx, &real, t0, 0).await?;
    let c = read(&plane, &operator).await?;
    let remediation_seconds = t0.elapsed().as_secs_f64();
    operator.process.stop();
    let remediation = Tally::dispatched(&b.server, &c.server, &flows);
    Ok(Figures {
        steady: Tally::dispatched(&a.server, &b.server, &flows),
        steady_seconds,
        remediation_watches: remediation.watches(),
        remediation: remediation.without_watches(),
        remediation_seconds,
        evicted_after: evicted.as_secs_f64(),
        counted: (b.operator - a.operator, c.operator - b.operator),
        all: Some((
            Tally::request_total(&a.server, &b.server),
            Tally::request_total(&b.server, &c.server),
        )),
        applies: Some(Tally::applies(&b.server, &c.server)),
        bench_requests,
    })
}

/// The same on the API test server (its pods at farm targets 100-199).
pub async fn test_server(ctx: &Ctx) -> Result<Figures> {
    let dir = ctx.case_dir("realapi-requests-testserver")?;
    let cluster = Cluster::start(&ctx.crds, &dir).await?;
    let port = ctx.farm.port();
    for i in 0..POLICIES {
        let app = app(i);
        cluster.add_deployment(&app, 1, port)?;
        cluster.add_pod(
            &format!("{app}-0"),
            &app,
            farm::address(TEST_SERVER_TARGETS + i)?,
            port,
        )?;
        cluster.add_policy_with(&app, policy_spec(&app))?;
    }
    let mut operator = Operator::start(
        &ctx.operator,
        &cluster.kubeconfig,
        &dir.join("operator.log"),
        ctx.ticks_per_second,
    )?;
    let started = Instant::now();
    while (0..POLICIES).any(|i| !cluster.is_settled(&app(i))) {
        operator.process.check_running()?;
        if started.elapsed() > ctx.patience {
            return Err(format!("not every policy was healthy after {} s", ctx.patience.as_secs()).into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    quiet(&mut operator).await?;
    eprintln!(
        "bench: realapi requests: test server steady; window of {} s",
        window(ctx).as_secs()
    );
    let a = (cluster.server.requests().len(), counted(&operator).await?);
    let began = Instant::now();
    tokio::time::sleep(window(ctx)).await;
    let b = (cluster.server.requests().len(), counted(&operator).await?);
    let steady_seconds = began.elapsed().as_secs_f64();

    let t0 = Instant::now();
    // The bench's own calls to the test server are not in its log: not counted.
    let (evicted, _) = remediate(ctx, &cluster, t0, TEST_SERVER_TARGETS).await?;
    let c = (cluster.server.requests().len(), counted(&operator).await?);
    let remediation_seconds = t0.elapsed().as_secs_f64();
    operator.process.stop();
    let requests = cluster.server.requests();
    let log: String = requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let window = if i < a.0 {
                "before"
            } else if i < b.0 {
                "steady"
            } else if i < c.0 {
                "remediation"
            } else {
                "after"
            };
            format!("{window} {} {} {}?{}\n", r.status, r.method, r.path, r.query)
        })
        .collect();
    std::fs::write(dir.join("requests.log"), log)?;
    let slice = |from: usize, to: usize| Tally::recorded(requests.get(from..to).unwrap_or_default());
    let remediation = slice(b.0, c.0);
    Ok(Figures {
        steady: slice(a.0, b.0),
        steady_seconds,
        remediation_watches: remediation.watches(),
        remediation: remediation.without_watches(),
        remediation_seconds,
        evicted_after: evicted.as_secs_f64(),
        counted: (b.1 - a.1, c.1 - b.1),
        all: None,
        applies: None,
        bench_requests: 0,
    })
}
