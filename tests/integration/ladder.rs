//! The ladder's actions end to end through the API test server: diagnostics (logs, states, a
//! bounded command) captured before a pod is evicted, webhooks received and a failing one not
//! blocking the next step. Scaling and rollback have files of their own; evictions a real
//! PodDisruptionBudget holds run on the local control plane: tests/cluster/remediation.rs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    flaky::Mode,
    harness::{Harness, NS},
    support::{Answer, AnsweringServer},
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
    // Both failing from the start, so both are captured (Unhealthy, or failing their probes).
    h.set_all(Mode::Status(503));
    h.start_operator(Some(NS));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_is_captured_before_a_restart_even_when_the_ladder_is_past_its_diagnostics_step() {
    let mut h = Harness::new(1).await;
    h.server
        .set_pod_log(NS, "web-a", "app", false, "the last words of web-a\n");
    h.create_policy(
        "web",
        json!({"remediation": {"steps": [
            {"action": "CollectDiagnostics"},
            {"action": "RestartPods", "timeout": "1h"}
        ]}}),
    );
    // The ladder's diagnostics step already ran, for a pod that is gone now; its next step is the
    // restart of web-a, which was never captured.
    let started = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap();
    h.seed_status(
        "web",
        json!({"status": {
            "ladder": {"step": 1, "startedAt": started.to_string()},
            "history": [{"action": "CollectDiagnostics", "step": 1, "at": started.to_string(),
                         "result": "Succeeded", "pods": ["web-z"]}]
        }}),
    );
    h.set_all(Mode::Status(503));
    h.start_operator(Some(NS));
    let restarted = h.wait_record("web", "RestartPods", "Succeeded").await;
    assert_eq!(restarted["step"], 2, "the ladder went on from its recorded step");
    assert!(
        restarted["message"]
            .as_str()
            .unwrap()
            .starts_with("Captured logs, states and Events of pod web-a in ConfigMap web-diagnostics-"),
        "the record says the pod was captured first: {restarted}"
    );
    let policy = h.policy("web");
    assert_eq!(policy["status"]["diagnostics"][0]["pods"], json!(["web-a"]));
    let name = policy["status"]["diagnostics"][0]["configMap"]
        .as_str()
        .unwrap()
        .to_owned();
    let cm = h.server.get("v1", "ConfigMap", Some(NS), &name).unwrap();
    assert_eq!(cm["data"]["web-a.app.log"], "the last words of web-a\n");
    let created = first_request(&h, |r| r.method == "POST" && r.path.ends_with("/configmaps")).unwrap();
    let eviction = first_request(&h, |r| r.path.ends_with("/pods/web-a/eviction")).unwrap();
    assert!(created < eviction, "capture at {created}, eviction at {eviction}");
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_beyond_the_retention_are_deleted_oldest_first() {
    let mut h = Harness::new(1).await;
    h.create_policy(
        "web",
        json!({"remediation": {"diagnosticsRetention": 2, "steps": [{"action": "CollectDiagnostics", "timeout": "1h"}]}}),
    );
    let uid = h.policy("web")["metadata"]["uid"].clone();
    // Two captures of earlier incidents (names end in their time, so they sort oldest first).
    for name in [
        "web-diagnostics-20250101-000000",
        "web-diagnostics-20250102-000000",
    ] {
        h.server
            .create(json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": name, "namespace": NS,
                                        "labels": {"apphealth.io/policy-uid": uid}},
                           "data": {"summary.txt": "an earlier incident"}}))
            .unwrap();
    }
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.set_all(Mode::Status(503));
    h.wait_record("web", "CollectDiagnostics", "Succeeded").await;
    let kept: Vec<String> = h
        .server
        .list("v1", "ConfigMap", Some(NS))
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_owned))
        .filter(|n| n.starts_with("web-diagnostics-"))
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(
        !kept.contains(&"web-diagnostics-20250101-000000".to_owned()),
        "the oldest is gone: {kept:?}"
    );
    assert!(
        kept.contains(&"web-diagnostics-20250102-000000".to_owned()),
        "{kept:?}"
    );
    h.stop_operator().await;
}
