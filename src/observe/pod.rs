//! The pod as the operator caches it: [`CachedPod`], a small type of its own that the pod watch
//! decodes straight from the API's JSON, keeping only what the operator reads. Every pod of the
//! watched namespaces stays in memory for as long as it lives; k8s-openapi's `Pod` is wide
//! whatever it holds (a `Container` is 2 KiB, a `Volume` 3 KiB, even empty), and decoding one
//! whole would allocate everything else a pod carries (managedFields, env values, probes, mounts)
//! only to drop it. Fields not named below are skipped by the decoder without being allocated.
//!
//! Kept, and who reads it:
//!
//! - `metadata`: name, namespace, uid, resourceVersion, generation, creationTimestamp,
//!   deletionTimestamp (the store's keys, `name_any`, a pod's age in `PodFacts`, a deleted pod is
//!   not ready in [`endpoints`](super::endpoints)) and labels (whether a workload selects the pod,
//!   `endpoints::selects`). Nothing else: no annotations, ownerReferences or managedFields.
//! - per container ([`Container`]): name, named ports (name and containerPort: `endpoints`
//!   resolves a probe's named port), the cpu and memory limits (`signals::pod_signals`).
//! - the ConfigMaps and Secrets the pod names ([`CachedPod::references`]: `references::referenced`,
//!   for the configChanged trigger and for which policies a ConfigMap or Secret concerns): from
//!   `configMap`, `secret` and `projected` volumes, and from the `env` (`valueFrom`
//!   `configMapKeyRef` / `secretKeyRef`) and `envFrom` of containers and init containers. Kept as
//!   the sorted set of (kind, name), names never empty; which key or volume names it is not read.
//! - whether the pod is ready ([`CachedPod::ready`]: a condition of type Ready with status True,
//!   for `endpoints` and `PodFacts`), `podIP` (the probe's address), `startTime`
//!   (`references::started_at`).
//! - per container status ([`ContainerStatus`]): name, restartCount, and of `state` and
//!   `lastState` the waiting reason and the terminated reason, exitCode and finishedAt (restarts,
//!   CrashLoopBackOff, OOM kills: `signals::pod_signals`).
//!
//! **Reading another field of a pod? Add it here**, and to the equivalence tests
//! (`controller/slim/tests.rs`), which check that every reader answers for a `CachedPod` as the
//! same reading of the full `Pod` would, in every pod state they list.
//!
//! The decoder is lenient: every field may be missing or null (a field a pod does not have reads as
//! absent), so one odd pod cannot make a whole list fail to decode. Actions that change a pod, and
//! diagnostics, read the full `Pod` from the API; a `CachedPod` is never written anywhere.

use std::borrow::Cow;

use jiff::Timestamp;
use k8s_openapi::{
    NamespaceResourceScope,
    api::core::v1::Pod,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
};
use kube::Resource;
use serde::Deserialize;

/// A ConfigMap or Secret a pod uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKind {
    ConfigMap,
    Secret,
}

impl ConfigKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfigMap => "ConfigMap",
            Self::Secret => "Secret",
        }
    }
}

/// A pod, cut down to what the operator reads (see the module's documentation).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(from = "wire::Pod")]
pub struct CachedPod {
    pub metadata: ObjectMeta,
    /// In the order of `spec.containers` (init containers are not listed).
    pub containers: Box<[Container]>,
    /// The ConfigMaps and Secrets the pod mounts or reads into its environment: sorted, without
    /// duplicates or empty names.
    pub references: Box<[(ConfigKind, Box<str>)]>,
    /// Whether `status.conditions` has a condition of type Ready with status True.
    pub ready: bool,
    pub pod_ip: Option<Box<str>>,
    pub start_time: Option<Timestamp>,
    /// In the order of `status.containerStatuses` (init containers' are not listed).
    pub container_statuses: Box<[ContainerStatus]>,
}

/// A container: its name, named ports and limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Container {
    pub name: Box<str>,
    /// Ports that have a name: (name, containerPort).
    pub ports: Box<[(Box<str>, i32)]>,
    /// `resources.limits.cpu`, as written (a quantity).
    pub cpu_limit: Option<Box<str>>,
    /// `resources.limits.memory`, as written (a quantity).
    pub memory_limit: Option<Box<str>>,
}

/// The status of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerStatus {
    pub name: Box<str>,
    pub restart_count: i32,
    pub state: ContainerState,
    pub last_state: ContainerState,
}

/// Why a container waits, or how it ended (both empty while it runs, or when not known).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerState {
    /// `waiting.reason`.
    pub waiting: Option<Box<str>>,
    pub terminated: Option<Terminated>,
}

/// `terminated`: how a container ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Terminated {
    pub reason: Option<Box<str>>,
    pub exit_code: i32,
    pub finished_at: Option<Timestamp>,
}

