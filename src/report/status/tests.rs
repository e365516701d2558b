//! The desired status on its own: no server, a virtual clock.

use std::time::Duration;

use super::*;
use crate::{
    act::{RolloutRestartSettings, StepParams},
    api::{Action, ScaleRestore},
    fixtures::at,
    plan::{Guard, Hold, Remediation},
    record::{Capture, Entry, Finding, Raised, ScaledKind},
};

fn t(secs: i64) -> Timestamp {
    at("2026-01-01T00:00:00Z") + jiff::SignedDuration::from_secs(secs)
}

fn verdict(health: Health) -> TargetVerdict {
    let unhealthy = health == Health::Unhealthy;
    TargetVerdict {
        health,
        since: t(0),
        evidence: if unhealthy {
            vec![Finding {
                trigger: "consecutiveFailures".into(),
                message: "web-b: 3 failed probes in a row (last: HTTP 503), threshold 3".into(),
                pods: vec!["web-b".into()],
                since: None,
            }]
        } else {
            Vec::new()
        },
        probed: 2,
        healthy: if unhealthy { 1 } else { 2 },
        unhealthy: if unhealthy {
            vec!["web-b".into()]
        } else {
            Vec::new()
        },
        failing: Vec::new(),
        notes: Vec::new(),
    }
}

fn seen(health: Health) -> Observation {
    Observation {
        generation: Some(1),
        readiness: Readiness::Probing {
            message: "Probing 2 ready pods of Deployment web every 10s.".into(),
        },
        verdict: Some(verdict(health)),
        dry_run: false,
        steps: 1,
        workload: "Deployment web".into(),
        diagnostics_retention: 5,
    }
}

fn restart(at_secs: i64) -> Remediation {
    Remediation {
        step: 1,
        of: 1,
        params: StepParams::RolloutRestart(RolloutRestartSettings),
        timeout: Duration::from_secs(300),
        pods: vec!["web-b".into()],
        capture_first: Vec::new(),
        at: t(at_secs),
        dry_run: false,
    }
}

fn record(r: &Remediation, result: RemediationResult) -> Outcome {
    Outcome {
        record: Some(Entry {
            reason: None,
            action: Action::RolloutRestart,
            step: r.step,
            at: r.at,
            result,
            dry_run: r.dry_run,
            pods: r.pods.clone(),
            message: (result != RemediationResult::Pending).then(|| "Set the annotation.".into()),
            retry_at: None,
        }),
        action_reason: "RolloutRestarted",
        resumed: false,
        effects: Vec::new(),
    }
}

fn cond<'a>(s: &'a AppHealthPolicyStatus, t: &str) -> (&'a str, &'a str, &'a str) {
    let c = condition(s, t).unwrap_or_else(|| panic!("no {t} condition"));
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

fn reasons_of(events: &[EventIntent]) -> Vec<&'static str> {
    events.iter().map(|e| e.reason).collect()
}

#[test]
fn an_action_records_its_intent_then_its_result_with_one_event_each_stage() {
    let (healthy, _) = desired_status(
        &AppHealthPolicyStatus::default(),
        &seen(Health::Healthy),
        Some(&Plan::Idle { until: None }),
        None,
        t(0),
    );
    let r = restart(10);
    let plan = Plan::Act(r.clone());
    let (intent, events) = desired_status(
        &healthy,
        &seen(Health::Unhealthy),
        Some(&plan),
        Some(&record(&r, RemediationResult::Pending)),
        t(10),
    );
    assert_eq!(reasons_of(&events), ["BecameUnhealthy"]);
    assert_eq!(intent.history.len(), 1);
    assert_eq!(intent.history[0].result, RemediationResult::Pending);
    assert_eq!(
        intent.ladder.as_ref().map(|l| (l.step, l.started_at.0)),
        Some((1, t(10)))
    );
    assert_eq!(
        cond(&intent, "Remediating"),
        (
            "True",
            "LadderInProgress",
            "Running step 1 of 1 (RolloutRestart)."
        )
    );

    let (done, events) = desired_status(
        &intent,
        &seen(Health::Unhealthy),
        Some(&plan),
        Some(&record(&r, RemediationResult::Succeeded)),
        t(10),
    );
    assert_eq!(reasons_of(&events), ["RolloutRestarted"]);
    assert!(
        events[0].note.starts_with(
            "Ran RolloutRestart (step 1 of 1) on Deployment web because the target is unhealthy."
        ),
        "{}",
        events[0].note
    );
    assert_eq!(done.history.len(), 1, "the intent is completed in place");
    assert_eq!(done.history[0].result, RemediationResult::Succeeded);

    // What the next reconcile's Wait says is what the result already said: no write.
    let wait = Plan::Wait {
        step: 1,
        until: Some(t(310)),
    };
    let (waiting, events) = desired_status(&done, &seen(Health::Unhealthy), Some(&wait), None, t(20));
    assert_eq!(waiting, done);
    assert!(events.is_empty());
}

