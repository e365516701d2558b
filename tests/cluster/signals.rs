//! Signals from the pods' own status, as a kubelet reports them (kwok's Stages here): restart
//! counts, OOM kills and CrashLoopBackOff; RestartPods replaces the pod and the replacement is well.

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

use crate::scenario::{Install, Scenario};

/// Makes pod `pod` crash every two seconds, with `reason`; in CrashLoopBackOff with `back_off`.
async fn crash(s: &Scenario, pod: &str, reason: &str, back_off: bool) {
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.ns);
    let mut annotations = json!({"crash.kwok.apphealth.io/reason": reason});
    if back_off {
        annotations["crash.kwok.apphealth.io/back-off"] = json!("true");
    }
    pods.patch(
        pod,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn restarts_oom_kills_and_crash_loops_from_pod_status_fire_and_a_restart_fixes_them() {
    let mut s = Scenario::new("signals", Install::default()).await;
    let cases = [
        (
            "restarts",
            json!({"restarts": {"count": 2, "window": "10m"}}),
            "Error",
            false,
        ),
        ("oom", json!({"oomKilled": {"within": "10m"}}), "OOMKilled", false),
        (
            "crashloop",
            json!({"restarts": {"count": 100, "window": "10m"}}),
            "Error",
            true,
        ),
    ];
    let mut pods = Vec::new();
    for (name, trigger, _, _) in &cases {
        pods.push(s.deploy(name, 1, json!({})).await.remove(0));
        s.create_policy(
            name,
            name,
            json!({"triggers": [trigger],
                   "remediation": {"steps": [{"action": "RestartPods", "timeout": "1h"}]}}),
        )
        .await;
    }
    s.start_operator().await;
    for (name, _, _, _) in &cases {
        s.wait_condition(name, "Healthy", "True", None).await;
    }
    for ((_, _, reason, back_off), pod) in cases.iter().zip(&pods) {
        crash(&s, pod, reason, *back_off).await;
    }
    let expected = [
        "restarts in the last 10m, threshold 2",
        "container app was OOMKilled at",
        "container app is in CrashLoopBackOff",
    ];
    for (((name, _, _, _), pod), expected) in cases.iter().zip(&pods).zip(expected) {
        let record = s.wait_record(name, "RestartPods", "Succeeded").await;
        assert_eq!(record["pods"], json!([pod]), "{name}");
        let policy = s.policy(name).await;
        let evidence = policy["status"]["history"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(std::iter::once(&policy["status"]["verdict"]))
            .map(|v| v.to_string())
            .collect::<String>();
        let events = s.events(name).await;
        let unhealthy = events
            .iter()
            .find(|(r, _)| r == "BecameUnhealthy")
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| panic!("{name}: no BecameUnhealthy event: {events:?} {evidence}"));
        assert!(
            unhealthy.contains(&format!("{pod}: ")) && unhealthy.contains(expected),
            "{name}: {unhealthy}"
        );
    }
    // Each replacement starts afresh (no crash annotation): the ladders close.
    for (name, _, _, _) in &cases {
        s.wait_served(name, 1).await;
        s.wait_condition(name, "Remediating", "False", Some("Recovered"))
            .await;
    }
    s.finish().await;
}
