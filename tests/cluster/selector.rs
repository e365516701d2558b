//! A policy over many workloads on the real control plane: the selector's CEL rules at admission,
//! each selected workload remediated on its own (the eviction and the replacement pod by
//! Kubernetes' own controllers), its Events regarding the Deployment with the policy related.

use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

use crate::{
    flaky::Mode,
    scenario::{Install, Scenario},
};

/// Creates policy `name` over the Deployments labelled tier=web, restarting a failing one's pods
/// (cooldown 1h). Written as a targetRef policy and turned into a selector one (null removes
/// targetRef).
pub(crate) async fn create_fleet(s: &Scenario, name: &str) {
    s.create_policy(
        name,
        "unused",
        json!({
            "targetRef": null,
            "targetSelector": {"kinds": ["Deployment"], "matchLabels": {"tier": "web"}},
            "remediation": {"steps": [{"action": "RestartPods", "timeout": "1h"}], "cooldown": "1h"}
        }),
    )
    .await;
}

/// Sets label `tier` on Deployment `name`.
pub(crate) async fn label(s: &Scenario, name: &str, tier: &str) {
    let api: Api<Deployment> = Api::namespaced(s.client.clone(), &s.ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": tier}}})),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn a_selector_policy_remediates_only_the_failing_workload_and_tells_it_on_the_workload() {
    let mut s = Scenario::new("selector", Install::default()).await;
    let web = s.deploy("web", 2, json!({})).await;
    let api_pods = s.deploy("api", 1, json!({})).await;
    label(&s, "web", "web").await;
    label(&s, "api", "web").await;
    create_fleet(&s, "fleet").await;
    s.start_operator().await;
    s.wait("both workloads healthy", || async {
        let fleet = s.policy("fleet").await["status"]["fleet"].clone();
        (fleet["selected"] == 2 && fleet["healthy"] == 2).then_some(())
    })
    .await;

    // api's one pod fails: it is evicted, and the Deployment controller replaces it.
    s.app(&api_pods[0]).set(Mode::Status(503));
    let replaced = s
        .wait("api's pod evicted and replaced", || async {
            let pods = s.running_pods("api").await;
            (pods.len() == 1 && pods[0] != api_pods[0]).then_some(pods)
        })
        .await;
    assert_ne!(replaced, api_pods);
    assert_eq!(s.running_pods("web").await, web, "web's pods left alone");
    let policy = s.policy("fleet").await;
    let record = policy["status"]["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["name"] == "api")
        .cloned()
        .unwrap_or_default();
    assert_eq!(record["history"][0]["action"], "RestartPods", "{policy}");
    assert_eq!(record["history"][0]["pods"], json!([api_pods[0]]), "{policy}");

    // The Event regards the Deployment (what `kubectl describe deployment api` lists), with the
    // policy related.
    let restarted = s.wait_event_object("api", "PodsRestarted").await;
    let regarding = restarted.regarding.clone().unwrap_or_default();
    assert_eq!(regarding.kind.as_deref(), Some("Deployment"), "{restarted:?}");
    let related = restarted.related.clone().unwrap_or_default();
    assert_eq!(
        (related.kind.as_deref(), related.name.as_deref()),
        (Some("AppHealthPolicy"), Some("fleet")),
        "{restarted:?}"
    );
    assert!(
        restarted.regarding.and_then(|r| r.uid).is_some(),
        "the Deployment's uid"
    );
    s.finish().await;
}