#[test]
fn a_hold_is_reported_once_and_lifts_cleanly() {
    let held = Plan::Hold {
        held: Hold {
            guard: Guard::Cooldown {
                last: t(0),
                cooldown: Duration::from_secs(600),
            },
            until: Some(t(600)),
            skip: false,
        },
        remediation: Some(restart(60)),
    };
    let (first, events) = desired_status(
        &AppHealthPolicyStatus::default(),
        &seen(Health::Unhealthy),
        Some(&held),
        None,
        t(60),
    );
    assert_eq!(reasons_of(&events), ["BecameUnhealthy", "Cooldown"]);
    let (status, reason, message) = cond(&first, "RemediationBlocked");
    assert_eq!((status, reason), ("True", "Cooldown"));
    assert!(
        message.contains("holds RolloutRestart (step 1 of 1) back until 2026-01-01T00:10:00Z"),
        "{message}"
    );
    let (again, events) = desired_status(&first, &seen(Health::Unhealthy), Some(&held), None, t(120));
    assert_eq!(again, first, "nothing new to say");
    assert!(events.is_empty());
    let (lifted, _) = desired_status(
        &again,
        &seen(Health::Unhealthy),
        Some(&Plan::Act(restart(600))),
        Some(&record(&restart(600), RemediationResult::Pending)),
        t(600),
    );
    assert_eq!(cond(&lifted, "RemediationBlocked").1, "NotBlocked");
}

#[test]
fn recovery_closes_the_ladder_and_keeps_saying_so() {
    let r = restart(10);
    let (done, _) = desired_status(
        &AppHealthPolicyStatus::default(),
        &seen(Health::Unhealthy),
        Some(&Plan::Act(r.clone())),
        Some(&record(&r, RemediationResult::Succeeded)),
        t(10),
    );
    let (recovered, events) = desired_status(
        &done,
        &seen(Health::Healthy),
        Some(&Plan::Recovered { step: 1 }),
        None,
        t(50),
    );
    assert_eq!(reasons_of(&events), ["Recovered"]);
    assert!(recovered.ladder.is_none());
    assert_eq!(
        cond(&recovered, "Remediating"),
        (
            "False",
            "Recovered",
            "The target recovered after remediation step 1."
        )
    );
    assert_eq!(recovered.history.len(), 1, "the history stays");
    let (idle, events) = desired_status(
        &recovered,
        &seen(Health::Healthy),
        Some(&Plan::Idle { until: None }),
        None,
        t(90),
    );
    assert_eq!(idle, recovered, "Recovered stays readable while idle");
    assert!(events.is_empty());
}

#[test]
fn the_history_keeps_the_last_ten_newest_first() {
    let mut status = AppHealthPolicyStatus::default();
    for i in 0..12 {
        let r = restart(i * 1000);
        status = desired_status(
            &status,
            &seen(Health::Unhealthy),
            Some(&Plan::Act(r.clone())),
            Some(&record(&r, RemediationResult::Succeeded)),
            t(i * 1000),
        )
        .0;
    }
    assert_eq!(status.history.len(), 10);
    assert_eq!(status.history[0].at.0, t(11_000));
    assert_eq!(status.history[9].at.0, t(2_000));
}

#[test]
fn a_dry_run_is_recorded_and_blocked_but_nothing_is_remediating() {
    let r = Remediation {
        dry_run: true,
        ..restart(10)
    };
    let mut seen = seen(Health::Unhealthy);
    seen.dry_run = true;
    let mut outcome = record(&r, RemediationResult::Succeeded);
    if let Some(rec) = outcome.record.as_mut() {
        rec.message = Some("would set apphealth.io/restartedAt on the pod template.".into());
    }
    let (status, events) = desired_status(
        &AppHealthPolicyStatus::default(),
        &seen,
        Some(&Plan::Act(r)),
        Some(&outcome),
        t(10),
    );
    assert_eq!(reasons_of(&events), ["BecameUnhealthy", "DryRun"]);
    assert!(status.history[0].dry_run);
    let (s, reason, message) = cond(&status, "RemediationBlocked");
    assert_eq!((s, reason), ("True", "DryRun"));
    assert!(
        message.contains("RolloutRestart (step 1 of 1) would set"),
        "{message}"
    );
    assert_eq!(cond(&status, "Remediating").0, "False");
}

