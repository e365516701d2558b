//! The desired status and the Events to publish: a pure function of the old status, what was
//! observed, the plan, what the act stage did, and the time. The controller writes what this
//! returns only when it differs; check mode runs the same function to keep its ladder.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{CondStatus, condition, reasons, set_condition, text};
use crate::{
    act::{Effect, Outcome},
    api::{
        AppHealthPolicyStatus, HISTORY_LIMIT, Health, Ladder, RemediationRecord, RemediationResult,
        TargetCounts, Verdict, conditions,
    },
    clock,
    evaluate::TargetVerdict,
    plan::RemediationSettings,
    plan::{Guard, Hold, Plan},
};

/// What dereference and observe found, as far as status is concerned.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub generation: Option<i64>,
    pub readiness: Readiness,
    /// The probe task's latest verdict (None before its first).
    pub verdict: Option<TargetVerdict>,
    pub dry_run: bool,
    /// Steps in the ladder.
    pub steps: u32,
    /// "Deployment web", for messages.
    pub workload: String,
    /// Diagnostics ConfigMaps kept in status.
    pub diagnostics_retention: u32,
}

impl Observation {
    /// What the stages saw of a policy: its generation and workload ("Deployment web"), whether it
    /// is probed, the probe task's verdict, and the shape of its ladder.
    pub fn new(
        generation: Option<i64>,
        workload: String,
        readiness: Readiness,
        verdict: Option<TargetVerdict>,
        ladder: LadderShape,
    ) -> Self {
        Self {
            generation,
            readiness,
            verdict,
            dry_run: ladder.dry_run,
            steps: ladder.steps,
            workload,
            diagnostics_retention: ladder.diagnostics_retention,
        }
    }
}

/// What status needs of a ladder's settings, from the validated settings or, for a spec that is
/// not valid, from the spec as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LadderShape {
    pub dry_run: bool,
    pub steps: u32,
    pub diagnostics_retention: u32,
}

impl From<&RemediationSettings> for LadderShape {
    fn from(r: &RemediationSettings) -> Self {
        Self {
            dry_run: r.dry_run,
            steps: u32::try_from(r.steps.len()).unwrap_or(u32::MAX),
            diagnostics_retention: r.diagnostics_retention,
        }
    }
}

impl From<&crate::api::RemediationSpec> for LadderShape {
    fn from(r: &crate::api::RemediationSpec) -> Self {
        Self {
            dry_run: r.dry_run,
            steps: u32::try_from(r.steps.len()).unwrap_or(u32::MAX),
            diagnostics_retention: r.diagnostics_retention,
        }
    }
}

/// Whether the policy is being probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready=True.
    Probing { message: String },
    /// Ready=False: nothing can be probed right now (no ready pods, no Service), but the policy is
    /// valid and its target exists.
    NoTargets { reason: &'static str, message: String },
    /// Ready=False and probing stopped: the verdict is dropped. An Event carries `event` when the
    /// reason is new.
    Stopped {
        reason: &'static str,
        message: String,
        event: String,
    },
}

/// An Event to publish about the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventIntent {
    pub reason: &'static str,
    pub warning: bool,
    /// The Event's action ("Evaluate", "Plan", the remediation's name).
    pub action: &'static str,
    pub note: String,
}

impl EventIntent {
    fn new(reason: &'static str, warning: bool, action: &'static str, note: String) -> Self {
        Self {
            reason,
            warning,
            action,
            note,
        }
    }
}

/// The new status and the Events that go with it.
pub fn desired_status(
    old: &AppHealthPolicyStatus,
    seen: &Observation,
    plan: Option<&Plan>,
    done: Option<&Outcome>,
    now: Timestamp,
) -> (AppHealthPolicyStatus, Vec<EventIntent>) {
    let mut status = old.clone();
    let mut events = Vec::new();
    status.observed_generation = seen.generation;
    let generation = seen.generation;
    let cond = |status: &mut AppHealthPolicyStatus, t: &str, s: CondStatus, reason: &str, m: String| {
        set_condition(&mut status.conditions, t, s, reason, m, generation, now);
    };

    match &seen.readiness {
        Readiness::Stopped {
            reason,
            message,
            event,
        } => {
            if ready_reason(old) != Some(*reason) {
                events.push(EventIntent::new(reason, true, "Observe", event.clone()));
            }
            cond(
                &mut status,
                conditions::READY,
                CondStatus::False,
                reason,
                message.clone(),
            );
            status.verdict = None;
            status.targets = None;
            cond(
                &mut status,
                conditions::HEALTHY,
                CondStatus::Unknown,
                reason,
                text::NOT_PROBING.into(),
            );
        }
        Readiness::Probing { message } => {
            cond(
                &mut status,
                conditions::READY,
                CondStatus::True,
                reasons::PROBING,
                message.clone(),
            );
        }
        Readiness::NoTargets { reason, message } => {
            cond(
                &mut status,
                conditions::READY,
                CondStatus::False,
                reason,
                message.clone(),
            );
        }
    }
    if !matches!(seen.readiness, Readiness::Stopped { .. }) {
        verdict(&mut status, old, seen, now, &mut events);
    }

    if let Some(outcome) = done {
        fold(&mut status, old, seen, plan, outcome, &mut events);
    }
    ladder_conditions(&mut status, old, seen, plan, now, &mut events);
    (status, events)
}

