//! The desired status and the Events to publish: a pure function of the old status, what was
//! observed, the plan, what the act stage did, and the time. The controller writes what this
//! returns only when it differs; check mode runs the same function to keep its ladder.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{CondStatus, condition, reasons, set_condition, text};
use crate::clock;
use crate::{
    api::{
        AppHealthPolicyStatus, DiagnosticsRef, HISTORY_LIMIT, Health, Ladder, RemediationRecord,
        RemediationResult, ScaleRestore, TargetCounts, Verdict, conditions,
    },
    evaluate::TargetVerdict,
    plan::{Hold, Plan},
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

/// Whether the policy is being probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready=True.
    Probing { message: String },
    /// Ready=False: nothing can be probed right now (no ready pods, no Service), but the policy is
    /// valid and its target exists.
    NoTargets { message: String },
    /// Ready=False and probing stopped: the verdict is dropped. An Event carries `event` when the
    /// reason is new.
    Stopped {
        reason: &'static str,
        message: String,
        event: String,
    },
}

/// What the act stage did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The record to fold into the ladder and history (None for a scale restore).
    pub record: Option<RemediationRecord>,
    /// The Event reason of the action that ran (each action names its own).
    pub action_reason: &'static str,
    /// Completed a remediation another operator instance (or a crashed one) had started.
    pub resumed: bool,
    pub effects: Vec<Effect>,
}

