//! The ladder's actions end to end through the API test server: diagnostics captured before a pod
//! is evicted, evictions held by a PodDisruptionBudget, scale-out raised and restored (replicas and
//! HorizontalPodAutoscaler), webhooks received and a failing one not blocking the next step.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    flaky::Mode,
    harness::{Harness, NS, PATIENCE, condition},
    support::{Answer, AnsweringServer, wait_until},
};

fn pod_exists(h: &Harness, name: &str) -> bool {
    h.server.get("v1", "Pod", Some(NS), name).is_some()
}

/// Index of the first request matching `f` in the server's log.
fn first_request(h: &Harness, f: impl Fn(&apphealth_testserver::RecordedRequest) -> bool) -> Option<usize> {
    h.server.requests().iter().position(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_are_captured_before_the_bad_pod_is_evicted() {
    let mut h = Harness::new(2).await;
    h.server.set_pod_log(
        NS,
        "web-b",
        "app",
        false,
        "starting\nGET /healthz 503\nout of connections\n",
    );
    h.set_pod_status(
        "web-b",
        json!({"containerStatuses": [{"name": "app", "ready": true, "restartCount": 1, "image": "flaky", "imageID": "",
              "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}),
    );
    h.server
        .set_pod_log(NS, "web-b", "app", true, "panic: the previous instance crashed\n");
    h.create_policy(
        "web",
        json!({"remediation": {"steps": [
            {"action": "CollectDiagnostics", "collectDiagnostics": {"logLines": 2}},
            {"action": "RestartPods", "timeout": "1h"}
        ]}}),
    );
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;

    h.pod("web-b").app.set(Mode::Status(503));
    let evicted = h.wait_record("web", "RestartPods", "Succeeded").await;
    assert_eq!(evicted["pods"], json!(["web-b"]));
    assert!(!pod_exists(&h, "web-b"), "the unhealthy pod was evicted");
    assert!(pod_exists(&h, "web-a"), "the healthy pod was not");

    let policy = h.policy("web");
    let capture = policy["status"]["diagnostics"][0].clone();
    let name = capture["configMap"].as_str().unwrap().to_owned();
    assert_eq!(capture["pods"], json!(["web-b"]));
    let cm = h
        .server
        .get("v1", "ConfigMap", Some(NS), &name)
        .expect("the capture exists");
    let data = &cm["data"];
    assert_eq!(
        data["web-b.app.log"], "GET /healthz 503\nout of connections\n",
        "the last logLines lines"
    );
    assert_eq!(
        data["web-b.app.previous.log"],
        "panic: the previous instance crashed\n"
    );
    assert!(
        data["web-b.status.yaml"]
            .as_str()
            .unwrap()
            .contains("restartCount: 1")
    );
    assert!(data["summary.txt"].as_str().unwrap().contains("web-b"));
    let owner = &cm["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "AppHealthPolicy");
    assert_eq!(owner["uid"], policy["metadata"]["uid"]);

    // Captured before anything restarted the pod.
    let created = first_request(&h, |r| r.method == "POST" && r.path.ends_with("/configmaps")).unwrap();
    let eviction = first_request(&h, |r| r.path.ends_with("/pods/web-b/eviction")).unwrap();
    assert!(created < eviction, "capture at {created}, eviction at {eviction}");
    let note = h.wait_event("web", "DiagnosticsCollected").await;
    assert!(note.contains(&name), "{note}");
    h.wait_event("web", "PodsRestarted").await;

    // The remaining pod is healthy: the ladder closes.
    h.wait_condition("web", "Remediating", "False", Some("Recovered"))
        .await;
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_refused_by_a_disruption_budget_is_held_and_retried() {
    let mut h = Harness::new(2).await;
    h.server
        .create(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}
        }))
        .unwrap();
    h.create_policy(
        "web",
        json!({"remediation": {"steps": [{"action": "RestartPods", "timeout": "1h"}]}}),
    );
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.pod("web-b").app.set(Mode::Status(503));

    let policy = h
        .wait_condition("web", "RemediationBlocked", "True", Some("DisruptionBudget"))
        .await;
    let record = &policy["status"]["history"][0];
    assert_eq!(record["result"], "Held");
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{record}"
    );
    assert!(record["retryAt"].is_string(), "{record}");
    assert!(pod_exists(&h, "web-b"), "a refused eviction leaves the pod");
    let message = condition(&policy, "RemediationBlocked").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("A PodDisruptionBudget refused RestartPods (step 1 of 1)"),
        "{message}"
    );
    h.wait_event("web", "DisruptionBudget").await;
    let budget_events = h
        .events("web")
        .iter()
        .filter(|(r, _)| r == "DisruptionBudget")
        .count();
    assert_eq!(budget_events, 1, "one Event for the refusal, not one per stage");
    assert_eq!(
        condition(&policy, "Remediating").unwrap()["status"],
        "True",
        "the ladder is in progress, at its first step"
    );

    // The budget is relaxed; at the retry time the eviction goes through, under its first mark.
    h.server
        .delete("policy/v1", "PodDisruptionBudget", Some(NS), "web")
        .unwrap();
    h.clock.jump(Duration::from_secs(60));
    h.touch_policy("web");
    let done = h.wait_record("web", "RestartPods", "Succeeded").await;
    assert_eq!(done["at"], record["at"], "the retry keeps the decision's mark");
    assert!(!pod_exists(&h, "web-b"));
    assert_eq!(
        h.policy("web")["status"]["history"].as_array().unwrap().len(),
        1,
        "the held record was completed, not duplicated"
    );
    h.stop_operator().await;
}

fn replicas(h: &Harness) -> i64 {
    h.deployment()["spec"]["replicas"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_raises_replicas_and_restores_them_after_a_healthy_spell() {
    let mut h = Harness::new(1).await;
    h.create_policy(
        "web",
        json!({"remediation": {"steps": [
            {"action": "ScaleOut", "scaleOut": {"by": 3, "maxReplicas": 4, "restoreAfter": "10m"}, "timeout": "1h"}
        ]}}),
    );
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.set_all(Mode::Status(503));
    let record = h.wait_record("web", "ScaleOut", "Succeeded").await;
    assert_eq!(replicas(&h), 4, "2 + 3, capped at maxReplicas 4");
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("from 2 to 4 replicas"),
        "{record}"
    );
    let raised = h.policy("web")["status"]["scaleRestore"].clone();
    assert_eq!(raised["original"], 2);
    assert_eq!(raised["set"], 4);
    let managers: Vec<Value> = h.deployment()["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        managers
            .iter()
            .any(|m| m["manager"] == "apphealth-operator" && m["subresource"] == "scale"),
        "written through the scale subresource as the operator: {managers:?}"
    );

    h.set_all(Mode::Healthy);
    h.wait_condition("web", "Remediating", "False", Some("Recovered"))
        .await;
    assert_eq!(replicas(&h), 4, "not restored before restoreAfter");
    h.clock.jump(Duration::from_secs(11 * 60));
    h.touch_policy("web");
    wait_until("the replicas to be restored", PATIENCE, || async {
        (replicas(&h) == 2).then_some(())
    })
    .await;
    let note = h.wait_event("web", "ScaleRestored").await;
    assert!(note.contains("back to 2 replicas"), "{note}");
    wait_until("scaleRestore to be cleared", PATIENCE, || async {
        h.policy("web")["status"]["scaleRestore"].is_null().then_some(())
    })
    .await;
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_raises_an_autoscalers_minimum_and_leaves_it_if_someone_changed_it() {
    let mut h = Harness::new(1).await;
    h.server
        .create(json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 2, "maxReplicas": 3}
        }))
        .unwrap();
    h.create_policy(
        "web",
        json!({"remediation": {"steps": [
            {"action": "ScaleOut", "scaleOut": {"by": 2, "maxReplicas": 8, "restoreAfter": "10m"}, "timeout": "1h"}
        ]}}),
    );
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.set_all(Mode::Status(503));
    h.wait_record("web", "ScaleOut", "Succeeded").await;
    let hpa = h
        .server
        .get("autoscaling/v2", "HorizontalPodAutoscaler", Some(NS), "web")
        .unwrap();
    assert_eq!(hpa["spec"]["minReplicas"], 4);
    assert_eq!(
        hpa["spec"]["maxReplicas"], 4,
        "raised only because the new minimum needs it"
    );
    assert_eq!(
        replicas(&h),
        2,
        "the autoscaler, not the operator, scales the Deployment"
    );
    let raised = h.policy("web")["status"]["scaleRestore"].clone();
    assert_eq!(
        (raised["original"].clone(), raised["originalMax"].clone()),
        (json!(2), json!(3))
    );

    // Recovered, then a person sets a minimum of their own before the restore is due.
    h.set_all(Mode::Healthy);
    h.wait_condition("web", "Remediating", "False", Some("Recovered"))
        .await;
    let mut hpa = hpa;
    hpa["spec"]["minReplicas"] = json!(5);
    hpa["spec"]["maxReplicas"] = json!(6);
    h.server.replace(hpa).unwrap();
    h.clock.jump(Duration::from_secs(11 * 60));
    h.touch_policy("web");
    let note = h.wait_event("web", "ScaleRestoreSkipped").await;
    assert!(note.contains("was changed since ScaleOut raised it"), "{note}");
    let hpa = h
        .server
        .get("autoscaling/v2", "HorizontalPodAutoscaler", Some(NS), "web")
        .unwrap();
    assert_eq!(hpa["spec"]["minReplicas"], 5, "left as the person set it");
    h.stop_operator().await;
}

fn webhook_secret(h: &Harness, name: &str, url: &str) {
    use base64_encode as b64;
    h.server
        .create(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": NS},
            "data": {"url": b64(url)}
        }))
        .unwrap();
}

