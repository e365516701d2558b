//! Micro-benchmarks of the hot pure paths: folding a probe sample into an endpoint's ring and
//! judging it, judging a whole target, and planning a remediation. `make bench` runs them (and
//! `cargo bench --bench decide` alone); criterion reports changes against the previous run.

use std::{hint::black_box, time::Duration};

use apphealth_operator::{
    api::{AppHealthPolicySpec, Health},
    evaluate::Evaluator,
    observation::Sample,
    plan::{Budget, PlanInput, PodFacts, plan},
    settings::{self, Settings},
};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jiff::Timestamp;

fn settings(triggers: serde_json::Value) -> Settings {
    let spec: AppHealthPolicySpec = serde_json::from_value(serde_json::json!({
        "targetRef": {"kind": "Deployment", "name": "web"},
        "probe": {"http": {"port": "http", "path": "/healthz"}, "periodSeconds": 10},
        "triggers": triggers,
        "remediation": {"steps": [
            {"action": "CollectDiagnostics"},
            {"action": "RestartPods", "restartPods": {"maxUnavailable": 1}},
            {"action": "RolloutRestart"},
            {"action": "ScaleOut", "scaleOut": {"by": 2, "maxReplicas": 20}}
        ], "maxUnhealthyPercent": 50, "minPodAge": "1m"}
    }))
    .expect("bench policy deserializes");
    settings::validate(&spec).expect("bench policy is valid")
}

/// Every kind of probe trigger, over windows that fill the ring.
fn all_triggers() -> serde_json::Value {
    serde_json::json!([
        {"consecutiveFailures": {"threshold": 3}},
        {"statusCodes": {"codes": ["502", "503"], "count": 5, "window": "5m"}},
        {"slowResponses": {"threshold": "500ms", "count": 5, "window": "5m"}},
        {"errorRate": {"percent": 20, "window": "5m", "minSamples": 10}}
    ])
}

fn sample(endpoint: &str, at: Timestamp, ok: bool) -> Sample {
    Sample {
        endpoint: endpoint.to_owned(),
        path: "/healthz".to_owned(),
        at,
        ok,
        code: Some(if ok { 200 } else { 503 }),
        latency: Duration::from_millis(3),
        detail: if ok { "HTTP 200" } else { "HTTP 503" }.to_owned(),
        reason: if ok { "" } else { "HTTPStatus" },
        timed_out: false,
        certificate_not_after: None,
    }
}

fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().expect("valid time")
}

fn at(i: i64) -> Timestamp {
    t0() + jiff::SignedDuration::from_secs(i * 10)
}

/// An evaluator over `pods` endpoints with full rings.
fn warmed(settings: &Settings, pods: usize) -> (Evaluator, i64) {
    let mut e = Evaluator::new(settings);
    let rounds = i64::try_from(settings.sample_capacity).unwrap_or(64) + 1;
    for i in 0..rounds {
        for p in 0..pods {
            e.fold(&sample(&format!("web-{p}"), at(i), true), at(i));
        }
    }
    (e, rounds)
}

fn evaluate(c: &mut Criterion) {
    let settings = settings(all_triggers());
    let mut group = c.benchmark_group("evaluate");
    // One sample into a full ring, judged against every trigger: the per-probe cost.
    group.bench_function("fold one sample, 4 triggers, full ring", |b| {
        let (mut e, mut i) = warmed(&settings, 1);
        b.iter(|| {
            i += 1;
            black_box(e.fold(&sample("web-0", at(i), i % 7 != 0), at(i)))
        })
    });
    // The once-per-period judging of a whole target.
    for pods in [10, 1_000] {
        group.bench_function(format!("verdict over {pods} endpoints"), |b| {
            let (mut e, i) = warmed(&settings, pods);
            b.iter(|| black_box(e.verdict(at(i))))
        });
    }
    group.finish();
}

fn ring(c: &mut Criterion) {
    let settings = settings(serde_json::json!([{"consecutiveFailures": {"threshold": 3}}]));
    c.bench_function("ring: push into a full ring", |b| {
        let (mut e, mut i) = warmed(&settings, 1);
        b.iter(|| {
            i += 1;
            e.observe(black_box(&sample("web-0", at(i), true)));
        })
    });
}

fn planning(c: &mut Criterion) {
    let settings = settings(all_triggers());
    let pods: Vec<PodFacts> = (0..100)
        .map(|i| PodFacts {
            name: format!("web-{i}"),
            created: Some(t0()),
            ready: true,
            unhealthy: i < 3,
            failing: i == 3,
        })
        .collect();
    let recorded = apphealth_operator::record::Recorded::default();
    c.bench_function("plan: unhealthy target of 100 pods, 4-step ladder", |b| {
        b.iter_batched(
            || (),
            |()| {
                black_box(plan(&PlanInput {
                    settings: &settings.remediation,
                    suspended: false,
                    health: Health::Unhealthy,
                    pods: &pods,
                    recorded: &recorded,
                    rollout: None,
                    budget: Budget::default(),
                    now: at(1_000),
                }))
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, evaluate, ring, planning);
criterion_main!(benches);
