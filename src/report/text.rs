//! What people read: the reason and message of each hold, in sentences an on-call engineer can
//! act on, saying when the hold ends.

use jiff::Timestamp;

use super::reasons;
use crate::{
    api::format_duration,
    plan::{Hold, Remediation},
};

/// The condition and Event reason of a hold.
pub fn reason(hold: &Hold) -> &'static str {
    match hold {
        Hold::Suspended => reasons::SUSPENDED,
        Hold::NoRemediation => reasons::NO_REMEDIATION,
        Hold::LadderExhausted { .. } => reasons::LADDER_EXHAUSTED,
        Hold::Cooldown { .. } => reasons::COOLDOWN,
        Hold::MinPodAge { .. } => reasons::MIN_POD_AGE,
        Hold::CircuitOpen { .. } => reasons::CIRCUIT_OPEN,
        Hold::StormGuard { .. } => reasons::STORM_GUARD,
        Hold::RolloutInProgress { .. } => reasons::ROLLOUT_IN_PROGRESS,
        Hold::DisruptionBudget { .. } => reasons::DISRUPTION_BUDGET,
        Hold::TargetBusy { .. } => reasons::TARGET_BUSY,
        Hold::GlobalLimit { .. } => reasons::GLOBAL_LIMIT,
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
pub fn hold_message(hold: &Hold, r: Option<&Remediation>, until: Option<Timestamp>) -> String {
    let what = r.map_or_else(|| "the next step".to_owned(), describe);
    match hold {
        Hold::Suspended => {
            "spec.suspend is true: probing and remediation are stopped until it is cleared.".into()
        }
        Hold::NoRemediation => {
            "The target is unhealthy and spec.remediation.steps is empty, so the operator \
                                only reports; add remediation steps to let it act."
                .into()
        }
        Hold::LadderExhausted { steps } => format!(
            "All {steps} remediation steps ran and the target is still unhealthy; the operator will not act \
             again until it recovers. A person needs to look at it."
        ),
        Hold::Cooldown { last, cooldown } => format!(
            "The target is unhealthy, but the last remediation ran at {last} and the cooldown of {} holds \
             {what} back{}.",
            format_duration(*cooldown),
            ends(until)
        ),
        Hold::MinPodAge { pod, min } => format!(
            "{what} would restart pod {pod}, which is younger than spec.remediation.minPodAge ({}); it waits{}.",
            format_duration(*min),
            ends(until)
        ),
        Hold::CircuitOpen { count, window } => format!(
            "The circuit breaker is open: {count} remediations ran within {} \
             (spec.remediation.maxRemediations), so {what} waits{}. Repeated remediations are not fixing \
             the target; a person should look at it.",
            format_duration(*window),
            ends(until)
        ),
        Hold::StormGuard {
            unhealthy,
            pods,
            max_percent,
        } => format!(
            "{unhealthy} of {pods} pods are unhealthy or failing their probes, more than spec.remediation.maxUnhealthyPercent \
             ({max_percent}%): the cause is not one bad pod, so {what} is skipped; steps that do not restart \
             pods still run."
        ),
        Hold::RolloutInProgress { detail } => {
            format!("The workload is mid-rollout ({detail}), so {what} waits until the rollout completes.")
        }
        Hold::DisruptionBudget { detail } => {
            format!(
                "A PodDisruptionBudget refused {what} ({detail}); it is tried again{}.",
                ends(until)
            )
        }
        Hold::TargetBusy { policy } => format!(
            "AppHealthPolicy {policy} is already remediating the same workload, so {what} waits for its \
             ladder to end (checked again{}).",
            ends(until)
        ),
        Hold::GlobalLimit { active, max } => format!(
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
