//! Memory per cached realistic pod, with the pods a real cluster makes: Deployments whose pod
//! template is the realistic pod of `tests/fixtures/realistic-pod.json`, so kube-controller-manager
//! creates the pods (through ReplicaSets), kube-scheduler binds them to kwok's nodes and kwok writes
//! their status; each of them writes its part of `managedFields`. The operator's RSS over idle per
//! pod is measured as the memory scenario does, and beside it the same pods on the API test server.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, api::ListParams};
use serde_json::{Value, json};

use super::plane::Plane;
use crate::{
    Result,
    cluster::{Cluster, NS},
    operator::Operator,
    process::Memory,
    report::num,
    scenario::{Ctx, memory},
};

const FIXTURE: &str = include_str!("../../../../tests/fixtures/realistic-pod.json");
/// The pods are spread over this many Deployments.
const DEPLOYMENTS: usize = 10;
/// The longest the control plane may take to make and run the pods.
const SETUP_PATIENCE: Duration = Duration::from_secs(15 * 60);

/// Resource requests of the fixture's containers, each divided by ten: 10,000 pods then fit on
/// the two kwok nodes (1,000 CPUs and 1 TiB each).
const REQUESTS: [(&str, &str); 6] = [
    ("500m", "50m"),
    ("100m", "10m"),
    ("20m", "2m"),
    ("768Mi", "76Mi"),
    ("128Mi", "12Mi"),
    ("64Mi", "6Mi"),
];

/// How pods are served: average bytes of JSON per pod and of its `managedFields`.
#[derive(Debug, Clone, Default)]
pub struct Sizes {
    pub pods: usize,
    pub bytes: f64,
    pub managed_fields_bytes: f64,
    pub managed_fields_entries: f64,
    /// The field managers of one pod: `kube-controller-manager (Update)`, ...
    pub managers: Vec<String>,
}

/// The operator's memory without pods, and with them.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub sizes: Sizes,
    pub idle: Memory,
    pub loaded: Memory,
    /// With the pods again, the operator started with [`FIXED_MMAP_THRESHOLD`].
    pub fixed_threshold: Memory,
    /// From the operator's start until /readyz said 200, with the pods.
    pub startup: Duration,
    /// From the first Deployment created until every pod was ready (real control plane only).
    pub setup: Option<Duration>,
}

impl Figures {
    pub fn over_idle_kib(&self) -> u64 {
        self.loaded.rss_kib.saturating_sub(self.idle.rss_kib)
    }

    pub fn per_pod_kib(&self) -> f64 {
        self.over_idle_kib() as f64 / self.sizes.pods.max(1) as f64
    }

    /// Over idle and per pod with [`FIXED_MMAP_THRESHOLD`].
    pub fn fixed_threshold_kib(&self) -> (u64, f64) {
        let over = self.fixed_threshold.rss_kib.saturating_sub(self.idle.rss_kib);
        (over, over as f64 / self.sizes.pods.max(1) as f64)
    }
}

fn fixture() -> Result<Value> {
    Ok(serde_json::from_str(FIXTURE)?)
}

/// The fixture pod as its Deployment's template says it: what the API server's admission (the
/// ServiceAccount token volume, priority), the ReplicaSet (`pod-template-hash`, owner), the
/// scheduler (`nodeName`) and the kubelet (status) add are left for them to add.
fn template(fixture: &Value, instance: &str) -> Value {
    let mut labels = fixture["metadata"]["labels"].clone();
    if let Some(l) = labels.as_object_mut() {
        l.remove("pod-template-hash");
        l.insert("app.kubernetes.io/instance".into(), json!(instance));
    }
    let mut spec = fixture["spec"].clone();
    if let Some(s) = spec.as_object_mut() {
        for added in ["nodeName", "priority", "preemptionPolicy"] {
            s.remove(added);
        }
        if let Some(volumes) = s.get_mut("volumes").and_then(Value::as_array_mut) {
            volumes.retain(|v| !is_token_volume(&v["name"]));
        }
        for list in ["initContainers", "containers"] {
            for c in s
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(mounts) = c.get_mut("volumeMounts").and_then(Value::as_array_mut) {
                    mounts.retain(|m| !is_token_volume(&m["name"]));
                }
                // kwok's nodes have no ephemeral storage to schedule against.
                if let Some(limits) = c["resources"]["limits"].as_object_mut() {
                    limits.remove("ephemeral-storage");
                }
                if let Some(requests) = c["resources"]["requests"].as_object_mut() {
                    for value in requests.values_mut() {
                        if let Some((_, less)) = REQUESTS.iter().find(|(q, _)| value == q) {
                            *value = json!(less);
                        }
                    }
                }
            }
        }
    }
    json!({
        "metadata": {"labels": labels, "annotations": fixture["metadata"]["annotations"]},
        "spec": spec
    })
}

fn is_token_volume(name: &Value) -> bool {
    name.as_str().is_some_and(|n| n.starts_with("kube-api-access-"))
}

