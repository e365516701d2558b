//! A policy over many workloads: a namespaced `targetSelector` policy, or a
//! ClusterAppHealthPolicy over the workloads of the namespaces it selects. Each selected workload is judged and remediated
//! on its own — its own probe task, verdict, ladder, history, cooldown and circuit breaker — by the
//! same stages as a single-target policy, run on the policy as it would read had it named that
//! workload. What this process knows of each workload is kept here in memory; the policy's status
//! holds the counts and the records of the workloads that are not healthy (or have something
//! pending), worst first and bounded ([`report::fleet`]), which is what a restarted operator
//! resumes from. A workload that stops matching is released: its probe task stops, its record goes.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use kube::{Api, Resource, ResourceExt, runtime::controller::Action as Requeue};

use super::{
    Context, PolicyRef,
    book::{Book, Shares, StatusApi, UnitId, release, seeded},
    dereference::{self, Dereferenced},
    index::Selected,
    remediate,
    stages::{self, Subject},
    unit,
};
use crate::{
    Result,
    api::{
        AppHealthPolicy, AppHealthPolicyStatus, ClusterAppHealthPolicy, Health, LabelMatch, TargetRef,
        conditions,
    },
    fleet::{keeper::Working, precedence},
    report::{self, EventIntent, Readiness, fleet::Stopped, text},
};

/// A policy that is not probed (invalid, suspended): its workloads are released (their records
/// kept, for when it runs again) and its Ready condition says why, with an Event when that changes.
async fn not_probing(book: &Book<'_>, stopped: &dereference::Stopped, ctx: &Context) -> Result<()> {
    let key = book.key;
    let ids: Vec<UnitId> = book
        .units
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .keys()
        .cloned()
        .collect();
    for id in &ids {
        release(ctx, key, id);
    }
    let (reason, message, event) = match &stopped.readiness {
        Readiness::Stopped {
            reason,
            message,
            event,
        } => (*reason, message.clone(), event.clone()),
        _ => (report::reasons::INVALID_SPEC, String::new(), String::new()),
    };
    let was = report::condition(
        &book.written.lock().unwrap_or_else(PoisonError::into_inner),
        conditions::READY,
    )
    .map(|c| c.reason.clone());
    book.flush(Some(Stopped {
        reason,
        message: &message,
    }))
    .await?;
    if !book.speaks_for_policy() {
        return Ok(());
    }
    if was.as_deref() != Some(reason) {
        let event = EventIntent {
            reason,
            warning: true,
            action: "Observe",
            note: event,
        };
        report::publish_about(&ctx.recorder, &book.related, None, event).await;
    }
    ctx.metrics
        .policy_ready(&remediate::policy_label(key), Some(reason));
    Ok(())
}

/// The kind a namespaced selector policy is hashed as, to find its shard.
const SHARDED_AS: &str = "AppHealthPolicy";
/// The kind a cluster policy is hashed as (of no namespace).
const CLUSTER_SHARDED_AS: &str = "ClusterAppHealthPolicy";

/// Where a policy over many looks for its workloads.
pub(super) enum Looks<'a> {
    /// A namespaced targetSelector policy: its own namespace.
    InNamespace(String),
    /// A ClusterAppHealthPolicy: the namespaces its namespaceSelector selects (all when None).
    Cluster(Option<&'a LabelMatch>),
}

/// The reconcile of a targetSelector policy: select, release what no longer matches, run each
/// workload's stages, write the policy's status when it changed.
pub(super) async fn reconcile(
    policy: &AppHealthPolicy,
    key: &PolicyRef,
    ctx: &Arc<Context>,
    now: jiff::Timestamp,
) -> Result<Requeue> {
    let namespace = policy.namespace().unwrap_or_default();
    let Some(selector) = policy.spec.target_selector.as_ref() else {
        return Ok(Requeue::await_change());
    };
    let book = Book {
        policy,
        key,
        api: StatusApi::Namespaced(Api::namespaced(ctx.client.clone(), &namespace)),
        related: policy.object_ref(&()),
        units: Mutex::default(),
        written: Mutex::new(policy.status.clone().unwrap_or_default()),
        selects: selector.describe(),
        now,
        shares: None,
    };
    let settings = dereference::settings(policy);
    run(
        book,
        (&namespace, SHARDED_AS),
        Looks::InNamespace(namespace.clone()),
        settings,
        ctx,
    )
    .await
}

