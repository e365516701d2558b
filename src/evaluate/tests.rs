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
    evaluator.retain(["web-new"]);
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

// ---- sliding-window and signal triggers ----

use std::time::Duration;

use crate::observation::{ContainerLimits, ContainerUsage, PodSignals, Usage};

fn with_triggers(triggers: serde_json::Value) -> Evaluator {
    let settings = policy()
        .with_spec(serde_json::json!({"triggers": triggers, "recovery": {"consecutiveSuccesses": 1}}))
        .settings();
    Evaluator::new(&settings)
}

fn coded(pod: &str, at: Timestamp, code: u16, path: &str) -> Sample {
    let mut s = sample(pod, at, (200..400).contains(&code));
    s.code = Some(code);
    s.detail = format!("HTTP {code}");
    s.path = path.into();
    s
}

fn slow(pod: &str, at: Timestamp, millis: u64) -> Sample {
    let mut s = sample(pod, at, true);
    s.latency = Duration::from_millis(millis);
    s
}

fn no_usage() -> Usage {
    Usage::Available(Default::default())
}

#[test]
fn status_codes_count_within_the_window_and_the_edge_is_exclusive() {
    let mut e = with_triggers(
        serde_json::json!([{"statusCodes": {"codes": ["502", "503"], "count": 3, "window": "1m"}}]),
    );
    for (secs, code) in [(0, 503), (10, 502), (20, 500), (30, 200)] {
        e.observe(&coded("web-1", t(secs), code, "/healthz"));
    }
    assert_eq!(
        e.verdict(t(30)).health,
        Health::Healthy,
        "two matching codes are below the threshold"
    );
    e.observe(&coded("web-1", t(40), 503, "/healthz"));
    let v = e.verdict(t(40));
    assert_eq!(v.health, Health::Unhealthy);
    assert_eq!(
        v.evidence[0].message,
        "web-1: 1 × 502, 2 × 503 in the last 1m (3 in all), threshold 3"
    );
    // At t=60 the 503 from t=0 is exactly one window old: out. Still unhealthy until recovery.
    let mut fresh =
        with_triggers(serde_json::json!([{"statusCodes": {"codes": ["503"], "count": 2, "window": "1m"}}]));
    fresh.observe(&coded("web-1", t(0), 503, "/healthz"));
    fresh.observe(&coded("web-1", t(59), 503, "/healthz"));
    assert_eq!(fresh.verdict(t(59)).health, Health::Unhealthy);
    let mut edge =
        with_triggers(serde_json::json!([{"statusCodes": {"codes": ["503"], "count": 2, "window": "1m"}}]));
    edge.observe(&coded("web-1", t(0), 503, "/healthz"));
    edge.observe(&coded("web-1", t(60), 503, "/healthz"));
    assert_ne!(
        edge.verdict(t(60)).health,
        Health::Unhealthy,
        "the sample exactly one window old is out"
    );
}

#[test]
fn status_codes_on_another_path_count_only_that_path() {
    let mut e = with_triggers(
        serde_json::json!([{"statusCodes": {"codes": ["500-599"], "count": 2, "window": "5m", "path": "/api"}}]),
    );
    for secs in [0, 10] {
        e.observe(&coded("web-1", t(secs), 503, "/healthz"));
        e.observe(&coded("web-1", t(secs), 200, "/api"));
    }
    assert_ne!(e.verdict(t(10)).health, Health::Unhealthy);
    for secs in [20, 30] {
        e.observe(&coded("web-1", t(secs), 500, "/api"));
    }
    let v = e.verdict(t(30));
    assert_eq!(v.health, Health::Unhealthy);
    assert_eq!(
        v.evidence[0].message,
        "web-1: 2 × 500 on /api in the last 5m, threshold 2"
    );
}

#[test]
fn slow_responses_count_timeouts_and_name_the_slowest() {
    let mut e = with_triggers(
        serde_json::json!([{"slowResponses": {"threshold": "500ms", "count": 3, "window": "2m"}}]),
    );
    e.observe(&slow("web-1", t(0), 800));
    e.observe(&slow("web-1", t(10), 500)); // not slower than the threshold
    e.observe(&slow("web-1", t(20), 1200));
    assert_ne!(e.verdict(t(20)).health, Health::Unhealthy);
    let mut timeout = sample("web-1", t(30), false);
    timeout.timed_out = true;
    timeout.code = None;
    e.observe(&timeout);
    let v = e.verdict(t(30));
    assert_eq!(v.health, Health::Unhealthy);
    assert_eq!(
        v.evidence[0].message,
        "web-1: 3 responses slower than 500ms in the last 2m (slowest 1.2s, 1 timed out), threshold 3"
    );
}

