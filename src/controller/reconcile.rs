//! The reconcile: wiring over named stages with typed hand-offs — the stages for one workload
//! ([`stages`](super::stages): dereference → seen → step → the record written → act → finish),
//! then report (status written only when it changed, then Events). A targetSelector policy runs
//! the same stages for each of its workloads ([`fleet`](super::fleet)). No decision is made here.

use std::{sync::Arc, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{
    Api, ResourceExt,
    runtime::{controller::Action as Requeue, reflector::ObjectRef},
};

use super::{
    Context, PolicyRef, book, remediate,
    stages::{Reported, Subject, one, publish, write},
};
use crate::{
    Result,
    api::{
        AppHealthPolicy, Health, conditions,
        watched::{Watched, WatchedCluster},
    },
    clock,
    report::{self, EventIntent, reasons, text},
};

#[tracing::instrument(skip_all, fields(policy = %watched.name_any(), namespace = watched.namespace().unwrap_or_default()))]
pub(super) async fn reconcile(watched: Arc<Watched>, ctx: Arc<Context>) -> Result<Requeue> {
    let started = std::time::Instant::now();
    let key = ObjectRef::from_obj(watched.as_ref());
    let namespace = watched.namespace().unwrap_or_default();
    let policy = match &watched.decoded {
        Ok(policy) => policy,
        Err(problem) => {
            let api = Api::namespaced(ctx.client.clone(), &namespace);
            return unreadable(&watched, api, &key, &problem.problem, &ctx).await;
        }
    };
    // Whole seconds: what status can hold, so marks written there compare equal when read back.
    let now = clock::whole_seconds(ctx.clock.now());
    if policy.spec.target_ref.is_none() && policy.spec.target_selector.is_some() {
        // A policy over many workloads: each is judged and remediated on its own.
        ctx.probes.stop(&key);
        let requeue = super::fleet::reconcile(policy, &key, &ctx, now).await?;
        ctx.metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        return Ok(requeue);
    }
    // It may have selected workloads before: they are its no longer.
    book::release_all(&ctx, &key);
    // With shards, only the workloads of this replica's shards: the others are left to the
    // replicas that hold theirs (counted while the work lasts, so a shard is not given back under it).
    let _working = match (&ctx.sharding, &policy.spec.target_ref) {
        (Some(sharding), Some(target)) => {
            match sharding.work(&namespace, target.kind.as_str(), &target.name) {
                Some(working) => Some(working),
                None => {
                    // What this replica knew of it (its last write, its gauges) is another's now.
                    ctx.probes.stop(&key);
                    ctx.forget(&key);
                    return Ok(Requeue::await_change());
                }
            }
        }
        _ => None,
    };
    let api: Api<AppHealthPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let old = ctx
        .writes
        .current(&key, &policy.status.clone().unwrap_or_default());

    let Some(reported) = one(policy, &key, &Subject::Policy(&api), old, None, &ctx, now).await? else {
        return Ok(Requeue::requeue(Duration::from_secs(5)));
    };
    report(policy, &key, &api, &reported, &ctx).await?;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    Ok(reported.requeue)
}

/// The reconcile of a ClusterAppHealthPolicy: as a targetSelector policy's, over the workloads of
/// every namespace it selects ([`fleet`](super::fleet)).
#[tracing::instrument(skip_all, fields(cluster_policy = %watched.name_any()))]
pub(super) async fn reconcile_cluster(watched: Arc<WatchedCluster>, ctx: Arc<Context>) -> Result<Requeue> {
    let started = std::time::Instant::now();
    let key = super::policy_key(watched.as_ref());
    let cluster = match &watched.decoded {
        Ok(cluster) => cluster,
        Err(problem) => {
            let api = Api::all(ctx.client.clone());
            return unreadable(&watched, api, &key, &problem.problem, &ctx).await;
        }
    };
    let now = clock::whole_seconds(ctx.clock.now());
    let requeue = super::fleet::reconcile_cluster(cluster, &key, &ctx, now).await?;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    Ok(requeue)
}

/// Stage five: the status written when it changed, the Events published, the metrics set.
async fn report(
    policy: &AppHealthPolicy,
    key: &PolicyRef,
    api: &Api<AppHealthPolicy>,
    reported: &Reported,
    ctx: &Context,
) -> Result<()> {
    let status = &reported.status;
    if *status != reported.written {
        write(ctx, key, api, status).await?;
    }
    publish(ctx, policy, reported.events.clone()).await;
    ctx.failures.reset(key);
    let ready = report::condition(status, conditions::READY).map(|c| c.reason.as_str());
    ctx.metrics.policy_ready(&remediate::policy_label(key), ready);
    let health = status.verdict.as_ref().map_or(Health::Unknown, |v| v.health);
    ctx.metrics.health(&remediate::policy_label(key), Some(health));
    Ok(())
}

/// A policy this operator version cannot read: stop probing it and say why on its Ready
/// condition. Written with a field manager of its own, so the recorded remediation state (owned by
/// the operator's manager) stays in status for when the policy is readable again.
async fn unreadable<K>(
    watched: &Watched<K>,
    api: Api<Watched<K>>,
    key: &PolicyRef,
    problem: &str,
    ctx: &Context,
) -> Result<Requeue>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    ctx.probes.stop(key);
    ctx.metrics
        .policy_ready(&remediate::policy_label(key), Some(reasons::UNREADABLE));
    let message = text::unreadable(problem);
    if watched
        .ready
        .as_ref()
        .is_some_and(|c| c.reason == reasons::UNREADABLE && c.message == message)
    {
        return Ok(Requeue::await_change());
    }
    let condition = Condition {
        type_: conditions::READY.into(),
        status: "False".into(),
        reason: reasons::UNREADABLE.into(),
        message: message.clone(),
        observed_generation: watched.metadata.generation,
        last_transition_time: Time(clock::whole_seconds(ctx.clock.now())),
    };
    let written =
        report::apply_conditions(&api, &watched.name_any(), report::GUARD_MANAGER, &[condition]).await;
    let event = EventIntent {
        reason: reasons::UNREADABLE,
        warning: true,
        action: "Decode",
        note: message,
    };
    match written {
        Ok(()) => {}
        // The API server validates the whole stored object on a status write; one whose spec has
        // the wrong types fails its CEL rules whatever the write says, so no status can be
        // written. The Event is all a person gets; the object must change for anything to.
        Err(crate::Error::Report(kube::Error::Api(s))) if s.code == 422 => {
            tracing::warn!(
                policy = %watched.name_any(),
                refusal = %s.message,
                "the API server refuses any status for this unreadable policy; saying why in an Event"
            );
        }
        Err(e) => return Err(e),
    }
    report::publish(&ctx.recorder, watched, event).await;
    Ok(Requeue::await_change())
}
