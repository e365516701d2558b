//! Which policies a workload, pod, ConfigMap or Secret concerns: the map from watch events to
//! the policies to reconcile.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{ConfigMap, Secret},
};
use kube::{
    core::{PartialObjectMeta, SelectorExt},
    runtime::reflector::{ObjectRef, Store},
};

use crate::{
    api::{AppHealthPolicy, TargetKind, TargetSelector, watched::Watched},
    fleet::precedence::{Claim, Coverage},
    observe::{endpoints, pod::CachedPod, pod::ConfigKind, references},
};

use super::{
    PolicyRef,
    groups::{Groups, split},
};

/// Pods by namespace and by each of their labels.
pub(super) fn pod_groups(pod: &CachedPod) -> Vec<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut groups = vec![ns.to_owned()];
    groups.extend(
        pod.metadata
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| label_group(ns, k, v)),
    );
    groups
}

fn label_group(ns: &str, key: &str, value: &str) -> String {
    format!("{ns}\0{key}={value}")
}

/// Workloads by namespace.
pub(super) fn namespace_group<K: kube::ResourceExt>(object: &K) -> Vec<String> {
    vec![object.namespace().unwrap_or_default()]
}

/// Policies by namespace and by the workload they target.
pub(super) fn policy_groups(policy: &Watched) -> Vec<String> {
    let ns = policy.metadata.namespace.as_deref().unwrap_or_default();
    let mut groups = vec![ns.to_owned()];
    if let Some(target) = policy
        .decoded
        .as_ref()
        .ok()
        .and_then(|p| p.spec.target_ref.as_ref())
    {
        groups.push(target_group(ns, target.kind, &target.name));
    }
    groups
}

fn target_group(ns: &str, kind: TargetKind, name: &str) -> String {
    format!("{ns}\0{kind:?}/{name}")
}

fn target_of(w: &Watched) -> Option<&crate::api::TargetRef> {
    w.decoded.as_ref().ok().and_then(|p| p.spec.target_ref.as_ref())
}

fn selector_of(w: &Watched) -> Option<&TargetSelector> {
    w.decoded
        .as_ref()
        .ok()
        .filter(|p| p.spec.target_ref.is_none())
        .and_then(|p| p.spec.target_selector.as_ref())
}

/// A workload a targetSelector policy selects.
pub(super) struct Selected {
    pub kind: TargetKind,
    pub name: String,
    /// Its pods' selector.
    pub pods: LabelSelector,
}

/// Maps workloads and pods to the policies that target them.
#[derive(Clone)]
pub struct TargetIndex {
    pub(super) policies: Store<Watched>,
    /// Lookups by namespace, label and target, kept from the watches' events.
    pub(super) pod_groups: Arc<Groups<CachedPod>>,
    pub(super) policy_groups: Arc<Groups<Watched>>,
    pub(super) deployment_groups: Arc<Groups<Deployment>>,
    pub(super) statefulset_groups: Arc<Groups<StatefulSet>>,
    pub(super) deployments: Store<Deployment>,
    pub(super) statefulsets: Store<StatefulSet>,
    pub(super) pods: Store<CachedPod>,
    pub(super) configmaps: Store<PartialObjectMeta<ConfigMap>>,
    pub(super) secrets: Store<PartialObjectMeta<Secret>>,
    /// Whether every store above has been filled.
    pub(super) synced: super::synced::Synced,
}

