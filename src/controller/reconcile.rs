//! The reconcile: wiring over named stages with typed hand-offs —
//! dereference (target, pods, references) → observe (the probe task's verdict, pod facts) →
//! plan (pure) → act → report (status written only when it changed, then Events).
//! No decision is made here.

use std::{sync::Arc, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{
    Api, ResourceExt,
    runtime::{controller::Action as Requeue, reflector::ObjectRef},
};

use super::{
    Context, PolicyRef,
    dereference::{Dereferenced, dereference},
    observe::observe,
    remediate,
};
use crate::{
    Result,
    api::{AppHealthPolicy, AppHealthPolicyStatus, Health, conditions, watched::Watched},
    clock,
    plan::{Held, Hold, Plan},
    report::{self, EventIntent, Observation, reasons},
};

#[tracing::instrument(skip_all, fields(policy = %watched.name_any(), namespace = watched.namespace().unwrap_or_default()))]
pub(super) async fn reconcile(watched: Arc<Watched>, ctx: Arc<Context>) -> Result<Requeue> {
    let started = std::time::Instant::now();
    let key = ObjectRef::from_obj(watched.as_ref());
    let namespace = watched.namespace().unwrap_or_default();
    let policy = match &watched.decoded {
        Ok(policy) => policy,
        Err(problem) => return unreadable(&watched, &key, problem, &ctx).await,
    };
    let api: Api<AppHealthPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    // Whole seconds: what status can hold, so marks written there compare equal when read back.
    let now = clock::whole_seconds(ctx.clock.now());
    let old = ctx
        .writes
        .current(&key, &policy.status.clone().unwrap_or_default());

    let (target, stopped) = match dereference(policy, &key, &ctx).await? {
        Dereferenced::NotSynced => return Ok(Requeue::requeue(Duration::from_secs(5))),
        Dereferenced::Found(target) => (Some(target), None),
        Dereferenced::Stopped(stopped) => (None, Some(stopped)),
    };
    let (status, events, requeue) = match (target, stopped) {
        (Some(target), _) => {
            let (seen, pods) = observe(policy, &key, &target, &old, &ctx);
            let plan = remediate::decide(&key, &target, &old, &seen, &pods, &ctx, now);
            let (status, events) =
                remediate::act(policy, &key, &api, &target, &old, &seen, &plan, &ctx, now).await?;
            let requeue = match plan.revisit_at() {
                Some(at) => Requeue::requeue(clock::until(now, at) + Duration::from_secs(1)),
                None => Requeue::requeue(ctx.resync),
            };
            (status, events, requeue)
        }
        (None, Some(stopped)) => {
            ctx.probes.stop(&key);
            let seen = Observation {
                generation: policy.metadata.generation,
                readiness: stopped.readiness,
                verdict: None,
                dry_run: policy.spec.remediation.dry_run,
                steps: u32::try_from(policy.spec.remediation.steps.len()).unwrap_or(u32::MAX),
                workload: format!(
                    "{} {}",
                    policy.spec.target_ref.kind.as_str(),
                    policy.spec.target_ref.name
                ),
                diagnostics_retention: policy.spec.remediation.diagnostics_retention,
            };
            let plan = stopped.suspended.then_some(Plan::Hold {
                held: Held {
                    hold: Hold::Suspended,
                    until: None,
                    skip: false,
                },
                remediation: None,
            });
            let (status, events) = report::desired_status(&old, &seen, plan.as_ref(), None, now);
            (status, events, stopped.requeue)
        }
        (None, None) => return Ok(Requeue::requeue(ctx.resync)),
    };
    if status != old {
        write(&ctx, &key, &api, &status).await?;
    }
    publish(&ctx, policy, events).await;
    ctx.failures.reset(&key);
    let ready = report::condition(&status, conditions::READY).map(|c| c.reason.as_str());
    ctx.metrics.policy_ready(&remediate::policy_label(&key), ready);
    let health = status.verdict.as_ref().map_or(Health::Unknown, |v| v.health);
    ctx.metrics.health(&remediate::policy_label(&key), Some(health));
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    Ok(requeue)
}

/// Writes the status (server-side apply), remembers it, and keeps the ladder claims in step.
pub(super) async fn write(
    ctx: &Context,
    key: &PolicyRef,
    api: &Api<AppHealthPolicy>,
    status: &AppHealthPolicyStatus,
) -> Result<AppHealthPolicyStatus> {
    let written = report::apply_status(api, &key.name, status).await?;
    ctx.writes.wrote(key, written.clone());
    ctx.ladders.settle(key, &written);
    Ok(written)
}

pub(super) async fn publish(ctx: &Context, policy: &AppHealthPolicy, events: Vec<EventIntent>) {
    for event in events {
        report::publish(&ctx.recorder, policy, event).await;
    }
}

/// A policy this operator version cannot read: stop probing it and say why on its Ready
/// condition. Written with a field manager of its own, so the recorded remediation state (owned by
/// the operator's manager) stays in status for when the policy is readable again.
async fn unreadable(watched: &Watched, key: &PolicyRef, problem: &str, ctx: &Context) -> Result<Requeue> {
    ctx.probes.stop(key);
    ctx.metrics
        .policy_ready(&remediate::policy_label(key), Some(reasons::UNREADABLE));
    let message = format!(
        "This operator version cannot read the policy: {problem}. Fix the policy or upgrade the operator; \
         nothing is probed until then."
    );
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
    let api: Api<Watched> = Api::namespaced(ctx.client.clone(), &watched.namespace().unwrap_or_default());
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
