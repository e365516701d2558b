//! What the caches keep: every watched object is cut down to the fields the operator reads, on the
//! watch stream, before its reflector stores it (`WatchStreamExt::modify`). A realistic pod
//! (several containers, env, probes, volumes, managedFields) arrives as 10-15 KiB of JSON; most of
//! it is never read, and it would stay in memory for as long as the pod lives. (What is left still
//! costs its k8s-openapi structs, which are wide whatever they hold: a `Container` is 2 KiB, a
//! `Volume` 3 KiB.)
//!
//! Each function builds the object anew from what it keeps, so a field that is not named here
//! (including one a newer Kubernetes adds) is dropped. **Reading another field of a cached object?
//! Keep it here too**, and make the tests (`slim/tests.rs`) read it: they check that every function
//! reading cached objects answers the same for a full and a slimmed object.
//!
//! Kept, and who reads it:
//!
//! - every object: `metadata` name, namespace, uid, resourceVersion, generation,
//!   creationTimestamp, deletionTimestamp (the stores' keys, `name_any`, Event references,
//!   [`rollout`](crate::observe::rollout) compares generations; a pod's age in `PodFacts`, a deleted
//!   pod is not ready in [`endpoints`](crate::observe::endpoints)). Labels only on pods.
//! - Pod ([`pod`]):
//!   - `metadata.labels`: whether a workload selects the pod (`endpoints::selects`);
//!   - per container `name`, `resources.limits` cpu and memory (`signals::pod_signals`), named
//!     `ports` (name, containerPort: `endpoints` resolves a probe's named port), `env` entries whose
//!     `valueFrom` is a `configMapKeyRef` or `secretKeyRef` and `envFrom` `configMapRef` /
//!     `secretRef` (`references::referenced`, for the configChanged trigger and for which policies a
//!     ConfigMap or Secret concerns);
//!   - init containers only for their `env` and `envFrom` references, and only when they have some;
//!   - `volumes` that name a ConfigMap or Secret (`configMap`, `secret`, `projected` sources), with
//!     only that name;
//!   - `status.conditions` of type Ready (type and status: `endpoints`, `PodFacts`), `podIP`
//!     (the probe's address), `startTime` (`references::started_at`), and per container status
//!     `name`, `restartCount`, `state`/`lastState` `waiting.reason` and `terminated` reason,
//!     exitCode and finishedAt (restarts, CrashLoopBackOff, OOM kills: `signals::pod_signals`).
//!   - Dropped, among others: annotations, ownerReferences, managedFields, literal env values,
//!     command, args, image, probes, volumeMounts, securityContext, scheduling (nodeName,
//!     tolerations, affinity), the other conditions, pod IPs other than `podIP`, init and ephemeral
//!     container statuses.
//! - Deployment ([`deployment`]): `spec.replicas` and `spec.selector` (which pods belong to it),
//!   `status` observedGeneration, replicas, updatedReplicas, availableReplicas and its Progressing
//!   conditions (type, status, reason): `rollout::deployment`. The pod template is dropped.
//! - StatefulSet ([`statefulset`]): `spec.replicas` and `spec.selector`, `status`
//!   observedGeneration, replicas, updatedReplicas, readyReplicas, currentRevision, updateRevision:
//!   `rollout::statefulset`. The pod template and volume claim templates are dropped.
//! - AppHealthPolicy ([`policy`]): all of spec and status (the operator reads nearly every field, and
//!   builds the status it writes back whole from the cached one), and the identity metadata of
//!   both the watched object and its decoded copy. Dropped: managedFields, annotations (notably
//!   `kubectl.kubernetes.io/last-applied-configuration`, a second copy of the spec), labels.
//! - ConfigMap and Secret metadata ([`config`]): identity, and of managedFields only the time of
//!   the latest write (`references::changed_at`: when it last changed, for configChanged).
//!
//! Nothing cached is written back: actions read the objects they change from the API and patch
//! them (a rollback's update is of a Deployment it has just read), and a policy's status is
//! written with server-side apply, so a slimmed object never reaches the API server.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{
            Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, StatefulSet, StatefulSetSpec,
            StatefulSetStatus,
        },
        core::v1::{
            ConfigMapEnvSource, ConfigMapKeySelector, ConfigMapProjection, ConfigMapVolumeSource, Container,
            ContainerPort, ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
            EnvFromSource, EnvVar, EnvVarSource, Pod, PodCondition, PodSpec, PodStatus,
            ProjectedVolumeSource, ResourceRequirements, SecretEnvSource, SecretKeySelector,
            SecretProjection, SecretVolumeSource, Volume, VolumeProjection,
        },
    },
    apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta},
};
use kube::core::PartialObjectMeta;

use crate::api::watched::Watched;

/// The resource limits `signals::pod_signals` compares use against.
const LIMITS: [&str; 2] = ["cpu", "memory"];

