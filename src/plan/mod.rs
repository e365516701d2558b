//! Plan: ladder position + guards → what to do next. Pure: one [`PlanInput`] of plain data and the
//! time in, one [`Plan`] out. The plan names a typed [`Remediation`] (which action, on which pods,
//! with what parameters); what a guard's hold means for people is worded in `report`.

mod guards;
mod settings;

use std::time::Duration;

use jiff::Timestamp;

pub use guards::GUARDS;

/// What the plan names: defined with the actions, so that each action's file says what it is.
pub use crate::act::Remediation;

pub use settings::{RemediationSettings, StepSettings};

use crate::{
    act::StepParams,
    clock,
    record::{Entry, Health, Raised, Recorded, RemediationResult},
};

/// What the plan knows about one pod of the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    pub name: String,
    /// When the pod was created (its age is measured from here).
    pub created: Option<Timestamp>,
    pub ready: bool,
    /// Judged Unhealthy by the latest verdict.
    pub unhealthy: bool,
    /// Not judged Unhealthy, but its latest probe failed.
    pub failing: bool,
}

/// Ladders acting elsewhere in the operator, for TargetBusy and GlobalLimit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Budget {
    /// Another policy whose ladder is acting on the same workload.
    pub busy_with: Option<String>,
    /// Ladders of other policies acting right now.
    pub active_elsewhere: u32,
    /// The operator-wide cap on ladders acting at once.
    pub max: Option<u32>,
    /// Ladders acting on the other workloads of the same targetSelector policy.
    pub siblings_acting: u32,
    /// That policy's cap (spec.remediation.maxConcurrent), unless this ladder already acts.
    pub policy_max: Option<u32>,
    /// Another policy remediates this workload by precedence (a policy naming it, a selector of
    /// higher priority): this one only observes it.
    pub owned_by: Option<String>,
}

/// Everything the planner looks at.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub settings: &'a RemediationSettings,
    pub suspended: bool,
    pub health: Health,
    /// The target's pods (empty for a Service probe with no pod signals).
    pub pods: &'a [PodFacts],
    /// Recorded state: ladder, history, scale restore, verdict.
    pub recorded: &'a Recorded,
    /// Why the workload is mid-rollout, if it is.
    pub rollout: Option<String>,
    pub budget: Budget,
    pub now: Timestamp,
}

/// The guard that holds a remediation back (or skips it), with the facts it judged by; `report`
/// words them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    Suspended,
    NoRemediation,
    LadderExhausted {
        steps: u32,
    },
    Cooldown {
        last: Timestamp,
        cooldown: Duration,
    },
    MinPodAge {
        pod: String,
        min: Duration,
    },
    CircuitOpen {
        count: u32,
        window: Duration,
    },
    StormGuard {
        unhealthy: u32,
        pods: u32,
        max_percent: u32,
    },
    RolloutInProgress {
        detail: String,
    },
    DisruptionBudget {
        detail: String,
    },
    TargetBusy {
        policy: String,
    },
    OwnedElsewhere {
        policy: String,
    },
    PolicyLimit {
        active: u32,
        max: u32,
    },
    GlobalLimit {
        active: u32,
        max: u32,
    },
}

/// A guard's verdict on a remediation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub guard: Guard,
    /// When to look again (None: on the next change).
    pub until: Option<Timestamp>,
    /// The step does not apply now and the ladder moves on (StormGuard), rather than waiting.
    pub skip: bool,
}

/// What the operator should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do and no ladder in progress; look again at `until` (a scale restore falls due).
    Idle { until: Option<Timestamp> },
    /// The target is healthy again after a ladder: close it.
    Recovered { step: u32 },
    /// A step ran; wait for recovery until `until` (None: until a verdict arrives).
    Wait { step: u32, until: Option<Timestamp> },
    /// Run this remediation now.
    Act(Remediation),
    /// Complete a remediation recorded as Pending by an operator that stopped before its result.
    Resume(Remediation),
    /// A guard holds the ladder back; `held` is what would run.
    Hold {
        held: Hold,
        remediation: Option<Remediation>,
    },
    /// A guard skips this step; the ladder moves on to the next.
    Skip { held: Hold, remediation: Remediation },
    /// Put back what ScaleOut raised: the target has been healthy long enough.
    Restore(Raised),
}