fn deployment(fixture: &Value, k: usize, replicas: usize) -> Value {
    let instance = format!("checkout-prod-{k}");
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("checkout-{k}"), "namespace": NS,
                     "labels": {"app.kubernetes.io/name": "checkout", "app.kubernetes.io/instance": instance}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "checkout", "app.kubernetes.io/instance": instance}},
            "template": template(fixture, &instance)
        }
    })
}

/// The fixture pod `i` as the API test server stores it (name, address; the server writes its own
/// `managedFields`), and its status.
fn test_server_pod(fixture: &Value, i: usize) -> (Value, Value) {
    let mut pod = fixture.clone();
    let mut status = pod
        .as_object_mut()
        .and_then(|p| p.remove("status"))
        .unwrap_or_default();
    if let Some(meta) = pod["metadata"].as_object_mut() {
        for server_side in ["uid", "resourceVersion", "creationTimestamp", "managedFields"] {
            meta.remove(server_side);
        }
        meta.insert("name".into(), json!(format!("checkout-7c9f8d6b5d-{i:05}")));
        meta.insert("namespace".into(), json!(NS));
    }
    let ip = memory::unprobed_address(i).to_string();
    status["podIP"] = json!(ip);
    if let Some(first) = status["podIPs"].as_array_mut().and_then(|a| a.first_mut()) {
        first["ip"] = json!(ip);
    }
    (pod, status)
}

/// The allocator setting of the second reading: glibc's mmap threshold fixed at its default of
/// 128 KiB. Unset, glibc raises the threshold to the size of each large block freed (up to 32 MiB),
/// so after the first page of a paged list, the next pages' buffers come from the heap, which keeps
/// what is freed.
pub const FIXED_MMAP_THRESHOLD: (&str, &str) = ("MALLOC_MMAP_THRESHOLD_", "131072");

/// Starts the operator with `kubeconfig` (and `env`), waits for /readyz, lets it settle as the
/// memory scenario does, and reads its memory.
async fn operator_memory(
    ctx: &Ctx,
    kubeconfig: &Path,
    log: &Path,
    env: &[(&str, &str)],
) -> Result<memory::Reading> {
    let started = Instant::now();
    let mut operator = Operator::start_with_env(&ctx.operator, kubeconfig, log, ctx.ticks_per_second, env)?;
    operator.wait_ready(ctx.patience).await?;
    memory::read(operator, started.elapsed()).await
}

/// With the pods in place: the operator's memory (log `<dir>/operator.log`), and again with
/// [`FIXED_MMAP_THRESHOLD`] (`<dir>/operator-fixed-threshold.log`).
async fn with_pods(
    ctx: &Ctx,
    kubeconfig: &Path,
    dir: &Path,
    sizes: Sizes,
    idle: Memory,
    setup: Option<Duration>,
) -> Result<Figures> {
    let loaded = operator_memory(ctx, kubeconfig, &dir.join("operator.log"), &[]).await?;
    let fixed = operator_memory(
        ctx,
        kubeconfig,
        &dir.join("operator-fixed-threshold.log"),
        &[FIXED_MMAP_THRESHOLD],
    )
    .await?;
    Ok(Figures {
        sizes,
        idle,
        loaded: loaded.memory,
        fixed_threshold: fixed.memory,
        startup: loaded.startup,
        setup,
    })
}

/// `count` realistic pods on a full local control plane, made by 10 Deployments.
pub async fn real(ctx: &Ctx, count: usize) -> Result<Figures> {
    let plane = Plane::start(ctx, "realapi-pods", true).await?;
    let kubeconfig = plane.operator_kubeconfig().await?;
    eprintln!("bench: realapi pods: control plane up; the operator idle");
    let idle = operator_memory(ctx, &kubeconfig, &plane.dir.join("operator-idle.log"), &[]).await?;
    // The fixture's pods run as ServiceAccount `checkout`, which admission wants to exist.
    plane
        .create(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                       "metadata": {"name": "checkout", "namespace": NS}}))
        .await?;
    let fixture = fixture()?;
    let started = Instant::now();
    for k in 0..DEPLOYMENTS {
        let replicas = count / DEPLOYMENTS + usize::from(k < count % DEPLOYMENTS);
        plane.create(deployment(&fixture, k, replicas)).await?;
    }
    wait_ready(&plane, count, started).await?;
    let setup = started.elapsed();
    eprintln!(
        "bench: realapi pods: {count} pods ready after {} s",
        setup.as_secs()
    );
    let sizes = real_sizes(&plane).await?;
    with_pods(ctx, &kubeconfig, &plane.dir, sizes, idle.memory, Some(setup)).await
}