/// The condition types read: a pod's Ready, a Deployment's Progressing.
const POD_READY: &str = "Ready";
const PROGRESSING: &str = "Progressing";

/// Cuts a pod down to what the operator reads.
pub fn pod(pod: &mut Pod) {
    let labels = pod.metadata.labels.take();
    pod.metadata = ObjectMeta {
        labels,
        ..identity(std::mem::take(&mut pod.metadata))
    };
    pod.spec = pod.spec.take().map(pod_spec);
    pod.status = pod.status.take().map(pod_status);
}

/// Cuts a Deployment down to what the operator reads.
pub fn deployment(d: &mut Deployment) {
    d.metadata = identity(std::mem::take(&mut d.metadata));
    d.spec = d.spec.take().map(|s| DeploymentSpec {
        replicas: s.replicas,
        selector: s.selector,
        ..DeploymentSpec::default()
    });
    d.status = d.status.take().map(|s| DeploymentStatus {
        observed_generation: s.observed_generation,
        replicas: s.replicas,
        updated_replicas: s.updated_replicas,
        available_replicas: s.available_replicas,
        conditions: some_if_any(
            s.conditions
                .into_iter()
                .flatten()
                .filter(|c| c.type_ == PROGRESSING)
                .map(|c| DeploymentCondition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    ..DeploymentCondition::default()
                }),
        ),
        ..DeploymentStatus::default()
    });
}

/// Cuts a StatefulSet down to what the operator reads.
pub fn statefulset(s: &mut StatefulSet) {
    s.metadata = identity(std::mem::take(&mut s.metadata));
    s.spec = s.spec.take().map(|s| StatefulSetSpec {
        replicas: s.replicas,
        selector: s.selector,
        ..StatefulSetSpec::default()
    });
    s.status = s.status.take().map(|s| StatefulSetStatus {
        observed_generation: s.observed_generation,
        replicas: s.replicas,
        updated_replicas: s.updated_replicas,
        ready_replicas: s.ready_replicas,
        current_revision: s.current_revision,
        update_revision: s.update_revision,
        ..StatefulSetStatus::default()
    });
}

/// Cuts a policy's metadata down to its identity; spec and status are kept whole.
pub fn policy(w: &mut Watched) {
    w.metadata = identity(std::mem::take(&mut w.metadata));
    if let Ok(p) = &mut w.decoded {
        p.metadata = identity(std::mem::take(&mut p.metadata));
    }
}

/// Cuts a ConfigMap's or Secret's metadata down to its identity and the time of its latest write.
pub fn config<K>(m: &mut PartialObjectMeta<K>) {
    let meta = std::mem::take(&mut m.metadata);
    let latest = meta
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|f| f.time.clone())
        .max_by_key(|t| t.0);
    m.metadata = ObjectMeta {
        managed_fields: latest.map(|time| {
            vec![ManagedFieldsEntry {
                time: Some(time),
                ..ManagedFieldsEntry::default()
            }]
        }),
        ..identity(meta)
    };
}

/// What identifies an object, and its generation and lifetime.
fn identity(meta: ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        generation: meta.generation,
        creation_timestamp: meta.creation_timestamp,
        deletion_timestamp: meta.deletion_timestamp,
        ..ObjectMeta::default()
    }
}

/// The list, with no room to spare: a list decoded from JSON grows by doubling, and its empty slots
/// (a whole `Container` or `Volume` struct each) would stay in memory as long as the object is cached.
fn exact<T>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut items: Vec<T> = items.collect();
    items.shrink_to_fit();
    items
}

/// The list, or None when nothing is left (absent and empty lists read the same everywhere here).
fn some_if_any<T>(items: impl Iterator<Item = T>) -> Option<Vec<T>> {
    let items = exact(items);
    (!items.is_empty()).then_some(items)
}

fn pod_spec(spec: PodSpec) -> PodSpec {
    PodSpec {
        containers: exact(spec.containers.into_iter().map(container)),
        init_containers: some_if_any(
            spec.init_containers
                .into_iter()
                .flatten()
                .map(references_of)
                .filter(|c| c.env.is_some() || c.env_from.is_some()),
        ),
        volumes: some_if_any(spec.volumes.into_iter().flatten().filter_map(volume)),
        ..PodSpec::default()
    }
}

fn container(mut c: Container) -> Container {
    let ports = some_if_any(c.ports.take().into_iter().flatten().filter_map(|p| {
        p.name.map(|name| ContainerPort {
            name: Some(name),
            container_port: p.container_port,
            ..ContainerPort::default()
        })
    }));
    let limits = c
        .resources
        .take()
        .and_then(|r| r.limits)
        .map(|l| {
            l.into_iter()
                .filter(|(k, _)| LIMITS.contains(&k.as_str()))
                .collect::<BTreeMap<_, _>>()
        })
        .filter(|l| !l.is_empty());
    Container {
        ports,
        resources: limits.map(|limits| ResourceRequirements {
            limits: Some(limits),
            ..ResourceRequirements::default()
        }),
        ..references_of(c)
    }
}

