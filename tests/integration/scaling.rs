//! ScaleOut with autoscalers (their minimum raised and put back) and ScaleUp (in place and on the
//! template, and the fallback when resize is refused) through the API test server. ScaleOut
//! through the scale subresource and its restore run on the local control plane:
//! tests/cluster/remediation.rs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    flaky::Mode,
    harness::{Harness, NS},
};

fn replicas(h: &Harness) -> i64 {
    h.deployment()["spec"]["replicas"].as_i64().unwrap()
}

/// A HorizontalPodAutoscaler for Deployment `web`.
fn autoscaler(h: &Harness, min: u32, max: u32) {
    h.server
        .create(json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": min, "maxReplicas": max}
        }))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_raises_an_autoscalers_minimum_and_leaves_it_if_someone_changed_it() {
    let mut h = Harness::new(1).await;
    autoscaler(&h, 2, 3);
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
async fn scale_out_puts_an_autoscalers_bounds_back() {
    let mut h = Harness::new(1).await;
    autoscaler(&h, 2, 3);
    h.create_policy(
        "web",
        json!({"remediation": {"steps": [
            {"action": "ScaleOut", "scaleOut": {"to": 5, "maxReplicas": 8, "restoreAfter": "10m"}, "timeout": "1h"}
        ]}}),
    );
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.set_all(Mode::Status(503));
    h.wait_record("web", "ScaleOut", "Succeeded").await;
    let bounds = || {
        let hpa = h
            .server
            .get("autoscaling/v2", "HorizontalPodAutoscaler", Some(NS), "web")
            .unwrap();
        (
            hpa["spec"]["minReplicas"].clone(),
            hpa["spec"]["maxReplicas"].clone(),
        )
    };
    assert_eq!(bounds(), (json!(5), json!(5)));
    h.set_all(Mode::Healthy);
    h.wait_condition("web", "Remediating", "False", Some("Recovered"))
        .await;
    h.clock.jump(Duration::from_secs(11 * 60));
    h.touch_policy("web");
    let note = h.wait_event("web", "ScaleRestored").await;
    assert!(
        note.contains("minReplicas of HorizontalPodAutoscaler web is back to 2"),
        "{note}"
    );
    assert_eq!(bounds(), (json!(2), json!(3)), "both bounds put back");
    h.stop_operator().await;
}
