//! The reconcile: wiring over named stages with typed hand-offs —
//! dereference (target, pods, references) → seen (observe: the probe task's verdict, pod facts) →
//! step (pure: the plan and what to record) → the record written (an intent before its action) →
//! act (the step's work) → finish (pure) → report (status written only when it changed, then
//! Events). No decision is made here.

use std::{sync::Arc, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{
    Api, ResourceExt,
    runtime::{controller::Action as Requeue, reflector::ObjectRef},
};

use super::{
    Context, PolicyRef,
    dereference::{Dereferenced, Stopped, Target, dereference},
    remediate,
    seen::seen,
};
use crate::{
    Result,
    api::{AppHealthPolicy, AppHealthPolicyStatus, Health, conditions, watched::Watched},
    clock,
    plan::{self, Budget, PlanInput},
    report::{self, EventIntent, Observation, convert, reasons, text},
    step::{self, Then},
};

#[tracing::instrument(skip_all, fields(policy = %watched.name_any(), namespace = watched.namespace().unwrap_or_default()))]
pub(super) async fn reconcile(watched: Arc<Watched>, ctx: Arc<Context>) -> Result<Requeue> {
    let started = std::time::Instant::now();
    let key = ObjectRef::from_obj(watched.as_ref());
    let namespace = watched.namespace().unwrap_or_default();
    let policy = match &watched.decoded {
        Ok(policy) => policy,
        Err(problem) => return unreadable(&watched, &key, &problem.problem, &ctx).await,
    };
    // With shards, only the workloads of this replica's shards: the others are left to the
    // replicas that hold theirs (counted while the work lasts, so a shard is not given back under it).
    let target = &policy.spec.target_ref;
    let _working = match &ctx.sharding {
        None => None,
        Some(sharding) => match sharding.work(&namespace, target.kind.as_str(), &target.name) {
            Some(working) => Some(working),
            None => {
                // What this replica knew of it (its last write, its gauges) is another's now.
                ctx.probes.stop(&key);
                ctx.forget(&key);
                return Ok(Requeue::await_change());
            }
        },
    };
    let api: Api<AppHealthPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    // Whole seconds: what status can hold, so marks written there compare equal when read back.
    let now = clock::whole_seconds(ctx.clock.now());
    let old = ctx
        .writes
        .current(&key, &policy.status.clone().unwrap_or_default());

    let reported = match dereference(policy, &key, &ctx).await? {
        Dereferenced::NotSynced => return Ok(Requeue::requeue(Duration::from_secs(5))),
        Dereferenced::Found(target) => {
            probe_and_remediate(policy, &key, &api, &target, old, &ctx, now).await?
        }
        Dereferenced::Stopped(stopped) => {
            ctx.probes.stop(&key);
            not_probed(policy, stopped, old, now)
        }
    };
    report(policy, &key, &api, &reported, &ctx).await?;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    Ok(reported.requeue)
}

/// What a reconcile ends with: the status and its Events, the status as last written (the
/// intent, when one was recorded), and when to look again.
struct Reported {
    written: AppHealthPolicyStatus,
    status: AppHealthPolicyStatus,
    events: Vec<EventIntent>,
    requeue: Requeue,
}

/// Stages two to four for a policy whose target was found: seen → step (plan) → the step's
/// record written → act → finish.
async fn probe_and_remediate(
    policy: &AppHealthPolicy,
    key: &PolicyRef,
    api: &Api<AppHealthPolicy>,
    target: &Target,
    old: AppHealthPolicyStatus,
    ctx: &Context,
    now: jiff::Timestamp,
) -> Result<Reported> {
    let (seen, pods) = seen(policy, key, target, &old, ctx);
    let step = remediate::step_for(key, target, &old, &seen, &pods, ctx, now);
    let requeue = match step.plan.revisit_at() {
        Some(at) => Requeue::requeue(clock::until(now, at) + Duration::from_secs(1)),
        None => Requeue::requeue(ctx.resync),
    };
    let mut written = old.clone();
    let (status, events) = match step.then {
        Then::Write(new) => new,
        Then::Work { intent, work } => {
            // The hand-off from plan to act: the intent is written first.
            if let Some((intent, events)) = intent {
                written = write(ctx, key, api, &intent).await?;
                // What led here is told now, not after work that may take a while.
                publish(ctx, policy, events).await;
            }
            let done = remediate::act(policy, target, &written, &seen, &work, ctx, now).await?;
            step::finish(&written, &seen, &step.plan, &done, now)
        }
    };
    remediate::count(ctx, key, &old, &status, &step.plan);
    Ok(Reported {
        written,
        status,
        events,
        requeue,
    })
}

/// The status of a policy that is not probed (invalid, suspended, its target missing). A
/// suspended policy's ladder is held by the planner's Suspended guard; an invalid one has no
/// ladder to plan.
fn not_probed(
    policy: &AppHealthPolicy,
    stopped: Stopped,
    old: AppHealthPolicyStatus,
    now: jiff::Timestamp,
) -> Reported {
    let workload = format!(
        "{} {}",
        policy.spec.target_ref.kind.as_str(),
        policy.spec.target_ref.name
    );
    let ladder = match &stopped.suspended {
        Some(settings) => (&settings.remediation).into(),
        None => (&policy.spec.remediation).into(),
    };
    let seen = Observation::new(
        policy.metadata.generation,
        workload,
        stopped.readiness,
        None,
        ladder,
    );
    // Nothing is probed, so nothing runs: the plan is only what status says of the ladder.
    let plan = stopped.suspended.as_ref().map(|settings| {
        plan::plan(&PlanInput {
            settings: &settings.remediation,
            suspended: policy.spec.suspend,
            health: Health::Unknown,
            pods: &[],
            recorded: &convert::recorded(&old),
            rollout: None,
            budget: Budget::default(),
            now,
        })
    });
    let (status, events) = report::desired_status(&old, &seen, plan.as_ref(), None, now);
    Reported {
        written: old,
        status,
        events,
        requeue: stopped.requeue,
    }
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

/// Writes the status (server-side apply), remembers it, and keeps the ladder claims in step.
async fn write(
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

async fn publish(ctx: &Context, policy: &AppHealthPolicy, events: Vec<EventIntent>) {
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
