//! Crash safety for every action: the operator stopped between recording its intent and acting,
//! and between acting and recording the result, then started again. Each case seeds the status an
//! operator leaves at that moment (and, for the second, the action's effect): the restarted
//! operator neither repeats nor loses the action.

use serde_json::{Value, json};

use crate::{
    flaky::Mode,
    harness::{Harness, NS, restarted_at},
    ladder::base64_encode,
    support::{Answer, AnsweringServer},
};

/// A one-step ladder of `step`, and the status of an operator that recorded its intent just now
/// (after the pods were created); returns the mark.
fn crashed_after_intent(h: &Harness, step: Value, action: &str, pods: &[&str]) -> String {
    let at = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 1)
        .unwrap()
        .to_string();
    h.create_policy("web", json!({"remediation": {"steps": [step]}}));
    h.seed_status(
        "web",
        json!({"status": {
            "ladder": {"step": 1, "startedAt": at},
            "history": [{"action": action, "step": 1, "at": at, "result": "Pending", "pods": pods}]
        }}),
    );
    at
}

/// The diagnostics ConfigMap of policy `web` for the mark `at`.
fn capture_name(at: &str) -> String {
    let t: jiff::Timestamp = at.parse().unwrap();
    format!("web-diagnostics-{}", t.strftime("%Y%m%d-%H%M%S"))
}

fn requests(h: &Harness, method: &str, fragment: &str) -> usize {
    h.server
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.contains(fragment))
        .count()
}