fn verdict(
    status: &mut AppHealthPolicyStatus,
    old: &AppHealthPolicyStatus,
    seen: &Observation,
    now: Timestamp,
    events: &mut Vec<EventIntent>,
) {
    let Some(v) = &seen.verdict else {
        if status.verdict.is_none() {
            set_condition(
                &mut status.conditions,
                conditions::HEALTHY,
                CondStatus::Unknown,
                reasons::AWAITING_VERDICT,
                "No verdict yet: waiting for the first probes.",
                seen.generation,
                now,
            );
        }
        return;
    };
    let before = old.verdict.as_ref().map(|v| v.health);
    // Keep the recorded `since` while the health is unchanged: a restarted operator's fresh
    // evaluator must not rewrite it.
    let since = match &old.verdict {
        Some(prev) if prev.health == v.health => prev.since.clone(),
        _ => Time(v.since),
    };
    status.verdict = Some(Verdict {
        health: v.health,
        since,
        evidence: v.evidence.iter().map(super::convert::evidence).collect(),
    });
    status.targets = Some(TargetCounts {
        probed: v.probed,
        healthy: v.healthy,
    });
    let (s, reason) = match v.health {
        Health::Healthy => (CondStatus::True, reasons::PROBES_SUCCEEDING),
        Health::Unhealthy => (CondStatus::False, reasons::TRIGGER_FIRED),
        Health::Unknown => (CondStatus::Unknown, reasons::AWAITING_VERDICT),
    };
    set_condition(
        &mut status.conditions,
        conditions::HEALTHY,
        s,
        reason,
        v.summary(),
        seen.generation,
        now,
    );
    match (before, v.health) {
        (b, Health::Unhealthy) if b != Some(Health::Unhealthy) => events.push(EventIntent::new(
            reasons::BECAME_UNHEALTHY,
            true,
            "Evaluate",
            v.summary(),
        )),
        (Some(Health::Unhealthy), Health::Healthy) => events.push(EventIntent::new(
            reasons::RECOVERED,
            false,
            "Evaluate",
            v.summary(),
        )),
        _ => {}
    }
}

/// Folds what the act stage did into the ladder, history and side records, with its Events.
fn fold(
    status: &mut AppHealthPolicyStatus,
    old: &AppHealthPolicyStatus,
    seen: &Observation,
    plan: Option<&Plan>,
    outcome: &Outcome,
    events: &mut Vec<EventIntent>,
) {
    for effect in &outcome.effects {
        events.extend(fold_effect(status, seen, effect));
    }
    if let Some(entry) = &outcome.record {
        let record = &super::convert::record(entry);
        advance(status, record);
        events.extend(record_event(old, seen, plan, outcome, record));
    }
}

fn fold_effect(
    status: &mut AppHealthPolicyStatus,
    seen: &Observation,
    effect: &Effect,
) -> Option<EventIntent> {
    match effect {
        Effect::ScaleRecorded(raised) => status.scale_restore = Some(super::convert::scale_restore(raised)),
        Effect::ScaleRestoreDone { restored, message } => {
            status.scale_restore = None;
            let reason = if *restored {
                reasons::SCALE_RESTORED
            } else {
                reasons::SCALE_RESTORE_SKIPPED
            };
            return Some(EventIntent::new(reason, !restored, "ScaleOut", message.clone()));
        }
        Effect::Diagnostics(capture) => {
            status.diagnostics.retain(|d| d.config_map != capture.config_map);
            status
                .diagnostics
                .insert(0, super::convert::diagnostics_ref(capture));
            status
                .diagnostics
                .truncate(usize::try_from(seen.diagnostics_retention).unwrap_or(usize::MAX));
        }
    }
    None
}

