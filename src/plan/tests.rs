//! Table tests of the planner on a virtual clock: one row per ladder transition and per guard.

use jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::{
    fixtures::{PolicyExt, at, policy},
    record::{Action, Capture, Entry, Health, Position, Raised, Recorded, RemediationResult, ScaledKind},
    report::text,
};

fn t(secs: i64) -> Timestamp {
    at("2026-01-01T00:00:00Z") + jiff::SignedDuration::from_secs(secs)
}

/// `name:age:flags` — flags `u` unhealthy, `f` failing (not judged yet), `n` not ready.
fn pods(spec: &[&str], now: i64) -> Vec<PodFacts> {
    spec.iter()
        .map(|p| {
            let mut parts = p.split(':');
            let name = parts.next().unwrap().to_owned();
            let age: i64 = parts.next().unwrap_or("3600").parse().unwrap();
            let flags = parts.next().unwrap_or("");
            PodFacts {
                name,
                created: Some(t(now - age)),
                ready: !flags.contains('n'),
                unhealthy: flags.contains('u'),
                failing: flags.contains('f'),
            }
        })
        .collect()
}

fn rec(action: Action, step: u32, at_secs: i64, result: RemediationResult) -> Entry {
    Entry {
        reason: None,
        action,
        step,
        at: t(at_secs),
        result,
        dry_run: false,
        pods: Vec::new(),
        message: None,
        retry_at: None,
    }
}

struct Case {
    name: &'static str,
    remediation: serde_json::Value,
    health: Health,
    pods: &'static [&'static str],
    ladder: Option<(u32, i64)>,
    /// Newest first.
    history: Vec<Entry>,
    rollout: Option<&'static str>,
    budget: Budget,
    now: i64,
    expect: &'static str,
}

impl Default for Case {
    fn default() -> Self {
        Self {
            name: "",
            remediation: json!({}),
            health: Health::Unhealthy,
            pods: &["web-a:3600:u", "web-b:3600:"],
            ladder: None,
            history: Vec::new(),
            rollout: None,
            budget: Budget::default(),
            now: 10_000,
            expect: "",
        }
    }
}

/// A plan in a few words, so table rows stay readable.
fn summary(p: &Plan) -> String {
    let r = |r: &Remediation| format!("{}#{}", r.action().as_str(), r.step);
    match p {
        Plan::Idle { until } => format!(
            "idle{}",
            until.map_or(String::new(), |u| format!(
                " until {}",
                u.as_second() - t(0).as_second()
            ))
        ),
        Plan::Recovered { step } => format!("recovered after {step}"),
        Plan::Wait { step, until } => format!(
            "wait {step}{}",
            until.map_or(String::new(), |u| format!(
                " until {}",
                u.as_second() - t(0).as_second()
            ))
        ),
        Plan::Act(x) if x.dry_run => format!("dry-run {}", r(x)),
        Plan::Act(x) => format!(
            "act {}{}",
            r(x),
            if x.pods.is_empty() {
                String::new()
            } else {
                format!(" {}", x.pods.join(","))
            }
        ),
        Plan::Resume(x) => format!("resume {}", r(x)),
        Plan::Hold { held, remediation } => format!(
            "hold {}{}{}",
            text::reason(&held.guard),
            remediation
                .as_ref()
                .map_or(String::new(), |x| format!(" {}", r(x))),
            held.until.map_or(String::new(), |u| format!(
                " until {}",
                u.as_second() - t(0).as_second()
            ))
        ),
        Plan::Skip { held, remediation } => format!("skip {} {}", r(remediation), text::reason(&held.guard)),
        Plan::Restore(raised) => format!("restore {}", raised.name),
    }
}

