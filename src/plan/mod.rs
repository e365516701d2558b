//! Plan: ladder position + guards → what to do next. Pure: the caller passes the verdict, the
//! ladder state read from status, and the time.

use jiff::Timestamp;

use crate::{
    api::{
        Action, Health, format_duration, reasons,
        validate::{Settings, StepSettings},
    },
    clock,
};

/// Where the escalation ladder stands, as recorded in status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LadderState {
    /// The step that ran most recently in the current ladder, counting from 1.
    pub step: Option<u32>,
    /// When the most recent remediation ran (any ladder), for the cooldown.
    pub last_action_at: Option<Timestamp>,
}

/// What the operator should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do and no ladder in progress.
    Idle,
    /// The target is healthy again after a ladder: close it.
    Recovered { step: u32 },
    /// A step ran; wait for recovery until `until` (None: until a verdict arrives).
    Wait { step: u32, until: Option<Timestamp> },
    /// Run this step now.
    Act { step: u32, action: Action },
    /// A guard holds an action back; `reason` is a `reasons::*` constant.
    Blocked {
        reason: &'static str,
        message: String,
        until: Option<Timestamp>,
    },
}

impl Plan {
    /// The time at which the plan should be looked at again, if any.
    pub fn revisit_at(&self) -> Option<Timestamp> {
        match self {
            Self::Wait { until, .. } | Self::Blocked { until, .. } => *until,
            _ => None,
        }
    }
}

/// Decides the next remediation for a target.
pub fn plan(settings: &Settings, health: Health, ladder: &LadderState, now: Timestamp) -> Plan {
    let steps = &settings.steps;
    match (health, ladder.step) {
        (Health::Healthy, Some(step)) => return Plan::Recovered { step },
        (Health::Unknown, Some(step)) => return Plan::Wait { step, until: None },
        (Health::Healthy | Health::Unknown, None) => return Plan::Idle,
        (Health::Unhealthy, _) => {}
    }
    if steps.is_empty() {
        return Plan::Blocked {
            reason: reasons::NO_REMEDIATION,
            message: "The target is unhealthy and spec.remediation.steps is empty, so the operator only \
                      reports; add remediation steps to let it act."
                .into(),
            until: None,
        };
    }

    // Escalate only after the current step has had its chance.
    let next_index = match ladder.step {
        None => 0,
        Some(step) => {
            let ran = step_settings(steps, step);
            if let (Some(ran), Some(at)) = (ran, ladder.last_action_at) {
                let deadline = clock::after(at, ran.timeout);
                if now < deadline {
                    return Plan::Wait {
                        step,
                        until: Some(deadline),
                    };
                }
            }
            step as usize
        }
    };
    let Some(next) = steps.get(next_index) else {
        let step = ladder.step.unwrap_or_default();
        return Plan::Blocked {
            reason: reasons::LADDER_EXHAUSTED,
            message: format!(
                "All {} remediation steps ran and the target is still unhealthy; the operator will not act \
                 again until it recovers. A person needs to look at it.",
                step
            ),
            until: None,
        };
    };
    let step = u32::try_from(next_index + 1).unwrap_or(u32::MAX);
    let describe = format!("{} (step {step} of {})", next.action.as_str(), steps.len());

    if let Some(last) = ladder.last_action_at {
        let ready_at = clock::after(last, settings.cooldown);
        if now < ready_at {
            return Plan::Blocked {
                reason: reasons::COOLDOWN,
                message: format!(
                    "The target is unhealthy, but the last remediation ran at {last} and the cooldown of {} \
                     holds {describe} back until {ready_at}.",
                    format_duration(settings.cooldown)
                ),
                until: Some(ready_at),
            };
        }
    }
    if settings.dry_run {
        return Plan::Blocked {
            reason: reasons::DRY_RUN,
            message: format!(
                "The target is unhealthy and the operator would run {describe}, but spec.remediation.dryRun \
                 is set, so nothing was changed."
            ),
            until: None,
        };
    }
    Plan::Act {
        step,
        action: next.action,
    }
}

fn step_settings(steps: &[StepSettings], step: u32) -> Option<&StepSettings> {
    steps.get((step as usize).checked_sub(1)?)
}

#[cfg(test)]
mod tests;