impl Plan {
    /// The time at which the plan should be looked at again, if any.
    pub fn revisit_at(&self) -> Option<Timestamp> {
        match self {
            Self::Idle { until } | Self::Wait { until, .. } => *until,
            Self::Hold { held, .. } => held.until,
            Self::Skip { remediation, .. } => Some(remediation.at),
            _ => None,
        }
    }
}

/// The most recent record of the current ladder step, if it belongs to it.
fn current_record<'a>(input: &'a PlanInput) -> Option<&'a Entry> {
    let ladder = input.recorded.ladder.as_ref()?;
    input
        .recorded
        .history
        .first()
        .filter(|r| r.step == ladder.step && r.at >= ladder.started_at)
}

/// Decides the next remediation for a target.
pub fn plan(input: &PlanInput) -> Plan {
    let settings = input.settings;
    let now = input.now;
    if input.suspended {
        return hold(Guard::Suspended, None, None);
    }
    // An intent recorded by an operator that stopped before its result is settled first, whatever
    // the health: its mark says whether it ran, and if it did not, it runs now (decided is decided;
    // none is lost).
    if let Some(pending) = input
        .recorded
        .history
        .first()
        .filter(|r| r.result == RemediationResult::Pending)
        && let Some(r) = resumed(input, pending)
    {
        return Plan::Resume(r);
    }
    let ladder = input.recorded.ladder.as_ref();
    match (input.health, ladder) {
        (Health::Healthy, Some(l)) => return Plan::Recovered { step: l.step },
        (Health::Unknown, Some(l)) => {
            return Plan::Wait {
                step: l.step,
                until: None,
            };
        }
        (Health::Healthy | Health::Unknown, None) => return idle(input),
        (Health::Unhealthy, _) => {}
    }
    if settings.steps.is_empty() {
        return hold(Guard::NoRemediation, None, None);
    }
    let next = match next_step(input) {
        Ok(next) => next,
        Err((step, deadline)) => {
            return Plan::Wait {
                step,
                until: Some(deadline),
            };
        }
    };
    let of = u32::try_from(settings.steps.len()).unwrap_or(u32::MAX);
    let Some(step) = settings.step(next) else {
        return hold(Guard::LadderExhausted { steps: of }, None, None);
    };
    let retry = current_record(input).filter(|r| r.step == next && r.result == RemediationResult::Held);
    let r = Remediation {
        step: next,
        of,
        params: step.params.clone(),
        timeout: step.timeout,
        pods: pods_for(input, &step.params),
        capture_first: Vec::new(),
        at: retry.map_or(now, |r| r.at),
        dry_run: settings.dry_run,
    };
    let r = Remediation {
        capture_first: capture_first(input, &r),
        ..r
    };
    for guard in GUARDS {
        if let Some(held) = guard(input, &r) {
            return if held.skip {
                Plan::Skip { held, remediation: r }
            } else {
                Plan::Hold {
                    held,
                    remediation: Some(r),
                }
            };
        }
    }
    Plan::Act(r)
}

/// The step to run next, or (the current step, its deadline) while it has its chance.
fn next_step(input: &PlanInput) -> Result<u32, (u32, Timestamp)> {
    let Some(l) = input.recorded.ladder.as_ref() else {
        return Ok(1);
    };
    let Some(record) = current_record(input) else {
        return Ok(l.step + 1);
    };
    let timeout = input.settings.step(l.step).map_or(Duration::ZERO, |s| s.timeout);
    let deadline = clock::after(record.at, timeout);
    match record.result {
        RemediationResult::Skipped => Ok(l.step + 1),
        // Refused by a budget: tried again until the step's time is up, then escalate.
        RemediationResult::Held if input.now < deadline => Ok(l.step),
        _ if input.now < deadline => Err((l.step, deadline)),
        _ => Ok(l.step + 1),
    }
}