async fn resumed(h: &mut Harness) -> Value {
    h.start_operator(Some(NS));
    let policy = h.wait_remediation_result("web", "Succeeded").await;
    h.wait_event("web", "RemediationResumed").await;
    policy["status"]["history"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_pods_before_and_after_the_eviction() {
    // Stopped before evicting: the pod is evicted once, under the recorded mark.
    let mut h = Harness::new(2).await;
    h.pod("web-b").app.set(Mode::Status(503));
    let at = crashed_after_intent(
        &h,
        json!({"action": "RestartPods", "timeout": "1h"}),
        "RestartPods",
        &["web-b"],
    );
    let record = resumed(&mut h).await;
    assert_eq!(record["at"], at.as_str());
    assert_eq!(requests(&h, "POST", "/pods/web-b/eviction"), 1);
    assert!(h.server.get("v1", "Pod", Some(NS), "web-b").is_none());
    h.stop_operator().await;

    // Stopped after evicting: the pod is gone; nothing is evicted again.
    let mut h = Harness::new(2).await;
    crashed_after_intent(
        &h,
        json!({"action": "RestartPods", "timeout": "1h"}),
        "RestartPods",
        &["web-b"],
    );
    h.pod("web-a").app.set(Mode::Status(503)); // still unhealthy, so the ladder would act if it could
    h.server.delete("v1", "Pod", Some(NS), "web-b").unwrap();
    let record = resumed(&mut h).await;
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("found applied when resumed"),
        "{record}"
    );
    assert_eq!(requests(&h, "POST", "/eviction"), 0);
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_diagnostics_before_and_after_the_capture() {
    let step = json!({"action": "CollectDiagnostics", "timeout": "1h"});
    let mut h = Harness::new(1).await;
    h.set_all(Mode::Status(503));
    let at = crashed_after_intent(&h, step.clone(), "CollectDiagnostics", &["web-a"]);
    let record = resumed(&mut h).await;
    assert_eq!(requests(&h, "POST", "/configmaps"), 1);
    let name = h.policy("web")["status"]["diagnostics"][0]["configMap"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(name, capture_name(&at), "named after the recorded mark");
    assert!(record["message"].as_str().unwrap().contains(&name), "{record}");
    h.stop_operator().await;

    let mut h = Harness::new(1).await;
    h.set_all(Mode::Status(503));
    let at = crashed_after_intent(&h, step, "CollectDiagnostics", &["web-a"]);
    h.server
        .create(json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": capture_name(&at), "namespace": NS},
                       "data": {"summary.txt": "captured before the crash"}}))
        .unwrap();
    h.server.clear_requests();
    resumed(&mut h).await;
    assert_eq!(requests(&h, "POST", "/configmaps"), 0, "not captured twice");
    assert_eq!(
        h.policy("web")["status"]["diagnostics"][0]["configMap"],
        capture_name(&at).as_str(),
        "the capture found is recorded"
    );
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_before_and_after_scaling() {
    let step = json!({"action": "ScaleOut", "scaleOut": {"by": 2, "maxReplicas": 10}, "timeout": "1h"});
    let mut h = Harness::new(1).await;
    h.set_all(Mode::Status(503));
    crashed_after_intent(&h, step.clone(), "ScaleOut", &[]);
    resumed(&mut h).await;
    assert_eq!(h.deployment()["spec"]["replicas"], 4);
    assert_eq!(requests(&h, "PATCH", "/deployments/web/scale"), 1);
    h.stop_operator().await;

    // Stopped after scaling from 2 to 4: the mark says so, and it is not scaled to 6.
    let mut h = Harness::new(1).await;
    h.set_all(Mode::Status(503));
    let at = crashed_after_intent(&h, step, "ScaleOut", &[]);
    let mut deployment = h.deployment();
    deployment["metadata"]["annotations"] =
        json!({"apphealth.io/scaledOutAt": at, "apphealth.io/scaledOutFrom": "2"});
    deployment["spec"]["replicas"] = json!(4);
    h.server.replace(deployment).unwrap();
    h.server.clear_requests();
    resumed(&mut h).await;
    assert_eq!(h.deployment()["spec"]["replicas"], 4);
    assert_eq!(requests(&h, "PATCH", "/deployments/web"), 0, "not scaled again");
    let raised = h.policy("web")["status"]["scaleRestore"].clone();
    assert_eq!(
        (raised["original"].clone(), raised["set"].clone()),
        (json!(2), json!(4))
    );
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_is_sent_again_with_the_same_id_so_receivers_can_drop_it() {
    let hook = AnsweringServer::plain(Answer::ok("ok")).await;
    let mut h = Harness::new(1).await;
    h.set_all(Mode::Status(503));
    h.server
        .create(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook", "namespace": NS},
                       "data": {"url": base64_encode(&hook.http_url("/"))}}),
        )
        .unwrap();
    let at = crashed_after_intent(
        &h,
        json!({"action": "Notify", "notify": {"urlSecretRef": {"name": "hook", "key": "url"}}}),
        "Notify",
        &[],
    );
    resumed(&mut h).await;
    let requests = hook.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let uid = h.policy("web")["metadata"]["uid"].as_str().unwrap().to_owned();
    assert!(
        requests[0].contains(&format!("\"id\":\"{uid}/{at}\"")),
        "the id a crashed attempt would have sent: {}",
        requests[0]
    );
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_before_and_after_rolling_back() {
    let step = json!({"action": "Rollback", "timeout": "1h"});
    let mut h = Harness::new(1).await;
    crate::rollback::two_revisions(&h, &[]);
    h.set_all(Mode::Status(503));
    crashed_after_intent(&h, step.clone(), "Rollback", &["web-a"]);
    resumed(&mut h).await;
    assert_eq!(
        h.deployment()["spec"]["template"]["spec"]["containers"][0]["image"],
        "flaky:v1"
    );
    assert_eq!(requests(&h, "PUT", "/deployments/web"), 1);
    h.stop_operator().await;

    let mut h = Harness::new(1).await;
    crate::rollback::two_revisions(&h, &[]);
    h.set_all(Mode::Status(503));
    let at = crashed_after_intent(&h, step, "Rollback", &["web-a"]);
    let mut deployment = h.deployment();
    deployment["metadata"]["annotations"] =
        json!({"apphealth.io/rolledBackAt": at, "apphealth.io/rolledBackTo": "revision 1"});
    h.server.replace(deployment).unwrap();
    h.server.clear_requests();
    resumed(&mut h).await;
    assert_eq!(
        requests(&h, "PUT", "/deployments/web"),
        0,
        "not rolled back twice"
    );
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_before_and_after_raising() {
    let step: Value = serde_json::from_str(crate::scaling::SCALE_UP).unwrap();
    let mut h = Harness::new(1).await;
    crate::scaling::with_resources(&h);
    h.set_all(Mode::Status(503));
    crashed_after_intent(&h, step.clone(), "ScaleUp", &["web-a"]);
    resumed(&mut h).await;
    assert_eq!(requests(&h, "PATCH", "/deployments/web"), 1);
    assert_eq!(
        h.deployment()["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "640Mi"
    );
    h.stop_operator().await;

    // Raised before the crash: raising again would compound it (512Mi → 640Mi → capped, but
    // 250m → 500m → 1000m for CPU); the mark stops it.
    let mut h = Harness::new(1).await;
    crate::scaling::with_resources(&h);
    h.set_all(Mode::Status(503));
    let at = crashed_after_intent(&h, step, "ScaleUp", &["web-a"]);
    let mut deployment = h.deployment();
    deployment["spec"]["template"]["metadata"]["annotations"] = json!({"apphealth.io/scaledUpAt": at});
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("500m");
    h.server.replace(deployment).unwrap();
    h.server.clear_requests();
    resumed(&mut h).await;
    assert_eq!(requests(&h, "PATCH", "/deployments/web"), 0, "not raised twice");
    assert_eq!(
        h.deployment()["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "500m"
    );
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_picks_the_ladder_up_where_status_left_it() {
    let mut h = Harness::new(2).await;
    h.create_policy("web", json!({}));
    h.pod("web-b").app.set(Mode::Status(503));
    // The status an operator leaves mid-ladder: web-b unhealthy, step 1 done a moment ago.
    let at = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .unwrap()
        .to_string();
    h.seed_status(
        "web",
        json!({"status": {
            "verdict": {"health": "Unhealthy", "since": at, "evidence": [{
                "trigger": "consecutiveFailures", "pods": ["web-b"], "since": at,
                "message": "web-b: 2 failed probes in a row (last: HTTP 503), threshold 2"}]},
            "ladder": {"step": 1, "startedAt": at},
            "history": [{"action": "RolloutRestart", "step": 1, "at": at, "result": "Succeeded"}]
        }}),
    );
    h.server.clear_requests();
    h.start_operator(Some(NS));
    // web-a answers well from the first round; a fresh evaluator alone would call the target
    // healthy before web-b fails twice again, and close the ladder.
    h.wait_rounds("web-b", 4).await;
    let policy = h.policy("web");
    assert!(
        !h.events("web").iter().any(|(r, _)| r == "Recovered"),
        "{:?}",
        h.events("web")
    );
    assert_eq!(policy["status"]["ladder"]["step"], 1, "{}", policy["status"]);
    assert_eq!(
        policy["status"]["verdict"]["since"],
        at.as_str(),
        "the same episode"
    );
    assert_eq!(
        h.writes_to("/deployments/web"),
        0,
        "the step's timeout still runs: no second restart"
    );
    h.stop_operator().await;
}

/// Seeds status as an operator would leave it had it crashed right after recording its intent.
fn seed_pending_intent(h: &Harness, at: &str) {
    h.seed_status(
        "web",
        json!({"status": {
            "ladder": {"step": 1, "startedAt": at},
            "history": [{"action": "RolloutRestart", "step": 1, "at": at, "result": "Pending"}]
        }}),
    );
}

/// Now, in whole seconds, as status holds it: a mark recorded a moment ago (a fixed date would
/// age, and a step decided long ago is past its timeout).
fn just_now() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_recording_intent_completes_the_action_once() {
    let mut h = Harness::new(1).await;
    h.set_all(Mode::Status(503));
    h.create_policy("web", json!({}));
    let now = just_now();
    let at = now.as_str();
    seed_pending_intent(&h, at);
    h.start_operator(Some(NS));

    let policy = h.wait_remediation_result("web", "Succeeded").await;
    assert_eq!(
        restarted_at(&h.deployment()).as_deref(),
        Some(at),
        "the action ran with its recorded mark"
    );
    assert_eq!(policy["status"]["history"][0]["at"], at);
    h.wait_event("web", "RemediationResumed").await;
    // The target stays unhealthy, but the step is still within its timeout: no second action.
    h.wait_condition("web", "Healthy", "False", None).await;
    assert_eq!(h.writes_to("/deployments/web"), 1, "resumed once, not repeated");
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_acting_but_before_recording_the_result_does_not_repeat_it() {
    let mut h = Harness::new(1).await;
    h.set_all(Mode::Status(503));
    h.create_policy("web", json!({}));
    let now = just_now();
    let at = now.as_str();
    seed_pending_intent(&h, at);
    // The action itself had already landed.
    let mut deployment = h.deployment();
    deployment["spec"]["template"]["metadata"]["annotations"] = json!({"apphealth.io/restartedAt": at});
    h.server.replace(deployment).unwrap();
    h.server.clear_requests();
    h.start_operator(Some(NS));

    let policy = h.wait_remediation_result("web", "Succeeded").await;
    let message = policy["status"]["history"][0]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "found applied when resumed (after an operator restart or a failed API call); not repeated"
        ),
        "{message}"
    );
    h.wait_condition("web", "Healthy", "False", None).await;
    assert_eq!(
        h.writes_to("/deployments/"),
        0,
        "the Deployment must not be patched again"
    );
    h.stop_operator().await;
}
