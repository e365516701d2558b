//! What people read: the reason and message of each hold, in sentences an on-call engineer can
//! act on, saying when the hold ends; the Ready messages (what is probed, or why nothing is);
//! check mode's lines.

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
        Guard::OwnedElsewhere { .. } => reasons::OWNED_ELSEWHERE,
        Guard::PolicyLimit { .. } => reasons::POLICY_LIMIT,
        Guard::GlobalLimit { .. } => reasons::GLOBAL_LIMIT,
    }
}

/// "RestartPods (step 2 of 3)".
pub fn describe(r: &Remediation) -> String {
    step(r.action().as_str(), r.step, r.of)
}

fn ends(until: Option<Timestamp>) -> String {
    until.map_or_else(String::new, |u| format!(" until {u}"))
}

/// The RemediationBlocked message of a hold.
pub fn hold_message(guard: &Guard, r: Option<&Remediation>, until: Option<Timestamp>) -> String {
    let what = r.map_or_else(|| "the next step".to_owned(), describe);
    match guard {
        Guard::Suspended => SUSPENDED.into(),
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
        Guard::OwnedElsewhere { policy } => format!(
            "{} {policy} remediates this workload (a policy naming it by targetRef, a namespaced \
             policy over a cluster one, or a selector of higher priority, takes precedence), so this \
             policy only observes it and {what} is not taken.",
            // `namespace/name`, or a cluster policy's bare name.
            if policy.contains('/') {
                "AppHealthPolicy"
            } else {
                "ClusterAppHealthPolicy"
            }
        ),
        Guard::TargetBusy { policy } => format!(
            "AppHealthPolicy {policy} is already remediating the same workload, so {what} waits for its \
             ladder to end (checked again{}).",
            ends(until)
        ),
        Guard::PolicyLimit { active, max } => format!(
            "{active} of this policy's workloads have a remediation ladder acting, its limit \
             (spec.remediation.maxConcurrent {max}), so {what} waits (checked again{}).",
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
            raised.kind.as_str(),
            raised.name,
            raised.original
        ),
    }
}

/// Check mode's Ready message: it probes one URL.
pub fn check_probing(url: &str) -> String {
    format!("Probing {url}.")
}

/// Ready while probing: what, every how often, and the remarks.
pub fn probing(what: &str, period: std::time::Duration, remarks: &str) -> String {
    format!("Probing {what} every {}.{remarks}", format_duration(period))
}

/// What is probed: "3 ready pods of Deployment web", "Service web".
pub fn probed_pods(count: usize, workload: &str) -> String {
    format!("{count} ready pods of {workload}")
}

pub fn probed_service(service: &str) -> String {
    format!("Service {service}")
}

/// Ready when nothing can be probed; `refused`: the deny-list refused every address.
pub fn nothing_to_probe(via_service: bool, refused: bool, workload: &str, remarks: &str) -> String {
    let what = match (via_service, refused) {
        (false, false) => format!("No ready pods of {workload} to probe"),
        (false, true) => format!("No ready pod of {workload} is at an address the operator may probe"),
        (true, _) => "The Service cannot be probed".to_owned(),
    };
    format!("{what}.{remarks}")
}

/// A remark on Ready about an endpoint that is not probed.
pub fn not_probed(problem: &str) -> String {
    format!(" Not probed: {problem}.")
}

/// A remark on Ready: a note from the settings or the evaluator.
pub fn note(note: &str) -> String {
    format!(" Note: {note}.")
}

/// Ready when the target does not exist (stable: the retry delay is not in it, so repeated checks
/// do not rewrite status), and the Event, which says when the next check is.
pub fn target_not_found(workload: &str, namespace: &str, retry: Option<std::time::Duration>) -> String {
    match retry {
        None => format!("{workload} was not found in namespace {namespace}; probing starts when it appears."),
        Some(retry) => format!(
            "{workload} was not found in namespace {namespace}; probing starts when it appears (next check in {}).",
            format_duration(retry)
        ),
    }
}

/// Ready when a Secret or ConfigMap the probe references cannot be read.
pub fn unresolved(unresolved: &dyn std::fmt::Display) -> String {
    format!("{unresolved}. Probing starts once it can be read.")
}

/// Ready when the spec is invalid.
pub fn invalid_spec(invalid: &dyn std::fmt::Display) -> String {
    format!("The policy is invalid: {invalid}. Fix the spec; nothing is probed until then.")
}

/// Ready when the spec asks to suspend.
pub const SUSPENDED: &str = "spec.suspend is true: probing and remediation are stopped until it is cleared.";

/// Why a Service probe has nothing to probe: the Service is missing.
pub fn service_not_found(name: &str, namespace: &str) -> String {
    format!("Service {name} was not found in namespace {namespace} (spec.probe.service)")
}

