//! One step of a policy's ladder, pure: the previous status, what was seen, the planner's input
//! and the time in; the plan, what to write now and the work left for the act stage out. The
//! controller and `check` both move a ladder on with [`step`] and, once the work is done (or
//! simulated), [`finish`]: the same decisions and the same status either way.

use jiff::Timestamp;

use crate::{
    act::{self, Outcome},
    api::AppHealthPolicyStatus,
    plan::{self, Plan, PlanInput, Remediation},
    record::Raised,
    report::{self, EventIntent, Observation, text},
};

/// What the act stage is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Run this remediation (in a dry run: read and describe only).
    Run(Remediation),
    /// Complete a remediation recorded as Pending: check its mark, run it if it did not happen.
    Resume(Remediation),
    /// Put back what ScaleOut raised.
    Restore(Raised),
}

/// The status to write and the Events that go with it.
pub type Written = (AppHealthPolicyStatus, Vec<EventIntent>);

/// What follows from a step's plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Then {
    /// No work: this is the new status.
    Write(Written),
    /// Work for the act stage; `intent`, when the work changes something, is written before it
    /// runs (so an operator that stops meanwhile resumes it). Without one (a dry run, a resume, a
    /// restore) the work runs first and its result is the next status.
    Work { intent: Option<Written>, work: Work },
}

/// A step's decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub plan: Plan,
    pub then: Then,
}

/// Plans from `input` and says what to write and what to do.
pub fn step(prev: &AppHealthPolicyStatus, seen: &Observation, input: &PlanInput, now: Timestamp) -> Step {
    let plan = plan::plan(input);
    let desired = |done: Option<&Outcome>| report::desired_status(prev, seen, Some(&plan), done, now);
    let then = match &plan {
        Plan::Act(r) if !r.dry_run => Then::Work {
            intent: Some(desired(Some(&act::pending(r)))),
            work: Work::Run(r.clone()),
        },
        Plan::Act(r) => Then::Work {
            intent: None,
            work: Work::Run(r.clone()),
        },
        Plan::Resume(r) => Then::Work {
            intent: None,
            work: Work::Resume(r.clone()),
        },
        Plan::Restore(raised) => Then::Work {
            intent: None,
            work: Work::Restore(raised.clone()),
        },
        Plan::Skip { held, remediation } => {
            let why = text::hold_message(&held.guard, Some(remediation), held.until);
            Then::Write(desired(Some(&act::skipped(remediation, why))))
        }
        Plan::Idle { .. } | Plan::Recovered { .. } | Plan::Wait { .. } | Plan::Hold { .. } => {
            Then::Write(desired(None))
        }
    };
    Step { plan, then }
}

/// The status once the work is done: `from` is the status as last written (the intent, when one
/// was recorded), `done` what the work did.
pub fn finish(
    from: &AppHealthPolicyStatus,
    seen: &Observation,
    plan: &Plan,
    done: &Outcome,
    now: Timestamp,
) -> (AppHealthPolicyStatus, Vec<EventIntent>) {
    report::desired_status(from, seen, Some(plan), Some(done), now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::{Health, RemediationResult},
        fixtures::{at, policy},
        plan::Budget,
        report::Readiness,
    };

    fn seen(health: Health) -> Observation {
        Observation {
            generation: Some(1),
            readiness: Readiness::Probing {
                message: "Probing 1 ready pods of Deployment web every 10s.".into(),
            },
            verdict: Some(crate::evaluate::TargetVerdict {
                health,
                since: at("2026-01-01T00:00:00Z"),
                evidence: Vec::new(),
                probed: 1,
                healthy: u32::from(health == Health::Healthy),
                unhealthy: Vec::new(),
                failing: Vec::new(),
                notes: Vec::new(),
            }),
            dry_run: false,
            steps: 1,
            workload: "Deployment web".into(),
            diagnostics_retention: 3,
        }
    }

    fn input<'a>(
        settings: &'a plan::RemediationSettings,
        status: &'a crate::record::Recorded,
        health: Health,
        suspended: bool,
        now: Timestamp,
    ) -> PlanInput<'a> {
        PlanInput {
            settings,
            suspended,
            health,
            pods: &[],
            recorded: status,
            rollout: None,
            budget: Budget::default(),
            now,
        }
    }

    #[test]
    fn an_action_that_changes_something_is_recorded_before_it_runs_and_finished_after() {
        let settings = crate::settings::validate(&policy().spec).unwrap();
        let remediation = &settings.remediation;
        let now = at("2026-01-01T00:10:00Z");
        let prev = AppHealthPolicyStatus::default();
        let seen = seen(Health::Unhealthy);
        let s = step(
            &prev,
            &seen,
            &input(remediation, &Default::default(), Health::Unhealthy, false, now),
            now,
        );
        let Then::Work {
            intent: Some((intent, _)),
            work: Work::Run(r),
        } = &s.then
        else {
            panic!("runs the first step, its intent recorded first: {s:?}")
        };
        assert_eq!(intent.history[0].result, RemediationResult::Pending);
        let (done, _) = finish(intent, &seen, &s.plan, &act::simulated(r, "ran"), now);
        assert_eq!(done.history[0].result, RemediationResult::Succeeded);
        assert_eq!(
            done.history.len(),
            1,
            "the intent's record is completed, not repeated"
        );
    }

    #[test]
    fn work_that_runs_first_is_not_recorded_and_quiet_steps_have_no_work() {
        let settings = crate::settings::validate(&policy().spec).unwrap();
        let mut dry = settings.remediation.clone();
        dry.dry_run = true;
        let now = at("2026-01-01T00:10:00Z");
        let prev = AppHealthPolicyStatus::default();
        let s = step(
            &prev,
            &seen(Health::Unhealthy),
            &input(&dry, &Default::default(), Health::Unhealthy, false, now),
            now,
        );
        assert!(
            matches!(&s.then, Then::Work { intent: None, work: Work::Run(r) } if r.dry_run),
            "a dry run is recorded once it has described itself: {s:?}"
        );

        let healthy = step(
            &prev,
            &seen(Health::Healthy),
            &input(
                &settings.remediation,
                &Default::default(),
                Health::Healthy,
                false,
                now,
            ),
            now,
        );
        assert!(matches!(healthy.then, Then::Write(_)), "{healthy:?}");
        assert!(matches!(healthy.plan, Plan::Idle { .. }));
    }

    #[test]
    fn suspend_is_a_plan_input_like_any_guard() {
        let settings = crate::settings::validate(&policy().spec).unwrap();
        let now = at("2026-01-01T00:10:00Z");
        let prev = AppHealthPolicyStatus::default();
        let s = step(
            &prev,
            &seen(Health::Unhealthy),
            &input(
                &settings.remediation,
                &Default::default(),
                Health::Unhealthy,
                true,
                now,
            ),
            now,
        );
        assert!(matches!(s.then, Then::Write(_)), "{s:?}");
        assert!(
            matches!(&s.plan, Plan::Hold { held, .. } if held.guard == plan::Guard::Suspended),
            "{:?}",
            s.plan
        );
    }
}
