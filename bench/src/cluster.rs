//! The cluster the operator runs against: the in-process API test server (objects are created
//! directly in its store, which is fast), and the objects of the scenarios — Deployments, ready
//! pods at farm addresses, policies, and pods shaped like a real cluster's.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use apphealth_testserver::TestServer;
use serde_json::{Value, json};

use crate::Result;

/// The namespace of every object the bench creates.
pub const NS: &str = "bench";

pub struct Cluster {
    pub server: TestServer,
    pub kubeconfig: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.server.shutdown();
    }
}

impl Cluster {
    /// A test server on a free 127.0.0.1 port with `crds` installed and the namespace the cases
    /// use (as a cluster has it: a cluster policy finds it among the namespaces); its kubeconfig is
    /// written to `dir/kubeconfig`.
    pub async fn start(crds: &[Value], dir: &Path) -> Result<Cluster> {
        let server = TestServer::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        for crd in crds {
            server
                .create(crd.clone())
                .map_err(|e| format!("create CRD: {e}"))?;
        }
        server
            .create(json!({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": NS, "labels": {"kubernetes.io/metadata.name": NS}}}))
            .map_err(|e| format!("create namespace {NS}: {e}"))?;
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig())?;
        Ok(Cluster { server, kubeconfig })
    }

    fn create(&self, obj: Value) -> Result<()> {
        self.server
            .create(obj)
            .map(|_| ())
            .map_err(|e| format!("create: {e}").into())
    }

    fn set_status(&self, kind: &str, name: &str, status: Value) -> Result<()> {
        self.server
            .patch_status("v1", kind, Some(NS), name, json!({ "status": status }))
            .map(|_| ())
            .map_err(|e| format!("status of {kind} {name}: {e}").into())
    }

    /// Deployment `name` (label `app: name`) whose pods serve `http` on `port`.
    pub fn add_deployment(&self, name: &str, replicas: usize, port: u16) -> Result<()> {
        self.create(deployment(name, replicas, port))
    }

    /// Like [`Cluster::add_deployment`], with label `key: value` on the Deployment (what a
    /// targetSelector selects by).
    pub fn add_labelled_deployment(
        &self,
        name: &str,
        replicas: usize,
        port: u16,
        key: &str,
        value: &str,
    ) -> Result<()> {
        let mut d = deployment(name, replicas, port);
        d["metadata"]["labels"] = json!({ key: value });
        self.create(d)
    }

    /// A small ready pod of `app` at `ip` (what the test harness creates).
    pub fn add_pod(&self, name: &str, app: &str, ip: Ipv4Addr, port: u16) -> Result<()> {
        self.add_pending_pod(name, app, port)?;
        self.set_pod_ready(name, ip)
    }

    /// A small pod of `app` just created: no status yet.
    pub fn add_pending_pod(&self, name: &str, app: &str, port: u16) -> Result<()> {
        self.create(small_pod(name, app, port))
    }

    /// Pod `name` runs, ready, at `ip`.
    pub fn set_pod_ready(&self, name: &str, ip: Ipv4Addr) -> Result<()> {
        self.set_status(
            "Pod",
            name,
            json!({"phase": "Running", "podIP": ip.to_string(),
                   "conditions": [{"type": "Ready", "status": "True"}]}),
        )
    }

    /// A pod shaped like a real cluster's (see [`realistic_pod`]), with its status.
    pub fn add_realistic_pod(&self, i: usize, ip: Ipv4Addr) -> Result<()> {
        let (pod, status) = realistic_pod(i, ip);
        self.add_pod_object(pod, status)
    }

    /// Any pod (`metadata.name` set, in namespace `bench`) and then its status.
    pub fn add_pod_object(&self, pod: Value, status: Value) -> Result<()> {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
        self.create(pod)?;
        self.set_status("Pod", &name, status)
    }

    /// Policy `name` over Deployment `target`, probing `GET /healthz` on port `http` every
    /// `period_seconds`; remediation is a dry run (a failing probe never changes the cluster).
    pub fn add_policy(&self, name: &str, target: &str, period_seconds: u64) -> Result<()> {
        self.add_policy_with(name, dry_run_policy_spec(target, period_seconds))
    }

    /// Policy `name` with `spec`.
    pub fn add_policy_with(&self, name: &str, spec: Value) -> Result<()> {
        self.create(policy(name, spec))
    }

    /// ClusterAppHealthPolicy `name` with `spec` (a selector policy's: no namespaceSelector, so
    /// every namespace).
    pub fn add_cluster_policy(&self, name: &str, spec: Value) -> Result<()> {
        self.create(json!({
            "apiVersion": "apphealth.io/v1alpha1", "kind": "ClusterAppHealthPolicy",
            "metadata": {"name": name},
            "spec": spec
        }))
    }

    /// The `status` of condition `type_` of policy `name` ("True", "False", "Unknown"), if set.
    pub fn condition(&self, name: &str, type_: &str) -> Option<String> {
        let policy = self
            .server
            .get("apphealth.io/v1alpha1", "AppHealthPolicy", Some(NS), name)?;
        condition(&policy, type_).map(str::to_string)
    }

    /// Changes an annotation of Deployment `name` (a watch event for whatever looks at it, nothing
    /// else).
    pub fn touch_deployment(&self, name: &str, mark: usize) -> Result<()> {
        let mut deployment = self
            .server
            .get("apps/v1", "Deployment", Some(NS), name)
            .ok_or_else(|| format!("no Deployment {name}"))?;
        deployment["metadata"]["annotations"] = json!({"bench/touched": mark.to_string()});
        self.server
            .replace(deployment)
            .map(|_| ())
            .map_err(|e| format!("touch Deployment {name}: {e}").into())
    }

    /// Policies (of either kind) that have a `Ready` condition (the operator has reconciled them at
    /// least once).
    pub fn policies_with_ready(&self) -> usize {
        let mut policies = self
            .server
            .list("apphealth.io/v1alpha1", "AppHealthPolicy", Some(NS));
        policies.extend(
            self.server
                .list("apphealth.io/v1alpha1", "ClusterAppHealthPolicy", None),
        );
        policies
            .iter()
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready"))
            })
            .count()
    }

