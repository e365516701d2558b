//! Guards whose outcome the cluster decides: a rollout the Deployment controller has not finished,
//! a storm across most pods, and two policies on one workload.

use serde_json::json;

use crate::{
    flaky::Mode,
    scenario::{Install, Scenario, condition},
    support::blocked_message,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn a_rollout_the_deployment_controller_has_not_finished_holds_restarts() {
    let mut s = Scenario::new("rollout", Install::default()).await;
    let pods = s.deploy("web", 2, json!({})).await;
    s.create_policy(
        "web",
        "web",
        json!({"remediation": {"steps": [{"action": "RestartPods", "timeout": "1h"}]}}),
    )
    .await;
    s.start_operator().await;
    s.wait_condition("web", "Healthy", "True", None).await;

    // A new revision whose pods cannot be scheduled yet: the Deployment controller surges one new
    // pod, which stays Pending, and keeps both old pods (maxUnavailable 0 of 2).
    s.deployments()
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(json!({"spec": {
                "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {"metadata": {"labels": {"revision": "2"}},
                             "spec": {"schedulingGates": [{"name": "apphealth.io/test-hold"}]}}}})),
        )
        .await
        .unwrap();
    s.app(&pods[0]).set(Mode::Status(503));
    let held = s
        .wait_condition("web", "RemediationBlocked", "True", Some("RolloutInProgress"))
        .await;
    assert!(
        blocked_message(&held).contains("mid-rollout (1 of 2 replicas updated)"),
        "{}",
        blocked_message(&held)
    );
    s.wait_event("web", "RolloutInProgress").await;
    assert!(
        s.running_pods("web").await.contains(&pods[0]),
        "no eviction while the rollout runs"
    );

    // The rollout completes (its pods released one by one); the bad pod went with it.
    s.wait("the rollout to complete", || async {
        s.release("web").await;
        let d = s.deployment("web").await;
        let status = &d["status"];
        (status["updatedReplicas"] == 2
            && status["availableReplicas"] == 2
            && status["replicas"] == 2
            && status["observedGeneration"] == d["metadata"]["generation"])
            .then_some(())
    })
    .await;
    s.wait_served("web", 2).await;
    s.wait_condition("web", "Healthy", "True", None).await;
    let history = s.policy("web").await["status"]["history"].clone();
    assert!(
        !history
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["action"] == "RestartPods" && r["result"] == "Succeeded"),
        "the rollout replaced the pod, not an eviction: {history}"
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn the_storm_guard_skips_restarts_but_lets_scale_out_run() {
    let mut s = Scenario::new("storm", Install::default()).await;
    let pods = s.deploy("web", 3, json!({})).await;
    s.create_policy(
        "web",
        "web",
        json!({"remediation": {"maxUnhealthyPercent": 50, "steps": [
            {"action": "RestartPods", "restartPods": {"maxUnavailable": 2}},
            {"action": "ScaleOut", "scaleOut": {"by": 1, "maxReplicas": 5}, "timeout": "1h"}
        ]}}),
    )
    .await;
    // Failing from the start: two of three.
    s.app(&pods[0]).set(Mode::Status(503));
    s.app(&pods[1]).set(Mode::Status(503));
    s.start_operator().await;
    let skipped = s.wait_record("web", "RestartPods", "Skipped").await;
    assert!(
        skipped["message"]
            .as_str()
            .unwrap()
            .contains("2 of 3 pods are unhealthy or failing their probes, more than spec.remediation.maxUnhealthyPercent (50%)"),
        "{skipped}"
    );
    s.wait_event("web", "StormGuard").await;
    s.wait_record("web", "ScaleOut", "Succeeded").await;
    assert_eq!(s.deployment("web").await["spec"]["replicas"], 4);
    let running = s.wait_served("web", 4).await;
    assert!(
        pods.iter().all(|p| running.contains(p)),
        "no pod was restarted: {running:?}"
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn two_policies_on_one_workload_do_not_both_restart_it() {
    let mut s = Scenario::new("busy", Install::default()).await;
    s.deploy("web", 1, json!({})).await;
    s.create_policy("web-errors", "web", json!({})).await;
    s.create_policy(
        "web-latency",
        "web",
        json!({"triggers": [{"errorRate": {"percent": 50, "window": "1m", "minSamples": 2}}]}),
    )
    .await;
    s.start_operator().await;
    s.wait_condition("web-errors", "Healthy", "True", None).await;
    s.wait_condition("web-latency", "Healthy", "True", None).await;
    // A fault a restart does not cure: the first ladder waits at its step, still unhealthy.
    s.pods.start_new_pods_in(Mode::Status(503));
    s.set_all("web", Mode::Status(503)).await;
    let (busy, policy) = s
        .wait("one policy to hold back", || async {
            for name in ["web-errors", "web-latency"] {
                let p = s.policy(name).await;
                if condition(&p, "RemediationBlocked").is_some_and(|c| c["reason"] == "TargetBusy") {
                    return Some((name, p));
                }
            }
            None
        })
        .await;
    let other = if busy == "web-errors" {
        "web-latency"
    } else {
        "web-errors"
    };
    assert!(
        blocked_message(&policy).contains(&format!("AppHealthPolicy {other} is already remediating")),
        "{}",
        blocked_message(&policy)
    );
    s.wait_event(busy, "TargetBusy").await;
    s.wait_record(other, "RolloutRestart", "Succeeded").await;
    // One restart: the Deployment's generation went up once.
    assert_eq!(s.deployment("web").await["metadata"]["generation"], 2);
    s.finish().await;
}