#[test]
fn error_rate_waits_for_min_samples_then_judges_the_share() {
    let mut e =
        with_triggers(serde_json::json!([{"errorRate": {"percent": 50, "window": "1m", "minSamples": 4}}]));
    e.observe(&sample("web-1", t(0), false));
    e.observe(&sample("web-1", t(5), false));
    e.observe(&sample("web-1", t(10), true));
    assert_ne!(
        e.verdict(t(10)).health,
        Health::Unhealthy,
        "3 samples are fewer than minSamples"
    );
    e.observe(&sample("web-1", t(15), true));
    let v = e.verdict(t(15));
    assert_eq!(
        v.health,
        Health::Unhealthy,
        "2 of 4 failed: 50% reaches the threshold"
    );
    assert_eq!(
        v.evidence[0].message,
        "web-1: 50% of 4 probes failed in the last 1m (2 failed), threshold 50%"
    );
    // A minute later the failures have left the window; good probes bring it back.
    for secs in [61, 66, 71, 76] {
        e.observe(&sample("web-1", t(secs), true));
    }
    assert_eq!(e.verdict(t(76)).health, Health::Healthy);
}

fn pod_signals(pod: &str, restarts: u32) -> PodSignals {
    PodSignals {
        pod: pod.into(),
        restart_count: restarts,
        limits: vec![ContainerLimits {
            container: "app".into(),
            memory_bytes: Some(1000),
            cpu_millis: Some(500),
        }],
        ..PodSignals::default()
    }
}

#[test]
fn restarts_count_increases_seen_within_the_window() {
    let mut e = with_triggers(serde_json::json!([{"restarts": {"count": 2, "window": "10m"}}]));
    // Restarts before the first sighting have no time: they are the baseline.
    e.observe_signals(t(0), &[pod_signals("web-1", 7)], &no_usage());
    assert_ne!(e.verdict(t(0)).health, Health::Unhealthy);
    e.observe_signals(t(60), &[pod_signals("web-1", 8)], &no_usage());
    assert_ne!(e.verdict(t(60)).health, Health::Unhealthy);
    e.observe_signals(t(120), &[pod_signals("web-1", 9)], &no_usage());
    let v = e.verdict(t(120));
    assert_eq!(v.health, Health::Unhealthy);
    assert_eq!(
        v.evidence[0].message,
        "web-1: 2 restarts in the last 10m, threshold 2"
    );
    // Ten minutes after the first counted restart it has left the window.
    e.observe(&sample("web-1", t(660), true));
    assert_eq!(e.verdict(t(660)).health, Health::Healthy);
}

#[test]
fn crash_loops_fire_the_restarts_trigger_at_once() {
    let mut e = with_triggers(serde_json::json!([{"restarts": {"count": 5, "window": "10m"}}]));
    let mut s = pod_signals("web-1", 3);
    s.crash_looping = vec!["app".into()];
    e.observe_signals(t(0), &[s], &no_usage());
    let v = e.verdict(t(0));
    assert_eq!(v.health, Health::Unhealthy);
    assert_eq!(
        v.evidence[0].message,
        "web-1: container app is in CrashLoopBackOff"
    );
}

#[test]
fn oom_kills_fire_while_recent() {
    let mut e = with_triggers(serde_json::json!([{"oomKilled": {"within": "10m"}}]));
    let mut s = pod_signals("web-1", 1);
    s.oom_killed = vec![("app".into(), t(0))];
    e.observe_signals(t(30), &[s.clone()], &no_usage());
    let v = e.verdict(t(30));
    assert_eq!(v.health, Health::Unhealthy);
    assert_eq!(
        v.evidence[0].message,
        format!("web-1: container app was OOMKilled at {}", t(0))
    );
    e.observe_signals(t(600), &[s], &no_usage());
    e.observe(&sample("web-1", t(600), true));
    assert_eq!(
        e.verdict(t(600)).health,
        Health::Healthy,
        "an OOM kill 10m old is history"
    );
}

fn usage(pod: &str, memory: u64, cpu: u64) -> Usage {
    Usage::Available(
        [(
            pod.to_owned(),
            vec![ContainerUsage {
                container: "app".into(),
                memory_bytes: memory,
                cpu_millis: cpu,
            }],
        )]
        .into_iter()
        .collect(),
    )
}

