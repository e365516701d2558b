//! The watches of one scope: the policies (the controller's own watch) and what they target,
//! cached cut down, indexed, and turned into the stream of policies to reconcile.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, stream, stream::BoxStream};
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{ConfigMap, Namespace, Secret},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt, controller,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};

use super::{TargetIndex, groups, index, slim, synced};
use crate::{
    api::{
        TargetKind,
        watched::{Watched, WatchedCluster},
    },
    observe::pod::{CachedPod, ConfigKind},
};

/// A scope's watches, ready to run.
pub(super) struct Watches {
    pub controller: Controller<Watched>,
    pub index: TargetIndex,
    /// Policies to reconcile because something they target changed.
    pub triggers: BoxStream<'static, ObjectRef<Watched>>,
    /// The ClusterAppHealthPolicies' controller, in a cluster-wide scope.
    pub cluster: Option<ClusterWatches>,
}

/// The ClusterAppHealthPolicies' controller and what makes it reconcile one: a workload or pod
/// changed in a namespace it looks in, a namespaced policy there came, changed its spec or went
/// (precedence), a namespace came, went or was relabelled.
pub(super) struct ClusterWatches {
    pub controller: Controller<WatchedCluster>,
    pub triggers: BoxStream<'static, ObjectRef<WatchedCluster>>,
}

/// Starts the caches of one scope (a namespace, or all) and the controller over `policies`; in a
/// cluster-wide scope that serves them, the ClusterAppHealthPolicies' too.
pub(super) fn watch(
    client: &Client,
    ns: Option<&str>,
    cluster_wide: bool,
    policies: Api<Watched>,
    max_concurrent_reconciles: u16,
) -> Watches {
    // Ready once every cache is filled: the five below and the policies'.
    let (
        synced,
        [
            deployments_filled,
            statefulsets_filled,
            pods_filled,
            configmaps_filled,
            secrets_filled,
            policies_filled,
            cluster_policies_filled,
            namespaces_filled,
        ],
    ) = synced::Synced::new();
    // Cluster policies are served by a cluster-wide scope only (a namespaced install has no right
    // to them, nor to namespaces).
    let (cluster_tx, cluster_rx) = tokio::sync::mpsc::unbounded_channel::<ClusterNudge>();
    let cluster = if cluster_wide {
        Some(watch_cluster(
            client,
            cluster_policies_filled,
            namespaces_filled,
            max_concurrent_reconciles,
        ))
    } else {
        cluster_policies_filled.not_kept();
        namespaces_filled.not_kept();
        None
    };
    let (cluster_policies, namespaces) = match &cluster {
        Some(c) => (c.controller.store(), c.namespaces.clone()),
        None => (reflector::store().0, reflector::store().0),
    };
    // Workloads by namespace: what a targetSelector policy looks through.
    let deployment_groups = Arc::new(groups::Groups::new(index::deployment_groups));
    let (deployments, deployment_events) = reflect(
        client,
        ns,
        slim::deployment,
        Some(deployment_groups.clone()),
        deployments_filled,
    );
    let statefulset_groups = Arc::new(groups::Groups::new(index::statefulset_groups));
    let (statefulsets, statefulset_events) = reflect(
        client,
        ns,
        slim::statefulset,
        Some(statefulset_groups.clone()),
        statefulsets_filled,
    );
    // Pods are decoded compact (`CachedPod`): nothing is left to cut.
    let pod_groups = Arc::new(groups::Groups::new(index::pod_groups));
    let (pods, pod_events) = reflect(
        client,
        ns,
        |_: &mut CachedPod| {},
        Some(pod_groups.clone()),
        pods_filled,
    );
    let (configmaps, configmap_events) =
        reflect(client, ns, slim::config::<ConfigMap>, None, configmaps_filled);
    let (secrets, secret_events) = reflect(client, ns, slim::config::<Secret>, None, secrets_filled);

    // The policies' own watch, as `Controller::new` would make it, with the policies slimmed.
    let (policy_store, policy_writer) = reflector::store();
    let policy_groups = Arc::new(groups::Groups::new(index::policy_groups));
    let grouping = policy_groups.clone();
    let mut precedence = Precedence::new(
        cluster
            .is_some()
            .then(|| (cluster_tx.clone(), cluster_policies.clone())),
    );
    let policy_events = reflector::reflector(
        policy_writer,
        watcher(policies, watch_config()).modify(slim::policy),
    )
    .inspect(move |e| {
        if let Ok(e) = e {
            grouping.observe(e);
            policies_filled.observe(e);
            precedence.observe(e);
        }
    })
    .applied_objects();
    let controller = Controller::for_stream(policy_events, policy_store).with_config(
        controller::Config::default()
            .debounce(Duration::from_millis(200))
            .concurrency(max_concurrent_reconciles.max(1)),
    );
    let index = TargetIndex {
        policies: controller.store(),
        cluster_policies,
        namespaces,
        pod_groups,
        policy_groups,
        deployment_groups,
        statefulset_groups,
        deployments,
        statefulsets,
        pods,
        configmaps,
        secrets,
        synced,
    };

    let events = Events {
        deployments: deployment_events.boxed(),
        statefulsets: statefulset_events.boxed(),
        pods: pod_events.boxed(),
        configmaps: configmap_events.boxed(),
        secrets: secret_events.boxed(),
    };
    let triggers = triggers(&index, events, cluster.is_some().then_some(cluster_tx));
    let cluster = cluster.map(|c| ClusterWatches {
        controller: c.controller,
        triggers: cluster_triggers(&index, cluster_rx, c.namespace_events),
    });
    Watches {
        controller,
        index,
        triggers,
        cluster,
    }
}

