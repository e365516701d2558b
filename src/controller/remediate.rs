//! Stages three and four: the step (pure: plan, with the budget of ladders acting elsewhere, and
//! the status to record) and act (the step's work). The reconcile writes what the step records
//! before the work and what `step::finish` makes of it after.

use kube::ResourceExt;

use super::{Context, PolicyRef, dereference::Target};
use crate::{
    Result,
    act::{self, ActCtx, Outcome, PolicyInfo, StepParams},
    api::{AppHealthPolicy, AppHealthPolicyStatus},
    plan::{Plan, PlanInput, PodFacts, Remediation},
    report::{self, Observation, convert, text},
    step::{self, Step, Work},
};

/// Decides what to do now: the step, planned with the budget of ladders acting elsewhere.
pub(super) fn step_for(
    key: &PolicyRef,
    target: &Target,
    old: &AppHealthPolicyStatus,
    seen: &Observation,
    pods: &[PodFacts],
    ctx: &Context,
    now: jiff::Timestamp,
) -> Step {
    let health = seen
        .verdict
        .as_ref()
        .map_or(crate::api::Health::Unknown, |v| v.health);
    let recorded = convert::recorded(old);
    ctx.ladders.within_budget(
        key,
        &target.workload,
        old,
        target.settings.remediation.max_concurrent,
        &ctx.index,
        |mut budget| {
            budget.owned_by.clone_from(&target.owned_by);
            let input = PlanInput {
                settings: &target.settings.remediation,
                suspended: false,
                health,
                pods,
                recorded: &recorded,
                rollout: target.rollout.clone(),
                budget,
                now,
            };
            step::step(old, seen, &input, now)
        },
    )
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

/// Does the step's work from `from` (the status as last written: the intent, when one was
/// recorded) and says what happened, for `step::finish`.
pub(super) async fn act(
    policy: &AppHealthPolicy,
    target: &Target,
    from: &AppHealthPolicyStatus,
    seen: &Observation,
    work: &Work,
    ctx: &Context,
    now: jiff::Timestamp,
) -> Result<Outcome> {
    let info = match &target.selected_by {
        Some(selector) => PolicyInfo::of(selector, policy.name_any()),
        None => PolicyInfo::of(&kube::Resource::object_ref(policy, &()), policy.name_any()),
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
    let act_ctx = |next: String| -> ActCtx<'_> {
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
            recorded: convert::recorded(from),
        }
    };
    Ok(match work {
        Work::Run(r) => act::run(&act_ctx(next_step(target, r)), r).await?,
        Work::Resume(r) => act::resume(&act_ctx(next_step(target, r)), r).await?,
        Work::Restore(raised) => act::restore(&act_ctx(String::new()), raised).await,
    })
}

/// Puts back what ScaleOut raised on a workload the policy no longer selects (released: what the
/// policy changed goes back as it was, without waiting for restoreAfter). Returns whether it did,
/// and a sentence for people.
pub(super) async fn restore_released(
    ctx: &Context,
    info: &PolicyInfo,
    workload: &act::Workload,
    status: &AppHealthPolicyStatus,
    now: jiff::Timestamp,
) -> Option<(bool, String)> {
    let raised = convert::raised(status.scale_restore.as_ref()?)?;
    let act_ctx = ActCtx {
        client: ctx.client.clone(),
        direct_client: ctx.direct_client.clone(),
        notifier: &ctx.notifier,
        workload,
        policy: info,
        summary: String::new(),
        evidence: Vec::new(),
        retention: 0,
        diagnostics: Default::default(),
        next: String::new(),
        now,
        recorded: convert::recorded(status),
    };
    let outcome = act::restore(&act_ctx, &raised).await;
    outcome.effects.into_iter().find_map(|e| match e {
        act::Effect::ScaleRestoreDone { restored, message } => Some((
            restored,
            if restored {
                text::released_restored(&workload.to_string(), raised.original)
            } else {
                message
            },
        )),
        _ => None,
    })
}

/// How metrics name a policy: `namespace/name`; a ClusterAppHealthPolicy (no namespace) `/name`,
/// which no namespaced policy's label can be.
pub(super) fn policy_label(key: &PolicyRef) -> String {
    format!("{}/{}", key.namespace.as_deref().unwrap_or_default(), key.name)
}

/// Remediations that completed and holds that began, for the metrics.
pub(super) fn count(
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
        if let Some(reason) = record.reason.as_deref() {
            ctx.metrics.remediation_failed(record.action.as_str(), reason);
        }
    }
    if let Plan::Hold { held, .. } | Plan::Skip { held, .. } = plan {
        let reason = text::reason(&held.guard);
        let before = report::condition(old, crate::api::conditions::REMEDIATION_BLOCKED)
            .filter(|c| c.status == "True")
            .map(|c| c.reason.as_str());
        if before != Some(reason) {
            ctx.metrics.hold(&policy_label(key), reason);
        }
    }
}