/// Whether two records are the same remediation (its intent and its result, or a held step tried
/// again): the later replaces the earlier.
fn same_remediation(a: &RemediationRecord, b: &RemediationRecord) -> bool {
    a.step == b.step && a.action == b.action && a.at == b.at
}

/// The ladder advances by a record: the one place it does, for the controller and check mode.
pub fn advance(status: &mut AppHealthPolicyStatus, record: &RemediationRecord) {
    if status
        .history
        .first()
        .is_some_and(|h| same_remediation(h, record))
    {
        status.history.remove(0);
    }
    status.history.insert(0, record.clone());
    status.history.truncate(HISTORY_LIMIT);
    let started_at = match &status.ladder {
        // A later step, or the same one again, continues the ladder; step 1 starts a new one.
        Some(l) if record.step > 1 || l.step == record.step => l.started_at.clone(),
        _ => record.at.clone(),
    };
    status.ladder = Some(Ladder {
        step: record.step,
        started_at,
        exhausted: false,
    });
}

/// The Event a record calls for: the action's own when it ran, or why it did not.
fn record_event(
    old: &AppHealthPolicyStatus,
    seen: &Observation,
    plan: Option<&Plan>,
    outcome: &Outcome,
    record: &RemediationRecord,
) -> Option<EventIntent> {
    let summary = seen
        .verdict
        .as_ref()
        .map(TargetVerdict::summary)
        .unwrap_or_default();
    let what = text::step(record.action.as_str(), record.step, seen.steps);
    let message = record.message.clone().unwrap_or_default();
    let event = |reason, warning, action, note| Some(EventIntent::new(reason, warning, action, note));
    match record.result {
        RemediationResult::Pending => None,
        RemediationResult::Succeeded if record.dry_run => event(
            reasons::DRY_RUN,
            false,
            "DryRun",
            text::dry_run_event(&what, &message, &summary),
        ),
        RemediationResult::Succeeded if outcome.resumed => {
            event(reasons::REMEDIATION_RESUMED, false, "Resume", message)
        }
        RemediationResult::Succeeded => event(
            outcome.action_reason,
            false,
            "Remediate",
            text::ran(&what, &seen.workload, &summary, &message),
        ),
        RemediationResult::Failed => event(reasons::REMEDIATION_FAILED, true, "Remediate", message),
        RemediationResult::Skipped => {
            let reason = match plan {
                Some(Plan::Skip { held, .. }) => text::reason(&held.guard),
                _ => reasons::STEP_SKIPPED,
            };
            event(reason, true, "Plan", text::skipped(&what, &message))
        }
        RemediationResult::Held => {
            // Once per refusal, not once per retry.
            let again = old
                .history
                .first()
                .is_some_and(|h| same_remediation(h, record) && h.result == RemediationResult::Held);
            if again {
                return None;
            }
            event(
                reasons::DISRUPTION_BUDGET,
                true,
                "Remediate",
                text::refused(&what, &message),
            )
        }
    }
}

/// Remediating and RemediationBlocked from the plan and the folded ladder.
fn ladder_conditions(
    status: &mut AppHealthPolicyStatus,
    old: &AppHealthPolicyStatus,
    seen: &Observation,
    plan: Option<&Plan>,
    now: Timestamp,
    events: &mut Vec<EventIntent>,
) {
    match plan {
        Some(Plan::Recovered { .. }) => status.ladder = None,
        Some(Plan::Hold {
            held:
                Hold {
                    guard: Guard::LadderExhausted { .. },
                    ..
                },
            ..
        }) => {
            if let Some(l) = status.ladder.as_mut() {
                l.exhausted = true;
            }
        }
        _ => {}
    }
    let (s, reason, message) = remediating(status, seen, plan);
    let current = condition(status, conditions::REMEDIATING);
    // A False condition stays as it is: "Recovered" stays readable after the ladder closed.
    let keep = reason == reasons::IDLE && current.is_some_and(|c| c.status == "False");
    if !keep {
        set_condition(
            &mut status.conditions,
            conditions::REMEDIATING,
            s,
            reason,
            message,
            seen.generation,
            now,
        );
    }

    let (s, reason, message) = match blocked(status, seen, plan) {
        Some((reason, message)) => {
            // Actions and skips have their own Event from the record they leave; a dry run's is DryRun.
            let has_own_event = matches!(plan, Some(Plan::Skip { .. } | Plan::Act(_) | Plan::Resume(_)));
            if blocked_reason(old) != Some(reason) && !has_own_event && reason != reasons::DRY_RUN {
                let summary = seen
                    .verdict
                    .as_ref()
                    .map(TargetVerdict::summary)
                    .unwrap_or_default();
                events.push(EventIntent::new(
                    reason,
                    true,
                    "Plan",
                    text::with_summary(&message, &summary),
                ));
            }
            (CondStatus::True, reason, message)
        }
        None => (
            CondStatus::False,
            reasons::NOT_BLOCKED,
            text::NOT_BLOCKED.to_owned(),
        ),
    };
    set_condition(
        &mut status.conditions,
        conditions::REMEDIATION_BLOCKED,
        s,
        reason,
        message,
        seen.generation,
        now,
    );
}