impl Resource for CachedPod {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Pod::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        Pod::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        Pod::version(dt)
    }

    fn api_version(dt: &()) -> Cow<'_, str> {
        Pod::api_version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        Pod::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The pod as it comes over the wire, as far as it is read: everything optional, unknown fields
/// skipped. Lists decode into `Vec`s that live only until [`CachedPod`] is built from them.
mod wire {
    use std::collections::BTreeMap;

    use jiff::Timestamp;
    use serde::Deserialize;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct Pod {
        pub metadata: Option<Metadata>,
        pub spec: Option<Spec>,
        pub status: Option<Status>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Metadata {
        pub name: Option<String>,
        pub namespace: Option<String>,
        pub uid: Option<String>,
        pub resource_version: Option<String>,
        pub generation: Option<i64>,
        pub creation_timestamp: Option<Timestamp>,
        pub deletion_timestamp: Option<Timestamp>,
        pub labels: Option<BTreeMap<String, String>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Spec {
        pub containers: Option<Vec<Container>>,
        pub init_containers: Option<Vec<Container>>,
        pub volumes: Option<Vec<Volume>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Container {
        pub name: Option<Box<str>>,
        pub ports: Option<Vec<Port>>,
        pub resources: Option<Resources>,
        pub env: Option<Vec<Env>>,
        pub env_from: Option<Vec<EnvFrom>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Port {
        pub name: Option<Box<str>>,
        pub container_port: Option<i32>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct Resources {
        pub limits: Option<Limits>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct Limits {
        pub cpu: Option<Box<str>>,
        pub memory: Option<Box<str>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Env {
        pub value_from: Option<EnvSource>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    pub struct EnvSource {
        pub config_map_key_ref: Option<Named>,
        pub secret_key_ref: Option<Named>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    pub struct EnvFrom {
        pub config_map_ref: Option<Named>,
        pub secret_ref: Option<Named>,
    }

    /// Anything that names a ConfigMap or Secret by `name`.
    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct Named {
        pub name: Option<Box<str>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Volume {
        pub config_map: Option<Named>,
        pub secret: Option<SecretVolume>,
        pub projected: Option<Projected>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    pub struct SecretVolume {
        pub secret_name: Option<Box<str>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct Projected {
        pub sources: Option<Vec<Projection>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Projection {
        pub config_map: Option<Named>,
        pub secret: Option<Named>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Status {
        pub conditions: Option<Vec<Condition>>,
        #[serde(rename = "podIP")]
        pub pod_ip: Option<Box<str>>,
        pub start_time: Option<Timestamp>,
        pub container_statuses: Option<Vec<ContainerStatus>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct Condition {
        #[serde(rename = "type")]
        pub type_: Option<String>,
        pub status: Option<String>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    pub struct ContainerStatus {
        pub name: Option<Box<str>>,
        pub restart_count: Option<i32>,
        pub state: Option<State>,
        pub last_state: Option<State>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct State {
        pub waiting: Option<Waiting>,
        pub terminated: Option<Terminated>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct Waiting {
        pub reason: Option<Box<str>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    pub struct Terminated {
        pub reason: Option<Box<str>>,
        pub exit_code: Option<i32>,
        pub finished_at: Option<Timestamp>,
    }
}

/// The condition type read: a pod's Ready.
const READY: &str = "Ready";

impl From<wire::Pod> for CachedPod {
    fn from(pod: wire::Pod) -> Self {
        let meta = pod.metadata.unwrap_or_default();
        let spec = pod.spec.unwrap_or_default();
        let status = pod.status.unwrap_or_default();
        let containers = spec.containers.unwrap_or_default();
        let init_containers = spec.init_containers.unwrap_or_default();
        let references = references(&containers, &init_containers, spec.volumes.unwrap_or_default());
        Self {
            metadata: ObjectMeta {
                name: meta.name,
                namespace: meta.namespace,
                uid: meta.uid,
                resource_version: meta.resource_version,
                generation: meta.generation,
                creation_timestamp: meta.creation_timestamp.map(Time),
                deletion_timestamp: meta.deletion_timestamp.map(Time),
                labels: meta.labels,
                ..ObjectMeta::default()
            },
            containers: containers.into_iter().map(container).collect(),
            references,
            ready: status
                .conditions
                .into_iter()
                .flatten()
                .any(|c| c.type_.as_deref() == Some(READY) && c.status.as_deref() == Some("True")),
            pod_ip: status.pod_ip,
            start_time: status.start_time,
            container_statuses: status
                .container_statuses
                .into_iter()
                .flatten()
                .map(|s| ContainerStatus {
                    name: s.name.unwrap_or_default(),
                    restart_count: s.restart_count.unwrap_or_default(),
                    state: state(s.state),
                    last_state: state(s.last_state),
                })
                .collect(),
        }
    }
}

fn container(c: wire::Container) -> Container {
    let limits = c.resources.and_then(|r| r.limits).unwrap_or_default();
    Container {
        name: c.name.unwrap_or_default(),
        ports: c
            .ports
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p.name?, p.container_port.unwrap_or_default())))
            .collect(),
        cpu_limit: limits.cpu,
        memory_limit: limits.memory,
    }
}

fn state(s: Option<wire::State>) -> ContainerState {
    let s = s.unwrap_or_default();
    ContainerState {
        waiting: s.waiting.and_then(|w| w.reason),
        terminated: s.terminated.map(|t| Terminated {
            reason: t.reason,
            exit_code: t.exit_code.unwrap_or_default(),
            finished_at: t.finished_at,
        }),
    }
}

/// The ConfigMaps and Secrets named by volumes and by the environment of (init) containers.
fn references(
    containers: &[wire::Container],
    init_containers: &[wire::Container],
    volumes: Vec<wire::Volume>,
) -> Box<[(ConfigKind, Box<str>)]> {
    use ConfigKind::{ConfigMap, Secret};
    let named = |kind: ConfigKind, r: Option<&wire::Named>| Some((kind, r?.name.clone()?));
    let mut refs: Vec<(ConfigKind, Box<str>)> = Vec::new();
    for v in volumes {
        refs.extend(named(ConfigMap, v.config_map.as_ref()));
        refs.extend(v.secret.and_then(|s| s.secret_name).map(|name| (Secret, name)));
        for source in v.projected.and_then(|p| p.sources).into_iter().flatten() {
            refs.extend(named(ConfigMap, source.config_map.as_ref()));
            refs.extend(named(Secret, source.secret.as_ref()));
        }
    }
    for c in containers.iter().chain(init_containers) {
        for from in c.env_from.iter().flatten() {
            refs.extend(named(ConfigMap, from.config_map_ref.as_ref()));
            refs.extend(named(Secret, from.secret_ref.as_ref()));
        }
        for source in c.env.iter().flatten().filter_map(|e| e.value_from.as_ref()) {
            refs.extend(named(ConfigMap, source.config_map_key_ref.as_ref()));
            refs.extend(named(Secret, source.secret_key_ref.as_ref()));
        }
    }
    refs.retain(|(_, name)| !name.is_empty());
    refs.sort();
    refs.dedup();
    refs.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use kube::{
        ResourceExt,
        core::{ObjectList, WatchEvent},
    };
    use serde_json::json;

    use super::*;

    fn pod() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-a", "namespace": "shop", "uid": "u-1", "resourceVersion": "7",
                         "labels": {"app": "web"}, "annotations": {"a": "b"},
                         "managedFields": [{"manager": "kubelet", "operation": "Update", "time": "2026-01-01T00:00:00Z"}],
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {
                "containers": [{"name": "app", "image": "x", "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9090}],
                                "resources": {"limits": {"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "1Gi"}, "requests": {"cpu": "1"}},
                                "env": [{"name": "A", "value": "literal"},
                                        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
                                        {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                                "envFrom": [{"configMapRef": {"name": "flags"}}, {"secretRef": {"name": "db"}}]}],
                "initContainers": [{"name": "init", "ports": [{"name": "init-port", "containerPort": 1}],
                                    "env": [{"name": "D", "valueFrom": {"configMapKeyRef": {"name": "init-config", "key": "k"}}}]}],
                "volumes": [{"name": "cfg", "configMap": {"name": "web-config"}},
                            {"name": "tls", "secret": {"secretName": "web-tls"}},
                            {"name": "tmp", "emptyDir": {}},
                            {"name": "all", "projected": {"sources": [{"configMap": {"name": "shared"}}, {"secret": {"name": ""}},
                                                                      {"serviceAccountToken": {"path": "token"}}]}}]
            },
            "status": {
                "phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}], "startTime": "2026-01-01T00:00:10Z",
                "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "app", "restartCount": 2, "ready": true, "image": "x", "imageID": "",
                    "state": {"running": {"startedAt": "2026-01-01T00:01:00Z"}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2026-01-01T00:00:59Z", "message": "m"}}}]
            }
        })
    }

    #[test]
    fn decodes_what_is_read_and_nothing_else() {
        let p: CachedPod = serde_json::from_value(pod()).unwrap();
        assert_eq!(p.name_any(), "web-a");
        assert_eq!(p.namespace().as_deref(), Some("shop"));
        assert_eq!(p.labels().get("app").map(String::as_str), Some("web"));
        assert!(p.metadata.annotations.is_none() && p.metadata.managed_fields.is_none());
        assert_eq!(
            p.metadata.creation_timestamp.map(|t| t.0.to_string()).as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            p.containers[..],
            [Container {
                name: "app".into(),
                ports: Box::new([("http".into(), 8080)]),
                cpu_limit: Some("500m".into()),
                memory_limit: Some("512Mi".into()),
            }]
        );
        let refs: Vec<(ConfigKind, &str)> = p.references.iter().map(|(k, n)| (*k, &**n)).collect();
        assert_eq!(
            refs,
            [
                (ConfigKind::ConfigMap, "flags"),
                (ConfigKind::ConfigMap, "init-config"),
                (ConfigKind::ConfigMap, "shared"),
                (ConfigKind::ConfigMap, "web-config"),
                (ConfigKind::Secret, "db"),
                (ConfigKind::Secret, "web-tls"),
            ]
        );
        assert!(p.ready);
        assert_eq!(p.pod_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(
            p.container_statuses[..],
            [ContainerStatus {
                name: "app".into(),
                restart_count: 2,
                state: ContainerState::default(),
                last_state: ContainerState {
                    waiting: None,
                    terminated: Some(Terminated {
                        reason: Some("OOMKilled".into()),
                        exit_code: 137,
                        finished_at: Some("2026-01-01T00:00:59Z".parse().unwrap()),
                    }),
                },
            }]
        );
    }

    #[test]
    fn missing_and_null_fields_read_as_absent() {
        for pod in [
            json!({"metadata": {"name": "p"}}),
            json!({"metadata": {"name": "p", "labels": null}, "spec": null, "status": null}),
            json!({"metadata": {"name": "p"}, "spec": {"containers": null, "volumes": null},
                   "status": {"conditions": null, "containerStatuses": null, "podIP": null}}),
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "ports": null, "resources": {"limits": null}}]},
                   "status": {"containerStatuses": [{"name": "c", "state": null, "lastState": {}}]}}),
        ] {
            let p: CachedPod = serde_json::from_value(pod.clone()).unwrap();
            assert_eq!(p.name_any(), "p", "{pod}");
            assert!(!p.ready && p.pod_ip.is_none() && p.references.is_empty(), "{pod}");
            assert!(
                p.containers
                    .iter()
                    .all(|c| c.ports.is_empty() && c.cpu_limit.is_none())
            );
            assert!(
                p.container_statuses
                    .iter()
                    .all(|s| s.state == ContainerState::default())
            );
        }
    }

    #[test]
    fn a_ready_condition_must_say_true() {
        let mut p = pod();
        p["status"]["conditions"] =
            json!([{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "True"}]);
        assert!(!serde_json::from_value::<CachedPod>(p).unwrap().ready);
    }

    /// The watcher decodes lists and watch events into the cached type; a watch event's object may
    /// come before its type, when serde buffers it and decodes it from its own representation.
    #[test]
    fn lists_and_watch_events_decode() {
        let list: ObjectList<CachedPod> = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "9", "continue": "c"},
            "items": [pod(), pod()]
        }))
        .unwrap();
        assert_eq!(list.items.len(), 2);
        assert_eq!(list.metadata.continue_.as_deref(), Some("c"));
        let expected: CachedPod = serde_json::from_value(pod()).unwrap();
        for event in [
            format!(r#"{{"type":"MODIFIED","object":{}}}"#, pod()),
            format!(r#"{{"object":{},"type":"MODIFIED"}}"#, pod()),
        ] {
            match serde_json::from_str::<WatchEvent<CachedPod>>(&event).unwrap() {
                WatchEvent::Modified(p) => assert_eq!(p, expected),
                other => panic!("{other:?}"),
            }
        }
        let bookmark = json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                              "metadata": {"resourceVersion": "12", "annotations": {"k8s.io/initial-events-end": "true"}}}});
        assert!(matches!(
            serde_json::from_value::<WatchEvent<CachedPod>>(bookmark).unwrap(),
            WatchEvent::Bookmark(_)
        ));
    }

    #[test]
    fn is_read_from_the_pods_api() {
        assert_eq!(
            CachedPod::url_path(&(), Some("shop")),
            Pod::url_path(&(), Some("shop"))
        );
        assert_eq!(CachedPod::url_path(&(), None), "/api/v1/pods");
        assert_eq!(CachedPod::api_version(&()), "v1");
        assert_eq!(CachedPod::kind(&()), "Pod");
        let p: CachedPod = serde_json::from_value(pod()).unwrap();
        let r = p.object_ref(&());
        assert_eq!(
            (r.kind.as_deref(), r.name.as_deref(), r.uid.as_deref()),
            (Some("Pod"), Some("web-a"), Some("u-1"))
        );
    }
}
