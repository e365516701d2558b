use super::*;
use crate::{
    api::Health,
    fixtures::{PolicyExt, at, policy, sample},
};

fn t(secs: i64) -> Timestamp {
    at("2026-01-01T00:00:00Z") + jiff::SignedDuration::from_secs(secs)
}

/// Feeds `pattern` ('+' ok, '-' fail) for one pod, 10 s apart, returning the health after each.
fn run(evaluator: &mut Evaluator, pod: &str, pattern: &str) -> Vec<Health> {
    pattern
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let now = t(i64::try_from(i).unwrap() * 10);
            evaluator.observe(&sample(pod, now, c == '+'));
            evaluator.verdict(now).health
        })
        .collect()
}

use Health::{Healthy as H, Unhealthy as U, Unknown as N};

#[test]
fn consecutive_failures_and_recovery_table() {
    // threshold 3, recovery 2
    let cases: &[(&str, &[Health])] = &[
        ("", &[]),
        ("-", &[N]),
        ("--", &[N, N]),
        ("---", &[N, N, U]),
        ("+", &[H]),
        ("+--", &[H, H, H]),
        ("+---", &[H, H, H, U]),
        ("+--+---", &[H, H, H, H, H, H, U]),
        ("---+", &[N, N, U, U]),
        ("---++", &[N, N, U, U, H]),
        ("---+-++", &[N, N, U, U, U, U, H]),
        ("---++---", &[N, N, U, U, H, H, H, U]),
    ];
    for (pattern, expected) in cases {
        let mut evaluator = Evaluator::new(&policy().settings());
        assert_eq!(
            run(&mut evaluator, "web-1", pattern),
            *expected,
            "pattern {pattern:?}"
        );
    }
}

#[test]
fn threshold_one_fires_on_the_first_failure() {
    let settings = policy()
        .with_spec(
            serde_json::json!({"triggers": [{"consecutiveFailures": {"threshold": 1}}],
                                      "recovery": {"consecutiveSuccesses": 1}}),
        )
        .settings();
    let mut evaluator = Evaluator::new(&settings);
    assert_eq!(run(&mut evaluator, "web-1", "+-+-"), vec![H, U, H, U]);
}

#[test]
fn no_triggers_means_three_failures() {
    let settings = policy()
        .with_spec(serde_json::json!({"triggers": null}))
        .settings();
    let mut evaluator = Evaluator::new(&settings);
    assert_eq!(run(&mut evaluator, "web-1", "---"), vec![N, N, U]);
}

#[test]
fn target_is_unhealthy_when_any_pod_is_and_evidence_names_it() {
    let mut evaluator = Evaluator::new(&policy().settings());
    for i in 0..3 {
        evaluator.observe(&sample("web-a", t(i * 10), true));
        evaluator.observe(&sample("web-b", t(i * 10), false));
    }
    let verdict = evaluator.verdict(t(30));
    assert_eq!(verdict.health, Health::Unhealthy);
    assert_eq!(verdict.unhealthy, vec!["web-b".to_owned()]);
    assert_eq!((verdict.probed, verdict.healthy), (2, 1));
    assert_eq!(verdict.evidence.len(), 1);
    let evidence = &verdict.evidence[0];
    assert_eq!(evidence.trigger, "consecutiveFailures");
    assert_eq!(evidence.pods, vec!["web-b".to_owned()]);
    assert_eq!(
        evidence.message,
        "web-b: 3 failed probes in a row (last: HTTP 503), threshold 3"
    );
    assert!(
        verdict
            .summary()
            .contains("1 of 2 endpoints are unhealthy (web-b)"),
        "{}",
        verdict.summary()
    );
}

#[test]
fn evidence_stays_stable_while_failures_continue() {
    let mut evaluator = Evaluator::new(&policy().settings());
    run(&mut evaluator, "web-1", "---");
    let first = evaluator.verdict(t(30));
    evaluator.observe(&sample("web-1", t(40), false));
    evaluator.observe(&sample("web-1", t(50), false));
    let later = evaluator.verdict(t(50));
    assert!(
        !later.differs_from(&first),
        "more failures must not rewrite evidence: {later:?}"
    );
    assert_eq!(later.since, first.since);
}

#[test]
fn since_marks_the_transition_not_the_latest_probe() {
    let mut evaluator = Evaluator::new(&policy().settings());
    evaluator.observe(&sample("web-1", t(0), true));
    assert_eq!(evaluator.verdict(t(0)).since, t(0));
    evaluator.observe(&sample("web-1", t(10), true));
    assert_eq!(evaluator.verdict(t(10)).since, t(0));
    for i in 2..5 {
        evaluator.observe(&sample("web-1", t(i * 10), false));
    }
    assert_eq!(evaluator.verdict(t(40)).since, t(40));
}

#[test]
fn forgotten_pods_no_longer_count() {
    let mut evaluator = Evaluator::new(&policy().settings());
    run(&mut evaluator, "web-old", "---");
    evaluator.observe(&sample("web-new", t(40), true));
    assert_eq!(evaluator.verdict(t(40)).health, Health::Unhealthy);
    evaluator.retain(&["web-new".to_owned()]);
    let verdict = evaluator.verdict(t(50));
    assert_eq!(verdict.health, Health::Healthy);
    assert_eq!(verdict.probed, 1);
}

#[test]
fn re_evaluating_without_new_samples_is_stable() {
    let mut evaluator = Evaluator::new(&policy().settings());
    run(&mut evaluator, "web-1", "+---");
    let a = evaluator.verdict(t(100));
    let b = evaluator.verdict(t(200));
    assert_eq!(a, b);
}