/// Something changed that may concern the cluster policies looking at a namespace.
pub(super) enum ClusterNudge {
    /// A workload of this kind in this namespace.
    Workload(TargetKind, String),
    /// These cluster policies, one of whose workloads selects a pod that changed (found as the
    /// pod event passes, so the pod itself is not queued).
    Policies(Vec<ObjectRef<WatchedCluster>>),
    /// A namespaced policy there (precedence).
    Namespace(String),
}

/// Tells the cluster policies when a namespaced policy comes, changes its spec (its generation)
/// or goes: who remediates a workload may have changed. Its status writes are not told. Nothing is
/// kept while there is no cluster policy (a policy first seen then counts as changed).
struct Precedence {
    cluster: Option<(
        tokio::sync::mpsc::UnboundedSender<ClusterNudge>,
        Store<WatchedCluster>,
    )>,
    generations: std::collections::HashMap<ObjectRef<Watched>, Option<i64>>,
}

impl Precedence {
    fn new(
        cluster: Option<(
            tokio::sync::mpsc::UnboundedSender<ClusterNudge>,
            Store<WatchedCluster>,
        )>,
    ) -> Self {
        Self {
            cluster,
            generations: Default::default(),
        }
    }

    fn observe(&mut self, event: &watcher::Event<Watched>) {
        let Some((tx, policies)) = &self.cluster else {
            return;
        };
        if policies.is_empty() {
            self.generations = Default::default();
            return;
        }
        let (policy, gone) = match event {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (p, false),
            watcher::Event::Delete(p) => (p, true),
            watcher::Event::Init | watcher::Event::InitDone => return,
        };
        let key = ObjectRef::from_obj(policy);
        let changed = if gone {
            self.generations.remove(&key).is_some()
        } else {
            self.generations.insert(key, policy.metadata.generation) != Some(policy.metadata.generation)
        };
        if changed {
            let _ = tx.send(ClusterNudge::Namespace(policy.namespace().unwrap_or_default()));
        }
    }
}

/// The cluster policies' watch, their namespaces' (metadata only), and their controller.
struct ClusterParts {
    controller: Controller<WatchedCluster>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    namespace_events: BoxStream<'static, PartialObjectMeta<Namespace>>,
}

fn watch_cluster(
    client: &Client,
    policies_filled: synced::Filled,
    namespaces_filled: synced::Filled,
    max_concurrent_reconciles: u16,
) -> ClusterParts {
    let (store, writer) = reflector::store();
    let events = reflector::reflector(
        writer,
        watcher(Api::<WatchedCluster>::all(client.clone()), watch_config()).modify(slim::policy),
    )
    .inspect(move |e| {
        if let Ok(e) = e {
            policies_filled.observe(e);
        }
    })
    .applied_objects();
    let controller = Controller::for_stream(events, store).with_config(
        controller::Config::default()
            .debounce(Duration::from_millis(200))
            .concurrency(max_concurrent_reconciles.max(1)),
    );
    let (namespaces, writer) = reflector::store();
    let namespace_events = reflector::reflector(
        writer,
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watch_config(),
        )
        .modify(slim::namespace::<Namespace>),
    )
    .inspect(move |e| {
        if let Ok(e) = e {
            namespaces_filled.observe(e);
        }
    })
    .default_backoff()
    .touched_objects()
    .filter_map(|r| async move {
        r.map_err(|e| tracing::warn!(error = %e, "namespace watch error"))
            .ok()
    })
    .boxed();
    ClusterParts {
        controller,
        namespaces,
        namespace_events,
    }
}

/// The cluster policies to reconcile: those looking where something changed; all of them when a
/// namespace changed.
fn cluster_triggers(
    index: &TargetIndex,
    nudges: tokio::sync::mpsc::UnboundedReceiver<ClusterNudge>,
    namespaces: BoxStream<'static, PartialObjectMeta<Namespace>>,
) -> BoxStream<'static, ObjectRef<WatchedCluster>> {
    let (i1, i2) = (index.clone(), index.clone());
    let nudged = stream::unfold(nudges, |mut rx| async move { rx.recv().await.map(|n| (n, rx)) }).flat_map(
        move |nudge| {
            stream::iter(match nudge {
                ClusterNudge::Workload(kind, ns) => i1.cluster_policies_for_workload(kind, &ns),
                ClusterNudge::Policies(policies) => policies,
                ClusterNudge::Namespace(ns) => i1.cluster_policies_for(&ns),
            })
        },
    );
    let relabelled = namespaces.flat_map(move |_| stream::iter(i2.all_cluster_policies()));
    stream::select(nudged, relabelled).boxed()
}