/// Side results of an action that status keeps.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// ScaleOut raised these values.
    ScaleRecorded(ScaleRestore),
    /// The raised values were put back (`restored`) or left alone because someone changed them.
    ScaleRestoreDone { restored: bool, message: String },
    /// CollectDiagnostics stored a capture.
    Diagnostics(DiagnosticsRef),
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
                "Not probing, so there is no verdict; see the Ready condition.".into(),
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
        Readiness::NoTargets { message } => {
            cond(
                &mut status,
                conditions::READY,
                CondStatus::False,
                reasons::NO_PODS,
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
        evidence: v.evidence.clone(),
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

/// Folds what the act stage did into the ladder, history and side records: the one place the
/// ladder advances, for the controller and check mode alike.
fn fold(
    status: &mut AppHealthPolicyStatus,
    old: &AppHealthPolicyStatus,
    seen: &Observation,
    plan: Option<&Plan>,
    outcome: &Outcome,
    events: &mut Vec<EventIntent>,
) {
    for effect in &outcome.effects {
        match effect {
            Effect::ScaleRecorded(raised) => status.scale_restore = Some(raised.clone()),
            Effect::ScaleRestoreDone { restored, message } => {
                status.scale_restore = None;
                let reason = if *restored {
                    reasons::SCALE_RESTORED
                } else {
                    reasons::SCALE_RESTORE_SKIPPED
                };
                events.push(EventIntent::new(reason, !restored, "ScaleOut", message.clone()));
            }
            Effect::Diagnostics(capture) => {
                status.diagnostics.retain(|d| d.config_map != capture.config_map);
                status.diagnostics.insert(0, capture.clone());
                status
                    .diagnostics
                    .truncate(usize::try_from(seen.diagnostics_retention).unwrap_or(usize::MAX));
            }
        }
    }
    let Some(record) = &outcome.record else {
        return;
    };
    // The same remediation (its intent, or a held step tried again) replaces its entry.
    let same =
        |h: &RemediationRecord| h.step == record.step && h.action == record.action && h.at == record.at;
    if status.history.first().is_some_and(same) {
        status.history.remove(0);
    }
    status.history.insert(0, record.clone());
    status.history.truncate(HISTORY_LIMIT);
    status.ladder = Some(match &status.ladder {
        Some(l) if record.step > 1 || l.step == record.step => Ladder {
            step: record.step,
            started_at: l.started_at.clone(),
            exhausted: false,
        },
        _ => Ladder {
            step: record.step,
            started_at: record.at.clone(),
            exhausted: false,
        },
    });

    let summary = seen
        .verdict
        .as_ref()
        .map(TargetVerdict::summary)
        .unwrap_or_default();
    let action = record.action.as_str();
    let what = format!("{action} (step {} of {})", record.step, seen.steps);
    let message = record.message.clone().unwrap_or_default();
    let event = match record.result {
        RemediationResult::Pending => None,
        RemediationResult::Succeeded if record.dry_run => Some(EventIntent::new(
            reasons::DRY_RUN,
            false,
            "DryRun",
            format!("Dry run: {what} {message} {summary}"),
        )),
        RemediationResult::Succeeded if outcome.resumed => Some(EventIntent::new(
            reasons::REMEDIATION_RESUMED,
            false,
            "Resume",
            message,
        )),
        RemediationResult::Succeeded => Some(EventIntent::new(
            outcome.action_reason,
            false,
            "Remediate",
            format!(
                "Ran {what} on {} because the target is unhealthy. {summary} {message}",
                seen.workload
            ),
        )),
        RemediationResult::Failed => Some(EventIntent::new(
            reasons::REMEDIATION_FAILED,
            true,
            "Remediate",
            message,
        )),
        RemediationResult::Skipped => {
            let reason = match plan {
                Some(Plan::Skip { held, .. }) => text::reason(&held.hold),
                _ => reasons::STEP_SKIPPED,
            };
            Some(EventIntent::new(
                reason,
                true,
                "Plan",
                format!("Skipped {what}: {message}"),
            ))
        }
        RemediationResult::Held => {
            let again = old
                .history
                .first()
                .is_some_and(|h| same(h) && h.result == RemediationResult::Held);
            (!again).then(|| {
                EventIntent::new(
                    reasons::DISRUPTION_BUDGET,
                    true,
                    "Remediate",
                    format!("{what} was refused and is tried again later: {message}"),
                )
            })
        }
    };
    events.extend(event);
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
    let g = seen.generation;
    let cond = |status: &mut AppHealthPolicyStatus, t: &str, s: CondStatus, reason: &str, m: String| {
        set_condition(&mut status.conditions, t, s, reason, m, g, now);
    };
    let last = status.history.first().cloned();
    let mut blocked: Option<(&'static str, String)> = None;
    match plan {
        None => {}
        Some(Plan::Recovered { step }) => {
            status.ladder = None;
            cond(
                status,
                conditions::REMEDIATING,
                CondStatus::False,
                reasons::RECOVERED,
                format!("The target recovered after remediation step {step}."),
            );
        }
        Some(Plan::Hold { held, remediation }) => {
            if let (Hold::LadderExhausted { .. }, Some(l)) = (&held.hold, status.ladder.as_mut()) {
                l.exhausted = true;
            }
            blocked = Some((
                text::reason(&held.hold),
                text::hold_message(&held.hold, remediation.as_ref(), held.until),
            ));
        }
        Some(Plan::Skip { held, remediation }) => {
            blocked = Some((
                text::reason(&held.hold),
                text::hold_message(&held.hold, Some(remediation), held.until),
            ));
        }
        Some(Plan::Wait { step, until }) => {
            let action = last.as_ref().map_or("the last action", |r| r.action.as_str());
            if !seen.dry_run {
                cond(
                    status,
                    conditions::REMEDIATING,
                    CondStatus::True,
                    reasons::LADDER_IN_PROGRESS,
                    text::waiting(*step, action, *until),
                );
            }
        }
        // Refused by a budget just now: held from this write on (its record has its own Event).
        Some(Plan::Act(x) | Plan::Resume(x))
            if last.as_ref().is_some_and(|r| r.result == RemediationResult::Held) =>
        {
            let record = last.as_ref();
            let hold = Hold::DisruptionBudget {
                detail: record.and_then(|r| r.message.clone()).unwrap_or_default(),
            };
            let retry = record.and_then(|r| r.retry_at.as_ref()).map(|t| t.0);
            let until = retry.map(|t| t.min(clock::after(x.at, x.timeout)));
            blocked = Some((
                reasons::DISRUPTION_BUDGET,
                text::hold_message(&hold, Some(x), until),
            ));
        }
        Some(Plan::Act(_) | Plan::Resume(_) | Plan::Idle { .. } | Plan::Restore(_)) => {}
    }
    if seen.dry_run && blocked.is_none() && status.ladder.is_some() {
        let would = last
            .as_ref()
            .filter(|r| r.dry_run)
            .map(|r| {
                format!(
                    ": {} (step {} of {}) {}",
                    r.action.as_str(),
                    r.step,
                    seen.steps,
                    r.message.as_deref().unwrap_or_default()
                )
            })
            .unwrap_or_else(|| ".".into());
        blocked = Some((
            reasons::DRY_RUN,
            format!("spec.remediation.dryRun is set, so nothing is changed{would}"),
        ));
    }

    // Remediating: True from the first real action until the ladder closes.
    let acting = status.ladder.is_some() && !seen.dry_run;
    if !matches!(plan, Some(Plan::Recovered { .. } | Plan::Wait { .. })) {
        let current =
            condition(status, conditions::REMEDIATING).map(|c| (c.status.clone(), c.reason.clone()));
        if acting {
            let message = match (&last, plan) {
                (Some(r), Some(Plan::Act(x) | Plan::Resume(x))) if r.result == RemediationResult::Pending => {
                    format!(
                        "Running step {} of {} ({}).",
                        r.step,
                        seen.steps,
                        r.action.as_str()
                    )
                }
                // What the next reconcile's Wait says too, so it costs no write.
                (Some(r), Some(Plan::Act(x) | Plan::Resume(x)))
                    if matches!(r.result, RemediationResult::Succeeded | RemediationResult::Failed) =>
                {
                    text::waiting(r.step, r.action.as_str(), Some(clock::after(r.at.0, x.timeout)))
                }
                _ => "A remediation ladder is in progress.".to_owned(),
            };
            cond(
                status,
                conditions::REMEDIATING,
                CondStatus::True,
                reasons::LADDER_IN_PROGRESS,
                message,
            );
        } else if current.is_none_or(|(s, _)| s != "False") {
            // A False condition stays as it is: "Recovered" stays readable after the ladder closed.
            cond(
                status,
                conditions::REMEDIATING,
                CondStatus::False,
                reasons::IDLE,
                "No remediation is in progress.".into(),
            );
        }
    }

    match blocked {
        Some((reason, message)) => {
            if blocked_reason(old) != Some(reason) {
                let summary = seen
                    .verdict
                    .as_ref()
                    .map(TargetVerdict::summary)
                    .unwrap_or_default();
                let warning = reason != reasons::DRY_RUN;
                // A skip has its own Event from the record it leaves.
                let has_own_event = matches!(plan, Some(Plan::Skip { .. } | Plan::Act(_) | Plan::Resume(_)));
                if !has_own_event && reason != reasons::DRY_RUN {
                    events.push(EventIntent::new(
                        reason,
                        warning,
                        "Plan",
                        format!("{message} {summary}"),
                    ));
                }
            }
            cond(
                status,
                conditions::REMEDIATION_BLOCKED,
                CondStatus::True,
                reason,
                message,
            );
        }
        None => cond(
            status,
            conditions::REMEDIATION_BLOCKED,
            CondStatus::False,
            reasons::NOT_BLOCKED,
            "No guard is holding a remediation back.".into(),
        ),
    }
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
