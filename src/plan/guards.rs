//! The guards: small pure functions in a fixed order over one [`PlanInput`]; the first that holds a
//! remediation back wins. Adding a guard is one function here, its place in [`GUARDS`], a
//! [`Guard`] variant (worded in `report`) and its table rows.

use std::time::Duration;

use jiff::Timestamp;

use super::{Guard, Hold, PlanInput, PodFacts, Remediation};
use crate::{
    clock,
    record::{Entry, RemediationResult},
};

/// A guard: `Some` holds (or skips) the remediation.
pub type Check = fn(&PlanInput, &Remediation) -> Option<Hold>;

/// In order. Dry run is not a guard: a dry-run remediation passes the same guards and is then
/// described instead of applied. TargetBusy and GlobalLimit coordinate real actions only;
/// OwnedElsewhere holds every step, dry runs included.
pub const GUARDS: &[Check] = &[
    owned_elsewhere,
    cooldown,
    min_pod_age,
    circuit_open,
    storm_guard,
    rollout_in_progress,
    disruption_budget,
    target_busy,
    policy_limit,
    global_limit,
];

/// How often a hold without a natural end (another ladder, the global cap) is looked at again.
const POLL: Duration = Duration::from_secs(30);

fn held(guard: Guard, until: Option<Timestamp>) -> Option<Hold> {
    Some(Hold {
        guard,
        until,
        skip: false,
    })
}

pub(super) fn age(pod: &PodFacts, now: Timestamp) -> Duration {
    pod.created.map_or(Duration::MAX, |c| clock::until(c, now))
}

/// Records that count as remediations of the target: actions that changed it (or, in a dry run,
/// would have), whatever their outcome, but not skipped or held steps.
fn remediations<'a>(input: &'a PlanInput, r: &Remediation) -> impl Iterator<Item = &'a Entry> {
    let dry_run = r.dry_run;
    input.recorded.history.iter().filter(move |h| {
        h.dry_run == dry_run
            && crate::act::descriptor(h.action).changes_target
            && !matches!(h.result, RemediationResult::Skipped | RemediationResult::Held)
    })
}

/// OwnedElsewhere: another policy remediates this workload by precedence; this one observes it and
/// takes no step at all (not even diagnostics or a notification: the owner's ladder does those).
pub fn owned_elsewhere(input: &PlanInput, _r: &Remediation) -> Option<Hold> {
    let policy = input.budget.owned_by.clone()?;
    held(Guard::OwnedElsewhere { policy }, None)
}

/// Cooldown: the last remediation that changed the target was too recent.
pub fn cooldown(input: &PlanInput, r: &Remediation) -> Option<Hold> {
    if !r.descriptor().changes_target {
        return None;
    }
    let last = remediations(input, r).map(|h| h.at).max()?;
    let cooldown = input.settings.cooldown;
    let ready_at = clock::after(last, cooldown);
    (input.now < ready_at).then_some(())?;
    held(Guard::Cooldown { last, cooldown }, Some(ready_at))
}

/// MinPodAge: never restart a pod younger than spec.remediation.minPodAge.
pub fn min_pod_age(input: &PlanInput, r: &Remediation) -> Option<Hold> {
    let min = input.settings.min_pod_age;
    if !r.descriptor().restarts_pods || min.is_zero() {
        return None;
    }
    let youngest = input
        .pods
        .iter()
        .filter(|p| r.pods.contains(&p.name))
        .min_by_key(|p| age(p, input.now))?;
    let old_at = clock::after(youngest.created?, min);
    (input.now < old_at).then_some(())?;
    held(
        Guard::MinPodAge {
            pod: youngest.name.clone(),
            min,
        },
        Some(old_at),
    )
}