#[test]
fn memory_near_the_limit_must_last_for_the_duration() {
    let mut e = with_triggers(serde_json::json!([{"memory": {"percentOfLimit": 90, "for": "30s"}}]));
    e.observe_signals(t(0), &[pod_signals("web-1", 0)], &usage("web-1", 950, 10));
    assert_ne!(e.verdict(t(0)).health, Health::Unhealthy, "not for 30s yet");
    e.observe_signals(t(20), &[pod_signals("web-1", 0)], &usage("web-1", 850, 10));
    e.observe_signals(t(30), &[pod_signals("web-1", 0)], &usage("web-1", 960, 10));
    assert_ne!(
        e.verdict(t(30)).health,
        Health::Unhealthy,
        "the dip at t=20 restarted the clock"
    );
    e.observe_signals(t(60), &[pod_signals("web-1", 0)], &usage("web-1", 990, 10));
    let v = e.verdict(t(60));
    assert_eq!(v.health, Health::Unhealthy);
    assert_eq!(
        v.evidence[0].message,
        "web-1: container app uses 990 of its 1000 memory limit (99%) for 30s, threshold 90% of the limit for 30s"
    );
}

#[test]
fn memory_in_bytes_and_cpu_against_the_limit() {
    let mut e = with_triggers(serde_json::json!([
        {"memory": {"bytes": "1Ki"}},
        {"cpu": {"percentOfLimit": 80}}
    ]));
    e.observe_signals(t(0), &[pod_signals("web-1", 0)], &usage("web-1", 2048, 450));
    let v = e.verdict(t(0));
    let triggers: Vec<&str> = v.evidence.iter().map(|e| e.trigger.as_str()).collect();
    assert_eq!(triggers, ["cpu", "memory"]);
    assert_eq!(
        v.evidence[0].message,
        "web-1: container app uses 450m of its 500m CPU limit (90%) for 0s, threshold 80% of the limit for 0s"
    );
    assert_eq!(
        v.evidence[1].message,
        "web-1: container app uses 2Ki of memory for 0s, threshold 1Ki for 0s"
    );
}

#[test]
fn without_the_metrics_api_resource_triggers_are_inactive_and_say_so() {
    let mut e = with_triggers(
        serde_json::json!([{"memory": {"percentOfLimit": 90}}, {"consecutiveFailures": {"threshold": 1}}]),
    );
    e.observe_signals(
        t(0),
        &[pod_signals("web-1", 0)],
        &Usage::Unavailable("no metrics-server".into()),
    );
    e.observe(&sample("web-1", t(0), true));
    let v = e.verdict(t(0));
    assert_eq!(v.health, Health::Healthy);
    assert_eq!(
        v.notes,
        ["the memory and cpu triggers are inactive: no metrics-server"]
    );
    e.observe(&sample("web-1", t(10), false));
    assert_eq!(
        e.verdict(t(10)).health,
        Health::Unhealthy,
        "the other triggers keep working"
    );
}

#[test]
fn certificates_expiring_soon_or_expired_fire() {
    let mut e = with_triggers(serde_json::json!([{"certificateExpiresWithin": {"duration": "168h"}}]));
    let mut s = sample("web-1", t(0), true);
    s.certificate_not_after = Some(t(200 * 3600));
    e.observe(&s);
    assert_eq!(e.verdict(t(0)).health, Health::Healthy);
    let v = e.verdict(t(40 * 3600));
    assert_eq!(v.health, Health::Unhealthy);
    assert_eq!(
        v.evidence[0].message,
        format!(
            "web-1: the certificate expires at {} (in 160h), threshold 168h",
            t(200 * 3600)
        )
    );
    let mut expired = with_triggers(serde_json::json!([{"certificateExpiresWithin": {"duration": "1h"}}]));
    let mut s = sample("web-1", t(0), true);
    s.certificate_not_after = Some(t(-10));
    expired.observe(&s);
    assert!(
        expired.verdict(t(0)).evidence[0]
            .message
            .ends_with("the certificate expired at 2025-12-31T23:59:50Z")
    );
}

#[test]
fn config_changes_fire_with_the_sentence_from_the_signals() {
    let mut e = with_triggers(serde_json::json!([{"configChanged": {}}]));
    let mut s = pod_signals("web-1", 0);
    s.config_changed = vec!["ConfigMap web-config changed at X, after the pod started at Y".into()];
    e.observe_signals(t(0), &[s], &no_usage());
    let v = e.verdict(t(0));
    assert_eq!(v.health, Health::Unhealthy);
    assert_eq!(v.evidence[0].trigger, "configChanged");
    assert!(v.evidence[0].message.contains("ConfigMap web-config changed"));
}

