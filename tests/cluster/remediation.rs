//! Detection and the ladder's actions, carried out by Kubernetes' own controllers.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::{Api, api::ListParams};
use serde_json::json;

use crate::{
    flaky::Mode,
    scenario::{Install, Scenario},
};

/// The ReplicaSets of `app` with the replicas each wants, by revision.
async fn replica_sets(s: &Scenario, app: &str) -> Vec<(String, i32)> {
    let api: Api<ReplicaSet> = Api::namespaced(s.client.clone(), &s.ns);
    let mut sets: Vec<(String, i32)> = api
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|rs| {
            let revision = rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("deployment.kubernetes.io/revision").cloned())
                .unwrap_or_default();
            (revision, rs.spec.and_then(|s| s.replicas).unwrap_or(0))
        })
        .collect();
    sets.sort();
    sets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn a_bad_pod_is_detected_and_the_deployment_controller_rolls_the_restart() {
    let mut s = Scenario::new("restart", Install::default()).await;
    let before = s.deploy("web", 2, json!({})).await;
    s.create_policy("web", "web", json!({})).await;
    s.start_operator().await;
    let ready = s.wait_condition("web", "Ready", "True", Some("Probing")).await;
    assert!(
        ready
            .to_string()
            .contains("Probing 2 ready pods of Deployment web"),
        "{ready}"
    );
    s.wait_condition("web", "Healthy", "True", None).await;

    // Detection: one pod answers 503, and the verdict names it.
    s.app(&before[0]).set(Mode::Status(503));
    let unhealthy = s
        .wait_condition("web", "Healthy", "False", Some("TriggerFired"))
        .await;
    let message = crate::scenario::condition(&unhealthy, "Healthy").unwrap()["message"].to_string();
    assert!(
        message.contains(&before[0]) && message.contains("HTTP 503"),
        "{message}"
    );

    // The operator marks the template; the Deployment controller makes a new ReplicaSet, new pods
    // replace the old ones, and the old ReplicaSet is scaled to zero.
    s.wait_record("web", "RolloutRestart", "Succeeded").await;
    let deployment = s.deployment("web").await;
    assert!(
        deployment["spec"]["template"]["metadata"]["annotations"]["apphealth.io/restartedAt"].is_string(),
        "{deployment}"
    );
    let after = s
        .wait("the restarted pods", || async {
            let pods = s.running_pods("web").await;
            let sets = replica_sets(&s, "web").await;
            (pods.len() == 2
                && pods.iter().all(|p| !before.contains(p))
                && sets == vec![("1".into(), 0), ("2".into(), 2)])
            .then_some(pods)
        })
        .await;
    assert!(BTreeSet::from_iter(&after).is_disjoint(&BTreeSet::from_iter(&before)));
    s.wait_served("web", 2).await;
    s.wait_condition("web", "Remediating", "False", Some("Recovered"))
        .await;
    s.wait_condition("web", "Healthy", "True", None).await;
    s.wait_event("web", "RolloutRestarted").await;
    s.finish().await;
}