/// CircuitOpen: spec.remediation.maxRemediations already ran within its window.
pub fn circuit_open(input: &PlanInput, r: &Remediation) -> Option<Hold> {
    let (count, window) = input.settings.max_remediations?;
    if !r.descriptor().changes_target {
        return None;
    }
    let window_start = input
        .now
        .saturating_sub(jiff::SignedDuration::try_from(window).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MIN);
    let mut recent: Vec<Timestamp> = remediations(input, r)
        .map(|h| h.at)
        .filter(|at| *at > window_start)
        .collect();
    if recent.len() < usize::try_from(count).unwrap_or(usize::MAX) {
        return None;
    }
    recent.sort();
    // Closes when enough of the recent ones have left the window.
    let index = recent.len() - usize::try_from(count).unwrap_or(usize::MAX);
    let closes = recent.get(index).map(|t| clock::after(*t, window));
    held(Guard::CircuitOpen { count, window }, closes)
}

/// StormGuard: too many of the pods are unhealthy for a restart to be the cure; the restarting
/// step is skipped, the ladder goes on. Pods failing their probes count too: in an outage they
/// cross their threshold one by one, and the first to do so must not be restarted alone.
pub fn storm_guard(input: &PlanInput, r: &Remediation) -> Option<Hold> {
    let max_percent = input.settings.max_unhealthy_percent?;
    let pods = u32::try_from(input.pods.len()).unwrap_or(u32::MAX);
    if !r.descriptor().restarts_pods || pods < 2 {
        return None;
    }
    let unhealthy =
        u32::try_from(input.pods.iter().filter(|p| p.unhealthy || p.failing).count()).unwrap_or(u32::MAX);
    (u64::from(unhealthy) * 100 > u64::from(max_percent) * u64::from(pods)).then_some(())?;
    Some(Hold {
        guard: Guard::StormGuard {
            unhealthy,
            pods,
            max_percent,
        },
        until: None,
        skip: true,
    })
}

/// RolloutInProgress: restarting in the middle of a rollout turns a partial outage into a full one.
pub fn rollout_in_progress(input: &PlanInput, r: &Remediation) -> Option<Hold> {
    if !r.descriptor().restarts_pods {
        return None;
    }
    let detail = input.rollout.clone()?;
    held(Guard::RolloutInProgress { detail }, None)
}

/// DisruptionBudget: this step's eviction was refused by a PodDisruptionBudget; wait for its retry.
pub fn disruption_budget(input: &PlanInput, r: &Remediation) -> Option<Hold> {
    let record =
        super::current_record(input).filter(|h| h.step == r.step && h.result == RemediationResult::Held)?;
    let retry_at = record.retry_at?;
    (input.now < retry_at).then_some(())?;
    // Looked at again at the retry, or when the step's time is up and the ladder escalates.
    let escalates_at = clock::after(record.at, r.timeout);
    held(
        Guard::DisruptionBudget {
            detail: record.message.clone().unwrap_or_default(),
        },
        Some(retry_at.min(escalates_at)),
    )
}

/// TargetBusy: another policy's ladder is acting on the same workload.
pub fn target_busy(input: &PlanInput, r: &Remediation) -> Option<Hold> {
    if r.dry_run || !r.descriptor().changes_target {
        return None;
    }
    let policy = input.budget.busy_with.clone()?;
    held(Guard::TargetBusy { policy }, Some(clock::after(input.now, POLL)))
}

/// PolicyLimit: as many of the policy's workloads as its maxConcurrent allows have a ladder acting.
pub fn policy_limit(input: &PlanInput, r: &Remediation) -> Option<Hold> {
    let max = input.budget.policy_max?;
    if r.dry_run || !r.descriptor().changes_target {
        return None;
    }
    let active = input.budget.siblings_acting;
    (active >= max).then_some(())?;
    held(
        Guard::PolicyLimit { active, max },
        Some(clock::after(input.now, POLL)),
    )
}

/// GlobalLimit: the operator-wide cap on ladders acting at once is reached.
pub fn global_limit(input: &PlanInput, r: &Remediation) -> Option<Hold> {
    let max = input.budget.max?;
    if r.dry_run || !r.descriptor().changes_target {
        return None;
    }
    let active = input.budget.active_elsewhere;
    (active >= max).then_some(())?;
    held(
        Guard::GlobalLimit { active, max },
        Some(clock::after(input.now, POLL)),
    )
}
