//! A policy over many workloads (`targetSelector`). Each selected workload is judged and remediated
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

use kube::{Api, ResourceExt, runtime::controller::Action as Requeue};

use super::{
    Context, PolicyRef,
    book::{Book, UnitId, release, seeded},
    dereference::{self, Dereferenced},
    index::Selected,
    remediate,
    stages::{self, Subject},
    unit,
};
use crate::{
    Result,
    api::{AppHealthPolicy, AppHealthPolicyStatus, Health, TargetRef, conditions},
    fleet::precedence,
    report::{self, EventIntent, Readiness, fleet::Stopped},
};

/// A policy that is not probed (invalid, suspended): its workloads are released (their records
/// kept, for when it runs again) and its Ready condition says why, with an Event when that changes.
async fn not_probing(
    policy: &AppHealthPolicy,
    key: &PolicyRef,
    book: &Book<'_>,
    stopped: &dereference::Stopped,
    ctx: &Context,
) -> Result<()> {
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
    if was.as_deref() != Some(reason) {
        let event = EventIntent {
            reason,
            warning: true,
            action: "Observe",
            note: event,
        };
        report::publish(&ctx.recorder, policy, event).await;
    }
    ctx.metrics
        .policy_ready(&remediate::policy_label(key), Some(reason));
    Ok(())
}

/// The kind a selector policy is hashed as, to find its shard.
const SHARDED_AS: &str = "AppHealthPolicy";

/// The reconcile of a targetSelector policy: select, release what no longer matches, run each
/// workload's stages, write the policy's status when it changed.
pub(super) async fn reconcile(
    policy: &AppHealthPolicy,
    key: &PolicyRef,
    ctx: &Arc<Context>,
    now: jiff::Timestamp,
) -> Result<Requeue> {
    let namespace = policy.namespace().unwrap_or_default();
    let cached = policy.status.clone().unwrap_or_default();
    let Some(selector) = policy.spec.target_selector.as_ref() else {
        return Ok(Requeue::await_change());
    };
    // With shards, a selector policy is one piece of work, of the shard its own name hashes to:
    // its status is one object, written by one replica. (Its workloads do not spread across
    // replicas yet.)
    let _working = match &ctx.sharding {
        None => None,
        Some(sharding) => match sharding.work(&namespace, SHARDED_AS, &policy.name_any()) {
            Some(working) => Some(working),
            None => {
                ctx.forget(key);
                return Ok(Requeue::await_change());
            }
        },
    };
    let selects = selector.describe();
    let memory = ctx.fleets.take(key).unwrap_or_else(|| seeded(&cached));
    let book = Book {
        policy,
        key,
        api: Api::namespaced(ctx.client.clone(), &namespace),
        units: Mutex::new(memory),
        written: Mutex::new(cached),
        selects,
        now,
    };
    let result = judge_all(&book, selector, ctx, now).await;
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
    selector: &crate::api::TargetSelector,
    ctx: &Context,
    now: jiff::Timestamp,
) -> Result<Requeue> {
    let (policy, key) = (book.policy, book.key);
    let settings = match dereference::settings(policy) {
        Ok(settings) => settings,
        Err(Dereferenced::Stopped(stopped)) => {
            not_probing(policy, key, book, &stopped, ctx).await?;
            return Ok(stopped.requeue);
        }
        Err(_) => return Ok(Requeue::requeue(Duration::from_secs(5))),
    };
    if !ctx.index.synced().await {
        return Ok(Requeue::requeue(Duration::from_secs(5)));
    }
    let selected = ctx
        .index
        .selected(&policy.namespace().unwrap_or_default(), selector);
    // Released: those no longer selected.
    let gone: Vec<UnitId> = {
        let units = book.units.lock().unwrap_or_else(PoisonError::into_inner);
        units
            .keys()
            .filter(|(kind, name)| {
                !selected
                    .iter()
                    .any(|s| s.kind.as_str() == kind && s.name == *name)
            })
            .cloned()
            .collect()
    };
    for id in &gone {
        release(ctx, key, id);
        restore_released(policy, book, id, ctx, now).await;
        book.forget(id);
    }
    // A workload whose stages fail does not hold the others up: the first error is returned once
    // every workload has had its turn (the policy is then retried with its backoff).
    let mut revisit = ctx.resync;
    let mut failed = None;
    for workload in &selected {
        match judge(policy, key, book, workload, &settings, ctx, now).await {
            Ok(Some(after)) => revisit = revisit.min(after),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(workload = %workload.name, kind = workload.kind.as_str(), error = %e, "a workload's stages failed");
                failed.get_or_insert(e);
            }
        }
    }
    book.flush(None).await?;
    if let Some(e) = failed {
        return Err(e);
    }
    ctx.failures.reset(key);
    ctx.metrics.policy_ready(
        &remediate::policy_label(key),
        Some(report::reasons::WORKLOADS_SELECTED),
    );
    Ok(Requeue::requeue(revisit))
}