fn run(case: &Case) -> String {
    let mut spec = json!({"remediation": {
        "steps": [
            {"action": "CollectDiagnostics"},
            {"action": "RestartPods", "timeout": "2m"},
            {"action": "RolloutRestart", "timeout": "5m"},
            {"action": "ScaleOut", "scaleOut": {"by": 2, "maxReplicas": 6}},
            {"action": "Notify", "notify": {"urlSecretRef": {"name": "hook", "key": "url"}}}
        ],
        "cooldown": "1m"
    }});
    crate::fixtures::merge(&mut spec["remediation"], case.remediation.clone());
    let settings = policy().with_spec(spec).settings();
    let status = Recorded {
        ladder: case.ladder.map(|(step, started)| Position {
            step,
            started_at: t(started),
            exhausted: false,
        }),
        history: case.history.clone(),
        ..Recorded::default()
    };
    let pods = pods(case.pods, case.now);
    summary(&plan(&PlanInput {
        settings: &settings.remediation,
        suspended: false,
        health: case.health,
        pods: &pods,
        recorded: &status,
        rollout: case.rollout.map(str::to_owned),
        budget: case.budget.clone(),
        now: t(case.now),
    }))
}

#[test]
fn the_ladder() {
    use RemediationResult::*;
    let cases = [
        Case {
            name: "healthy, no ladder",
            health: Health::Healthy,
            expect: "idle",
            ..Case::default()
        },
        Case {
            name: "unknown, no ladder",
            health: Health::Unknown,
            expect: "idle",
            ..Case::default()
        },
        Case {
            name: "unhealthy starts the ladder",
            expect: "act CollectDiagnostics#1 web-a",
            ..Case::default()
        },
        Case {
            name: "diagnostics capture the pods failing their probes too",
            pods: &["web-a:3600:u", "web-b:3600:f", "web-c:3600:"],
            expect: "act CollectDiagnostics#1 web-a,web-b",
            ..Case::default()
        },
        Case {
            name: "diagnostics wait 0s: the next step follows at once",
            ladder: Some((1, 9_990)),
            history: vec![rec(Action::CollectDiagnostics, 1, 9_990, Succeeded)],
            expect: "act RestartPods#2 web-a",
            ..Case::default()
        },
        Case {
            name: "a step gets its timeout",
            ladder: Some((2, 9_000)),
            history: vec![rec(Action::RestartPods, 2, 9_950, Succeeded)],
            expect: "wait 2 until 10070",
            ..Case::default()
        },
        Case {
            name: "then escalates",
            ladder: Some((2, 9_000)),
            history: vec![rec(Action::RestartPods, 2, 9_880, Succeeded)],
            expect: "act RolloutRestart#3 web-a",
            ..Case::default()
        },
        Case {
            name: "a failed step escalates after its timeout too",
            ladder: Some((3, 9_000)),
            history: vec![rec(Action::RolloutRestart, 3, 9_000, Failed)],
            expect: "act ScaleOut#4 web-a",
            ..Case::default()
        },
        Case {
            name: "a skipped step moves on at once",
            ladder: Some((2, 9_000)),
            history: vec![rec(Action::RestartPods, 2, 9_999, Skipped)],
            expect: "act RolloutRestart#3 web-a",
            ..Case::default()
        },
        Case {
            name: "recovery closes the ladder",
            health: Health::Healthy,
            ladder: Some((3, 9_000)),
            expect: "recovered after 3",
            ..Case::default()
        },
        Case {
            name: "no verdict mid-ladder waits",
            health: Health::Unknown,
            ladder: Some((3, 9_000)),
            expect: "wait 3",
            ..Case::default()
        },
        Case {
            name: "a pending intent is resumed",
            ladder: Some((3, 9_000)),
            history: vec![rec(Action::RolloutRestart, 3, 9_999, Pending)],
            expect: "resume RolloutRestart#3",
            ..Case::default()
        },
        Case {
            name: "a pending intent is settled even once the target is healthy",
            health: Health::Healthy,
            ladder: Some((3, 9_000)),
            history: vec![rec(Action::RolloutRestart, 3, 9_999, Pending)],
            expect: "resume RolloutRestart#3",
            ..Case::default()
        },
        Case {
            name: "and before there is a verdict",
            health: Health::Unknown,
            ladder: Some((3, 9_000)),
            history: vec![rec(Action::RolloutRestart, 3, 9_999, Pending)],
            expect: "resume RolloutRestart#3",
            ..Case::default()
        },
        Case {
            name: "a pending intent of an action the step no longer has is not resumed",
            ladder: Some((3, 9_000)),
            history: vec![rec(Action::ScaleOut, 3, 9_999, Pending)],
            expect: "wait 3 until 10299",
            ..Case::default()
        },
        Case {
            name: "all steps ran",
            ladder: Some((5, 9_000)),
            history: vec![rec(Action::Notify, 5, 9_000, Succeeded)],
            expect: "hold LadderExhausted",
            ..Case::default()
        },
        Case {
            name: "no steps only reports",
            remediation: json!({"steps": []}),
            expect: "hold NoRemediation",
            ..Case::default()
        },
        Case {
            name: "dry run decides the same step",
            remediation: json!({"dryRun": true}),
            expect: "dry-run CollectDiagnostics#1",
            ..Case::default()
        },
    ];
    for case in &cases {
        assert_eq!(run(case), case.expect, "{}", case.name);
    }
}