impl TargetIndex {
    /// The policies of `group`, from the cache.
    fn policies_of(&self, group: &str) -> impl Iterator<Item = Arc<Watched>> + '_ {
        self.policy_groups.members(group).into_iter().filter_map(|id| {
            let (ns, name) = split(&id);
            self.policies.get(&ObjectRef::new(name).within(ns))
        })
    }

    /// The decoded policies in `namespace` (unreadable ones concern no workload).
    fn policies_in(&self, namespace: &str) -> Vec<(PolicyRef, Arc<Watched>)> {
        self.policies_of(namespace)
            .filter(|w| w.decoded.is_ok())
            .map(|w| (ObjectRef::from_obj(w.as_ref()), w))
            .collect()
    }

    /// Policies in `namespace` whose targetRef names this workload, and the targetSelector policies
    /// there that select its kind (whether its labels match now or matched before: a workload
    /// relabelled out of a selector is released by that policy's reconcile).
    pub fn policies_for_workload(&self, kind: TargetKind, namespace: &str, name: &str) -> Vec<PolicyRef> {
        let mut refs: Vec<PolicyRef> = self
            .policies_of(&target_group(namespace, kind, name))
            .map(|w| ObjectRef::from_obj(w.as_ref()))
            .collect();
        refs.extend(
            self.policies_in(namespace)
                .into_iter()
                .filter(|(_, w)| selector_of(w).is_some_and(|s| s.kinds.contains(&kind)))
                .map(|(r, _)| r),
        );
        refs
    }

    /// Policies whose target workload selects this pod (for a targetSelector policy: one of the
    /// workloads it selects).
    pub fn policies_for_pod(&self, pod: &CachedPod) -> Vec<PolicyRef> {
        let Some(namespace) = pod.metadata.namespace.as_deref() else {
            return Vec::new();
        };
        let labels = pod.metadata.labels.as_ref();
        self.policies_in(namespace)
            .into_iter()
            .filter(|(_, w)| match (target_of(w), selector_of(w)) {
                (Some(t), _) => self
                    .workload_selector(t.kind, namespace, &t.name)
                    .is_some_and(|s| endpoints::selects(&s, labels)),
                (None, Some(selector)) => self
                    .selected(namespace, selector)
                    .iter()
                    .any(|w| endpoints::selects(&w.pods, labels)),
                (None, None) => false,
            })
            .map(|(r, _)| r)
            .collect()
    }

    /// The workloads of `namespace` that `selector` selects, by kind and name.
    pub(super) fn selected(&self, namespace: &str, selector: &TargetSelector) -> Vec<Selected> {
        let Ok(labels) = kube::core::Selector::try_from(selector.label_selector()) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        let mut take = |kind,
                        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
                        pods: Option<&LabelSelector>| {
            let empty = std::collections::BTreeMap::new();
            if meta.namespace.as_deref() == Some(namespace)
                && labels.matches(meta.labels.as_ref().unwrap_or(&empty))
                && let (Some(name), Some(pods)) = (&meta.name, pods)
            {
                found.push(Selected {
                    kind,
                    name: name.clone(),
                    pods: pods.clone(),
                });
            }
        };
        if selector.kinds.contains(&TargetKind::Deployment) {
            for id in self.deployment_groups.members(namespace) {
                let (ns, name) = split(&id);
                if let Some(d) = self.deployment(ns, name) {
                    take(
                        TargetKind::Deployment,
                        &d.metadata,
                        d.spec.as_ref().map(|s| &s.selector),
                    );
                }
            }
        }
        if selector.kinds.contains(&TargetKind::StatefulSet) {
            for id in self.statefulset_groups.members(namespace) {
                let (ns, name) = split(&id);
                if let Some(s) = self.statefulset(ns, name) {
                    take(
                        TargetKind::StatefulSet,
                        &s.metadata,
                        s.spec.as_ref().map(|s| &s.selector),
                    );
                }
            }
        }
        found.sort_by(|a, b| (a.kind.as_str(), &a.name).cmp(&(b.kind.as_str(), &b.name)));
        found
    }

    /// Every policy of `namespace` that covers this workload, as a claim for precedence.
    pub(super) fn claims_on(&self, namespace: &str, kind: TargetKind, name: &str) -> Vec<Claim> {
        let labels = match kind {
            TargetKind::Deployment => self
                .deployment(namespace, name)
                .and_then(|d| d.metadata.labels.clone()),
            TargetKind::StatefulSet => self
                .statefulset(namespace, name)
                .and_then(|s| s.metadata.labels.clone()),
        }
        .unwrap_or_default();
        self.policies_in(namespace)
            .into_iter()
            .filter_map(|(_, w)| {
                let p = w.decoded.as_ref().ok()?;
                let coverage = match (&p.spec.target_ref, &p.spec.target_selector) {
                    (Some(t), None) if t.kind == kind && t.name == name => Coverage::Named,
                    (None, Some(s))
                        if s.kinds.contains(&kind)
                            && kube::core::Selector::try_from(s.label_selector())
                                .is_ok_and(|sel| sel.matches(&labels)) =>
                    {
                        Coverage::Selected
                    }
                    _ => return None,
                };
                Some(Claim {
                    namespace: Some(namespace.to_owned()),
                    name: w.metadata.name.clone().unwrap_or_default(),
                    coverage,
                    priority: p.spec.priority,
                })
            })
            .collect()
    }

    /// The pods of `namespace` that `selector` selects: looked up through the rarest of its
    /// `matchLabels` (or the namespace), then checked against the whole selector.
    pub(super) fn pods_selected(&self, namespace: &str, selector: &LabelSelector) -> Vec<Arc<CachedPod>> {
        let group = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| label_group(namespace, k, v))
            .min_by_key(|g| self.pod_groups.count(g))
            .unwrap_or_else(|| namespace.to_owned());
        self.pods_of(&group)
            .filter(|p| endpoints::selects(selector, p.metadata.labels.as_ref()))
            .collect()
    }

    fn pods_of(&self, group: &str) -> impl Iterator<Item = Arc<CachedPod>> + '_ {
        self.pod_groups.members(group).into_iter().filter_map(|id| {
            let (ns, name) = split(&id);
            self.pods.get(&ObjectRef::new(name).within(ns))
        })
    }

    /// Policies that use this ConfigMap or Secret: in their probe (headers, CA) or through the
    /// pods of their target.
    pub fn policies_for_config(&self, kind: ConfigKind, namespace: &str, name: &str) -> Vec<PolicyRef> {
        let pods_using: Vec<Arc<CachedPod>> = self
            .pods_of(namespace)
            .filter(|p| references::referenced(p).any(|(k, n)| k == kind && n == name))
            .collect();
        let mut refs: Vec<PolicyRef> = pods_using.iter().flat_map(|p| self.policies_for_pod(p)).collect();
        refs.extend(
            self.policies_in(namespace)
                .into_iter()
                .filter(|(_, w)| w.decoded.as_ref().is_ok_and(|p| probe_uses(p, kind, name)))
                .map(|(r, _)| r),
        );
        refs.sort_by(|a, b| a.name.cmp(&b.name));
        refs.dedup();
        refs
    }

    /// The metadata of a ConfigMap or Secret, from the cache.
    pub(super) fn config_meta(
        &self,
        kind: ConfigKind,
        namespace: &str,
        name: &str,
    ) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta> {
        match kind {
            ConfigKind::ConfigMap => self
                .configmaps
                .get(&ObjectRef::new(name).within(namespace))
                .map(|m| m.metadata.clone()),
            ConfigKind::Secret => self
                .secrets
                .get(&ObjectRef::new(name).within(namespace))
                .map(|m| m.metadata.clone()),
        }
    }

    /// Whether every cache has been filled once.
    pub(super) async fn synced(&self) -> bool {
        self.synced.wait().await
    }

    /// Whether every cache is filled now.
    pub(super) fn is_synced(&self) -> bool {
        self.synced.is_filled()
    }

    pub(super) fn deployment(&self, namespace: &str, name: &str) -> Option<Arc<Deployment>> {
        self.deployments.get(&ObjectRef::new(name).within(namespace))
    }

    pub(super) fn statefulset(&self, namespace: &str, name: &str) -> Option<Arc<StatefulSet>> {
        self.statefulsets.get(&ObjectRef::new(name).within(namespace))
    }

    pub(super) fn workload_selector(
        &self,
        kind: TargetKind,
        namespace: &str,
        name: &str,
    ) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector> {
        match kind {
            TargetKind::Deployment => self
                .deployments
                .get(&ObjectRef::new(name).within(namespace))
                .and_then(|d| d.spec.as_ref().map(|s| s.selector.clone())),
            TargetKind::StatefulSet => self
                .statefulsets
                .get(&ObjectRef::new(name).within(namespace))
                .and_then(|d| d.spec.as_ref().map(|s| s.selector.clone())),
        }
    }
}

/// Whether a policy's probe reads this ConfigMap or Secret (header values, CA bundle).
fn probe_uses(policy: &AppHealthPolicy, kind: ConfigKind, name: &str) -> bool {
    let Some(http) = &policy.spec.probe.http else {
        return false;
    };
    let header = kind == ConfigKind::Secret
        && http.headers.iter().any(|h| {
            h.value_from
                .as_ref()
                .is_some_and(|f| f.secret_key_ref.name == name)
        });
    let ca = http
        .tls
        .as_ref()
        .and_then(|t| t.ca.as_ref())
        .is_some_and(|ca| match kind {
            ConfigKind::Secret => ca.secret_key_ref.as_ref().is_some_and(|k| k.name == name),
            ConfigKind::ConfigMap => ca.config_map_key_ref.as_ref().is_some_and(|k| k.name == name),
        });
    header || ca
}
