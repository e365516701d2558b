//! Two operator processes with the chart's leader election on a real Lease: only the leader acts;
//! killed, it is replaced once the Lease expires, and the new leader repeats nothing (it resumes
//! from status).

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, api::ListParams};
use serde_json::json;

use crate::{
    flaky::Mode,
    scenario::{Install, Scenario},
};

async fn holder(s: &Scenario) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), &s.system);
    leases
        .list(&ListParams::default())
        .await
        .ok()?
        .items
        .into_iter()
        .find(|l| {
            l.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&s.release))
        })?
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn the_leader_killed_is_replaced_and_nothing_is_done_twice() {
    let mut s = Scenario::new("leader", Install::default()).await;
    s.deploy("web", 2, json!({})).await;
    s.create_policy("web", "web", json!({})).await;
    s.start_operator().await;
    let first = s.operator(0).pod.clone();
    s.wait("the first operator to lead", || async {
        (holder(&s).await.as_deref() == Some(first.as_str())).then_some(())
    })
    .await;
    s.start_operator().await;
    let second = s.operator(1).pod.clone();
    s.wait_condition("web", "Healthy", "True", None).await;

    s.set_all("web", Mode::Status(503)).await;
    let record = s.wait_record("web", "RolloutRestart", "Succeeded").await;
    s.wait_served("web", 2).await;
    s.wait_condition("web", "Remediating", "False", Some("Recovered"))
        .await;
    assert_eq!(s.deployment("web").await["metadata"]["generation"], 2);
    assert_eq!(holder(&s).await.as_deref(), Some(first.as_str()));

    // The leader dies without a word (SIGKILL): the standby leads once the Lease expires.
    s.kill_operator(0).await;
    s.wait("the standby to lead", || async {
        (holder(&s).await.as_deref() == Some(second.as_str())).then_some(())
    })
    .await;
    // It acts on what status says: a new failure within the cooldown is held, not acted on.
    s.set_all("web", Mode::Status(503)).await;
    s.wait_condition("web", "RemediationBlocked", "True", Some("Cooldown"))
        .await;
    let policy = s.policy("web").await;
    let history = policy["status"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "one action in all: {history:?}");
    assert_eq!(history[0]["at"], record["at"]);
    assert_eq!(
        s.deployment("web").await["metadata"]["generation"],
        2,
        "restarted once"
    );
    assert!(
        !s.events("web")
            .await
            .iter()
            .any(|(r, _)| r == "RemediationResumed"),
        "nothing was resumed: the restart had finished"
    );
    s.finish().await;
}