async fn create(s: &Scenario, object: serde_json::Value) {
    let text = serde_json::to_string(&object).unwrap();
    crate::env::kubectl_ok(
        &s.access.kubeconfig,
        &["apply", "--server-side", "-n", &s.ns, "-f", "-"],
        &text,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn diagnostics_come_from_kwok_through_the_api_and_a_disruption_budget_holds_the_second_eviction() {
    let mut s = Scenario::new("evict", Install::default()).await;
    // Replacements wait for the test before they are scheduled, so the first eviction's replacement
    // is not Ready when the second eviction is asked for.
    let pods = s.deploy_gated("web", 3).await;
    create(
        &s,
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
               "metadata": {"name": "web"},
               "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}),
    )
    .await;
    s.create_policy(
        "web",
        "web",
        json!({"remediation": {"maxUnhealthyPercent": 100, "steps": [
            {"action": "CollectDiagnostics", "collectDiagnostics": {"logLines": 10}},
            {"action": "RestartPods", "restartPods": {"maxUnavailable": 2}, "timeout": "1h"}
        ]}}),
    )
    .await;
    s.start_operator().await;
    s.wait_condition("web", "Healthy", "True", None).await;
    let (bad, good) = (&pods[..2], &pods[2]);
    for pod in bad {
        s.app(pod).set(Mode::Status(503));
    }

    // Diagnostics first: the logs kwok serves for each container, through the API server.
    let captured = s.wait_record("web", "CollectDiagnostics", "Succeeded").await;
    let policy = s.policy("web").await;
    let config_map = policy["status"]["diagnostics"][0]["configMap"]
        .as_str()
        .unwrap_or_else(|| panic!("a capture: {captured}"))
        .to_owned();
    let cm: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(s.client.clone(), &s.ns);
    let data = cm.get(&config_map).await.unwrap().data.unwrap_or_default();
    for pod in bad {
        let log = data
            .get(&format!("{pod}.app.log"))
            .unwrap_or_else(|| panic!("{pod}'s log in {config_map}: {:?}", data.keys()));
        assert!(log.contains("flaky-app: listening on :8080"), "{log}");
        assert!(data.contains_key(&format!("{pod}.status.yaml")));
    }

    // The budget lets one eviction through and refuses the other: held, to be tried again.
    let held = s
        .wait_condition("web", "RemediationBlocked", "True", Some("DisruptionBudget"))
        .await;
    let record = &held["status"]["history"][0];
    assert_eq!(record["result"], "Held", "{record}");
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{record}"
    );
    s.wait_event("web", "DisruptionBudget").await;
    let running = s.running_pods("web").await;
    let evicted: Vec<&String> = bad.iter().filter(|p| !running.contains(p)).collect();
    assert_eq!(
        evicted.len(),
        1,
        "one bad pod evicted, the other held: {running:?}"
    );
    assert!(running.contains(good), "the healthy pod stays");

    // Its replacement runs; at the retry the budget allows the second eviction.
    s.wait("the replacement", || async {
        (s.release("web").await == 1).then_some(())
    })
    .await;
    let done = s.wait_record("web", "RestartPods", "Succeeded").await;
    assert_eq!(done["at"], record["at"], "the retry keeps the decision's mark");
    let history = s.policy("web").await["status"]["history"].clone();
    let restarts = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "RestartPods")
        .count();
    assert_eq!(
        restarts, 1,
        "the held record was completed, not duplicated: {history}"
    );
    let refusals = s
        .events("web")
        .await
        .iter()
        .filter(|(r, _)| r == "DisruptionBudget")
        .count();
    assert_eq!(refusals, 1, "one Event for the refusal");
    s.wait("the second replacement", || async {
        (s.release("web").await == 1).then_some(())
    })
    .await;
    let running = s.wait_served("web", 3).await;
    assert!(
        bad.iter().all(|p| !running.contains(p)),
        "both bad pods are gone: {running:?}"
    );
    assert!(running.contains(good));
    s.wait_condition("web", "Remediating", "False", Some("Recovered"))
        .await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn a_bad_deploy_is_rolled_back_through_the_replica_sets_revisions() {
    let mut s = Scenario::new("rollback", Install::default()).await;
    s.deploy("web", 2, json!({})).await;
    s.create_policy(
        "web",
        "web",
        json!({"remediation": {"steps": [{"action": "Rollback", "timeout": "1h"}, {"action": "RolloutRestart"}]}}),
    )
    .await;
    s.start_operator().await;
    s.wait_condition("web", "Healthy", "True", None).await;

    // Revision 2: a new image whose pods answer 503.
    s.deployments()
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(json!({"spec": {"template": {
                "metadata": {"annotations": {crate::pods::MODE_ANNOTATION: "503"}},
                "spec": {"containers": [{"name": "app", "image": "flaky:v2"}]}}}})),
        )
        .await
        .unwrap();
    let record = s.wait_record("web", "Rollback", "Succeeded").await;
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("Rolled Deployment web from revision 2 back to revision 1"),
        "{record}"
    );
    // The Deployment controller rolls revision 1's template out again as revision 3, reusing its
    // ReplicaSet; its pods answer 200.
    s.wait("revision 1's ReplicaSet back as revision 3", || async {
        (replica_sets(&s, "web").await == vec![("2".into(), 0), ("3".into(), 2)]).then_some(())
    })
    .await;
    let deployment = s.deployment("web").await;
    let template = &deployment["spec"]["template"];
    assert_eq!(template["spec"]["containers"][0]["image"], "flaky");
    assert!(
        template["metadata"]["annotations"][crate::pods::MODE_ANNOTATION].is_null(),
        "{template}"
    );
    assert_eq!(
        deployment["metadata"]["annotations"]["apphealth.io/rolledBackAt"],
        record["at"]
    );
    s.wait_served("web", 2).await;
    s.wait_condition("web", "Remediating", "False", Some("Recovered"))
        .await;
    s.wait_event("web", "RolledBack").await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn scale_out_goes_through_the_scale_subresource_and_is_restored() {
    let mut s = Scenario::new("scaleout", Install::default()).await;
    s.deploy("web", 2, json!({})).await;
    s.create_policy(
        "web",
        "web",
        json!({"remediation": {"steps": [
            {"action": "ScaleOut", "scaleOut": {"by": 3, "maxReplicas": 4, "restoreAfter": "5s"}, "timeout": "1h"}
        ]}}),
    )
    .await;
    s.start_operator().await;
    s.wait_condition("web", "Healthy", "True", None).await;
    s.set_all("web", Mode::Status(503)).await;
    let record = s.wait_record("web", "ScaleOut", "Succeeded").await;
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("from 2 to 4 replicas"),
        "{record}"
    );
    let deployment = s.deployment("web").await;
    assert_eq!(
        deployment["spec"]["replicas"], 4,
        "2 + 3, capped at maxReplicas 4"
    );
    let managers = deployment["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        managers
            .iter()
            .any(|m| m["manager"] == "apphealth-operator" && m["subresource"] == "scale"),
        "written through the scale subresource as the operator: {managers:?}"
    );
    // The ReplicaSet controller runs two more pods, healthy ones; the old ones recover too.
    s.wait_served("web", 4).await;
    s.set_all("web", Mode::Healthy).await;
    s.wait_condition("web", "Remediating", "False", Some("Recovered"))
        .await;
    s.wait("the replicas restored", || async {
        (s.deployment("web").await["spec"]["replicas"] == 2).then_some(())
    })
    .await;
    s.wait_served("web", 2).await;
    let note = s.wait_event("web", "ScaleRestored").await;
    assert!(note.contains("back to 2 replicas"), "{note}");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn scale_up_resizes_the_pods_in_place_and_raises_the_template() {
    let mut s = Scenario::new("scaleup", Install::default()).await;
    let pods = s.deploy("web", 1, json!({})).await;
    s.create_policy(
        "web",
        "web",
        json!({"remediation": {"steps": [{"action": "ScaleUp", "timeout": "1h",
            "scaleUp": {"memoryPercent": 50, "cpuPercent": 100, "maxMemory": "640Mi", "maxCpu": "1", "inPlace": true}}]}}),
    )
    .await;
    s.start_operator().await;
    s.wait_condition("web", "Healthy", "True", None).await;
    s.set_all("web", Mode::Status(503)).await;
    let record = s.wait_record("web", "ScaleUp", "Succeeded").await;
    let message = record["message"].as_str().unwrap();
    assert!(message.contains("app memory limits 128Mi → 192Mi"), "{message}");
    assert!(
        message.contains(&format!("Resized pod {} in place first", pods[0])),
        "the API server accepted pods/resize: {message}"
    );
    let expected =
        json!({"requests": {"memory": "96Mi", "cpu": "100m"}, "limits": {"memory": "192Mi", "cpu": "400m"}});
    let deployment = s.deployment("web").await;
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["resources"],
        expected
    );
    s.wait_event("web", "ScaledUp").await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn notify_posts_to_a_webhook_named_by_a_secret() {
    let receiver = crate::support::AnsweringServer::plain(crate::support::Answer::ok("thanks")).await;
    let mut s = Scenario::new("notify", Install::default()).await;
    s.deploy("web", 1, json!({})).await;
    create(
        &s,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chat"},
               "stringData": {"url": receiver.http_url("/hooks/oncall")}}),
    )
    .await;
    s.create_policy(
        "web",
        "web",
        json!({"remediation": {"steps": [
            {"action": "Notify", "notify": {"urlSecretRef": {"name": "chat", "key": "url"}}, "timeout": "1h"}
        ]}}),
    )
    .await;
    s.start_operator().await;
    s.wait_condition("web", "Healthy", "True", None).await;
    s.set_all("web", Mode::Status(503)).await;
    s.wait_record("web", "Notify", "Succeeded").await;
    let request = receiver.last_request().expect("the webhook was called");
    assert!(request.starts_with("POST /hooks/oncall "), "{request}");
    let body: serde_json::Value =
        serde_json::from_str(&request[request.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/web: Deployment web is unhealthy.", s.ns)),
        "{body}"
    );
    s.finish().await;
}
