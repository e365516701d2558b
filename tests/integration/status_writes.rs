//! Status writes are few and exact: a remediation costs at most three, and the operator's own
//! writes, read back from a lagging cache, are never mistaken for someone else's (a crash).

use std::time::Duration;

use serde_json::json;

use crate::{
    flaky::Mode,
    harness::{Harness, NS},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_own_intent_read_back_from_its_cache_is_not_taken_for_a_crash() {
    // Five policies remediating at once: each intent write comes back through the watch while the
    // action runs, and the reconcile it triggers may still read that intent from the cache.
    let mut h = Harness::new(1).await;
    let mut apps = Vec::new();
    for i in 0..5 {
        let name = format!("app{i}");
        let app = h.add_workload(&name).await;
        h.create_policy(&name, json!({"targetRef": {"name": name}}));
        apps.push((name, app));
    }
    h.start_operator(Some(NS));
    for (name, _) in &apps {
        h.wait_condition(name, "Healthy", "True", None).await;
    }
    // The API server is slow to patch Deployments and its watch lags: each policy's intent comes
    // back through the watch while its action is still running, and the final status only after
    // the reconcile that the intent queued has started.
    h.server.set_fault_hook(|r| {
        (r.method == "PATCH" && r.path.contains("/deployments/"))
            .then_some(apphealth_testserver::Fault::Delay(Duration::from_millis(1000)))
    });
    h.server.set_watch_lag(Duration::from_millis(300));
    for (_, app) in &apps {
        app.set(Mode::Status(503));
    }
    for (name, _) in &apps {
        h.wait_event(name, "RolloutRestarted").await;
    }
    // Give every policy two more probe rounds to act on whatever it read back.
    for (name, _) in &apps {
        h.wait_rounds(&format!("{name}-a"), 2).await;
    }
    for (name, _) in &apps {
        let reasons: Vec<String> = h.events(name).into_iter().map(|(r, _)| r).collect();
        assert_eq!(
            reasons.iter().filter(|r| *r == "RolloutRestarted").count(),
            1,
            "{name}: {reasons:?}"
        );
        assert!(
            !reasons.iter().any(|r| r == "RemediationResumed"),
            "{name} mistook its own in-flight intent for a crash: {reasons:?}"
        );
    }
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remediation_costs_at_most_three_status_writes() {
    let mut h = Harness::new(2).await;
    h.create_policy("web", json!({}));
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.wait_rounds("web-b", 1).await;
    h.server.clear_requests();

    h.pod("web-b").app.set(Mode::Status(503));
    h.wait_remediation_result("web", "Succeeded").await;
    h.pod("web-b").app.set(Mode::Healthy);
    h.wait_condition("web", "Remediating", "False", Some("Recovered"))
        .await;
    h.wait_rounds("web-b", 2).await;
    let writes: Vec<_> = h
        .server
        .requests()
        .into_iter()
        .filter(|r| r.is_write() && r.path.ends_with("/apphealthpolicies/web/status"))
        .collect();
    // Unhealthy with the intent, the result, recovered.
    assert!(
        (2..=3).contains(&writes.len()),
        "{} status writes: {writes:?}",
        writes.len()
    );
    h.stop_operator().await;
}
