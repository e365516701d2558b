//! What the caches keep: every watched object is cut down to the fields the operator reads, on the
//! watch stream, before its reflector stores it (`WatchStreamExt::modify`). Most of a watched
//! object is never read, and it would stay in memory for as long as the object lives.
//!
//! Pods, the most numerous, are not slimmed here: the pod watch decodes them straight into a
//! compact type of their own, [`CachedPod`](crate::observe::pod::CachedPod), which lists what it
//! keeps and who reads it (k8s-openapi's `Pod` costs its wide structs whatever they hold: a
//! `Container` is 2 KiB, a `Volume` 3 KiB, so a slimmed `Pod` still took about 31 KiB of heap).
//!
//! Each function here builds the object anew from what it keeps, so a field that is not named here
//! (including one a newer Kubernetes adds) is dropped. **Reading another field of a cached object?
//! Keep it here too**, and make the tests (`slim/tests.rs`) read it: they check that every function
//! reading cached objects answers the same for a full and a slimmed object.
//!
//! Kept, and who reads it:
//!
//! - every object: `metadata` name, namespace, uid, resourceVersion, generation,
//!   creationTimestamp, deletionTimestamp (the stores' keys, `name_any`, Event references,
//!   [`rollout`](crate::observe::rollout) compares generations).
//! - Deployment ([`deployment`]): its labels (what a targetSelector selects by), `spec.replicas`
//!   and `spec.selector` (which pods belong to it),
//!   `status` observedGeneration, replicas, updatedReplicas, availableReplicas and its Progressing
//!   conditions (type, status, reason): `rollout::deployment`. The pod template is dropped.
//! - StatefulSet ([`statefulset`]): its labels, `spec.replicas` and `spec.selector`, `status`
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

use k8s_openapi::{
    api::apps::v1::{
        Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, StatefulSet, StatefulSetSpec,
        StatefulSetStatus,
    },
    apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta},
};
use kube::core::PartialObjectMeta;

use crate::api::watched::Watched;

/// The condition type read: a Deployment's Progressing.
const PROGRESSING: &str = "Progressing";

/// Cuts a Deployment down to what the operator reads.
pub fn deployment(d: &mut Deployment) {
    let labels = d.metadata.labels.take();
    d.metadata = identity(std::mem::take(&mut d.metadata));
    d.metadata.labels = labels;
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
    let labels = s.metadata.labels.take();
    s.metadata = identity(std::mem::take(&mut s.metadata));
    s.metadata.labels = labels;
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

/// Cuts a policy's metadata down to its identity; spec and status are kept whole. An
/// AppHealthPolicy or a ClusterAppHealthPolicy.
pub fn policy<K: kube::Resource>(w: &mut Watched<K>) {
    w.metadata = identity(std::mem::take(&mut w.metadata));
    if let Ok(p) = &mut w.decoded {
        *p.meta_mut() = identity(std::mem::take(p.meta_mut()));
    }
}

/// Cuts a namespace's metadata down to its identity and labels (what a namespaceSelector reads).
pub fn namespace<K>(m: &mut PartialObjectMeta<K>) {
    let meta = std::mem::take(&mut m.metadata);
    m.metadata = ObjectMeta {
        labels: meta.labels.clone(),
        ..identity(meta)
    };
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
/// would stay in memory as long as the object is cached.
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

#[cfg(test)]
mod tests;
