//! The watches of one scope: the policies (the controller's own watch) and what they target,
//! cached cut down, indexed, and turned into the stream of policies to reconcile.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, stream, stream::BoxStream};
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{ConfigMap, Secret},
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
    api::{TargetKind, watched::Watched},
    observe::pod::{CachedPod, ConfigKind},
};

/// A scope's watches, ready to run.
pub(super) struct Watches {
    pub controller: Controller<Watched>,
    pub index: TargetIndex,
    /// Policies to reconcile because something they target changed.
    pub triggers: BoxStream<'static, ObjectRef<Watched>>,
}

/// Starts the caches of one scope (a namespace, or all) and the controller over `policies`.
pub(super) fn watch(
    client: &Client,
    ns: Option<&str>,
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
        ],
    ) = synced::Synced::new();
    // Workloads by namespace: what a targetSelector policy looks through.
    let deployment_groups = Arc::new(groups::Groups::new(index::namespace_group::<Deployment>));
    let (deployments, deployment_events) = reflect(
        client,
        ns,
        slim::deployment,
        Some(deployment_groups.clone()),
        deployments_filled,
    );
    let statefulset_groups = Arc::new(groups::Groups::new(index::namespace_group::<StatefulSet>));
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
    let policy_events = reflector::reflector(
        policy_writer,
        watcher(policies, watch_config()).modify(slim::policy),
    )
    .inspect(move |e| {
        if let Ok(e) = e {
            grouping.observe(e);
            policies_filled.observe(e);
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
    let triggers = triggers(&index, events);
    Watches {
        controller,
        index,
        triggers,
    }
}

/// What the reflectors saw change.
struct Events {
    deployments: BoxStream<'static, Deployment>,
    statefulsets: BoxStream<'static, StatefulSet>,
    pods: BoxStream<'static, CachedPod>,
    configmaps: BoxStream<'static, PartialObjectMeta<ConfigMap>>,
    secrets: BoxStream<'static, PartialObjectMeta<Secret>>,
}

/// The policies to reconcile when what they target changes, found through the index.
fn triggers(index: &TargetIndex, e: Events) -> BoxStream<'static, ObjectRef<Watched>> {
    let (i1, i2, i3, i4, i5) = (
        index.clone(),
        index.clone(),
        index.clone(),
        index.clone(),
        index.clone(),
    );
    let deployment_triggers = e.deployments.flat_map(move |d: Deployment| {
        let ns = d.namespace().unwrap_or_default();
        stream::iter(i1.policies_for_workload(TargetKind::Deployment, &ns, &d.name_any()))
    });
    let statefulset_triggers = e.statefulsets.flat_map(move |s: StatefulSet| {
        let ns = s.namespace().unwrap_or_default();
        stream::iter(i2.policies_for_workload(TargetKind::StatefulSet, &ns, &s.name_any()))
    });
    let pod_triggers = e
        .pods
        .flat_map(move |p: CachedPod| stream::iter(i3.policies_for_pod(&p)));
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
