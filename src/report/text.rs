//! What people read: the reason and message of each hold, in sentences an on-call engineer can
//! act on, saying when the hold ends.

use jiff::Timestamp;

use super::reasons;
use crate::{
    api::format_duration,
    plan::{Guard, Plan, Remediation},
};

/// The condition and Event reason of a hold.
pub fn reason(guard: &Guard) -> &'static str {
    match guard {
        Guard::Suspended => reasons::SUSPENDED,
        Guard::NoRemediation => reasons::NO_REMEDIATION,
        Guard::LadderExhausted { .. } => reasons::LADDER_EXHAUSTED,
        Guard::Cooldown { .. } => reasons::COOLDOWN,
        Guard::MinPodAge { .. } => reasons::MIN_POD_AGE,
        Guard::CircuitOpen { .. } => reasons::CIRCUIT_OPEN,
        Guard::StormGuard { .. } => reasons::STORM_GUARD,
        Guard::RolloutInProgress { .. } => reasons::ROLLOUT_IN_PROGRESS,
        Guard::DisruptionBudget { .. } => reasons::DISRUPTION_BUDGET,
        Guard::TargetBusy { .. } => reasons::TARGET_BUSY,
        Guard::GlobalLimit { .. } => reasons::GLOBAL_LIMIT,
    }
}

/// "RestartPods (step 2 of 3)".
pub fn describe(r: &Remediation) -> String {
    format!("{} (step {} of {})", r.action().as_str(), r.step, r.of)
}

fn ends(until: Option<Timestamp>) -> String {
    until.map_or_else(String::new, |u| format!(" until {u}"))
}

/// The RemediationBlocked message of a hold.
pub fn hold_message(guard: &Guard, r: Option<&Remediation>, until: Option<Timestamp>) -> String {
    let what = r.map_or_else(|| "the next step".to_owned(), describe);
    match guard {
        Guard::Suspended => {
            "spec.suspend is true: probing and remediation are stopped until it is cleared.".into()
        }
        Guard::NoRemediation => {
            "The target is unhealthy and spec.remediation.steps is empty, so the operator \
                                only reports; add remediation steps to let it act."
                .into()
        }
        Guard::LadderExhausted { steps } => format!(
            "All {steps} remediation steps ran and the target is still unhealthy; the operator will not act \
             again until it recovers. A person needs to look at it."
        ),
        Guard::Cooldown { last, cooldown } => format!(
            "The target is unhealthy, but the last remediation ran at {last} and the cooldown of {} holds \
             {what} back{}.",
            format_duration(*cooldown),
            ends(until)
        ),
        Guard::MinPodAge { pod, min } => format!(
            "{what} would restart pod {pod}, which is younger than spec.remediation.minPodAge ({}); it waits{}.",
            format_duration(*min),
            ends(until)
        ),
        Guard::CircuitOpen { count, window } => format!(
            "The circuit breaker is open: {count} remediations ran within {} \
             (spec.remediation.maxRemediations), so {what} waits{}. Repeated remediations are not fixing \
             the target; a person should look at it.",
            format_duration(*window),
            ends(until)
        ),
        Guard::StormGuard {
            unhealthy,
            pods,
            max_percent,
        } => format!(
            "{unhealthy} of {pods} pods are unhealthy or failing their probes, more than spec.remediation.maxUnhealthyPercent \
             ({max_percent}%): the cause is not one bad pod, so {what} is skipped; steps that do not restart \
             pods still run."
        ),
        Guard::RolloutInProgress { detail } => {
            format!("The workload is mid-rollout ({detail}), so {what} waits until the rollout completes.")
        }
        Guard::DisruptionBudget { detail } => {
            format!(
                "A PodDisruptionBudget refused {what} ({detail}); it is tried again{}.",
                ends(until)
            )
        }
        Guard::TargetBusy { policy } => format!(
            "AppHealthPolicy {policy} is already remediating the same workload, so {what} waits for its \
             ladder to end (checked again{}).",
            ends(until)
        ),
        Guard::GlobalLimit { active, max } => format!(
            "{active} remediation ladders are acting in the cluster, the operator's limit \
             (--max-concurrent-remediations {max}), so {what} waits (checked again{}).",
            ends(until)
        ),
    }
}

/// The Remediating message while a step gets its chance.
pub fn waiting(step: u32, action: &str, until: Option<Timestamp>) -> String {
    match until {
        Some(until) => format!(
            "Ran step {step} ({action}); waiting until {until} for the target to recover before escalating."
        ),
        None => format!("Ran step {step} ({action}); waiting for a verdict on the restarted target."),
    }
}

/// What check mode records as the result of a remediation it did not run.
pub const CHECK_NEVER_ACTS: &str = "check mode never acts";

/// What check mode says about a plan, on `target` (a line of its printout; empty when idle).
pub fn decision(plan: &Plan, target: &str) -> String {
    match plan {
        Plan::Idle { .. } => String::new(),
        Plan::Recovered { step } => format!("recovered after step {step}; the ladder is closed"),
        Plan::Wait { step, until } => match until {
            Some(until) => format!(
                "waiting for recovery after step {step} until {}",
                until.strftime("%H:%M:%S")
            ),
            None => format!("waiting for a verdict after step {step}"),
        },
        Plan::Act(r) | Plan::Resume(r) => {
            format!("would run {} on {target}: {CHECK_NEVER_ACTS}", describe(r))
        }
        Plan::Hold { held, remediation } => format!(
            "held back ({}): {}",
            reason(&held.guard),
            hold_message(&held.guard, remediation.as_ref(), held.until)
        ),
        Plan::Skip { held, remediation } => format!(
            "skipped ({}): {}",
            reason(&held.guard),
            hold_message(&held.guard, Some(remediation), held.until)
        ),
        Plan::Restore(raised) => format!(
            "would restore {} {} to {}",
            raised.kind, raised.name, raised.original
        ),
    }
}

/// Check mode's Ready message: it probes one URL.
pub fn check_probing(url: &str) -> String {
    format!("Probing {url}.")
}