/// What ScaleOut raised on a released workload is put back, and said in an Event on it.
async fn restore_released(
    policy: &AppHealthPolicy,
    book: &Book<'_>,
    id: &UnitId,
    ctx: &Context,
    now: jiff::Timestamp,
) {
    let Some(kind) = crate::api::TargetKind::parse(&id.0) else {
        return;
    };
    let workload = crate::act::Workload {
        kind,
        namespace: policy.namespace().unwrap_or_default(),
        name: id.1.clone(),
    };
    let status = book.status_of(id);
    let Some((restored, note)) = remediate::restore_released(ctx, policy, &workload, &status, now).await
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

/// One selected workload: who owns it, whether this replica's shards hold it, then the stages.
/// Returns when to look at it again.
async fn judge(
    policy: &AppHealthPolicy,
    key: &PolicyRef,
    book: &Book<'_>,
    workload: &Selected,
    settings: &Arc<crate::settings::Settings>,
    ctx: &Context,
    now: jiff::Timestamp,
) -> Result<Option<Duration>> {
    let namespace = policy.namespace().unwrap_or_default();
    let id: UnitId = (workload.kind.as_str().to_owned(), workload.name.clone());
    let unit_key = unit::key(key, workload.kind, &workload.name);
    // Several policies may cover it: one remediates, the others observe it (probe and judge, no
    // step taken: the OwnedElsewhere guard) and say who remediates it.
    let claims = ctx.index.claims_on(&namespace, workload.kind, &workload.name);
    let owner = precedence::owner(&claims)
        .filter(|c| c.name != policy.name_any())
        .map(precedence::Claim::policy);
    let old = book.status_of(&id);
    let as_single = single(policy, workload, old.clone());
    let subject = Subject::Unit(book, &id, owner.as_deref());
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
    book.set(&id, reported.status.clone(), owner);
    // Its ladder's claim follows its record: released once the ladder stops acting.
    ctx.ladders.settle(&unit_key, &reported.status);
    book.publish(ctx, &id, reported.events).await;
    let health = reported
        .status
        .verdict
        .as_ref()
        .map_or(Health::Unknown, |v| v.health);
    ctx.metrics
        .health(&remediate::policy_label(&unit_key), Some(health));
    Ok(reported.revisit)
}

/// The policy as it would read had it named this one workload by targetRef. Its name carries the
/// workload's, so what an action names after the policy (a diagnostics ConfigMap) is the
/// workload's own.
fn single(policy: &AppHealthPolicy, workload: &Selected, status: AppHealthPolicyStatus) -> AppHealthPolicy {
    let mut single = AppHealthPolicy {
        metadata: policy.metadata.clone(),
        spec: policy.spec.clone(),
        status: Some(status),
    };
    single.metadata.name = Some(format!("{}-{}", policy.name_any(), workload.name));
    single.spec.target_selector = None;
    single.spec.target_ref = Some(TargetRef {
        api_version: None,
        kind: workload.kind,
        name: workload.name.clone(),
    });
    single
}