#[test]
fn healthy_delay_holds_recovery_until_quiet_long_enough() {
    let settings = policy()
        .with_spec(serde_json::json!({
            "triggers": [{"consecutiveFailures": {"threshold": 1}}],
            "recovery": {"consecutiveSuccesses": 1, "healthyDelay": "1m"}
        }))
        .settings();
    let mut e = Evaluator::new(&settings);
    e.observe(&sample("web-1", t(0), false));
    assert_eq!(e.verdict(t(0)).health, Health::Unhealthy);
    e.observe(&sample("web-1", t(10), true));
    assert_eq!(e.verdict(t(10)).health, Health::Unhealthy, "quiet for 0s of 1m");
    e.observe(&sample("web-1", t(69), true));
    assert_eq!(e.verdict(t(69)).health, Health::Unhealthy, "quiet for 59s");
    e.observe(&sample("web-1", t(70), true));
    assert_eq!(e.verdict(t(70)).health, Health::Healthy, "quiet for 1m");
}

#[test]
fn a_clock_jump_backwards_keeps_samples_in_the_window() {
    let mut e =
        with_triggers(serde_json::json!([{"statusCodes": {"codes": ["503"], "count": 2, "window": "1m"}}]));
    e.observe(&coded("web-1", t(100), 503, "/healthz"));
    e.observe(&coded("web-1", t(110), 503, "/healthz"));
    // The clock went back a minute: samples "from the future" still count, nothing panics.
    assert_eq!(e.verdict(t(50)).health, Health::Unhealthy);
}

#[test]
fn a_new_trigger_firing_replaces_the_evidence_but_more_of_the_same_does_not() {
    let mut e = with_triggers(serde_json::json!([
        {"consecutiveFailures": {"threshold": 1}},
        {"restarts": {"count": 1, "window": "10m"}}
    ]));
    e.observe_signals(t(0), &[pod_signals("web-1", 0)], &no_usage());
    e.observe(&sample("web-1", t(0), false));
    let first = e.verdict(t(0));
    e.observe(&sample("web-1", t(10), false));
    assert!(
        !e.verdict(t(10)).differs_from(&first),
        "a second failure is more of the same"
    );
    e.observe_signals(t(20), &[pod_signals("web-1", 1)], &no_usage());
    let second = e.verdict(t(20));
    assert!(second.differs_from(&first));
    let triggers: Vec<&str> = second.evidence.iter().map(|e| e.trigger.as_str()).collect();
    assert_eq!(triggers, ["consecutiveFailures", "restarts"]);
    // Each says since when it fires: the one that kept firing keeps its start.
    let since: Vec<_> = second.evidence.iter().map(|e| e.since).collect();
    assert_eq!(since, [Some(t(0)), Some(t(20))]);
}

// ---- properties ----

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn settings_with_window(window_secs: u32, period: u32) -> crate::settings::Settings {
        policy()
            .with_spec(serde_json::json!({
                "probe": {"periodSeconds": period, "http": {"timeoutSeconds": 1}},
                "triggers": [{"errorRate": {"percent": 50, "window": format!("{window_secs}s"), "minSamples": 1}}]
            }))
            .settings()
    }

    proptest! {
        #[test]
        fn the_sample_ring_never_exceeds_its_bound(
            window in 1u32..3600, period in 2u32..120, outcomes in proptest::collection::vec(any::<bool>(), 0..600)
        ) {
            let settings = settings_with_window(window, period);
            let mut e = Evaluator::new(&settings);
            for (i, ok) in outcomes.iter().enumerate() {
                e.observe(&sample("web-1", t(i64::try_from(i).unwrap() * i64::from(period)), *ok));
                prop_assert!(e.samples_kept("web-1") <= settings.sample_capacity);
            }
            prop_assert!(settings.sample_capacity <= crate::api::validate::MAX_SAMPLES_PER_ENDPOINT);
            // The bound is big enough for the window: every sample within it is kept.
            let needed = usize::try_from(window.div_ceil(period)).unwrap();
            prop_assert!(settings.sample_capacity >= needed.min(crate::api::validate::MAX_SAMPLES_PER_ENDPOINT));
        }

        #[test]
        fn verdicts_are_stable_under_re_evaluation(
            outcomes in proptest::collection::vec(any::<bool>(), 1..60), extra in 0i64..5
        ) {
            let mut e = Evaluator::new(&settings_with_window(300, 10));
            for (i, ok) in outcomes.iter().enumerate() {
                e.observe(&sample("web-1", t(i64::try_from(i).unwrap() * 10), *ok));
            }
            let now = t(i64::try_from(outcomes.len()).unwrap() * 10);
            let first = e.verdict(now);
            for _ in 0..extra {
                let again = e.verdict(now);
                prop_assert_eq!(&again, &first);
            }
        }
    }
}