fn hold(guard: Guard, until: Option<Timestamp>, remediation: Option<Remediation>) -> Plan {
    Plan::Hold {
        held: Hold {
            guard,
            until,
            skip: false,
        },
        remediation,
    }
}

/// No ladder: idle, unless what ScaleOut raised is due to be put back.
fn idle(input: &PlanInput) -> Plan {
    let Some(restore) = &input.recorded.raised else {
        return Plan::Idle { until: None };
    };
    let healthy_since = input
        .recorded
        .verdict
        .filter(|(health, _)| *health == Health::Healthy && input.health == Health::Healthy)
        .map(|(_, since)| since);
    let Some(since) = healthy_since else {
        return Plan::Idle { until: None };
    };
    let due = clock::after(since, restore.restore_after);
    if input.now >= due {
        Plan::Restore(restore.clone())
    } else {
        Plan::Idle { until: Some(due) }
    }
}

/// The remediation a Pending record stands for, with the parameters of its step (None if the
/// policy no longer has that action at that step: then it is not resumed).
fn resumed(input: &PlanInput, record: &Entry) -> Option<Remediation> {
    let step = input.settings.step(record.step)?;
    (step.action() == record.action).then(|| Remediation {
        step: record.step,
        of: u32::try_from(input.settings.steps.len()).unwrap_or(u32::MAX),
        params: step.params.clone(),
        timeout: step.timeout,
        pods: record.pods.clone(),
        capture_first: Vec::new(),
        at: record.at,
        dry_run: record.dry_run,
    })
}

/// The pods an action concerns: for RestartPods, up to maxUnavailable unhealthy pods old enough to
/// restart (not-ready ones first: evicting them costs no availability), or, when none is old
/// enough, the young ones so that the MinPodAge guard can say how long to wait; for
/// CollectDiagnostics, the unhealthy pods and those failing their probes (an incident's evidence
/// is on all of them); for every other action, all unhealthy pods.
fn pods_for(input: &PlanInput, params: &StepParams) -> Vec<String> {
    if let StepParams::CollectDiagnostics(_) = params {
        return input
            .pods
            .iter()
            .filter(|p| p.unhealthy || p.failing)
            .map(|p| p.name.clone())
            .collect();
    }
    let mut unhealthy: Vec<&PodFacts> = input.pods.iter().filter(|p| p.unhealthy).collect();
    let StepParams::RestartPods(p) = params else {
        return unhealthy.iter().map(|p| p.name.clone()).collect();
    };
    unhealthy.sort_by_key(|p| (p.ready, p.name.clone()));
    let old_enough: Vec<&&PodFacts> = unhealthy
        .iter()
        .filter(|p| guards::age(p, input.now) >= input.settings.min_pod_age)
        .collect();
    let chosen: Vec<String> = if old_enough.is_empty() {
        unhealthy.iter().map(|p| p.name.clone()).collect()
    } else {
        old_enough.iter().map(|p| p.name.clone()).collect()
    };
    chosen
        .into_iter()
        .take(usize::try_from(p.max_unavailable).unwrap_or(usize::MAX))
        .collect()
}

/// When the ladder has a CollectDiagnostics step, the pods this remediation restarts that have not
/// been captured since the ladder started.
fn capture_first(input: &PlanInput, r: &Remediation) -> Vec<String> {
    if !r.descriptor().replaces_pods || input.settings.collects_diagnostics().is_none() {
        return Vec::new();
    }
    let since = input.recorded.ladder.as_ref().map_or(r.at, |l| l.started_at);
    r.pods
        .iter()
        .filter(|pod| {
            !input
                .recorded
                .captures
                .iter()
                .any(|d| d.at >= since && d.pods.contains(pod))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