/// Waits until the Deployments in `bench` have `count` ready replicas.
async fn wait_ready(plane: &Plane, count: usize, started: Instant) -> Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(plane.client.clone(), NS);
    let mut said = Instant::now();
    loop {
        let list = deployments.list(&ListParams::default()).await?;
        let ready: i32 = list
            .items
            .iter()
            .filter_map(|d| d.status.as_ref()?.ready_replicas)
            .sum();
        if ready as usize >= count {
            return Ok(());
        }
        if said.elapsed() >= Duration::from_secs(30) {
            eprintln!(
                "bench: realapi pods: {ready} of {count} ready after {} s",
                started.elapsed().as_secs()
            );
            said = Instant::now();
        }
        if started.elapsed() > SETUP_PATIENCE {
            return Err(format!(
                "{ready} of {count} pods were ready after {} s",
                SETUP_PATIENCE.as_secs()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Every pod of the cluster, read in pages of 500; each measured as a GET serves it (a list's
/// items lack `apiVersion` and `kind`, which are put back), compact, as the test server's figure.
async fn real_sizes(plane: &Plane) -> Result<Sizes> {
    let mut pods = Vec::new();
    let mut next = String::new();
    loop {
        let mut page = plane.get_json(&format!("/api/v1/pods?limit=500{next}")).await?;
        if let Some(items) = page["items"].as_array_mut() {
            pods.append(items);
        }
        match page["metadata"]["continue"].as_str() {
            Some(token) if !token.is_empty() => next = format!("&continue={token}"),
            _ => break,
        }
    }
    for pod in &mut pods {
        if let Some(p) = pod.as_object_mut() {
            p.insert("apiVersion".into(), json!("v1"));
            p.insert("kind".into(), json!("Pod"));
        }
    }
    Ok(sizes(&pods))
}

fn sizes(pods: &[Value]) -> Sizes {
    fn managed(p: &Value) -> &Value {
        &p["metadata"]["managedFields"]
    }
    let n = pods.len().max(1) as f64;
    let managers = pods
        .first()
        .and_then(|p| managed(p).as_array())
        .into_iter()
        .flatten()
        .map(|m| {
            let mut what = vec![m["operation"].as_str().unwrap_or("?").to_string()];
            if let Some(sub) = m["subresource"].as_str() {
                what.push(sub.to_string());
            }
            format!("{} ({})", m["manager"].as_str().unwrap_or("?"), what.join(", "))
        })
        .collect();
    Sizes {
        pods: pods.len(),
        bytes: pods.iter().map(|p| p.to_string().len() as f64).sum::<f64>() / n,
        managed_fields_bytes: pods
            .iter()
            .map(|p| {
                let m = managed(p);
                if m.is_null() {
                    0.0
                } else {
                    m.to_string().len() as f64
                }
            })
            .sum::<f64>()
            / n,
        managed_fields_entries: pods
            .iter()
            .map(|p| managed(p).as_array().map_or(0, Vec::len) as f64)
            .sum::<f64>()
            / n,
        managers,
    }
}

/// The same `count` fixture pods in the API test server (with the fixture's status), measured the
/// same way; idle is the memory scenario's idle case, run again.
pub async fn test_server(ctx: &Ctx, count: usize) -> Result<Figures> {
    let idle = memory::idle(ctx).await?;
    let dir = ctx.case_dir("realapi-pods-testserver")?;
    let cluster = Cluster::start(&ctx.crds, &dir).await?;
    let fixture = fixture()?;
    for i in 0..count {
        let (pod, status) = test_server_pod(&fixture, i);
        cluster.add_pod_object(pod, status)?;
    }
    let sizes = sizes(&cluster.server.list("v1", "Pod", Some(NS)));
    with_pods(ctx, &cluster.kubeconfig, &dir, sizes, idle.memory, None).await
}

/// `14,463 bytes (4,321 of them managedFields, 3 entries)`.
pub fn describe_size(s: &Sizes) -> String {
    format!(
        "{} bytes ({} of them `managedFields`, {} entries)",
        num(s.bytes, 0),
        num(s.managed_fields_bytes, 0),
        num(s.managed_fields_entries, 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_leaves_out_what_the_cluster_adds() {
        let fixture = fixture().unwrap();
        let t = template(&fixture, "checkout-prod-3");
        assert!(t["spec"]["nodeName"].is_null());
        assert!(t["metadata"]["labels"]["pod-template-hash"].is_null());
        assert_eq!(
            t["metadata"]["labels"]["app.kubernetes.io/instance"],
            "checkout-prod-3"
        );
        let text = t.to_string();
        assert!(!text.contains("kube-api-access-"), "{text}");
        assert!(!text.contains("ephemeral-storage"));
        assert_eq!(t["spec"]["containers"][0]["resources"]["requests"]["cpu"], "50m");
        assert_eq!(t["spec"]["containers"][0]["resources"]["limits"]["cpu"], "2");
        let d = deployment(&fixture, 3, 7);
        assert_eq!(d["spec"]["replicas"], 7);
        assert_eq!(
            d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
            "checkout-prod-3"
        );
    }

    #[test]
    fn the_test_server_pod_is_the_fixture_at_a_loopback_address() {
        let fixture = fixture().unwrap();
        let (pod, status) = test_server_pod(&fixture, 251);
        assert_eq!(pod["metadata"]["name"], "checkout-7c9f8d6b5d-00251");
        assert!(pod["metadata"]["managedFields"].is_null());
        assert!(pod["status"].is_null());
        assert_eq!(status["podIP"], "127.2.1.2");
        assert_eq!(status["podIPs"][0]["ip"], "127.2.1.2");
        assert_eq!(pod["spec"], fixture["spec"]);
    }
}
