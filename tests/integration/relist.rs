//! Watches cut while the history is compacted: every resumed watch gets 410 Gone and the operator
//! relists, losing nothing (a policy created during the gap is picked up) and repeating nothing (the
//! remediation already done is not done again, and steady status is not rewritten).

use serde_json::json;

use crate::{
    flaky::Mode,
    harness::{Harness, NS, PATIENCE},
    support::{wait_on_changes, wait_until},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_after_410_gone_loses_and_repeats_nothing() {
    let mut h = Harness::new(1).await;
    h.create_policy("web", json!({}));
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.set_all(Mode::Status(503));
    h.wait_remediation_result("web", "Succeeded").await;
    h.set_all(Mode::Healthy);
    h.wait_condition("web", "Remediating", "False", Some("Recovered"))
        .await;
    assert_eq!(h.writes_to("/deployments/web"), 1);

    // The gap: watches are cut and refused for a while.
    h.server.set_fault_hook(|r| {
        r.is_watch().then(|| apphealth_testserver::Fault::Status {
            code: 500,
            reason: "InternalError".into(),
            message: "watch cache restarting".into(),
        })
    });
    h.server.clear_requests();
    h.server.end_watches();
    wait_until("a refused watch", PATIENCE, || async {
        h.server
            .requests()
            .iter()
            .any(|r| r.is_watch() && r.status == 500)
            .then_some(())
    })
    .await;
    h.create_policy("second", json!({}));
    h.server.compact_history();
    h.server.clear_fault_hook();

    // The operator relists and finds the new policy.
    wait_on_changes("the new policy's status", PATIENCE, h.server.changes(), || {
        let p = h.policy("second");
        p["status"]["conditions"]
            .as_array()
            .filter(|c| !c.is_empty())
            .map(|_| ())
    })
    .await;
    let lists = h
        .server
        .requests()
        .into_iter()
        .filter(|r| !r.is_watch() && r.method == "GET" && r.path.ends_with("/apphealthpolicies"))
        .count();
    assert!(lists > 0, "the policies were listed again");
    h.wait_condition("second", "Healthy", "True", None).await;

    // Nothing repeated: one restart in all, one record, and steady rounds cost no write.
    assert_eq!(h.writes_to("/deployments/web"), 0);
    let history = h.policy("web")["status"]["history"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(history, 1);
    h.assert_no_writes_over("web-a", 3).await;
    h.stop_operator().await;
}
