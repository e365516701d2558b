//! kubectl against the pod subresources the ladder's actions use on the API test server.

use crate::kubectl::Scratch;

/// The pod subresources the ladder's actions use, as kubectl (the real client) sees them: logs,
/// exec over WebSocket, an eviction a PodDisruptionBudget refuses, and autoscalers.
#[test]
fn kubectl_reads_logs_execs_and_is_refused_by_a_disruption_budget() {
    let (_rt, server) = crate::kubectl::started();
    let scratch = Scratch::new(&server);
    let pods = scratch.file(
        "pods.yaml",
        r#"apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: default, labels: {app: web}}
spec: {containers: [{name: web, image: example/web:1}]}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: default}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 5
"#,
    );
    scratch.ok(&["apply", "--server-side", "-f", pods.to_str().expect("utf-8 path")]);
    server
        .patch_status(
            "v1",
            "Pod",
            Some("default"),
            "web-1",
            serde_json::json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
        )
        .expect("pod status");

    server.set_pod_log("default", "web-1", "web", false, "one\ntwo\nthree\n");
    assert_eq!(scratch.ok(&["logs", "web-1", "--tail=2"]), "two\nthree\n");

    server.set_exec_handler(|req| apphealth_testserver::ExecResult {
        stdout: format!("ran {}\n", req.command.join(" ")).into_bytes(),
        ..Default::default()
    });
    assert_eq!(
        scratch.ok(&["exec", "web-1", "--", "jcmd", "1", "Thread.print"]),
        "ran jcmd 1 Thread.print\n"
    );

    // An eviction through the Eviction API (what `kubectl drain` sends): the budget (1 of 1 must
    // stay) refuses with 429, and the pod stays.
    let eviction = scratch.file(
        "eviction.json",
        r#"{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-1", "namespace": "default"}}"#,
    );
    let refused = scratch.run(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/pods/web-1/eviction",
        "-f",
        eviction.to_str().expect("utf-8 path"),
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{stderr}"
    );
    scratch.ok(&["get", "pod", "web-1"]);
    let hpa = scratch.ok(&[
        "get",
        "hpa",
        "web",
        "-o",
        "jsonpath={.spec.minReplicas}/{.spec.maxReplicas}",
    ]);
    assert_eq!(hpa, "2/5");
    let pdb = scratch.ok(&["get", "pdb", "web", "-o", "jsonpath={.spec.minAvailable}"]);
    assert_eq!(pdb, "1");
}
