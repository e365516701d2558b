//! The rollback skipped when the old revision fails too. A bad rollout rolled back through the
//! Deployment controller's ReplicaSets runs on the local control plane: tests/cluster/remediation.rs.

use serde_json::json;

use crate::{
    flaky::Mode,
    harness::{Harness, NS},
};

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