    /// Size of the JSON the API server serves for pod `name`.
    pub fn pod_json_bytes(&self, name: &str) -> usize {
        self.server
            .get("v1", "Pod", Some(NS), name)
            .map_or(0, |p| p.to_string().len())
    }
}

/// Deployment `name` in `bench` (label `app: name`) whose pods serve `http` on `port`.
pub fn deployment(name: &str, replicas: usize, port: u16) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "farm",
                          "ports": [{"name": "http", "containerPort": port}]}]}
            }
        }
    })
}

/// A small pod `name` in `bench` of `app`, serving `http` on `port`; no status.
pub fn small_pod(name: &str, app: &str, port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": "farm",
                  "ports": [{"name": "http", "containerPort": port}]}]}
    })
}

/// Policy `name` in `bench` with `spec`.
pub fn policy(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "apphealth.io/v1alpha1", "kind": "AppHealthPolicy",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec
    })
}

/// The spec of a policy over Deployment `target`, probing `GET /healthz` on port `http` every
/// `period_seconds`; remediation is a dry run.
pub fn dry_run_policy_spec(target: &str, period_seconds: u64) -> Value {
    json!({
        "targetRef": {"kind": "Deployment", "name": target},
        "probe": {"http": {"port": "http", "path": "/healthz", "timeoutSeconds": 2},
                  "periodSeconds": period_seconds},
        "triggers": [{"consecutiveFailures": {"threshold": 3}}],
        "recovery": {"consecutiveSuccesses": 2},
        "remediation": {"steps": [{"action": "RolloutRestart", "timeout": "5m"}],
                        "cooldown": "10m", "dryRun": true}
    })
}