/// What the reflectors saw change.
struct Events {
    deployments: BoxStream<'static, Deployment>,
    statefulsets: BoxStream<'static, StatefulSet>,
    pods: BoxStream<'static, CachedPod>,
    configmaps: BoxStream<'static, PartialObjectMeta<ConfigMap>>,
    secrets: BoxStream<'static, PartialObjectMeta<Secret>>,
}

/// What a workload or pod event also tells the cluster policies (in a cluster-wide scope with any).
fn tell_cluster(
    index: &TargetIndex,
    tx: Option<&tokio::sync::mpsc::UnboundedSender<ClusterNudge>>,
    nudge: impl FnOnce() -> Option<ClusterNudge>,
) {
    let Some(tx) = tx.filter(|_| index.has_cluster_policies()) else {
        return;
    };
    if let Some(nudge) = nudge() {
        let _ = tx.send(nudge);
    }
}

/// The policies to reconcile when what they target changes, found through the index.
fn triggers(
    index: &TargetIndex,
    e: Events,
    cluster: Option<tokio::sync::mpsc::UnboundedSender<ClusterNudge>>,
) -> BoxStream<'static, ObjectRef<Watched>> {
    let (i1, i2, i3, i4, i5) = (
        index.clone(),
        index.clone(),
        index.clone(),
        index.clone(),
        index.clone(),
    );
    let (c1, c2, c3) = (cluster.clone(), cluster.clone(), cluster);
    let deployment_triggers = e.deployments.flat_map(move |d: Deployment| {
        let ns = d.namespace().unwrap_or_default();
        tell_cluster(&i1, c1.as_ref(), || {
            Some(ClusterNudge::Workload(TargetKind::Deployment, ns.clone()))
        });
        stream::iter(i1.policies_for_workload(TargetKind::Deployment, &ns, &d.name_any()))
    });
    let statefulset_triggers = e.statefulsets.flat_map(move |s: StatefulSet| {
        let ns = s.namespace().unwrap_or_default();
        tell_cluster(&i2, c2.as_ref(), || {
            Some(ClusterNudge::Workload(TargetKind::StatefulSet, ns.clone()))
        });
        stream::iter(i2.policies_for_workload(TargetKind::StatefulSet, &ns, &s.name_any()))
    });
    let pod_triggers = e.pods.flat_map(move |p: CachedPod| {
        let refs = i3.policies_for_pod(&p);
        tell_cluster(&i3, c3.as_ref(), || {
            let policies = i3.cluster_policies_for_pod(&p);
            (!policies.is_empty()).then_some(ClusterNudge::Policies(policies))
        });
        stream::iter(refs)
    });
    let configmap_triggers = e.configmaps.flat_map(move |c: PartialObjectMeta<ConfigMap>| {
        let ns = c.namespace().unwrap_or_default();
        stream::iter(i4.policies_for_config(ConfigKind::ConfigMap, &ns, &c.name_any()))
    });
    let secret_triggers = e.secrets.flat_map(move |c: PartialObjectMeta<Secret>| {
        let ns = c.namespace().unwrap_or_default();
        stream::iter(i5.policies_for_config(ConfigKind::Secret, &ns, &c.name_any()))
    });
    stream::select_all([
        deployment_triggers.boxed(),
        statefulset_triggers.boxed(),
        pod_triggers.boxed(),
        configmap_triggers.boxed(),
        secret_triggers.boxed(),
    ])
    .boxed()
}

pub(super) fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Lists are read in pages of this many objects, so a namespace of thousands of pods is never held
/// whole in one response (kube-runtime's default too; said here because memory depends on it).
const PAGE_SIZE: u32 = 500;

fn watch_config() -> watcher::Config {
    watcher::Config::default().page_size(PAGE_SIZE)
}

/// A reflector for `K`, caching each object as `slim` cuts it down, and the stream of (slimmed)
/// objects it sees change. For `PartialObjectMeta<_>` only metadata is requested (values of
/// Secrets are never cached).
fn reflect<K>(
    client: &Client,
    namespace: Option<&str>,
    slim: fn(&mut K),
    groups: Option<Arc<groups::Groups<K>>>,
    filled: synced::Filled,
) -> (Store<K>, impl futures::Stream<Item = K> + Send + 'static)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let events = reflector::reflector(
        writer,
        watcher(scoped::<K>(client, namespace), watch_config()).modify(slim),
    )
    .inspect(move |e| {
        if let Ok(e) = e {
            if let Some(groups) = &groups {
                groups.observe(e);
            }
            filled.observe(e);
        }
    })
    .default_backoff()
    .touched_objects()
    .filter_map(|r| async move {
        r.map_err(|e| tracing::warn!(error = %e, kind = std::any::type_name::<K>(), "watch error"))
            .ok()
    });
    (store, events)
}
