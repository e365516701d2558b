//! Which policies a workload, pod, ConfigMap or Secret concerns: the map from watch events to
//! the policies to reconcile.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{ConfigMap, Namespace, Secret},
};
use kube::{
    core::PartialObjectMeta,
    runtime::reflector::{ObjectRef, Store},
};

use crate::{
    act::Workload,
    api::{
        AppHealthPolicy, AppHealthPolicyStatus, LabelMatch, TargetKind, TargetSelector,
        watched::{Watched, WatchedCluster},
    },
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

/// Deployments by namespace, and by each `matchLabels` pair of their pod selector (see
/// [`pod_selector_groups`]).
pub(super) fn deployment_groups(d: &Deployment) -> Vec<String> {
    workload_groups(d, d.spec.as_ref().map(|s| &s.selector))
}

/// StatefulSets as [`deployment_groups`].
pub(super) fn statefulset_groups(s: &StatefulSet) -> Vec<String> {
    workload_groups(s, s.spec.as_ref().map(|s| &s.selector))
}

fn workload_groups<K: kube::ResourceExt>(object: &K, selector: Option<&LabelSelector>) -> Vec<String> {
    let ns = object.namespace().unwrap_or_default();
    let mut groups = vec![ns.clone()];
    groups.extend(pod_selector_groups(&ns, selector));
    groups
}

/// The groups a workload's pod selector puts it in, to find the workloads that select a pod
/// through the pod's labels: one for each `matchLabels` pair, or, for a selector with none, one of
/// its namespace's selectors without.
fn pod_selector_groups(ns: &str, selector: Option<&LabelSelector>) -> Vec<String> {
    match selector
        .and_then(|s| s.match_labels.as_ref())
        .filter(|m| !m.is_empty())
    {
        Some(pairs) => pairs
            .iter()
            .map(|(k, v)| format!("{ns}\0selects\0{k}={v}"))
            .collect(),
        None => vec![format!("{ns}\0selects")],
    }
}

/// Policies by namespace, by the workload they target, and the targetSelector policies of a
/// namespace.
pub(super) fn policy_groups(policy: &Watched) -> Vec<String> {
    let ns = policy.metadata.namespace.as_deref().unwrap_or_default();
    let mut groups = vec![ns.to_owned()];
    if selector_of(policy).is_some() {
        groups.push(selector_group(ns));
    }
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

fn selector_group(ns: &str) -> String {
    format!("{ns}\0targetSelector")
}

fn target_group(ns: &str, kind: TargetKind, name: &str) -> String {
    format!("{ns}\0{kind:?}/{name}")
}

fn target_of(w: &Watched) -> Option<&crate::api::TargetRef> {
    w.decoded.as_ref().ok().and_then(|p| p.spec.target_ref.as_ref())
}

fn cluster_spec(w: &WatchedCluster) -> Option<&crate::api::ClusterAppHealthPolicySpec> {
    w.decoded.as_ref().ok().map(|p| &p.spec)
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
}

/// Maps workloads and pods to the policies that target them.
#[derive(Clone)]
pub struct TargetIndex {
    pub(super) policies: Store<Watched>,
    /// ClusterAppHealthPolicies and the namespaces' labels (a cluster-wide scope's; empty in a
    /// namespace's).
    pub(super) cluster_policies: Store<WatchedCluster>,
    pub(super) namespaces: Store<PartialObjectMeta<Namespace>>,
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
            self.policies_of(&selector_group(namespace))
                .filter(|w| selector_of(w).is_some_and(|s| s.kinds.contains(&kind)))
                .map(|w| ObjectRef::from_obj(w.as_ref())),
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
        let mut owners: Option<Vec<(TargetKind, BTreeMap<String, String>)>> = None;
        self.policies_in(namespace)
            .into_iter()
            .filter(|(_, w)| match (target_of(w), selector_of(w)) {
                (Some(t), _) => self
                    .workload_selector(t.kind, namespace, &t.name)
                    .is_some_and(|s| endpoints::selects(&s, labels)),
                (None, Some(selector)) => owners
                    .get_or_insert_with(|| self.workloads_selecting(pod))
                    .iter()
                    .any(|(kind, workload)| selector.selects(*kind, workload)),
                (None, None) => false,
            })
            .map(|(r, _)| r)
            .collect()
    }

    /// The workloads of the pod's namespace whose pod selector selects it, by kind, with their
    /// labels: found through the pod's labels (see [`pod_selector_groups`]), not by looking at
    /// every workload there.
    fn workloads_selecting(&self, pod: &CachedPod) -> Vec<(TargetKind, BTreeMap<String, String>)> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let labels = pod.metadata.labels.as_ref();
        let mut groups = vec![format!("{ns}\0selects")];
        groups.extend(
            labels
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{ns}\0selects\0{k}={v}")),
        );
        let mut found = Vec::new();
        for kind in [TargetKind::Deployment, TargetKind::StatefulSet] {
            let members = |group: &String| match kind {
                TargetKind::Deployment => self.deployment_groups.members(group),
                TargetKind::StatefulSet => self.statefulset_groups.members(group),
            };
            let mut ids: Vec<String> = groups.iter().flat_map(members).collect();
            ids.sort_unstable();
            ids.dedup();
            found.extend(ids.iter().filter_map(|id| {
                let (ns, name) = split(id);
                let (workload, selector) = self.workload(kind, ns, name)?;
                endpoints::selects(&selector, labels).then_some((kind, workload))
            }));
        }
        found
    }

    /// The workloads of `namespace` that `selector` selects, by kind and name.
    pub(super) fn selected(&self, namespace: &str, selector: &TargetSelector) -> Vec<Selected> {
        let mut found: Vec<Selected> = selector
            .kinds
            .iter()
            .flat_map(|&kind| self.workloads_in(kind, namespace))
            .filter(|(kind, _, labels)| selector.selects(*kind, labels))
            .map(|(kind, name, _)| Selected { kind, name })
            .collect();
        found.sort_by(|a, b| (a.kind.as_str(), &a.name).cmp(&(b.kind.as_str(), &b.name)));
        found
    }

    /// The workloads of `kind` in `namespace`: name, labels.
    fn workloads_in(
        &self,
        kind: TargetKind,
        namespace: &str,
    ) -> Vec<(TargetKind, String, BTreeMap<String, String>)> {
        let ids = match kind {
            TargetKind::Deployment => self.deployment_groups.members(namespace),
            TargetKind::StatefulSet => self.statefulset_groups.members(namespace),
        };
        ids.iter()
            .filter_map(|id| {
                let (ns, name) = split(id);
                let (labels, _) = self.workload(kind, ns, name)?;
                Some((kind, name.to_owned(), labels))
            })
            .collect()
    }

    /// A workload's labels and pod selector, from the cache.
    fn workload(
        &self,
        kind: TargetKind,
        namespace: &str,
        name: &str,
    ) -> Option<(BTreeMap<String, String>, LabelSelector)> {
        let (meta, spec_selector) = match kind {
            TargetKind::Deployment => {
                let d = self.deployment(namespace, name)?;
                (d.metadata.labels.clone(), d.spec.as_ref()?.selector.clone())
            }
            TargetKind::StatefulSet => {
                let s = self.statefulset(namespace, name)?;
                (s.metadata.labels.clone(), s.spec.as_ref()?.selector.clone())
            }
        };
        Some((meta.unwrap_or_default(), spec_selector))
    }

    /// Every policy that covers this workload (those of its namespace, and the cluster policies
    /// that select it), as a claim for precedence.
    pub(super) fn claims_on(&self, namespace: &str, kind: TargetKind, name: &str) -> Vec<Claim> {
        let labels = self
            .workload(kind, namespace, name)
            .map(|(labels, _)| labels)
            .unwrap_or_default();
        let cluster = self.cluster_policies_over(namespace).into_iter().filter_map(|w| {
            let spec = cluster_spec(&w)?;
            let selector = spec.policy.target_selector.as_ref()?;
            selector.selects(kind, &labels).then(|| Claim {
                namespace: None,
                name: w.metadata.name.clone().unwrap_or_default(),
                coverage: Coverage::ClusterSelected,
                priority: spec.policy.priority,
            })
        });
        self.policies_in(namespace)
            .into_iter()
            .filter_map(|(_, w)| {
                let p = w.decoded.as_ref().ok()?;
                let coverage = match (&p.spec.target_ref, &p.spec.target_selector) {
                    (Some(t), None) if t.kind == kind && t.name == name => Coverage::Named,
                    (None, Some(s)) if s.selects(kind, &labels) => Coverage::Selected,
                    _ => return None,
                };
                Some(Claim {
                    namespace: Some(namespace.to_owned()),
                    name: w.metadata.name.clone().unwrap_or_default(),
                    coverage,
                    priority: p.spec.priority,
                })
            })
            .chain(cluster)
            .collect()
    }

    /// The valid cluster policies whose namespaceSelector selects `namespace`, with their spec.
    fn cluster_policies_over(&self, namespace: &str) -> Vec<Arc<WatchedCluster>> {
        let labels = self.namespace_labels(namespace);
        self.cluster_policies
            .state()
            .into_iter()
            .filter(|w| {
                cluster_spec(w).is_some_and(|spec| {
                    crate::api::validate::cluster(spec).is_ok()
                        && spec
                            .namespace_selector
                            .as_ref()
                            .is_none_or(|s| s.matches(&labels))
                })
            })
            .collect()
    }

    /// The cluster policies to reconcile when something in `namespace` changes: those that look
    /// there.
    pub fn cluster_policies_for(&self, namespace: &str) -> Vec<ObjectRef<WatchedCluster>> {
        self.cluster_policies_over(namespace)
            .iter()
            .map(|w| ObjectRef::from_obj(w.as_ref()))
            .collect()
    }

    /// Whether there is any cluster policy to tell of a change.
    pub(super) fn has_cluster_policies(&self) -> bool {
        !self.cluster_policies.is_empty()
    }

    /// The cluster policies looking in `namespace` for workloads of `kind`.
    pub fn cluster_policies_for_workload(
        &self,
        kind: TargetKind,
        namespace: &str,
    ) -> Vec<ObjectRef<WatchedCluster>> {
        self.cluster_policies_over(namespace)
            .into_iter()
            .filter(|w| {
                cluster_spec(w)
                    .and_then(|spec| spec.policy.target_selector.as_ref())
                    .is_some_and(|s| s.kinds.contains(&kind))
            })
            .map(|w| ObjectRef::from_obj(w.as_ref()))
            .collect()
    }

    /// The cluster policies one of whose workloads selects this pod.
    pub fn cluster_policies_for_pod(&self, pod: &CachedPod) -> Vec<ObjectRef<WatchedCluster>> {
        let Some(namespace) = pod.metadata.namespace.as_deref() else {
            return Vec::new();
        };
        let covering = self.cluster_policies_over(namespace);
        if covering.is_empty() {
            return Vec::new();
        }
        let owners = self.workloads_selecting(pod);
        covering
            .into_iter()
            .filter(|w| {
                cluster_spec(w)
                    .and_then(|spec| spec.policy.target_selector.as_ref())
                    .is_some_and(|selector| {
                        owners
                            .iter()
                            .any(|(kind, labels)| selector.selects(*kind, labels))
                    })
            })
            .map(|w| ObjectRef::from_obj(w.as_ref()))
            .collect()
    }

    /// Every cluster policy (a namespace came, went or was relabelled).
    pub fn all_cluster_policies(&self) -> Vec<ObjectRef<WatchedCluster>> {
        self.cluster_policies
            .state()
            .iter()
            .map(|w| ObjectRef::from_obj(w.as_ref()))
            .collect()
    }

    fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        self.namespaces
            .get(&ObjectRef::new(namespace))
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default()
    }

    /// The namespaces `selector` selects (every one when None), by name.
    pub(super) fn namespaces_selected(&self, selector: Option<&LabelMatch>) -> Vec<String> {
        let mut names: Vec<String> = self
            .namespaces
            .state()
            .iter()
            .filter(|n| selector.is_none_or(|s| s.matches(&n.metadata.labels.clone().unwrap_or_default())))
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Whether the policy of this key exists: a namespaced one, or a cluster one (no namespace).
    pub(super) fn policy_exists(&self, key: &PolicyRef) -> bool {
        match &key.namespace {
            Some(_) => self.policies.get(key).is_some(),
            None => self.cluster_policies.get(&ObjectRef::new(&key.name)).is_some(),
        }
    }

    /// Every ladder the policies' statuses record, by the key it runs under, with its workload and
    /// whether it is acting: what a restarted operator knows at once.
    pub(super) fn recorded_ladders(&self) -> Vec<(PolicyRef, Workload, bool)> {
        let namespaced = self.policies.state().into_iter().flat_map(|w| {
            let Some((p, status)) = w
                .decoded
                .as_ref()
                .ok()
                .and_then(|p| Some((p, p.status.as_ref()?)))
            else {
                return Vec::new();
            };
            let namespace = p.metadata.namespace.clone().unwrap_or_default();
            let key = ObjectRef::from_obj(w.as_ref());
            match &p.spec.target_ref {
                Some(target) => vec![(
                    key,
                    Workload {
                        kind: target.kind,
                        namespace,
                        name: target.name.clone(),
                    },
                    super::ladders::acting(status),
                )],
                // A selector policy's workloads, each a ladder of its own.
                None => units_recorded(&key, &namespace, status),
            }
        });
        let cluster = self.cluster_policies.state().into_iter().flat_map(|w| {
            let Some(status) = w.decoded.as_ref().ok().and_then(|p| p.status.as_ref()) else {
                return Vec::new();
            };
            let mut key = PolicyRef::new(&w.metadata.name.clone().unwrap_or_default());
            key.namespace = None;
            units_recorded(&key, "", status)
        });
        namespaced.chain(cluster).collect()
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
        self.workload(kind, namespace, name).map(|(_, pods)| pods)
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

/// The ladders of a policy over many's workloads as its status records them (`namespace`: the
/// policy's, for workloads listed without one).
fn units_recorded(
    key: &PolicyRef,
    namespace: &str,
    status: &AppHealthPolicyStatus,
) -> Vec<(PolicyRef, Workload, bool)> {
    // The policy's list, and with shards each shard's part (fresher than the list its holder
    // sums them into): one entry per workload.
    let parts = status.shards.iter().flat_map(|p| &p.workloads);
    let mut recorded = std::collections::HashMap::new();
    for u in status.workloads.iter().chain(parts) {
        let Some(kind) = TargetKind::parse(&u.kind) else {
            continue;
        };
        let id = crate::report::fleet::UnitId::new(u.namespace.as_deref(), &u.kind, &u.name);
        let workload = Workload {
            kind,
            namespace: id.namespace_or(namespace).to_owned(),
            name: u.name.clone(),
        };
        let acting = super::ladders::acting(&u.to_policy_status(None));
        recorded.insert(super::unit::key(key, &id), (workload, acting));
    }
    recorded
        .into_iter()
        .map(|(key, (workload, acting))| (key, workload, acting))
        .collect()
}