#[test]
fn the_guards() {
    use RemediationResult::*;
    let restart_pods = json!({"steps": [{"action": "RestartPods", "timeout": "2m"}, {"action": "Notify", "notify": {"urlSecretRef": {"name": "hook", "key": "url"}}}]});
    let cases = [
        Case {
            name: "cooldown holds a change until it expires",
            remediation: json!({"cooldown": "10m"}),
            ladder: Some((2, 9_000)),
            history: vec![rec(Action::RestartPods, 2, 9_800, Succeeded)],
            expect: "hold Cooldown RolloutRestart#3 until 10400",
            ..Case::default()
        },
        Case {
            name: "cooldown counts dry runs only in dry run",
            remediation: json!({"cooldown": "10m"}),
            history: vec![Entry {
                dry_run: true,
                ..rec(Action::RestartPods, 2, 9_800, Succeeded)
            }],
            expect: "act CollectDiagnostics#1 web-a",
            ..Case::default()
        },
        Case {
            name: "cooldown never holds diagnostics or notify",
            remediation: json!({"cooldown": "10m"}),
            history: vec![rec(Action::RolloutRestart, 3, 9_800, Succeeded)],
            expect: "act CollectDiagnostics#1 web-a",
            ..Case::default()
        },
        Case {
            name: "minPodAge holds a restart of a young pod",
            remediation: json!({"minPodAge": "5m", "steps": restart_pods["steps"].clone()}),
            pods: &["web-a:60:u", "web-b:3600:"],
            expect: "hold MinPodAge RestartPods#1 until 10240",
            ..Case::default()
        },
        Case {
            name: "minPodAge: RestartPods takes the old unhealthy pods only",
            remediation: json!({"minPodAge": "5m", "steps": [{"action": "RestartPods", "restartPods": {"maxUnavailable": 2}}]}),
            pods: &["web-a:60:u", "web-b:3600:u", "web-c:3600:"],
            expect: "act RestartPods#1 web-b",
            ..Case::default()
        },
        Case {
            name: "RestartPods takes at most maxUnavailable, not-ready pods first",
            remediation: restart_pods.clone(),
            pods: &["web-a:3600:u", "web-b:3600:un", "web-c:3600:"],
            expect: "act RestartPods#1 web-b",
            ..Case::default()
        },
        Case {
            name: "the circuit opens after maxRemediations within the window",
            remediation: json!({"maxRemediations": {"count": 2, "window": "1h"}, "cooldown": "0s"}),
            ladder: Some((2, 8_000)),
            history: vec![
                rec(Action::RestartPods, 2, 9_000, Succeeded),
                rec(Action::RolloutRestart, 3, 7_000, Succeeded),
            ],
            now: 9_200,
            expect: "hold CircuitOpen RolloutRestart#3 until 10600",
            ..Case::default()
        },
        Case {
            name: "the circuit closes as they leave the window",
            remediation: json!({"maxRemediations": {"count": 2, "window": "1h"}, "cooldown": "0s"}),
            ladder: Some((2, 8_000)),
            history: vec![
                rec(Action::RestartPods, 2, 9_000, Succeeded),
                rec(Action::RolloutRestart, 3, 7_000, Succeeded),
            ],
            now: 10_600,
            expect: "act RolloutRestart#3 web-a",
            ..Case::default()
        },
        Case {
            name: "the storm guard skips a restart when most pods are unhealthy",
            remediation: json!({"maxUnhealthyPercent": 50}),
            pods: &["web-a:3600:u", "web-b:3600:u", "web-c:3600:"],
            ladder: Some((1, 9_990)),
            history: vec![rec(Action::CollectDiagnostics, 1, 9_990, Succeeded)],
            expect: "skip RestartPods#2 StormGuard",
            ..Case::default()
        },
        Case {
            name: "the storm guard counts pods failing but not judged yet",
            remediation: json!({"maxUnhealthyPercent": 50}),
            pods: &["web-a:3600:u", "web-b:3600:f", "web-c:3600:"],
            ladder: Some((1, 9_990)),
            history: vec![rec(Action::CollectDiagnostics, 1, 9_990, Succeeded)],
            expect: "skip RestartPods#2 StormGuard",
            ..Case::default()
        },
        Case {
            name: "a failing pod is not restarted before it is judged",
            pods: &["web-a:3600:u", "web-b:3600:f", "web-c:3600:"],
            ladder: Some((1, 9_990)),
            history: vec![rec(Action::CollectDiagnostics, 1, 9_990, Succeeded)],
            expect: "act RestartPods#2 web-a",
            ..Case::default()
        },
        Case {
            name: "the storm guard lets scale-out run",
            remediation: json!({"maxUnhealthyPercent": 50}),
            pods: &["web-a:3600:u", "web-b:3600:u", "web-c:3600:"],
            ladder: Some((3, 9_000)),
            history: vec![rec(Action::RolloutRestart, 3, 9_000, Skipped)],
            expect: "act ScaleOut#4 web-a,web-b",
            ..Case::default()
        },
        Case {
            name: "at the limit the storm guard lets a restart run",
            remediation: json!({"maxUnhealthyPercent": 50}),
            pods: &["web-a:3600:u", "web-b:3600:"],
            ladder: Some((1, 9_990)),
            history: vec![rec(Action::CollectDiagnostics, 1, 9_990, Succeeded)],
            expect: "act RestartPods#2 web-a",
            ..Case::default()
        },
        Case {
            name: "a single pod is never a storm",
            remediation: json!({"maxUnhealthyPercent": 50}),
            pods: &["web-a:3600:u"],
            ladder: Some((1, 9_990)),
            history: vec![rec(Action::CollectDiagnostics, 1, 9_990, Succeeded)],
            expect: "act RestartPods#2 web-a",
            ..Case::default()
        },
        Case {
            name: "a rollout in progress holds restarts",
            rollout: Some("1 of 3 replicas updated"),
            ladder: Some((1, 9_990)),
            history: vec![rec(Action::CollectDiagnostics, 1, 9_990, Succeeded)],
            expect: "hold RolloutInProgress RestartPods#2",
            ..Case::default()
        },
        Case {
            name: "but not diagnostics",
            rollout: Some("1 of 3 replicas updated"),
            expect: "act CollectDiagnostics#1 web-a",
            ..Case::default()
        },
        Case {
            name: "an eviction refused by a budget waits for its retry",
            remediation: restart_pods.clone(),
            ladder: Some((1, 9_950)),
            history: vec![Entry {
                retry_at: Some(t(10_020)),
                ..rec(Action::RestartPods, 1, 9_950, Held)
            }],
            expect: "hold DisruptionBudget RestartPods#1 until 10020",
            ..Case::default()
        },
        Case {
            name: "or until the step's time is up, if that comes first",
            remediation: restart_pods.clone(),
            ladder: Some((1, 9_950)),
            history: vec![Entry {
                retry_at: Some(t(10_100)),
                ..rec(Action::RestartPods, 1, 9_950, Held)
            }],
            expect: "hold DisruptionBudget RestartPods#1 until 10070",
            ..Case::default()
        },
        Case {
            name: "and is tried again with its first mark",
            remediation: restart_pods.clone(),
            ladder: Some((1, 9_950)),
            history: vec![Entry {
                retry_at: Some(t(9_990)),
                ..rec(Action::RestartPods, 1, 9_950, Held)
            }],
            expect: "act RestartPods#1 web-a",
            ..Case::default()
        },
        Case {
            name: "until the step's time is up: then the ladder escalates",
            remediation: restart_pods.clone(),
            ladder: Some((1, 9_000)),
            history: vec![Entry {
                retry_at: Some(t(10_020)),
                ..rec(Action::RestartPods, 1, 9_000, Held)
            }],
            expect: "act Notify#2 web-a",
            ..Case::default()
        },
        Case {
            name: "another policy acting on the target holds changes",
            budget: Budget {
                busy_with: Some("web-latency".into()),
                ..Budget::default()
            },
            ladder: Some((1, 9_990)),
            history: vec![rec(Action::CollectDiagnostics, 1, 9_990, Succeeded)],
            expect: "hold TargetBusy RestartPods#2 until 10030",
            ..Case::default()
        },
        Case {
            name: "but not diagnostics",
            budget: Budget {
                busy_with: Some("web-latency".into()),
                ..Budget::default()
            },
            expect: "act CollectDiagnostics#1 web-a",
            ..Case::default()
        },
        Case {
            name: "a workload another policy owns is only observed: no step at all",
            budget: Budget {
                owned_by: Some("shop/checkout".into()),
                ..Budget::default()
            },
            expect: "hold OwnedElsewhere CollectDiagnostics#1",
            ..Case::default()
        },
        Case {
            name: "not even in a dry run",
            remediation: json!({"dryRun": true}),
            budget: Budget {
                owned_by: Some("shop/checkout".into()),
                ..Budget::default()
            },
            expect: "hold OwnedElsewhere CollectDiagnostics#1",
            ..Case::default()
        },
        Case {
            name: "a selector policy's maxConcurrent holds a further workload's ladder",
            budget: Budget {
                siblings_acting: 2,
                policy_max: Some(2),
                ..Budget::default()
            },
            ladder: Some((1, 9_990)),
            history: vec![rec(Action::CollectDiagnostics, 1, 9_990, Succeeded)],
            expect: "hold PolicyLimit RestartPods#2 until 10030",
            ..Case::default()
        },
        Case {
            name: "below its maxConcurrent it runs",
            budget: Budget {
                siblings_acting: 1,
                policy_max: Some(2),
                ..Budget::default()
            },
            ladder: Some((1, 9_990)),
            history: vec![rec(Action::CollectDiagnostics, 1, 9_990, Succeeded)],
            expect: "act RestartPods#2 web-a",
            ..Case::default()
        },
        Case {
            name: "the global cap holds new ladders",
            budget: Budget {
                active_elsewhere: 3,
                max: Some(3),
                ..Budget::default()
            },
            ladder: Some((1, 9_990)),
            history: vec![rec(Action::CollectDiagnostics, 1, 9_990, Succeeded)],
            expect: "hold GlobalLimit RestartPods#2 until 10030",
            ..Case::default()
        },
        Case {
            name: "below the cap they run",
            budget: Budget {
                active_elsewhere: 2,
                max: Some(3),
                ..Budget::default()
            },
            ladder: Some((1, 9_990)),
            history: vec![rec(Action::CollectDiagnostics, 1, 9_990, Succeeded)],
            expect: "act RestartPods#2 web-a",
            ..Case::default()
        },
        Case {
            name: "a dry run passes coordination guards",
            remediation: json!({"dryRun": true}),
            budget: Budget {
                busy_with: Some("other".into()),
                active_elsewhere: 9,
                max: Some(1),
                siblings_acting: 9,
                policy_max: Some(1),
                owned_by: None,
            },
            ladder: Some((1, 9_990)),
            history: vec![Entry {
                dry_run: true,
                ..rec(Action::CollectDiagnostics, 1, 9_990, Succeeded)
            }],
            expect: "dry-run RestartPods#2",
            ..Case::default()
        },
    ];
    for case in &cases {
        assert_eq!(run(case), case.expect, "{}", case.name);
    }
}

