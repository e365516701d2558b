//! Each guard holding an action back in a controller scenario, with its reason in the
//! RemediationBlocked condition and an Event (the planner's table tests cover every edge). The
//! guards a cluster decides (the storm guard beside a scale-out, two policies on one workload, a
//! rollout the Deployment controller has not finished) run on the local control plane:
//! tests/cluster/guards.rs.

use std::time::Duration;

use apphealth_operator::controller;
use serde_json::json;

use crate::{
    flaky::Mode,
    harness::{Harness, NS},
    support::blocked_message,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_wide_cap_holds_further_ladders() {
    let mut h = Harness::new(1).await;
    let other = h.add_workload("shop2").await;
    h.create_policy("web", json!({}));
    h.create_policy("shop2", json!({"targetRef": {"name": "shop2"}}));
    h.start_operator_with(controller::Config {
        namespaces: vec![NS.into()],
        max_concurrent_remediations: Some(1),
        ..h.config()
    });
    h.wait_condition("web", "Healthy", "True", None).await;
    h.wait_condition("shop2", "Healthy", "True", None).await;
    h.pod("web-a").app.set(Mode::Status(503));
    h.wait_remediation_result("web", "Succeeded").await;
    other.set(Mode::Status(503));
    let held = h
        .wait_condition("shop2", "RemediationBlocked", "True", Some("GlobalLimit"))
        .await;
    assert!(
        blocked_message(&held).contains("(--max-concurrent-remediations 1)"),
        "{}",
        blocked_message(&held)
    );
    assert_eq!(h.writes_to("/deployments/shop2"), 0);
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_in_progress_holds_restarts_until_it_completes() {
    let mut h = Harness::new(2).await;
    let rolling = json!({"status": {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2}});
    h.server
        .patch_status("apps/v1", "Deployment", Some(NS), "web", rolling)
        .unwrap();
    h.create_policy(
        "web",
        json!({"remediation": {"steps": [{"action": "RestartPods", "timeout": "1h"}]}}),
    );
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.pod("web-b").app.set(Mode::Status(503));
    let held = h
        .wait_condition("web", "RemediationBlocked", "True", Some("RolloutInProgress"))
        .await;
    assert!(
        blocked_message(&held).contains("mid-rollout (1 of 2 replicas updated)"),
        "{}",
        blocked_message(&held)
    );
    assert_eq!(h.writes_to("/eviction"), 0);

    let done = json!({"status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}});
    h.server
        .patch_status("apps/v1", "Deployment", Some(NS), "web", done)
        .unwrap();
    h.wait_record("web", "RestartPods", "Succeeded").await;
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn young_pods_wait_for_min_pod_age() {
    let mut h = Harness::new(1).await;
    h.create_policy(
        "web",
        json!({"remediation": {"minPodAge": "30m", "steps": [{"action": "RestartPods", "timeout": "1h"}]}}),
    );
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.set_all(Mode::Status(503));
    let held = h
        .wait_condition("web", "RemediationBlocked", "True", Some("MinPodAge"))
        .await;
    assert!(
        blocked_message(&held)
            .contains("would restart pod web-a, which is younger than spec.remediation.minPodAge (30m)"),
        "{}",
        blocked_message(&held)
    );
    h.wait_event("web", "MinPodAge").await;
    h.clock.jump(Duration::from_secs(31 * 60));
    h.touch_policy("web");
    h.wait_record("web", "RestartPods", "Succeeded").await;
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_opens_after_max_remediations() {
    let mut h = Harness::new(1).await;
    h.create_policy(
        "web",
        json!({"remediation": {"cooldown": "0s", "maxRemediations": {"count": 1, "window": "1h"}, "steps": [
            {"action": "RolloutRestart", "timeout": "1m"},
            {"action": "RolloutRestart", "timeout": "1h"}
        ]}}),
    );
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.set_all(Mode::Status(503));
    h.wait_remediation_result("web", "Succeeded").await;
    h.clock.jump(Duration::from_secs(120));
    h.touch_policy("web");
    let held = h
        .wait_condition("web", "RemediationBlocked", "True", Some("CircuitOpen"))
        .await;
    assert!(
        blocked_message(&held).contains("1 remediations ran within 1h"),
        "{}",
        blocked_message(&held)
    );
    h.wait_event("web", "CircuitOpen").await;
    assert_eq!(h.writes_to("/deployments/web"), 1);
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_without_the_right_fails_naming_the_verb_and_resource() {
    let mut h = Harness::new(2).await;
    // As a cluster answers when the operator's role lacks pods/eviction.
    h.server.set_fault_hook(|r| {
        r.path
            .ends_with("/eviction")
            .then(|| apphealth_testserver::Fault::Status {
                code: 403,
                reason: "Forbidden".into(),
                message: "pods \"web-b\" is forbidden: User cannot create resource \"pods/eviction\"".into(),
            })
    });
    h.create_policy(
        "web",
        json!({"remediation": {"steps": [{"action": "RestartPods", "timeout": "1h"}]}}),
    );
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.pod("web-b").app.set(Mode::Status(503));
    let failed = h.wait_record("web", "RestartPods", "Failed").await;
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains("the operator may not create pods/eviction in namespace shop (HTTP 403)"),
        "{message}"
    );
    assert_eq!(failed["reason"], "Forbidden", "a stable name of why, in status");
    let note = h.wait_event("web", "RemediationFailed").await;
    assert!(note.contains("may not create pods/eviction"), "{note}");
    assert!(note.contains("RestartPods failed (Forbidden)"), "{note}");
    h.stop_operator().await;
}