/// Standard base64 (the Secret's `data` encoding).
pub fn base64_encode(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_posts_a_summary_and_a_failing_webhook_does_not_block_the_next_step() {
    let good = AnsweringServer::plain(Answer::ok("thanks")).await;
    let bad = AnsweringServer::plain(Answer {
        status: 500,
        content_type: "text/plain",
        body: "down".into(),
    })
    .await;
    let mut h = Harness::new(1).await;
    webhook_secret(&h, "chat", &good.http_url("/hooks/oncall"));
    webhook_secret(&h, "pager", &bad.http_url("/page"));
    h.create_policy(
        "web",
        json!({"remediation": {"steps": [
            {"action": "Notify", "notify": {"urlSecretRef": {"name": "chat", "key": "url"}}},
            {"action": "Notify", "notify": {"urlSecretRef": {"name": "pager", "key": "url"}}},
            {"action": "RolloutRestart", "timeout": "1h"}
        ]}}),
    );
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.set_all(Mode::Status(503));

    // The ladder goes on past the failing webhook to the restart.
    h.wait_record("web", "RolloutRestart", "Succeeded").await;
    let failed = h.wait_record("web", "Notify", "Failed").await;
    assert_eq!(failed["step"], 2);
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("3 attempts failed, the last with: HTTP 500"),
        "{failed}"
    );
    assert_eq!(bad.requests.lock().unwrap().len(), 3, "retried with backoff");
    let note = h.wait_event("web", "RemediationFailed").await;
    assert!(note.contains("webhook"), "{note}");

    let request = good.last_request().expect("the chat webhook was called");
    assert!(request.starts_with("POST /hooks/oncall "), "{request}");
    let body: Value = serde_json::from_str(&request[request.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("shop/web: Deployment web is unhealthy."),
        "{body}"
    );
    assert_eq!(body["target"], json!({"kind": "Deployment", "name": "web"}));
    assert_eq!(body["step"], json!({"number": 1, "of": 3, "action": "Notify"}));
    assert!(
        body["next"].as_str().unwrap().starts_with("Notify (step 2 of 3)"),
        "{body}"
    );
    assert_eq!(body["verdict"]["evidence"][0]["trigger"], "consecutiveFailures");
    let id = body["id"].as_str().unwrap();
    assert!(
        request
            .to_lowercase()
            .contains(&format!("idempotency-key: {}", id.to_lowercase())),
        "{request}"
    );
    h.stop_operator().await;
}

/// ReplicaSets `web-1` (revision 1, image flaky:v1) and `web-2` (revision 2, image flaky:v2, the
/// Deployment's current template), owned by Deployment `web`; the pods named in `on_old` belong to
/// `web-1`, the others to `web-2`.
pub fn two_revisions(h: &Harness, on_old: &[&str]) {
    let mut deployment = h.deployment();
    let uid = deployment["metadata"]["uid"].clone();
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = json!("flaky:v2");
    h.server.replace(deployment.clone()).unwrap();
    for (rev, image) in [(1, "flaky:v1"), (2, "flaky:v2")] {
        let mut template = deployment["spec"]["template"].clone();
        template["spec"]["containers"][0]["image"] = json!(image);
        template["metadata"]["labels"]["pod-template-hash"] = json!(format!("h{rev}"));
        h.server
            .create(json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": format!("web-{rev}"), "namespace": NS,
                             "annotations": {"deployment.kubernetes.io/revision": rev.to_string()},
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                                  "uid": uid, "controller": true}]},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template}
            }))
            .unwrap();
    }
    for pod in &h.pods {
        let rs = if on_old.contains(&pod.name.as_str()) {
            "web-1"
        } else {
            "web-2"
        };
        let mut p = h.server.get("v1", "Pod", Some(NS), &pod.name).unwrap();
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": "x", "controller": true}]);
        h.server.replace(p).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rollout_is_rolled_back() {
    let mut h = Harness::new(2).await;
    two_revisions(&h, &[]);
    h.create_policy(
        "web",
        json!({"remediation": {"steps": [{"action": "Rollback", "timeout": "1h"}, {"action": "RolloutRestart"}]}}),
    );
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.set_all(Mode::Status(503));
    let record = h.wait_record("web", "Rollback", "Succeeded").await;
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("Rolled Deployment web from revision 2 back to revision 1"),
        "{record}"
    );
    let deployment = h.deployment();
    let template = &deployment["spec"]["template"];
    assert_eq!(template["spec"]["containers"][0]["image"], "flaky:v1");
    assert!(
        template["metadata"]["labels"]["pod-template-hash"].is_null(),
        "{template}"
    );
    assert_eq!(
        deployment["metadata"]["annotations"]["apphealth.io/rolledBackAt"],
        record["at"]
    );
    h.wait_event("web", "RolledBack").await;
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_is_skipped_when_the_old_revision_fails_too() {
    let mut h = Harness::new(2).await;
    two_revisions(&h, &["web-b"]);
    h.create_policy(
        "web",
        json!({"remediation": {"steps": [{"action": "Rollback"}, {"action": "RolloutRestart", "timeout": "1h"}]}}),
    );
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.pod("web-b").app.set(Mode::Status(503));
    let skipped = h.wait_record("web", "Rollback", "Skipped").await;
    assert!(
        skipped["message"]
            .as_str()
            .unwrap()
            .contains("the failing pod web-b is not on the newest revision (2)"),
        "{skipped}"
    );
    h.wait_event("web", "StepSkipped").await;
    // The ladder moved on at once.
    h.wait_record("web", "RolloutRestart", "Succeeded").await;
    assert_eq!(
        h.deployment()["spec"]["template"]["spec"]["containers"][0]["image"],
        "flaky:v2"
    );
    h.stop_operator().await;
}

pub fn with_resources(h: &Harness) {
    let resources =
        json!({"requests": {"memory": "256Mi", "cpu": "250m"}, "limits": {"memory": "512Mi", "cpu": "500m"}});
    let mut deployment = h.deployment();
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"] = resources.clone();
    h.server.replace(deployment).unwrap();
    for pod in &h.pods {
        let mut p = h.server.get("v1", "Pod", Some(NS), &pod.name).unwrap();
        p["spec"]["containers"][0]["resources"] = resources.clone();
        h.server.replace(p).unwrap();
    }
}

pub const SCALE_UP: &str = r#"{"action": "ScaleUp", "timeout": "1h",
  "scaleUp": {"memoryPercent": 50, "cpuPercent": 100, "maxMemory": "640Mi", "maxCpu": "1", "inPlace": true}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_resizes_pods_in_place_and_raises_the_template_within_the_maxima() {
    let mut h = Harness::new(1).await;
    with_resources(&h);
    let step: Value = serde_json::from_str(SCALE_UP).unwrap();
    h.create_policy("web", json!({"remediation": {"steps": [step]}}));
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.set_all(Mode::Status(503));
    let record = h.wait_record("web", "ScaleUp", "Succeeded").await;
    let expected = json!({"requests": {"memory": "384Mi", "cpu": "500m"}, "limits": {"memory": "640Mi", "cpu": "1000m"}});
    let deployment = h.deployment();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["resources"],
        expected
    );
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]["apphealth.io/scaledUpAt"],
        record["at"]
    );
    let pod = h.server.get("v1", "Pod", Some(NS), "web-a").unwrap();
    assert_eq!(
        pod["spec"]["containers"][0]["resources"], expected,
        "resized in place"
    );
    let message = record["message"].as_str().unwrap();
    assert!(message.contains("app memory limits 512Mi → 640Mi"), "{message}");
    assert!(message.contains("Resized pod web-a in place first"), "{message}");
    assert!(
        message.contains("a person should look at why the app needs more"),
        "{message}"
    );
    h.wait_event("web", "ScaledUp").await;
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_falls_back_to_the_template_when_in_place_resize_is_refused() {
    let mut h = Harness::new(1).await;
    h.server.disable_resize();
    with_resources(&h);
    let step: Value = serde_json::from_str(SCALE_UP).unwrap();
    h.create_policy("web", json!({"remediation": {"steps": [step]}}));
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.set_all(Mode::Status(503));
    let record = h.wait_record("web", "ScaleUp", "Succeeded").await;
    let message = record["message"].as_str().unwrap();
    assert!(
        message.contains("In-place resize was refused (HTTP 404"),
        "{message}"
    );
    assert_eq!(
        h.deployment()["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "640Mi"
    );
    let pod = h.server.get("v1", "Pod", Some(NS), "web-a").unwrap();
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "512Mi"
    );
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_run_a_bounded_command_in_the_pod() {
    let mut h = Harness::new(2).await;
    h.server.set_exec_handler(|req| apphealth_testserver::ExecResult {
        stdout: format!("\"main\" thread dump of {}\n", req.pod).into_bytes(),
        exit_code: 0,
        // web-b's dump hangs past the timeout.
        delay: (req.pod == "web-b").then_some(Duration::from_secs(30)),
        ..Default::default()
    });
    h.create_policy(
        "web",
        json!({"remediation": {"steps": [
            {"action": "CollectDiagnostics", "timeout": "1h", "collectDiagnostics": {
                "exec": {"command": ["jcmd", "1", "Thread.print"], "timeout": "2s"}}}
        ]}}),
    );
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.set_all(Mode::Status(503));
    h.wait_record("web", "CollectDiagnostics", "Succeeded").await;
    let name = h.policy("web")["status"]["diagnostics"][0]["configMap"]
        .as_str()
        .unwrap()
        .to_owned();
    let cm = h.server.get("v1", "ConfigMap", Some(NS), &name).unwrap();
    let quick = cm["data"]["web-a.exec.txt"].as_str().unwrap();
    assert!(
        quick.starts_with("$ jcmd 1 Thread.print   (exit code 0)"),
        "{quick}"
    );
    assert!(quick.contains("\"main\" thread dump of web-a"), "{quick}");
    let slow = cm["data"]["web-b.exec.txt"].as_str().unwrap();
    assert!(
        slow.contains("abandoned after 2s (collectDiagnostics.exec.timeout)"),
        "{slow}"
    );
    h.stop_operator().await;
}