#[test]
fn pods_a_restart_replaces_are_captured_first_unless_this_ladder_already_did() {
    let settings = policy()
        .with_spec(json!({"remediation": {"steps": [
            {"action": "CollectDiagnostics"},
            {"action": "RestartPods", "restartPods": {"maxUnavailable": 2}},
            {"action": "ScaleOut", "scaleOut": {"by": 1, "maxReplicas": 5}}
        ]}}))
        .settings();
    let pods = pods(&["web-a:3600:u", "web-b:3600:u"], 10_000);
    let mut status = Recorded {
        // The first step captured web-a only (web-b failed after it).
        ladder: Some(Position {
            step: 1,
            started_at: t(9_000),
            exhausted: false,
        }),
        history: vec![rec(
            Action::CollectDiagnostics,
            1,
            9_000,
            RemediationResult::Succeeded,
        )],
        captures: vec![Capture {
            config_map: "web-diagnostics-1".into(),
            at: t(9_000),
            pods: vec!["web-a".into()],
        }],
        ..Recorded::default()
    };
    let decide = |status: &Recorded| {
        plan(&PlanInput {
            settings: &settings.remediation,
            suspended: false,
            health: Health::Unhealthy,
            pods: &pods,
            recorded: status,
            rollout: None,
            budget: Budget::default(),
            now: t(10_000),
        })
    };
    let Plan::Act(r) = decide(&status) else {
        panic!("expected RestartPods")
    };
    assert_eq!(r.capture_first, ["web-b"]);
    // A capture from an earlier ladder does not count.
    status.captures[0].at = t(8_000);
    let Plan::Act(r) = decide(&status) else {
        panic!("expected RestartPods")
    };
    assert_eq!(r.capture_first, ["web-a", "web-b"]);
    // Scale-out replaces no pod: nothing to capture first.
    status.ladder = Some(Position {
        step: 2,
        started_at: t(9_000),
        exhausted: false,
    });
    status.history = vec![rec(Action::RestartPods, 2, 9_000, RemediationResult::Skipped)];
    let Plan::Act(r) = decide(&status) else {
        panic!("expected ScaleOut")
    };
    assert_eq!(r.action(), Action::ScaleOut);
    assert!(r.capture_first.is_empty());
}

