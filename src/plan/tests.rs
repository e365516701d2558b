use std::time::Duration;

use super::*;
use crate::{
    api::{Action, Health, reasons},
    fixtures::{PolicyExt, at, policy},
};

fn t(secs: i64) -> Timestamp {
    at("2026-01-01T00:00:00Z") + jiff::SignedDuration::from_secs(secs)
}

fn two_steps() -> Settings {
    policy()
        .with_spec(serde_json::json!({"remediation": {
            "steps": [{"action": "RolloutRestart", "timeout": "2m"}, {"action": "RolloutRestart", "timeout": "5m"}],
            "cooldown": "1m"
        }}))
        .settings()
}

fn ladder(step: Option<u32>, last: Option<i64>) -> LadderState {
    LadderState {
        step,
        last_action_at: last.map(t),
    }
}

#[test]
fn healthy_or_unknown_without_a_ladder_is_idle() {
    let s = two_steps();
    assert_eq!(plan(&s, Health::Healthy, &ladder(None, None), t(0)), Plan::Idle);
    assert_eq!(
        plan(&s, Health::Unknown, &ladder(None, Some(0)), t(0)),
        Plan::Idle
    );
}

#[test]
fn unhealthy_runs_the_first_step() {
    let s = two_steps();
    assert_eq!(
        plan(&s, Health::Unhealthy, &ladder(None, None), t(0)),
        Plan::Act {
            step: 1,
            action: Action::RolloutRestart
        }
    );
}

#[test]
fn a_step_gets_its_timeout_before_escalating() {
    let s = two_steps();
    let l = ladder(Some(1), Some(0));
    assert_eq!(
        plan(&s, Health::Unhealthy, &l, t(119)),
        Plan::Wait {
            step: 1,
            until: Some(t(120))
        }
    );
    assert_eq!(
        plan(&s, Health::Unhealthy, &l, t(120)),
        Plan::Act {
            step: 2,
            action: Action::RolloutRestart
        }
    );
}

#[test]
fn recovery_closes_the_ladder_and_unknown_waits() {
    let s = two_steps();
    assert_eq!(
        plan(&s, Health::Healthy, &ladder(Some(2), Some(0)), t(5)),
        Plan::Recovered { step: 2 }
    );
    assert_eq!(
        plan(&s, Health::Unknown, &ladder(Some(1), Some(0)), t(5)),
        Plan::Wait { step: 1, until: None }
    );
}

#[test]
fn an_exhausted_ladder_is_blocked() {
    let s = two_steps();
    let p = plan(&s, Health::Unhealthy, &ladder(Some(2), Some(0)), t(10_000));
    let Plan::Blocked {
        reason,
        message,
        until,
    } = p
    else {
        panic!("expected Blocked, got {p:?}")
    };
    assert_eq!(reason, reasons::LADDER_EXHAUSTED);
    assert!(message.contains("All 2 remediation steps ran"), "{message}");
    assert_eq!(until, None);
}

#[test]
fn cooldown_holds_a_new_ladder_back_until_it_expires() {
    let s = policy()
        .with_spec(serde_json::json!({"remediation": {"cooldown": "5m"}}))
        .settings();
    let l = ladder(None, Some(0)); // last ladder ended; its action ran at t=0
    let p = plan(&s, Health::Unhealthy, &l, t(60));
    let Plan::Blocked {
        reason,
        message,
        until,
    } = p
    else {
        panic!("expected Blocked, got {p:?}")
    };
    assert_eq!(reason, reasons::COOLDOWN);
    assert_eq!(until, Some(t(300)));
    assert!(message.contains("cooldown of 5m"), "{message}");
    assert!(message.contains("RolloutRestart (step 1 of 1)"), "{message}");
    // Edges: one second before is still blocked, at expiry it acts.
    assert!(matches!(
        plan(&s, Health::Unhealthy, &l, t(299)),
        Plan::Blocked { .. }
    ));
    assert_eq!(
        plan(&s, Health::Unhealthy, &l, t(300)),
        Plan::Act {
            step: 1,
            action: Action::RolloutRestart
        }
    );
}

#[test]
fn cooldown_also_delays_escalation_when_longer_than_the_step_timeout() {
    let s = policy()
        .with_spec(serde_json::json!({"remediation": {
            "steps": [{"action": "RolloutRestart", "timeout": "1m"}, {"action": "RolloutRestart"}],
            "cooldown": "10m"
        }}))
        .settings();
    let l = ladder(Some(1), Some(0));
    let p = plan(&s, Health::Unhealthy, &l, t(120));
    assert!(
        matches!(p, Plan::Blocked { reason: reasons::COOLDOWN, until: Some(u), .. } if u == t(600)),
        "{p:?}"
    );
}

#[test]
fn a_clock_jump_backwards_never_acts_early() {
    let s = two_steps();
    // The last action is recorded in the future (clock went back): still cooling down / waiting.
    let l = ladder(Some(1), Some(1000));
    assert!(matches!(plan(&s, Health::Unhealthy, &l, t(0)), Plan::Wait { .. }));
    assert!(matches!(
        plan(&s, Health::Unhealthy, &ladder(None, Some(1000)), t(0)),
        Plan::Blocked { .. }
    ));
}

#[test]
fn dry_run_reports_what_it_would_do() {
    let s = policy()
        .with_spec(serde_json::json!({"remediation": {"dryRun": true}}))
        .settings();
    let p = plan(&s, Health::Unhealthy, &ladder(None, None), t(0));
    let Plan::Blocked { reason, message, .. } = p else {
        panic!("expected Blocked, got {p:?}")
    };
    assert_eq!(reason, reasons::DRY_RUN);
    assert!(
        message.contains("would run RolloutRestart (step 1 of 1)"),
        "{message}"
    );
}

#[test]
fn no_steps_only_reports() {
    let s = policy()
        .with_spec(serde_json::json!({"remediation": {"steps": null}}))
        .settings();
    let p = plan(&s, Health::Unhealthy, &ladder(None, None), t(0));
    assert!(
        matches!(
            p,
            Plan::Blocked {
                reason: reasons::NO_REMEDIATION,
                ..
            }
        ),
        "{p:?}"
    );
}

#[test]
fn revisit_time_is_when_a_wait_or_cooldown_ends() {
    assert_eq!(
        Plan::Wait {
            step: 1,
            until: Some(t(5))
        }
        .revisit_at(),
        Some(t(5))
    );
    assert_eq!(Plan::Idle.revisit_at(), None);
    let _ = Duration::ZERO;
}