/// The Remediating condition: True from the first real action until the ladder closes.
fn remediating(
    status: &AppHealthPolicyStatus,
    seen: &Observation,
    plan: Option<&Plan>,
) -> (CondStatus, &'static str, String) {
    let last = status.history.first();
    if let Some(Plan::Recovered { step }) = plan {
        return (CondStatus::False, reasons::RECOVERED, text::recovered(*step));
    }
    if status.ladder.is_none() || seen.dry_run {
        return (CondStatus::False, reasons::IDLE, text::IDLE.into());
    }
    let message = match (last, plan) {
        (Some(r), Some(Plan::Wait { step, until })) => text::waiting(*step, r.action.as_str(), *until),
        (Some(r), Some(Plan::Act(_) | Plan::Resume(_))) if r.result == RemediationResult::Pending => {
            text::running(r.step, seen.steps, r.action.as_str())
        }
        // What the next reconcile's Wait says too, so it costs no write.
        (Some(r), Some(Plan::Act(x) | Plan::Resume(x)))
            if matches!(r.result, RemediationResult::Succeeded | RemediationResult::Failed) =>
        {
            text::waiting(r.step, r.action.as_str(), Some(clock::after(r.at.0, x.timeout)))
        }
        _ => text::LADDER_IN_PROGRESS.to_owned(),
    };
    (CondStatus::True, reasons::LADDER_IN_PROGRESS, message)
}

/// What holds the ladder back, if anything: a guard, a budget's refusal just now, or a dry run.
fn blocked(
    status: &AppHealthPolicyStatus,
    seen: &Observation,
    plan: Option<&Plan>,
) -> Option<(&'static str, String)> {
    let last = status.history.first();
    match plan {
        Some(Plan::Hold { held, remediation }) => {
            return Some((
                text::reason(&held.guard),
                text::hold_message(&held.guard, remediation.as_ref(), held.until),
            ));
        }
        Some(Plan::Skip { held, remediation }) => {
            return Some((
                text::reason(&held.guard),
                text::hold_message(&held.guard, Some(remediation), held.until),
            ));
        }
        // Refused by a budget just now: held from this write on.
        Some(Plan::Act(x) | Plan::Resume(x)) if last.is_some_and(|r| r.result == RemediationResult::Held) => {
            let hold = Guard::DisruptionBudget {
                detail: last.and_then(|r| r.message.clone()).unwrap_or_default(),
            };
            let retry = last.and_then(|r| r.retry_at.as_ref()).map(|t| t.0);
            let until = retry.map(|t| t.min(clock::after(x.at, x.timeout)));
            return Some((
                reasons::DISRUPTION_BUDGET,
                text::hold_message(&hold, Some(x), until),
            ));
        }
        _ => {}
    }
    if !seen.dry_run || status.ladder.is_none() {
        return None;
    }
    let would = last.filter(|r| r.dry_run).map(|r| {
        (
            text::step(r.action.as_str(), r.step, seen.steps),
            r.message.clone().unwrap_or_default(),
        )
    });
    Some((
        reasons::DRY_RUN,
        text::dry_run_blocked(
            would
                .as_ref()
                .map(|(what, message)| (what.as_str(), message.as_str())),
        ),
    ))
}

fn ready_reason(status: &AppHealthPolicyStatus) -> Option<&str> {
    condition(status, conditions::READY).map(|c| c.reason.as_str())
}

fn blocked_reason(status: &AppHealthPolicyStatus) -> Option<&str> {
    condition(status, conditions::REMEDIATION_BLOCKED)
        .filter(|c| c.status == "True")
        .map(|c| c.reason.as_str())
}

#[cfg(test)]
mod tests;