#[test]
fn the_guards_are_in_their_documented_order() {
    // A cooldown outranks everything after it: a cooling-down, young, storming, rolling target
    // reports Cooldown.
    let case = Case {
        remediation: json!({"cooldown": "10m", "minPodAge": "1h", "maxUnhealthyPercent": 10}),
        pods: &["web-a:60:u", "web-b:60:u"],
        rollout: Some("rolling"),
        ladder: Some((1, 9_990)),
        history: vec![
            rec(Action::CollectDiagnostics, 1, 9_990, RemediationResult::Succeeded),
            rec(Action::RolloutRestart, 3, 9_900, RemediationResult::Succeeded),
        ],
        ..Case::default()
    };
    assert!(run(&case).starts_with("hold Cooldown"), "{}", run(&case));
    assert_eq!(GUARDS.len(), 10);
}

#[test]
fn a_scale_out_is_restored_once_healthy_long_enough() {
    let settings = policy().settings();
    let mut status = Recorded {
        verdict: Some((Health::Healthy, t(0))),
        raised: Some(Raised {
            kind: ScaledKind::Workload,
            name: "web".into(),
            original: 2,
            original_max: None,
            set: 4,
            set_max: None,
            restore_after: std::time::Duration::from_secs(1800),
        }),
        ..Recorded::default()
    };
    let input = |status: &Recorded, now: i64| {
        summary(&plan(&PlanInput {
            settings: &settings.remediation,
            suspended: false,
            health: Health::Healthy,
            pods: &[],
            recorded: status,
            rollout: None,
            budget: Budget::default(),
            now: t(now),
        }))
    };
    assert_eq!(input(&status, 1_000), "idle until 1800");
    assert_eq!(input(&status, 1_800), "restore web");
    status.raised = None;
    assert_eq!(input(&status, 1_800), "idle");
}

#[test]
fn revisit_time_is_when_a_wait_or_hold_ends() {
    assert_eq!(
        Plan::Wait {
            step: 1,
            until: Some(t(5))
        }
        .revisit_at(),
        Some(t(5))
    );
    assert_eq!(Plan::Idle { until: None }.revisit_at(), None);
}