#[test]
fn a_verdict_recorded_before_a_restart_is_where_a_new_evaluator_starts() {
    let evidence = [Finding {
        trigger: "consecutiveFailures".into(),
        message: "web-a: 3 failed probes in a row (last: HTTP 503), threshold 3; web-b: 4 failed probes in a row (last: HTTP 502), threshold 3".into(),
        pods: vec!["web-a".into(), "web-b".into()],
        since: Some(t(-60)),
    }];
    let mut e = Evaluator::new(&policy().settings());
    e.resume(&evidence, t(0));
    // A healthy sibling's first good probe does not make the target look healthy: the resumed pods
    // are Unhealthy until they recover (two good probes), as before the restart.
    e.observe(&sample("web-c", t(0), true));
    let v = e.verdict(t(0));
    assert_eq!(v.health, U);
    assert_eq!(v.unhealthy, ["web-a", "web-b"]);
    assert_eq!(
        v.evidence[0].message, evidence[0].message,
        "the evidence carries over"
    );
    assert_eq!(v.evidence[0].since, Some(t(-60)));
    assert_eq!(run(&mut e, "web-a", "++"), [U, U], "web-b is still unhealthy");
    assert_eq!(run(&mut e, "web-b", "+"), [U]);
    assert_eq!(run(&mut e, "web-b", "+"), [H], "both recovered");
}

#[test]
fn resumed_evidence_of_a_trigger_the_policy_no_longer_has_is_dropped() {
    let evidence = [Finding {
        trigger: "slowResponses".into(),
        message: "web-a: 3 responses slower than 2s".into(),
        pods: vec!["web-a".into()],
        since: None,
    }];
    let mut e = Evaluator::new(&policy().settings());
    e.resume(&evidence, t(0));
    e.observe(&sample("web-a", t(0), true));
    assert_eq!(e.verdict(t(0)).health, H);
}

#[test]
fn fold_judges_the_endpoint_at_once_and_says_when_the_verdict_may_change() {
    let mut e = Evaluator::new(&policy().settings());
    // threshold 3, recovery 2: (pod, ok, fold says changed, health of the target after summing up)
    let steps: &[(&str, bool, bool, Health)] = &[
        ("web-1", true, true, H),  // first sample of web-1
        ("web-2", true, true, H),  // first sample of web-2
        ("web-1", true, false, H), // nothing new
        ("web-2", false, false, H),
        ("web-2", false, false, H),
        ("web-2", false, true, U), // third failure: Unhealthy without waiting for web-1
        ("web-2", false, false, U),
        ("web-2", true, false, U),
        ("web-2", true, true, H), // recovered
    ];
    for (i, (pod, ok, changed, health)) in steps.iter().enumerate() {
        let now = t(i64::try_from(i).unwrap() * 10);
        assert_eq!(e.fold(&sample(pod, now, *ok), now), *changed, "step {i}");
        assert_eq!(e.summarize(now).health, *health, "step {i}");
    }
}

#[test]
fn pods_failing_but_not_yet_judged_are_listed_apart() {
    let mut e = Evaluator::new(&policy().settings());
    let now = t(0);
    for (pod, pattern) in [("web-1", "---"), ("web-2", "+-"), ("web-3", "-+")] {
        for c in pattern.chars() {
            e.fold(&sample(pod, now, c == '+'), now);
        }
    }
    let v = e.summarize(now);
    assert_eq!(v.unhealthy, ["web-1"]);
    assert_eq!(v.failing, ["web-2"], "web-3's latest probe succeeded");
}

#[test]
fn a_kept_sample_stays_small_so_probe_state_per_endpoint_stays_within_4_kib() {
    // A 5m window at 10s keeps 32 samples: 32 × 40 bytes, plus the endpoint's other state.
    assert!(
        std::mem::size_of::<Kept>() <= 40,
        "{}",
        std::mem::size_of::<Kept>()
    );
    let settings = policy()
        .with_spec(serde_json::json!({"triggers": [{"errorRate": {"percent": 50, "window": "5m"}}]}))
        .settings();
    // A map node of 11 slots, however few endpoints (a policy over one pod has one).
    let node = 11 * std::mem::size_of::<(String, Box<EndpointState>)>();
    let per_endpoint =
        settings.sample_capacity * std::mem::size_of::<Kept>() + std::mem::size_of::<EndpointState>() + node;
    assert!(per_endpoint <= 4096, "{per_endpoint} bytes per endpoint");
}
