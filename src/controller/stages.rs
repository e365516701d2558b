//! The stages for one workload, shared by a single-target policy and each workload of a
//! targetSelector policy: dereference (target, pods, references) → seen (observe: the probe task's
//! verdict, pod facts) → step (pure: the plan and what to record) → the record written (an intent
//! before its action) → act (the step's work) → finish (pure). No decision is made here.

use std::{sync::Arc, time::Duration};

use kube::{Api, runtime::controller::Action as Requeue};

use super::{
    Context, PolicyRef,
    book::{Book, UnitId},
    dereference::{Dereferenced, Stopped, Target, dereference},
    remediate,
    seen::seen,
};
use crate::{
    Result,
    api::{AppHealthPolicy, AppHealthPolicyStatus, Health},
    clock,
    plan::{self, Budget, PlanInput},
    report::{self, EventIntent, Observation, convert},
    step::{self, Then},
};

/// Where a judged workload's record and Events go: a single-target policy's own status, or one
/// workload's record in a targetSelector policy's.
pub(super) enum Subject<'a> {
    Policy(&'a Api<AppHealthPolicy>),
    /// A workload of a selector policy, and the policy that remediates it instead, if another has
    /// precedence.
    Unit(&'a Book<'a>, &'a UnitId, Option<&'a str>),
}

/// Stages one to four for one workload: dereference → (seen → step → record → act → finish), or
/// why it is not probed. None while the caches are still filling.
pub(super) async fn one(
    policy: &AppHealthPolicy,
    key: &PolicyRef,
    subject: &Subject<'_>,
    old: AppHealthPolicyStatus,
    settings: Option<Arc<crate::settings::Settings>>,
    ctx: &Context,
    now: jiff::Timestamp,
) -> Result<Option<Reported>> {
    Ok(Some(match dereference(policy, key, settings, ctx).await? {
        Dereferenced::NotSynced => return Ok(None),
        Dereferenced::Found(mut target) => {
            if let Subject::Unit(book, _, owner) = subject {
                target.owned_by = owner.map(str::to_owned);
                target.selected_by = Some(book.related.clone());
            }
            probe_and_remediate(policy, key, subject, &target, old, ctx, now).await?
        }
        Dereferenced::Stopped(stopped) => {
            ctx.probes.stop(key);
            not_probed(policy, stopped, old, now)
        }
    }))
}

/// What a reconcile ends with: the status and its Events, the status as last written (the
/// intent, when one was recorded), and when to look again.
pub(super) struct Reported {
    pub written: AppHealthPolicyStatus,
    pub status: AppHealthPolicyStatus,
    pub events: Vec<EventIntent>,
    pub requeue: Requeue,
    /// When to look again, if sooner than the resync.
    pub revisit: Option<Duration>,
}

/// Stages two to four for a policy whose target was found: seen → step (plan) → the step's
/// record written → act → finish.
async fn probe_and_remediate(
    policy: &AppHealthPolicy,
    key: &PolicyRef,
    subject: &Subject<'_>,
    target: &Target,
    old: AppHealthPolicyStatus,
    ctx: &Context,
    now: jiff::Timestamp,
) -> Result<Reported> {
    let (seen, pods) = seen(policy, key, target, &old, ctx);
    let step = remediate::step_for(key, target, &old, &seen, &pods, ctx, now);
    let revisit = step
        .plan
        .revisit_at()
        .map(|at| clock::until(now, at) + Duration::from_secs(1));
    let requeue = Requeue::requeue(revisit.unwrap_or(ctx.resync));
    let mut written = old.clone();
    let (status, events) = match step.then {
        Then::Write(new) => new,
        Then::Work { intent, work } => {
            // The hand-off from plan to act: the intent is written first.
            if let Some((intent, events)) = intent {
                written = match subject {
                    Subject::Policy(api) => write(ctx, key, api, &intent).await?,
                    Subject::Unit(book, unit, _) => book.write(ctx, unit, intent).await?,
                };
                // What led here is told now, not after work that may take a while.
                match subject {
                    Subject::Policy(_) => publish(ctx, policy, events).await,
                    Subject::Unit(book, unit, _) => book.publish(ctx, unit, events).await,
                }
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
        revisit,
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
    let workload = policy.spec.describe_target();
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
        revisit: None,
    }
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