/// The reconcile of a ClusterAppHealthPolicy: as a targetSelector policy's, over the workloads of
/// every namespace it selects.
pub(super) async fn reconcile_cluster(
    cluster: &ClusterAppHealthPolicy,
    key: &PolicyRef,
    ctx: &Arc<Context>,
    now: jiff::Timestamp,
) -> Result<Requeue> {
    let policy = cluster.as_policy();
    let selects = match (&policy.spec.target_selector, &cluster.spec.namespace_selector) {
        (Some(workloads), Some(namespaces)) => {
            text::in_namespaces(&workloads.describe(), &namespaces.describe())
        }
        (Some(workloads), None) => text::in_namespaces(&workloads.describe(), ""),
        (None, _) => String::new(),
    };
    let book = Book {
        policy: &policy,
        key,
        api: StatusApi::Cluster(Api::all(ctx.client.clone())),
        related: cluster.object_ref(&()),
        units: Mutex::default(),
        written: Mutex::new(policy.status.clone().unwrap_or_default()),
        selects,
        now,
        shares: None,
    };
    // Its own rules first (no targetRef, a well-formed namespaceSelector), then an
    // AppHealthPolicy's.
    let settings = match crate::api::validate::cluster(&cluster.spec) {
        Ok(()) => dereference::settings(&policy),
        Err(invalid) => Err(dereference::invalid(&invalid)),
    };
    let looks = Looks::Cluster(cluster.spec.namespace_selector.as_ref());
    run(book, ("", CLUSTER_SHARDED_AS), looks, settings, ctx).await
}

/// A policy over many, with its book: this replica's to run (with shards), its workloads' records
/// taken from memory (or, after a restart, from status) and kept again whatever happens.
async fn run(
    book: Book<'_>,
    (namespace, sharded_as): (&str, &str),
    looks: Looks<'_>,
    settings: std::result::Result<Arc<crate::settings::Settings>, Dereferenced>,
    ctx: &Arc<Context>,
) -> Result<Requeue> {
    let key = book.key;
    // With shards, its workloads spread as single-target policies' do: each replica judges those
    // of the shards it holds and writes their part of the status; the holder of the shard the
    // policy's own name hashes to also sums the parts up.
    let (_home, book) = match ctx.sharding.as_deref() {
        None => (None, book),
        Some(sharding) if sharding.held().is_empty() => {
            ctx.forget(key);
            return Ok(Requeue::await_change());
        }
        Some(sharding) => {
            let home = sharding.work(namespace, sharded_as, &book.policy.name_any());
            let shares = Shares {
                sharding,
                home: home.is_some(),
            };
            (
                home,
                Book {
                    shares: Some(shares),
                    ..book
                },
            )
        }
    };
    let memory = ctx.fleets.take(key).unwrap_or_else(|| {
        let written = book.written.lock().unwrap_or_else(PoisonError::into_inner);
        seeded(&written, book.shares.is_some())
    });
    *book.units.lock().unwrap_or_else(PoisonError::into_inner) = memory;
    let result = judge_all(&book, &looks, settings, ctx).await;
    // What is known of the workloads is kept whatever happened.
    ctx.fleets.put(
        key,
        book.units.into_inner().unwrap_or_else(PoisonError::into_inner),
    );
    result
}

