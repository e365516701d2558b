//! The operator killed at every point of every action, then started again. A run without faults
//! lists the points: each write the operator makes from the moment the target fails until the
//! ladder is done (Events aside: they are best effort), and each read that gathers diagnostics.
//! Then, for each point, a fresh run kills the operator there — once before the request reaches
//! the API server (it never lands), once after the server carried it out but before the answer
//! arrived — and starts a new one. Every time, the step's action must have happened exactly once
//! and be recorded once as Succeeded: never repeated, never silently dropped.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use apphealth_testserver::{Fault, RecordedRequest};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::{
    flaky::Mode,
    harness::{Harness, NS},
    support::{wait_on_changes, wait_until},
};

/// Long enough for a resume after a restart, and for ScaleOut's restore.
const PATIENCE: Duration = Duration::from_secs(60);

/// Held back "forever": far beyond the length of any test.
const FOREVER: Duration = Duration::from_secs(3600);

/// Where a kill may fall: the operator's writes (Events aside) and the reads of diagnostics.
fn is_point(r: &RecordedRequest) -> bool {
    if r.is_watch() || r.path.contains("/events") {
        return false;
    }
    r.is_write() || r.path.ends_with("/log") || r.path.ends_with("/exec")
}

#[derive(Clone, Copy, Debug)]
enum Kill {
    /// The request never reaches the API server.
    Before,
    /// The API server carries it out; the operator never hears back.
    After,
}

/// One ladder step and what must have happened exactly once when it is done.
struct Case {
    step: Value,
    /// Requests (method, path suffix) that must have succeeded exactly this many times.
    once: &'static [(&'static str, &'static str, usize)],
    /// ScaleOut: heal the target after the step, and wait for the restore too.
    restores: bool,
}

async fn start(case: &Case) -> Harness {
    let mut h = Harness::new(2).await;
    h.create_policy("web", json!({"remediation": {"steps": [case.step.clone()]}}));
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h
}

/// Drives the scenario to its end (the pod fails; for ScaleOut, it heals after the step and the
/// replicas are put back) and returns the policy.
async fn finish(h: &Harness, case: &Case) -> Value {
    wait_on_changes(
        "the step to be recorded as Succeeded",
        PATIENCE,
        h.server.changes(),
        || {
            let p = h.policy("web");
            (p["status"]["history"][0]["result"] == "Succeeded").then_some(())
        },
    )
    .await;
    if !case.restores {
        return h.policy("web");
    }
    h.set_all(Mode::Healthy);
    wait_on_changes(
        "the replicas to be put back",
        PATIENCE,
        h.server.changes(),
        || {
            let p = h.policy("web");
            let back = h.deployment()["spec"]["replicas"] == 2 && p["status"]["scaleRestore"].is_null();
            back.then_some(p)
        },
    )
    .await
}

fn succeeded(h: &Harness, method: &str, suffix: &str) -> usize {
    h.server
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.ends_with(suffix) && (200..300).contains(&r.status))
        .count()
}

