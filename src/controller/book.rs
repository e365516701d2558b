//! What the fleet reconcile knows of the workloads of a policy over many (a targetSelector
//! policy, or a ClusterAppHealthPolicy): the records kept in memory between reconciles
//! ([`Memory`]), and the book the stages of one workload write through ([`Book`]): a workload's
//! record set, then the policy's status written when it changed, so an intent lands before its
//! action runs. Events of a workload regard the workload, with the policy related.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Mutex, PoisonError},
};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Api, ResourceExt};

use super::{Context, PolicyRef, remediate, unit};
pub(super) use crate::report::fleet::UnitId;
use crate::{
    Result,
    api::{AppHealthPolicy, AppHealthPolicyStatus, ClusterAppHealthPolicy, TargetKind},
    report::{
        self, EventIntent,
        fleet::{Stopped, UnitRecord},
    },
};

/// Where a policy over many writes its status: its own kind's API.
pub(super) enum StatusApi {
    Namespaced(Api<AppHealthPolicy>),
    Cluster(Api<ClusterAppHealthPolicy>),
}

impl StatusApi {
    async fn apply(&self, name: &str, status: &AppHealthPolicyStatus) -> Result<AppHealthPolicyStatus> {
        match self {
            Self::Namespaced(api) => report::apply_status(api, name, status).await,
            Self::Cluster(api) => report::apply_status(api, name, status).await,
        }
    }
}

/// What this process knows of each targetSelector policy's workloads, between reconciles.
#[derive(Default)]
pub(super) struct Memory(Mutex<HashMap<PolicyRef, BTreeMap<UnitId, UnitRecord>>>);

impl Memory {
    pub(super) fn take(&self, key: &PolicyRef) -> Option<BTreeMap<UnitId, UnitRecord>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(key)
    }

    pub(super) fn put(&self, key: &PolicyRef, units: BTreeMap<UnitId, UnitRecord>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), units);
    }
}

/// Releases every workload a policy selected (deleted, or now naming one workload by targetRef).
pub(super) fn release_all(ctx: &Context, key: &PolicyRef) {
    if let Some(units) = ctx.fleets.take(key) {
        for id in units.keys() {
            release(ctx, key, id);
        }
    }
}

/// Stops what runs for one workload of `policy` and drops what is kept in memory for it.
pub(super) fn release(ctx: &Context, policy: &PolicyRef, id: &UnitId) {
    let key = unit::key(policy, id);
    ctx.probes.stop(&key);
    ctx.ladders.settle(&key, &AppHealthPolicyStatus::default());
    ctx.metrics.health(&remediate::policy_label(&key), None);
    ctx.failures.reset(&key);
}

/// The workloads' records as a restarted operator finds them in status.
pub(super) fn seeded(status: &AppHealthPolicyStatus) -> BTreeMap<UnitId, UnitRecord> {
    status
        .workloads
        .iter()
        .map(|w| {
            (
                UnitId::new(w.namespace.as_deref(), &w.kind, &w.name),
                UnitRecord {
                    status: w.to_policy_status(status.observed_generation),
                    owned_by: w.owned_by.clone(),
                },
            )
        })
        .collect()
}

/// The records of a policy's workloads, and its status as last written: the unit stages write
/// through it, so each intent lands (in the policy's status) before its action runs.
pub(super) struct Book<'a> {
    /// The policy (a ClusterAppHealthPolicy as [`ClusterAppHealthPolicy::as_policy`] reads it).
    pub policy: &'a AppHealthPolicy,
    pub key: &'a PolicyRef,
    pub api: StatusApi,
    /// The policy as its workloads' Events name it.
    pub related: ObjectReference,
    pub units: Mutex<BTreeMap<UnitId, UnitRecord>>,
    pub written: Mutex<AppHealthPolicyStatus>,
    pub selects: String,
    pub now: jiff::Timestamp,
}

impl Book<'_> {
    pub(super) fn status_of(&self, id: &UnitId) -> AppHealthPolicyStatus {
        self.units
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .map(|r| r.status.clone())
            .unwrap_or_default()
    }

    pub(super) fn set(&self, id: &UnitId, status: AppHealthPolicyStatus, owned_by: Option<String>) {
        self.units
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), UnitRecord { status, owned_by });
    }

    pub(super) fn forget(&self, id: &UnitId) {
        self.units
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// Records a workload's status and writes the policy's (an intent, before its action runs).
    pub(super) async fn write(
        &self,
        ctx: &Context,
        id: &UnitId,
        status: AppHealthPolicyStatus,
    ) -> Result<AppHealthPolicyStatus> {
        self.set(id, status.clone(), None);
        self.flush(None).await?;
        ctx.ladders.settle(&unit::key(self.key, id), &status);
        Ok(status)
    }

    /// Writes the policy's status if it changed.
    pub(super) async fn flush(&self, stopped: Option<Stopped<'_>>) -> Result<()> {
        let desired = {
            let units = self.units.lock().unwrap_or_else(PoisonError::into_inner);
            let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            report::fleet::compose(
                &written,
                self.policy.metadata.generation,
                &units,
                &self.selects,
                stopped,
                self.now,
            )
        };
        if desired == *self.written.lock().unwrap_or_else(PoisonError::into_inner) {
            return Ok(());
        }
        let stored = self.api.apply(&self.policy.name_any(), &desired).await?;
        *self.written.lock().unwrap_or_else(PoisonError::into_inner) = stored;
        Ok(())
    }

    /// Publishes a workload's Events: regarding the workload (so `kubectl describe` on it shows
    /// them), with the policy as the related object.
    pub(super) async fn publish(&self, ctx: &Context, id: &UnitId, events: Vec<EventIntent>) {
        if events.is_empty() {
            return;
        }
        let (namespace, kind, name) = (self.namespace_of(id), &id.kind, &id.name);
        let uid = match TargetKind::parse(kind) {
            Some(TargetKind::Deployment) => ctx.index.deployment(&namespace, name).and_then(|d| d.uid()),
            Some(TargetKind::StatefulSet) => ctx.index.statefulset(&namespace, name).and_then(|s| s.uid()),
            None => None,
        };
        let regarding = ObjectReference {
            api_version: Some(crate::api::APPS_V1.into()),
            kind: Some(kind.clone()),
            name: Some(name.clone()),
            namespace: Some(namespace),
            uid,
            ..ObjectReference::default()
        };
        for event in events {
            report::publish_about(&ctx.recorder, &regarding, Some(self.related.clone()), event).await;
        }
    }

    /// A workload's namespace: its own (a cluster policy's), or the policy's.
    pub(super) fn namespace_of(&self, id: &UnitId) -> String {
        id.namespace_or(&self.policy.namespace().unwrap_or_default())
            .to_owned()
    }
}