/// The policy's settings, then its workloads: the released ones let go, each selected one judged,
/// the policy's status written when it changed.
async fn judge_all(
    book: &Book<'_>,
    looks: &Looks<'_>,
    settings: std::result::Result<Arc<crate::settings::Settings>, Dereferenced>,
    ctx: &Context,
) -> Result<Requeue> {
    let (policy, key) = (book.policy, book.key);
    let settings = match settings {
        Ok(settings) => settings,
        Err(Dereferenced::Stopped(stopped)) => {
            not_probing(book, &stopped, ctx).await?;
            return Ok(stopped.requeue);
        }
        Err(_) => return Ok(Requeue::requeue(Duration::from_secs(5))),
    };
    if !ctx.index.synced().await {
        return Ok(Requeue::requeue(Duration::from_secs(5)));
    }
    let selector = policy.spec.target_selector.as_ref();
    let selected: Vec<(UnitId, Selected)> = match (looks, selector) {
        (_, None) => Vec::new(),
        (Looks::InNamespace(ns), Some(selector)) => ctx
            .index
            .selected(ns, selector)
            .into_iter()
            .map(|s| (UnitId::new(None, s.kind.as_str(), &s.name), s))
            .collect(),
        (Looks::Cluster(namespaces), Some(selector)) => ctx
            .index
            .namespaces_selected(*namespaces)
            .into_iter()
            .flat_map(|ns| {
                ctx.index
                    .selected(&ns, selector)
                    .into_iter()
                    .map(move |s| (UnitId::new(Some(&ns), s.kind.as_str(), &s.name), s))
            })
            .collect(),
    };
    // With shards, only those of the shards held here.
    let (selected, _working) = held_here(book, selected, ctx);
    // Released: those no longer selected.
    let gone: Vec<UnitId> = {
        let units = book.units.lock().unwrap_or_else(PoisonError::into_inner);
        units
            .keys()
            .filter(|id| !selected.iter().any(|(s, _)| s == *id))
            .cloned()
            .collect()
    };
    for id in &gone {
        release(ctx, key, id);
        // Put back by the holder of its shard (here, unless the work is shared).
        match book.shard_work(id) {
            Some(None) => {}
            _working => restore_released(book, id, ctx).await,
        }
        book.forget(id);
    }
    // A workload whose stages fail does not hold the others up: the first error is returned once
    // every workload has had its turn (the policy is then retried with its backoff).
    let mut revisit = ctx.resync;
    let mut failed = None;
    for (id, workload) in &selected {
        match judge(book, id, workload, &settings, ctx).await {
            Ok(Some(after)) => revisit = revisit.min(after),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(workload = %id, error = %e, "a workload's stages failed");
                failed.get_or_insert(e);
            }
        }
    }
    book.flush(None).await?;
    if let Some(e) = failed {
        return Err(e);
    }
    ctx.failures.reset(key);
    if book.speaks_for_policy() {
        ctx.metrics.policy_ready(
            &remediate::policy_label(key),
            Some(report::reasons::WORKLOADS_SELECTED),
        );
    } else {
        ctx.metrics.policy_ready(&remediate::policy_label(key), None);
    }
    Ok(Requeue::requeue(revisit))
}

/// With shards: the selected workloads of the shards held here, each counted as work in flight
/// while this pass lasts (so its shard is not given back under it), with their records from
/// status when this replica has none (a shard just taken over). Those of other shards are left
/// to their holders: dropped here, without restoring anything (they are not released).
fn held_here<'s>(
    book: &Book<'s>,
    selected: Vec<(UnitId, Selected)>,
    ctx: &Context,
) -> (Vec<(UnitId, Selected)>, Vec<Working<'s>>) {
    if book.shares.is_none() {
        return (selected, Vec::new());
    }
    let mut units = book.units.lock().unwrap_or_else(PoisonError::into_inner);
    let mut recorded = None;
    let (mut mine, mut working) = (Vec::new(), Vec::new());
    for (id, workload) in selected {
        let Some(work) = book.shard_work(&id).flatten() else {
            if units.remove(&id).is_some() {
                release(ctx, book.key, &id);
            }
            continue;
        };
        if !units.contains_key(&id) {
            let recorded = recorded.get_or_insert_with(|| {
                seeded(&book.written.lock().unwrap_or_else(PoisonError::into_inner), true)
            });
            if let Some(record) = recorded.remove(&id) {
                units.insert(id.clone(), record);
            }
        }
        working.push(work);
        mine.push((id, workload));
    }
    (mine, working)
}

