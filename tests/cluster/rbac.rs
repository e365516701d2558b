//! RBAC as the chart grants it, enforced by the API server: a right the chart leaves out fails the
//! action it belongs to, naming verb and resource; namespaced mode works with no cluster-wide right.

use serde_json::json;

use crate::{
    env::kubectl_result,
    flaky::Mode,
    scenario::{Install, Scenario},
};

/// `kubectl auth can-i VERB RESOURCE` as the chart's ServiceAccount, in `namespace` (None: all).
async fn can_i(s: &Scenario, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
    let account = format!(
        "system:serviceaccount:{}:{}-apphealth-operator",
        s.system, s.release
    );
    let mut args = vec!["auth", "can-i", verb, resource, "--as", &account];
    match namespace {
        Some(ns) => args.extend(["-n", ns]),
        None => args.push("--all-namespaces"),
    }
    let (_, out) = kubectl_result(&s.access.kubeconfig, &args, None).await;
    match out.trim() {
        "yes" => true,
        "no" => false,
        other => panic!("kubectl auth can-i {verb} {resource}: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn an_action_whose_right_the_chart_leaves_out_fails_naming_verb_and_resource() {
    let mut s = Scenario::new(
        "norbac",
        Install {
            values: vec!["permissions.restartPods=false".into()],
            ..Install::default()
        },
    )
    .await;
    assert!(!can_i(&s, "create", "pods/eviction", Some(&s.ns)).await);
    let pods = s.deploy("web", 2, json!({})).await;
    s.create_policy(
        "web",
        "web",
        json!({"remediation": {"steps": [{"action": "RestartPods", "timeout": "1h"}]}}),
    )
    .await;
    s.start_operator().await;
    s.wait_condition("web", "Healthy", "True", None).await;
    s.app(&pods[1]).set(Mode::Status(503));
    let failed = s.wait_record("web", "RestartPods", "Failed").await;
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "the operator may not create pods/eviction in namespace {} (HTTP 403)",
            s.ns
        )),
        "{message}"
    );
    let note = s.wait_event("web", "RemediationFailed").await;
    assert!(note.contains("may not create pods/eviction"), "{note}");
    assert!(
        s.running_pods("web").await.contains(&pods[1]),
        "the API server refused the eviction"
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn namespaced_mode_remediates_with_no_cluster_wide_right() {
    let mut s = Scenario::new(
        "nsmode",
        Install {
            namespaced: true,
            ..Install::default()
        },
    )
    .await;
    // What the chart granted: rights in the watched namespace, none across the cluster.
    assert!(can_i(&s, "list", "pods", Some(&s.ns)).await);
    assert!(can_i(&s, "patch", "deployments.apps", Some(&s.ns)).await);
    assert!(!can_i(&s, "list", "pods", None).await);
    assert!(!can_i(&s, "list", "apphealthpolicies.apphealth.io", None).await);
    assert!(!can_i(&s, "list", "pods", Some("default")).await);

    s.deploy("web", 2, json!({})).await;
    s.create_policy("web", "web", json!({})).await;
    s.start_operator().await;
    s.wait_condition("web", "Healthy", "True", None).await;
    s.set_all("web", Mode::Status(503)).await;
    s.wait_record("web", "RolloutRestart", "Succeeded").await;
    s.wait_served("web", 2).await;
    s.wait_condition("web", "Remediating", "False", Some("Recovered"))
        .await;
    let log = std::fs::read_to_string(&s.operator(0).log).unwrap();
    assert!(
        !log.contains("forbidden"),
        "the operator was refused something:\n{log}"
    );
    s.finish().await;
}