/// A container's name and the ConfigMaps and Secrets its environment reads.
fn references_of(c: Container) -> Container {
    Container {
        name: c.name,
        env: some_if_any(c.env.into_iter().flatten().filter_map(env_reference)),
        env_from: some_if_any(c.env_from.into_iter().flatten().filter_map(|from| {
            let source = EnvFromSource {
                config_map_ref: from.config_map_ref.map(|r| ConfigMapEnvSource {
                    name: r.name,
                    ..ConfigMapEnvSource::default()
                }),
                secret_ref: from.secret_ref.map(|r| SecretEnvSource {
                    name: r.name,
                    ..SecretEnvSource::default()
                }),
                ..EnvFromSource::default()
            };
            (source.config_map_ref.is_some() || source.secret_ref.is_some()).then_some(source)
        })),
        ..Container::default()
    }
}

/// An env entry read from a ConfigMap or Secret key; None for every other (a literal value, a field).
fn env_reference(e: EnvVar) -> Option<EnvVar> {
    let from = e.value_from?;
    let source = EnvVarSource {
        config_map_key_ref: from.config_map_key_ref.map(|r| ConfigMapKeySelector {
            name: r.name,
            key: r.key,
            ..ConfigMapKeySelector::default()
        }),
        secret_key_ref: from.secret_key_ref.map(|r| SecretKeySelector {
            name: r.name,
            key: r.key,
            ..SecretKeySelector::default()
        }),
        ..EnvVarSource::default()
    };
    (source.config_map_key_ref.is_some() || source.secret_key_ref.is_some()).then_some(EnvVar {
        name: e.name,
        value: None,
        value_from: Some(source),
    })
}

/// A volume that names a ConfigMap or Secret, with only those names; None for every other.
fn volume(v: Volume) -> Option<Volume> {
    let config_map = v.config_map.map(|c| ConfigMapVolumeSource {
        name: c.name,
        ..ConfigMapVolumeSource::default()
    });
    let secret = v
        .secret
        .and_then(|s| s.secret_name)
        .map(|name| SecretVolumeSource {
            secret_name: Some(name),
            ..SecretVolumeSource::default()
        });
    let projected = v
        .projected
        .and_then(|p| {
            some_if_any(p.sources.into_iter().flatten().filter_map(|s| {
                let source = VolumeProjection {
                    config_map: s.config_map.map(|c| ConfigMapProjection {
                        name: c.name,
                        ..ConfigMapProjection::default()
                    }),
                    secret: s.secret.map(|c| SecretProjection {
                        name: c.name,
                        ..SecretProjection::default()
                    }),
                    ..VolumeProjection::default()
                };
                (source.config_map.is_some() || source.secret.is_some()).then_some(source)
            }))
        })
        .map(|sources| ProjectedVolumeSource {
            sources: Some(sources),
            ..ProjectedVolumeSource::default()
        });
    (config_map.is_some() || secret.is_some() || projected.is_some()).then(|| Volume {
        name: v.name,
        config_map,
        secret,
        projected,
        ..Volume::default()
    })
}

fn pod_status(s: PodStatus) -> PodStatus {
    PodStatus {
        conditions: some_if_any(
            s.conditions
                .into_iter()
                .flatten()
                .filter(|c| c.type_ == POD_READY)
                .map(|c| PodCondition {
                    type_: c.type_,
                    status: c.status,
                    ..PodCondition::default()
                }),
        ),
        pod_ip: s.pod_ip,
        start_time: s.start_time,
        container_statuses: s
            .container_statuses
            .map(|all| exact(all.into_iter().map(container_status))),
        ..PodStatus::default()
    }
}

fn container_status(s: ContainerStatus) -> ContainerStatus {
    ContainerStatus {
        name: s.name,
        ready: s.ready,
        restart_count: s.restart_count,
        state: s.state.and_then(container_state),
        last_state: s.last_state.and_then(container_state),
        ..ContainerStatus::default()
    }
}

/// Why a container waits, or how it ended; None while it runs.
fn container_state(s: ContainerState) -> Option<ContainerState> {
    let state = ContainerState {
        waiting: s.waiting.map(|w| ContainerStateWaiting {
            reason: w.reason,
            ..ContainerStateWaiting::default()
        }),
        terminated: s.terminated.map(|t| ContainerStateTerminated {
            exit_code: t.exit_code,
            reason: t.reason,
            finished_at: t.finished_at,
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    };
    (state.waiting.is_some() || state.terminated.is_some()).then_some(state)
}

#[cfg(test)]
mod tests;
