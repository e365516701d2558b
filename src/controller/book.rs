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
    api::{AppHealthPolicy, AppHealthPolicyStatus, ClusterAppHealthPolicy, ShardPart, TargetKind},
    fleet::keeper::{Sharding, Working},
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

    /// Writes shard `shard`'s part, or with None removes it.
    async fn apply_part(
        &self,
        name: &str,
        shard: u32,
        part: Option<&ShardPart>,
    ) -> Result<AppHealthPolicyStatus> {
        match self {
            Self::Namespaced(api) => report::apply_shard_part(api, name, shard, part).await,
            Self::Cluster(api) => report::apply_shard_part(api, name, shard, part).await,
        }
    }
}

/// With the work shared across replicas: the shards of a policy over many that this replica
/// holds write their parts of its status; the holder of the policy's own shard also sums them.
pub(super) struct Shares<'a> {
    pub sharding: &'a Sharding,
    /// Whether this replica holds the shard the policy itself hashes to.
    pub home: bool,
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

/// The workloads' records as a restarted operator (or the replica that takes a shard over) finds
/// them in status: the policy's list, and when the work is shared, each shard's part over it (a
/// shard's own record is the freshest; parts left from when it was shared are not read).
pub(super) fn seeded(status: &AppHealthPolicyStatus, sharded: bool) -> BTreeMap<UnitId, UnitRecord> {
    let generation = status.observed_generation;
    let mut records = report::fleet::records_of(&status.workloads, generation);
    if sharded {
        records.extend(report::fleet::records_of(
            status.shards.iter().flat_map(|p| &p.workloads),
            generation,
        ));
    }
    records
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
    /// The shards this replica holds, when the work is shared (None: it does all of it).
    pub shares: Option<Shares<'a>>,
}

impl<'a> Book<'a> {
    /// Where a workload's work is done: None when the work is not shared (here), else this
    /// replica's claim on its shard for as long as it lasts, or None inside when another replica
    /// holds the shard.
    pub(super) fn shard_work(&self, id: &UnitId) -> Option<Option<Working<'a>>> {
        let sharding: &'a Sharding = self.shares.as_ref()?.sharding;
        Some(sharding.work(&self.namespace_of(id), &id.kind, &id.name))
    }
}

impl Book<'_> {
    /// Whether this replica writes the policy's own conditions and speaks for it (Events about the
    /// policy, its Ready gauge): always, unless the work is shared and the policy's own shard is
    /// another replica's.
    pub(super) fn speaks_for_policy(&self) -> bool {
        self.shares.as_ref().is_none_or(|s| s.home)
    }

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

    /// Writes the policy's status if it changed: the whole of it, or with shards, the parts of the
    /// shards held here (and their sum, by the holder of the policy's own shard).
    pub(super) async fn flush(&self, stopped: Option<Stopped<'_>>) -> Result<()> {
        // Parts no replica writes any more go: all of them once the work is no longer shared,
        // those of shards past the count (by the policy's own shard holder) when it is.
        let shards = self.shares.as_ref().map_or(0, |s| s.sharding.shards);
        if self.speaks_for_policy() {
            self.drop_parts(shards).await?;
        }
        let Some(shares) = &self.shares else {
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
            return self.store(desired).await;
        };
        for part in self.parts(shares.sharding) {
            self.store_part(part).await?;
        }
        if !shares.home {
            return Ok(());
        }
        let desired = report::fleet::merged(
            &self.written.lock().unwrap_or_else(PoisonError::into_inner),
            self.policy.metadata.generation,
            shares.sharding.shards,
            &self.selects,
            stopped,
            self.now,
        );
        self.store(desired).await
    }

    /// Writes the policy's own status (all but the shards' parts) if it changed.
    async fn store(&self, desired: AppHealthPolicyStatus) -> Result<()> {
        {
            let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            let own = AppHealthPolicyStatus {
                shards: Vec::new(),
                ..written.clone()
            };
            if desired == own {
                return Ok(());
            }
        }
        let stored = self.api.apply(&self.policy.name_any(), &desired).await?;
        *self.written.lock().unwrap_or_else(PoisonError::into_inner) = stored;
        Ok(())
    }

    /// Removes the parts of shards from `from` up.
    async fn drop_parts(&self, from: u32) -> Result<()> {
        let stale: Vec<u32> = {
            let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            written
                .shards
                .iter()
                .map(|p| p.shard)
                .filter(|s| *s >= from)
                .collect()
        };
        for shard in stale {
            let stored = self.api.apply_part(&self.policy.name_any(), shard, None).await?;
            *self.written.lock().unwrap_or_else(PoisonError::into_inner) = stored;
        }
        Ok(())
    }

    /// The parts of the shards held here, from the records in memory (grouped in one pass).
    fn parts(&self, sharding: &Sharding) -> Vec<ShardPart> {
        let units = self.units.lock().unwrap_or_else(PoisonError::into_inner);
        let mut by_shard: BTreeMap<u32, Vec<(&UnitId, &UnitRecord)>> =
            sharding.held().into_iter().map(|s| (s, Vec::new())).collect();
        for (id, record) in units.iter() {
            let shard = sharding.shard(&self.namespace_of(id), &id.kind, &id.name);
            if let Some(of_shard) = by_shard.get_mut(&shard) {
                of_shard.push((id, record));
            }
        }
        by_shard
            .iter()
            .map(|(shard, of_shard)| report::fleet::shard_part(*shard, sharding.shards, of_shard))
            .collect()
    }

    /// Writes a held shard's part if it changed (a shard with nothing to say and no part yet
    /// writes none).
    async fn store_part(&self, desired: ShardPart) -> Result<()> {
        let shard = desired.shard;
        {
            let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            let nothing = ShardPart {
                shard,
                ..ShardPart::default()
            };
            match written.shards.iter().find(|p| p.shard == shard) {
                Some(stored) if *stored == desired => return Ok(()),
                None if desired == nothing => return Ok(()),
                _ => {}
            }
        }
        let stored = self
            .api
            .apply_part(&self.policy.name_any(), shard, Some(&desired))
            .await?;
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
