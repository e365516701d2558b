//! Status writes are few and exact: a healthy hour costs no request at all, a remediation at most
//! three writes, and the operator's own writes, read back from a lagging cache, are never
//! mistaken for someone else's (a crash).

use std::time::Duration;

use serde_json::json;

use crate::{
    flaky::Mode,
    harness::{Harness, NS, PATIENCE},
    support::{reconciles, wait_until},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_hour_of_virtual_time_costs_no_api_request_but_the_watches() {
    let mut h = Harness::new(2).await;
    // A probe header from a Secret: each reconcile resolves it (through the cache).
    let mut secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "probe-token", "namespace": NS}, "stringData": {"token": "t"}});
    secret["data"] = json!({"token": "dA=="});
    h.server.create(secret).unwrap();
    let header =
        json!([{"name": "X-Token", "valueFrom": {"secretKeyRef": {"name": "probe-token", "key": "token"}}}]);
    h.create_policy("web", json!({"probe": {"http": {"headers": header}}}));
    let metrics = std::sync::Arc::new(apphealth_operator::metrics::Metrics::default());
    h.start_operator_with(apphealth_operator::controller::Config {
        namespaces: vec![NS.to_owned()],
        // Resyncs come quickly, so twelve of them (an hour at the default five minutes) pass here.
        resync: Duration::from_millis(300),
        metrics: metrics.clone(),
        ..h.config()
    });
    h.wait_condition("web", "Healthy", "True", None).await;
    // Let the first status land and its echo be reconciled.
    let seen = reconciles(&metrics);
    wait_until("a reconcile after the first status", PATIENCE, || async {
        (reconciles(&metrics) > seen + 1).then_some(())
    })
    .await;
    h.server.clear_requests();
    for _ in 0..12 {
        h.clock.jump(Duration::from_secs(300));
        let before = reconciles(&metrics);
        wait_until("a resync", PATIENCE, || async {
            (reconciles(&metrics) > before).then_some(())
        })
        .await;
    }
    let requests: Vec<_> = h
        .server
        .requests()
        .into_iter()
        .filter(|r| !r.is_watch())
        .collect();
    assert!(requests.is_empty(), "a healthy hour cost: {requests:?}");
    h.stop_operator().await;
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_lists_each_resource_once_and_reads_no_object_by_name() {
    let mut h = Harness::new(3).await;
    for i in 0..20 {
        h.create_policy(&format!("web-{i}"), json!({}));
    }
    h.server.clear_requests();
    h.start_operator(Some(NS));
    for i in 0..20 {
        h.wait_condition(&format!("web-{i}"), "Healthy", "True", None)
            .await;
    }
    let requests = h.server.requests();
    let reads: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "GET" && !r.is_watch())
        .collect();
    // Lists: the collection of each watched resource, once (the CRD check's one-item list aside).
    for resource in [
        "apphealthpolicies",
        "deployments",
        "statefulsets",
        "pods",
        "configmaps",
        "secrets",
    ] {
        let lists: Vec<_> = reads
            .iter()
            .filter(|r| r.path.ends_with(&format!("/namespaces/{NS}/{resource}")))
            // The CRD check's one-item list aside.
            .filter(|r| r.query.trim_start_matches('&') != "limit=1")
            .collect();
        assert_eq!(lists.len(), 1, "{resource}: {reads:?}");
        assert!(
            lists[0].query.contains("limit=500"),
            "listed in pages: {:?}",
            lists[0]
        );
        let watches = requests
            .iter()
            .filter(|r| r.is_watch() && r.path.ends_with(&format!("/namespaces/{NS}/{resource}")))
            .count();
        assert!(watches >= 1, "{resource} is watched");
    }
    // No object is read by name: everything comes from the watches' caches.
    let by_name: Vec<_> = reads
        .iter()
        .filter(|r| {
            [
                "apphealthpolicies",
                "deployments",
                "statefulsets",
                "pods",
                "configmaps",
                "secrets",
            ]
            .iter()
            .any(|res| r.path.contains(&format!("/{res}/")))
        })
        .collect();
    assert!(by_name.is_empty(), "reads by name: {by_name:?}");
    h.stop_operator().await;
}
