//! Stages three and four: plan (pure, with the budget of ladders acting elsewhere) and act. An
//! action's intent is written before it runs and its result after, both computed by
//! `report::desired_status`.

use kube::{Api, ResourceExt};

use super::{Context, PolicyRef, dereference::Target};
use crate::{
    Result,
    act::{self, ActCtx, PolicyInfo},
    api::{AppHealthPolicy, AppHealthPolicyStatus, validate::StepParams},
    plan::{self, Plan, PlanInput, PodFacts, Remediation},
    report::{self, EventIntent, Observation, Outcome, text},
};

/// Decides what to do now.
pub(super) fn decide(
    key: &PolicyRef,
    target: &Target,
    old: &AppHealthPolicyStatus,
    seen: &Observation,
    pods: &[PodFacts],
    ctx: &Context,
    now: jiff::Timestamp,
) -> Plan {
    let health = seen
        .verdict
        .as_ref()
        .map_or(crate::api::Health::Unknown, |v| v.health);
    ctx.ladders
        .decide(key, &target.workload, old, &ctx.index.policies, |budget| {
            plan::plan(&PlanInput {
                settings: &target.settings.remediation,
                suspended: false,
                health,
                pods,
                status: old,
                rollout: target.rollout.clone(),
                budget,
                now,
            })
        })
}

/// What the ladder does next if the step `r` does not help.
fn next_step(target: &Target, r: &Remediation) -> String {
    match target.settings.remediation.step(r.step + 1) {
        Some(next) => format!(
            "{} (step {} of {}) if the target is still unhealthy",
            next.action().as_str(),
            r.step + 1,
            r.of
        ),
        None => "no further steps: a person needs to look at it".into(),
    }
}

/// Carries out the plan; returns the new status (the intent, if one was recorded, already
/// written) and the Events to publish with it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn act(
    policy: &AppHealthPolicy,
    key: &PolicyRef,
    api: &Api<AppHealthPolicy>,
    target: &Target,
    old: &AppHealthPolicyStatus,
    seen: &Observation,
    plan: &Plan,
    ctx: &Context,
    now: jiff::Timestamp,
) -> Result<(AppHealthPolicyStatus, Vec<EventIntent>)> {
    let info = PolicyInfo {
        name: policy.name_any(),
        uid: policy.uid().unwrap_or_default(),
    };
    let diagnostics = match target
        .settings
        .remediation
        .collects_diagnostics()
        .map(|s| &s.params)
    {
        Some(StepParams::CollectDiagnostics(d)) => d.clone(),
        _ => Default::default(),
    };
    let act_ctx = |status: &AppHealthPolicyStatus, next: String| -> ActCtx<'_> {
        ActCtx {
            client: ctx.client.clone(),
            direct_client: ctx.direct_client.clone(),
            notifier: &ctx.notifier,
            workload: &target.workload,
            policy: &info,
            summary: seen.verdict.as_ref().map(|v| v.summary()).unwrap_or_default(),
            evidence: seen
                .verdict
                .as_ref()
                .map(|v| v.evidence.clone())
                .unwrap_or_default(),
            retention: target.settings.remediation.diagnostics_retention,
            diagnostics: diagnostics.clone(),
            next,
            now,
            status: status.clone(),
        }
    };
    let desired = |from: &AppHealthPolicyStatus, done: Option<&Outcome>| {
        report::desired_status(from, seen, Some(plan), done, now)
    };
    let (status, events) = match plan {
        Plan::Act(r) if !r.dry_run => {
            // Intent first: if the operator stops after this write, the next reconcile resumes it.
            let (intent, events) = desired(old, Some(&act::pending(r)));
            let intent = super::reconcile::write(ctx, key, api, &intent).await?;
            // What led here is told now, not after an action that may take a while (or never end).
            super::reconcile::publish(ctx, policy, events).await;
            let outcome = act::run(&act_ctx(&intent, next_step(target, r)), r).await?;
            desired(&intent, Some(&outcome))
        }
        Plan::Act(r) => desired(
            old,
            Some(&act::run(&act_ctx(old, next_step(target, r)), r).await?),
        ),
        Plan::Resume(r) => desired(
            old,
            Some(&act::resume(&act_ctx(old, next_step(target, r)), r).await?),
        ),
        Plan::Skip { held, remediation } => {
            let why = text::hold_message(&held.hold, Some(remediation), held.until);
            desired(old, Some(&act::skipped(remediation, why)))
        }
        Plan::Restore(raised) => desired(
            old,
            Some(&act::restore(&act_ctx(old, String::new()), raised).await),
        ),
        Plan::Idle { .. } | Plan::Recovered { .. } | Plan::Wait { .. } | Plan::Hold { .. } => {
            desired(old, None)
        }
    };
    count(ctx, key, old, &status, plan);
    Ok((status, events))
}

/// Remediations that completed and holds that began, for the metrics.
/// How metrics name a policy: `namespace/name`.
pub(super) fn policy_label(key: &PolicyRef) -> String {
    format!("{}/{}", key.namespace.as_deref().unwrap_or_default(), key.name)
}

fn count(
    ctx: &Context,
    key: &PolicyRef,
    old: &AppHealthPolicyStatus,
    new: &AppHealthPolicyStatus,
    plan: &Plan,
) {
    if let Some(record) = new.history.first()
        && record.result != crate::api::RemediationResult::Pending
        && old.history.first() != Some(record)
    {
        ctx.metrics.remediation(
            &policy_label(key),
            record.action.as_str(),
            record.result.as_str(),
            record.dry_run,
        );
    }
    if let Plan::Hold { held, .. } | Plan::Skip { held, .. } = plan {
        let reason = text::reason(&held.hold);
        let before = report::condition(old, crate::api::conditions::REMEDIATION_BLOCKED)
            .filter(|c| c.status == "True")
            .map(|c| c.reason.as_str());
        if before != Some(reason) {
            ctx.metrics.hold(&policy_label(key), reason);
        }
    }
}