fn assert_once(h: &Harness, case: &Case, policy: &Value, at: &str) {
    let history = policy["status"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{at}: one record: {history:?}");
    assert_eq!(history[0]["result"], "Succeeded", "{at}: {history:?}");
    for (method, suffix, times) in case.once {
        assert_eq!(
            succeeded(h, method, suffix),
            *times,
            "{at}: {method} …{suffix} carried out {times} time(s)"
        );
    }
}

/// The kill points of a run without faults, as (method, path).
async fn points(case: &Case) -> Vec<(String, String)> {
    let mut h = start(case).await;
    h.server.clear_requests();
    h.set_all(Mode::Status(503));
    let policy = finish(&h, case).await;
    assert_once(&h, case, &policy, "without faults");
    h.stop_operator().await;
    h.server
        .requests()
        .into_iter()
        .filter(is_point)
        .map(|r| (r.method, r.path))
        .collect()
}

/// One run killed at point `k`.
async fn killed_at(case: &Case, k: usize, kill: Kill, expect: &(String, String)) {
    let at = format!("killed {kill:?} point {k} ({} {})", expect.0, expect.1);
    let mut h = start(case).await;
    h.server.clear_requests();
    let seen = Arc::new(AtomicUsize::new(0));
    let hit = Arc::new(Mutex::new(None::<(String, String)>));
    let (counter, victim) = (seen.clone(), hit.clone());
    h.server.set_fault_hook(move |r| {
        if !is_point(r) || counter.fetch_add(1, SeqCst) != k {
            return None;
        }
        *victim.lock().unwrap() = Some((r.method.clone(), r.path.clone()));
        Some(match kill {
            Kill::Before => Fault::Delay(FOREVER),
            Kill::After => Fault::AnswerLate(FOREVER),
        })
    });
    h.set_all(Mode::Status(503));
    let victim = wait_until(&format!("{at}: the point is reached"), PATIENCE, || async {
        // ScaleOut's restore comes once the target is healthy again.
        if case.restores && h.policy("web")["status"]["history"][0]["result"] == "Succeeded" {
            h.set_all(Mode::Healthy);
        }
        hit.lock().unwrap().clone()
    })
    .await;
    if let Kill::After = kill {
        wait_until(&format!("{at}: carried out"), PATIENCE, || async {
            h.server
                .requests()
                .iter()
                .any(|r| (r.method.clone(), r.path.clone()) == victim && r.status != 0)
                .then_some(())
        })
        .await;
    }
    h.kill_operator().await;
    h.server.clear_fault_hook();
    h.start_operator(Some(NS));
    let policy = finish(&h, case).await;
    assert_once(&h, case, &policy, &format!("{at}, actually {victim:?}"));
    h.stop_operator().await;
}

async fn every_point(case: Case) {
    let points = points(&case).await;
    eprintln!("kill points: {points:?}");
    assert!(points.len() >= 3, "intent, action, result at least: {points:?}");
    // Each run has a test server and pods of its own, so the runs need not wait for each other;
    // a few at a time, so that a loaded machine still gives each its probe rounds.
    let runs = points
        .iter()
        .enumerate()
        .flat_map(|(k, point)| [Kill::Before, Kill::After].map(|kill| (k, kill, point)));
    futures::stream::iter(runs)
        .for_each_concurrent(RUNS_AT_ONCE, |(k, kill, point)| killed_at(&case, k, kill, point))
        .await;
}

/// Kill-point runs of one case carried out at once.
const RUNS_AT_ONCE: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_pods_killed_at_every_point() {
    every_point(Case {
        step: json!({"action": "RestartPods", "timeout": "1h"}),
        once: &[("POST", "/eviction", 1)],
        restores: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_restart_killed_at_every_point() {
    every_point(Case {
        step: json!({"action": "RolloutRestart", "timeout": "1h"}),
        once: &[("PATCH", "/deployments/web", 1)],
        restores: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_diagnostics_killed_at_every_point() {
    every_point(Case {
        step: json!({"action": "CollectDiagnostics", "timeout": "1h"}),
        once: &[("POST", "/configmaps", 1)],
        restores: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_and_its_restore_killed_at_every_point() {
    every_point(Case {
        step: json!({"action": "ScaleOut", "timeout": "1h",
                     "scaleOut": {"by": 2, "maxReplicas": 10, "restoreAfter": "1s"}}),
        // Once up from 2 to 4, once back down.
        once: &[("PATCH", "/deployments/web/scale", 2)],
        restores: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_stopped_as_it_starts_stops_at_once() {
    // Before its caches are filled, kube-runtime's graceful shutdown would wait for good.
    let mut h = Harness::new(1).await;
    h.create_policy("web", json!({}));
    for _ in 0..3 {
        h.start_operator(Some(NS));
        h.stop_operator().await;
    }
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.stop_operator().await;
}