#[test]
fn a_stopped_policy_says_why_once_and_drops_its_verdict() {
    let (healthy, _) = desired_status(
        &AppHealthPolicyStatus::default(),
        &seen(Health::Healthy),
        Some(&Plan::Idle { until: None }),
        None,
        t(0),
    );
    let stopped = Observation {
        readiness: Readiness::Stopped {
            reason: reasons::TARGET_NOT_FOUND,
            message: "gone".into(),
            event: "gone (next check in 5s)".into(),
        },
        verdict: None,
        ..seen(Health::Unknown)
    };
    let (status, events) = desired_status(&healthy, &stopped, None, None, t(5));
    assert_eq!(reasons_of(&events), ["TargetNotFound"]);
    assert_eq!(cond(&status, "Ready"), ("False", "TargetNotFound", "gone"));
    assert_eq!(cond(&status, "Healthy").0, "Unknown");
    assert!(status.verdict.is_none() && status.targets.is_none());
    let (again, events) = desired_status(&status, &stopped, None, None, t(10));
    assert_eq!(again, status);
    assert!(events.is_empty(), "the reason did not change");
}

#[test]
fn scale_and_diagnostics_effects_are_kept() {
    let raised = Raised {
        kind: ScaledKind::Workload,
        name: "web".into(),
        original: 2,
        original_max: None,
        set: 4,
        set_max: None,
        restore_after: Duration::from_secs(1800),
    };
    let mut seen = seen(Health::Healthy);
    seen.diagnostics_retention = 2;
    let mut status = AppHealthPolicyStatus::default();
    for i in 0..3 {
        let effects = vec![
            Effect::ScaleRecorded(raised.clone()),
            Effect::Diagnostics(Capture {
                config_map: format!("web-diagnostics-{i}"),
                at: t(i),
                pods: vec![],
            }),
        ];
        let outcome = Outcome {
            record: None,
            action_reason: "",
            resumed: false,
            effects,
        };
        status = desired_status(&status, &seen, None, Some(&outcome), t(i)).0;
    }
    assert_eq!(
        status.scale_restore,
        Some(ScaleRestore {
            kind: "Workload".into(),
            name: "web".into(),
            original: 2,
            original_max: None,
            set: 4,
            set_max: None,
            restore_after: "30m".into(),
        }),
        "recorded in status's shape"
    );
    let kept: Vec<&str> = status.diagnostics.iter().map(|d| d.config_map.as_str()).collect();
    assert_eq!(
        kept,
        ["web-diagnostics-2", "web-diagnostics-1"],
        "newest first, within the retention"
    );
    let restored = Outcome {
        record: None,
        action_reason: "",
        resumed: false,
        effects: vec![Effect::ScaleRestoreDone {
            restored: true,
            message: "back to 2".into(),
        }],
    };
    let (status, events) = desired_status(&status, &seen, None, Some(&restored), t(9));
    assert!(status.scale_restore.is_none());
    assert_eq!(reasons_of(&events), ["ScaleRestored"]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    /// The status merge settles: from any recorded conditions and any health, a second pass over
    /// its own result changes nothing (so the steady state writes nothing), and a later pass keeps
    /// each condition's lastTransitionTime while its status holds.
    #[test]
    fn a_second_pass_changes_nothing(
        recorded in proptest::collection::vec(
            (
                proptest::sample::select(vec!["Ready", "Healthy", "Remediating", "RemediationBlocked", "Other"]),
                proptest::sample::select(vec!["True", "False", "Unknown", ""]),
                "[A-Za-z]{0,12}",
            ),
            0..6,
        ),
        health in proptest::sample::select(vec![Health::Healthy, Health::Unhealthy, Health::Unknown]),
        readiness in 0u8..3,
        with_verdict: bool,
    ) {
        let mut old = AppHealthPolicyStatus::default();
        for (type_, status, reason) in recorded {
            if old.conditions.iter().all(|c| c.type_ != type_) {
                old.conditions.push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                    type_: type_.into(),
                    status: status.into(),
                    reason,
                    message: String::new(),
                    observed_generation: None,
                    last_transition_time: Time(t(-60)),
                });
            }
        }
        let mut observed = seen(health);
        observed.verdict = with_verdict.then(|| verdict(health));
        observed.readiness = match readiness {
            0 => observed.readiness,
            1 => Readiness::NoTargets { reason: reasons::NO_PODS, message: "no ready pods".into() },
            _ => Readiness::Stopped {
                reason: reasons::INVALID_SPEC,
                message: "invalid".into(),
                event: "invalid".into(),
            },
        };
        let (first, _) = desired_status(&old, &observed, None, None, t(0));
        let (second, _) = desired_status(&first, &observed, None, None, t(0));
        proptest::prop_assert_eq!(&second, &first);
        let (later, _) = desired_status(&first, &observed, None, None, t(3600));
        for c in &later.conditions {
            if let Some(before) = first.conditions.iter().find(|b| b.type_ == c.type_ && b.status == c.status) {
                proptest::prop_assert_eq!(&before.last_transition_time, &c.last_transition_time);
            }
        }
    }
}