/// Ready when a policy would change the workload that runs the operator.
pub fn remediates_operator(workload: &str, pod: &str, changing: &[&str]) -> String {
    format!(
        "{workload} runs this operator (pod {pod}), and spec.remediation.steps would change it ({}); \
         a policy may only observe, collect diagnostics or notify about the operator itself, or set \
         spec.remediation.dryRun.",
        changing.join(", ")
    )
}

/// Ready (and the Event) for a policy this operator version cannot decode.
pub fn unreadable(problem: &str) -> String {
    format!(
        "This operator version cannot read the policy: {problem}. Fix the policy or upgrade the operator; \
         nothing is probed until then."
    )
}

/// Healthy=Unknown while nothing is probed.
pub const NOT_PROBING: &str = "Not probing, so there is no verdict; see the Ready condition.";

/// RemediationBlocked=False.
pub const NOT_BLOCKED: &str = "No guard is holding a remediation back.";

/// Remediating=False with no ladder.
pub const IDLE: &str = "No remediation is in progress.";

/// Remediating=True when nothing more precise can be said.
pub const LADDER_IN_PROGRESS: &str = "A remediation ladder is in progress.";

/// "RestartPods (step 2 of 3)", from a record.
pub fn step(action: &str, step: u32, of: u32) -> String {
    format!("{action} (step {step} of {of})")
}

/// The DryRun Event.
pub fn dry_run_event(what: &str, message: &str, summary: &str) -> String {
    format!("Dry run: {what} {message} {summary}")
}

/// The Event of a remediation that ran.
pub fn ran(what: &str, workload: &str, summary: &str, message: &str) -> String {
    format!("Ran {what} on {workload} because the target is unhealthy. {summary} {message}")
}

/// The Event of a skipped step.
pub fn skipped(what: &str, message: &str) -> String {
    format!("Skipped {what}: {message}")
}

/// The Event of a step the cluster refused for now (a disruption budget).
pub fn refused(what: &str, message: &str) -> String {
    format!("{what} was refused and is tried again later: {message}")
}

/// An Event's message followed by the verdict's summary.
pub fn with_summary(message: &str, summary: &str) -> String {
    format!("{message} {summary}")
}

/// Remediating=False once the target recovered.
pub fn recovered(step: u32) -> String {
    format!("The target recovered after remediation step {step}.")
}

/// Remediating=True while a step runs.
pub fn running(step: u32, of: u32, action: &str) -> String {
    format!("Running step {step} of {of} ({action}).")
}

/// RemediationBlocked in a dry run, with what the last step would have done (its `step` and
/// message), if it ran.
pub fn dry_run_blocked(would: Option<(&str, &str)>) -> String {
    match would {
        Some((what, message)) => {
            format!("spec.remediation.dryRun is set, so nothing is changed: {what} {message}")
        }
        None => "spec.remediation.dryRun is set, so nothing is changed.".to_owned(),
    }
}

/// A released workload's scale-out, put back.
pub fn released_restored(workload: &str, original: i32) -> String {
    format!(
        "{workload} no longer matches the policy's selector, so what ScaleOut raised is put back: {original} replicas (or minReplicas) again."
    )
}

/// A targetSelector policy's Ready message: how many workloads it selects, and by what.
/// What a cluster policy selects: `tier=web in namespaces env=prod`, or `in every namespace`.
pub fn in_namespaces(workloads: &str, namespaces: &str) -> String {
    let workloads = if workloads.is_empty() {
        "every workload"
    } else {
        workloads
    };
    if namespaces.is_empty() {
        format!("{workloads} in every namespace")
    } else {
        format!("{workloads} in namespaces {namespaces}")
    }
}

pub fn workloads_match(count: u32, selects: &str) -> String {
    let noun = if count == 1 {
        "workload matches"
    } else {
        "workloads match"
    };
    if selects.is_empty() {
        format!("{count} {noun}")
    } else {
        format!("{count} {noun} {selects}")
    }
}

/// A targetSelector policy's Healthy message.
pub fn fleet_health(counts: &crate::api::FleetCounts) -> String {
    format!(
        "{} healthy, {} unhealthy of {} selected",
        counts.healthy, counts.unhealthy, counts.selected
    )
}

pub fn fleet_remediating(count: u32) -> String {
    match count {
        0 => IDLE.to_owned(),
        1 => "1 workload has a remediation ladder in progress.".to_owned(),
        n => format!("{n} workloads have a remediation ladder in progress."),
    }
}

pub fn fleet_blocked(count: u32) -> String {
    match count {
        0 => NOT_BLOCKED.to_owned(),
        1 => "A guard is holding back the ladder of 1 workload; see status.workloads.".to_owned(),
        n => format!("Guards are holding back the ladders of {n} workloads; see status.workloads."),
    }
}