/// What ScaleOut raised on a released workload is put back, and said in an Event on it.
async fn restore_released(book: &Book<'_>, id: &UnitId, ctx: &Context) {
    let Some(kind) = crate::api::TargetKind::parse(&id.kind) else {
        return;
    };
    let workload = crate::act::Workload {
        kind,
        namespace: book.namespace_of(id),
        name: id.name.clone(),
    };
    let status = book.status_of(id);
    let info = crate::act::PolicyInfo::of(&book.related, book.policy.name_any());
    let Some((restored, note)) = remediate::restore_released(ctx, &info, &workload, &status, book.now).await
    else {
        return;
    };
    let reason = if restored {
        report::reasons::SCALE_RESTORED
    } else {
        report::reasons::SCALE_RESTORE_SKIPPED
    };
    let event = EventIntent {
        reason,
        warning: !restored,
        action: "ScaleOut",
        note,
    };
    book.publish(ctx, id, vec![event]).await;
}

/// One selected workload: who owns it, then the stages. Returns when to look at it again.
async fn judge(
    book: &Book<'_>,
    id: &UnitId,
    workload: &Selected,
    settings: &Arc<crate::settings::Settings>,
    ctx: &Context,
) -> Result<Option<Duration>> {
    let (policy, key, now) = (book.policy, book.key, book.now);
    let namespace = book.namespace_of(id);
    let unit_key = unit::key(key, id);
    // Several policies may cover it: one remediates, the others observe it (probe and judge, no
    // step taken: the OwnedElsewhere guard) and say who remediates it.
    let claims = ctx.index.claims_on(&namespace, workload.kind, &workload.name);
    let owner = precedence::owner(&claims)
        .filter(|c| !(c.namespace == key.namespace && c.name == key.name))
        .map(precedence::Claim::policy);
    let old = book.status_of(id);
    let as_single = single(policy, &namespace, workload, old.clone());
    let subject = Subject::Unit(book, id, owner.as_deref());
    let Some(reported) = stages::one(
        &as_single,
        &unit_key,
        &subject,
        old,
        Some(settings.clone()),
        ctx,
        now,
    )
    .await?
    else {
        return Ok(Some(Duration::from_secs(5)));
    };
    book.set(id, reported.status.clone(), owner);
    // Its ladder's claim follows its record: released once the ladder stops acting.
    ctx.ladders.settle(&unit_key, &reported.status);
    book.publish(ctx, id, reported.events).await;
    let health = reported
        .status
        .verdict
        .as_ref()
        .map_or(Health::Unknown, |v| v.health);
    ctx.metrics
        .health(&remediate::policy_label(&unit_key), Some(health));
    Ok(reported.revisit)
}

/// The policy as it would read had it named this one workload by targetRef, in the workload's
/// namespace. Its name carries the workload's, so what an action names after the policy (a
/// diagnostics ConfigMap) is the workload's own.
fn single(
    policy: &AppHealthPolicy,
    namespace: &str,
    workload: &Selected,
    status: AppHealthPolicyStatus,
) -> AppHealthPolicy {
    let mut single = AppHealthPolicy {
        metadata: policy.metadata.clone(),
        spec: policy.spec.clone(),
        status: Some(status),
    };
    single.metadata.name = Some(format!("{}-{}", policy.name_any(), workload.name));
    single.metadata.namespace = Some(namespace.to_owned());
    single.spec.target_selector = None;
    single.spec.target_ref = Some(TargetRef {
        api_version: None,
        kind: workload.kind,
        name: workload.name.clone(),
    });
    single
}