/// The spec of a policy over every Deployment labelled `key: value`, otherwise as
/// [`dry_run_policy_spec`].
pub fn selector_policy_spec(key: &str, value: &str, period_seconds: u64) -> Value {
    let mut spec = dry_run_policy_spec("unused", period_seconds);
    if let Some(spec) = spec.as_object_mut() {
        spec.remove("targetRef");
        spec.insert(
            "targetSelector".into(),
            json!({"kinds": ["Deployment"], "matchLabels": { key: value }}),
        );
    }
    spec
}

/// The `status` of condition `type_` of `object` ("True", "False", "Unknown"), if it has one.
pub fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a str> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["status"].as_str())
}

pub fn realistic_pod_name(i: usize) -> String {
    format!("checkout-7d9f8b6c4d-{i:05}")
}

/// A pod like those of a real cluster, and its status: a ReplicaSet's pod with an app container,
/// a service-mesh sidecar and a log shipper, an init container, env from values, fields, Secrets
/// and ConfigMaps, projected service-account token, ConfigMap, Secret and emptyDir volumes,
/// liveness/readiness/startup probes, resources, security contexts, tolerations, anti-affinity,
/// the annotations a mesh and a metrics scraper add, and a full status. The test server writes
/// `managedFields` itself (one entry; the ones in a body are ignored), so the bulk of a real
/// pod's managedFields is made up by the rest, to about 14 KiB of JSON as served.
pub fn realistic_pod(i: usize, ip: Ipv4Addr) -> (Value, Value) {
    let name = realistic_pod_name(i);
    let app = "checkout";
    let t = "2025-03-14T09:26:53Z";
    let env = |prefix: &str, n: usize| -> Vec<Value> {
        (0..n)
            .map(|k| json!({"name": format!("{prefix}_SETTING_{k}"), "value": format!("{prefix}-value-{k}-for-{app}")}))
            .collect()
    };
    let field_env = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}});
    let mut app_env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_IP", "status.podIP"),
        field_env("NODE_NAME", "spec.nodeName"),
        json!({"name": "DATABASE_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "checkout-db", "key": "password"}}}),
        json!({"name": "FEATURE_FLAGS", "valueFrom": {"configMapKeyRef": {"name": "checkout-flags", "key": "flags"}}}),
        json!({"name": "JAVA_TOOL_OPTIONS", "value": "-XX:MaxRAMPercentage=75 -XX:+UseG1GC -Dfile.encoding=UTF-8"}),
    ];
    app_env.extend(env("CHECKOUT", 8));
    let mut proxy_env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("INSTANCE_IP", "status.podIP"),
        field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        field_env("HOST_IP", "status.hostIP"),
    ];
    proxy_env.extend(env("PROXY", 6));
    let mount = |name: &str, path: &str, ro: bool| json!({"name": name, "mountPath": path, "readOnly": ro});
    let token_mount = mount(
        "kube-api-access-x7k2p",
        "/var/run/secrets/kubernetes.io/serviceaccount",
        true,
    );
    let http_probe = |path: &str, port: &str, delay: u32| {
        json!({"httpGet": {"path": path, "port": port, "scheme": "HTTP"}, "initialDelaySeconds": delay,
               "timeoutSeconds": 2, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    };
    let restricted = json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
                            "runAsUser": 10001, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}});
    let sidecar_status = json!({"initContainers": ["mesh-init"], "containers": ["mesh-proxy"],
        "volumes": ["mesh-envoy", "mesh-data", "mesh-podinfo", "mesh-token", "mesh-ca-cert"],
        "imagePullSecrets": null, "revision": "1-22-3"})
    .to_string();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": NS, "generateName": "checkout-7d9f8b6c4d-",
            "labels": {"app": app, "pod-template-hash": "7d9f8b6c4d", "version": "v2.14.1", "team": "payments",
                       "app.kubernetes.io/name": app, "app.kubernetes.io/instance": "checkout-prod",
                       "app.kubernetes.io/part-of": "shop", "app.kubernetes.io/managed-by": "Helm",
                       "helm.sh/chart": "checkout-4.2.0", "security.mesh.io/tlsMode": "mesh",
                       "service.mesh.io/canonical-name": app, "service.mesh.io/canonical-revision": "v2.14.1"},
            "annotations": {
                "prometheus.io/scrape": "true", "prometheus.io/port": "9090", "prometheus.io/path": "/metrics",
                "checksum/config": "9c1f0a8e2b7d4c6f3a5e8d1b0c9f7a6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a",
                "checksum/secrets": "1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c",
                "kubectl.kubernetes.io/restartedAt": "2025-03-14T09:20:11Z",
                "kubectl.kubernetes.io/default-container": "checkout",
                "sidecar.mesh.io/status": sidecar_status,
                "cluster-autoscaler.kubernetes.io/safe-to-evict": "true"
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-7d9f8b6c4d",
                                 "uid": "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "initContainers": [{
                "name": "mesh-init", "image": "registry.example.com/mesh/proxyv2:1.22.3",
                "args": ["mesh-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020"],
                "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "10m", "memory": "40Mi"}},
                "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}, "runAsUser": 0, "runAsNonRoot": false},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
                "volumeMounts": [token_mount]
            }],
            "containers": [
                {
                    "name": app, "image": "registry.example.com/shop/checkout:v2.14.1",
                    "command": ["/app/bin/checkout"], "args": ["--config=/etc/checkout/config.yaml", "--log-format=json"],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                              {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
                    "env": app_env,
                    "envFrom": [{"configMapRef": {"name": "checkout-env"}}, {"secretRef": {"name": "checkout-env-secrets"}}],
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "250m", "memory": "512Mi"}},
                    "livenessProbe": http_probe("/livez", "http", 30),
                    "readinessProbe": http_probe("/readyz", "http", 5),
                    "startupProbe": http_probe("/startupz", "http", 0),
                    "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 10"]}}},
                    "volumeMounts": [mount("config", "/etc/checkout", true), mount("secrets", "/etc/checkout/secrets", true),
                                     mount("tmp", "/tmp", false), mount("cache", "/var/cache/checkout", false), token_mount],
                    "securityContext": restricted,
                    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"
                },
                {
                    "name": "mesh-proxy", "image": "registry.example.com/mesh/proxyv2:1.22.3",
                    "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning",
                             "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info", "--concurrency", "2"],
                    "ports": [{"name": "mesh-envoy-prom", "containerPort": 15090, "protocol": "TCP"},
                              {"name": "mesh-status", "containerPort": 15021, "protocol": "TCP"}],
                    "env": proxy_env,
                    "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
                    "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
                                       "periodSeconds": 15, "timeoutSeconds": 3, "successThreshold": 1, "failureThreshold": 4},
                    "volumeMounts": [mount("mesh-envoy", "/etc/mesh/proxy", false), mount("mesh-data", "/var/lib/mesh/data", false),
                                     mount("mesh-podinfo", "/etc/mesh/pod", false), mount("mesh-token", "/var/run/secrets/tokens", false),
                                     mount("mesh-ca-cert", "/var/run/secrets/mesh", false), token_mount],
                    "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
                                        "runAsUser": 1337, "runAsGroup": 1337, "capabilities": {"drop": ["ALL"]}},
                    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"
                },
                {
                    "name": "log-shipper", "image": "registry.example.com/observability/fluent-bit:3.1.9",
                    "args": ["--config=/fluent-bit/etc/fluent-bit.yaml"],
                    "env": env("SHIPPER", 4),
                    "resources": {"limits": {"cpu": "200m", "memory": "128Mi"}, "requests": {"cpu": "20m", "memory": "32Mi"}},
                    "volumeMounts": [mount("shipper-config", "/fluent-bit/etc", true), mount("varlog", "/var/log", true), token_mount],
                    "securityContext": restricted,
                    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"
                }
            ],
            "volumes": [
                {"name": "config", "configMap": {"name": "checkout-config", "defaultMode": 420}},
                {"name": "secrets", "secret": {"secretName": "checkout-secrets", "defaultMode": 420}},
                {"name": "tmp", "emptyDir": {}},
                {"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "shipper-config", "configMap": {"name": "checkout-fluent-bit", "defaultMode": 420}},
                {"name": "varlog", "hostPath": {"path": "/var/log", "type": ""}},
                {"name": "mesh-envoy", "emptyDir": {"medium": "Memory"}},
                {"name": "mesh-data", "emptyDir": {}},
                {"name": "mesh-podinfo", "downwardAPI": {"defaultMode": 420, "items": [
                    {"path": "labels", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}},
                    {"path": "annotations", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.annotations"}}]}},
                {"name": "mesh-token", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"audience": "mesh-ca", "expirationSeconds": 43200, "path": "mesh-token"}}]}},
                {"name": "mesh-ca-cert", "configMap": {"name": "mesh-ca-root-cert", "defaultMode": 420}},
                {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}
            ],
            "nodeName": format!("ip-10-0-{}-{}.eu-west-1.compute.internal", i % 32, i % 200),
            "serviceAccountName": app, "serviceAccount": app, "automountServiceAccountToken": true,
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 45, "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler", "priority": 0, "enableServiceLinks": false, "preemptionPolicy": "PreemptLowerPriority",
            "securityContext": {"fsGroup": 10001, "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "imagePullSecrets": [{"name": "registry-credentials"}],
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
                "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": app}}}}]}},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": app}}}]
        }
    });
    let container_status = |name: &str, image: &str, ready: bool| {
        json!({"name": name, "image": image, "imageID": format!("{image}@sha256:3f1d5c7e9a2b4d6f8a0c2e4f6a8b0d2f4a6c8e0b2d4f6a8c0e2a4c6e8f0b2d4f"),
               "containerID": format!("containerd://{:064x}", i * 7 + name.len()), "ready": ready, "started": true, "restartCount": 0,
               "state": {"running": {"startedAt": t}}, "lastState": {},
               "volumeMounts": [{"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true, "recursiveReadOnly": "Disabled"}]})
    };
    let condition = |type_: &str| json!({"type": type_, "status": "True", "lastProbeTime": null, "lastTransitionTime": t});
    let status = json!({
        "phase": "Running", "qosClass": "Burstable", "startTime": t,
        "hostIP": "10.0.12.34", "hostIPs": [{"ip": "10.0.12.34"}],
        "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}],
        "conditions": [condition("PodReadyToStartContainers"), condition("Initialized"), condition("Ready"),
                       condition("ContainersReady"), condition("PodScheduled")],
        "initContainerStatuses": [{"name": "mesh-init", "image": "registry.example.com/mesh/proxyv2:1.22.3",
            "imageID": "registry.example.com/mesh/proxyv2@sha256:9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d",
            "containerID": format!("containerd://{:064x}", i * 7), "ready": true, "restartCount": 0, "started": false,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": t, "finishedAt": t,
                                     "containerID": format!("containerd://{:064x}", i * 7)}}, "lastState": {}}],
        "containerStatuses": [container_status(app, "registry.example.com/shop/checkout:v2.14.1", true),
                              container_status("mesh-proxy", "registry.example.com/mesh/proxyv2:1.22.3", true),
                              container_status("log-shipper", "registry.example.com/observability/fluent-bit:3.1.9", true)]
    });
    (pod, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realistic_pod_is_about_twelve_kib() {
        let (pod, status) = realistic_pod(42, Ipv4Addr::new(127, 2, 0, 1));
        let bytes = pod.to_string().len() + status.to_string().len();
        assert!((9 * 1024..16 * 1024).contains(&bytes), "{bytes} bytes");
    }
}
