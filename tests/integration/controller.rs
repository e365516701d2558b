//! Controller scenarios end to end: the real kube-runtime Controller and kube::Client against the
//! in-process API test server, with pods served by the flaky demo app on loopback IPs.

use std::time::Duration;

use serde_json::json;

use crate::{
    flaky::Mode,
    harness::{Harness, NS, PATIENCE, condition, restarted_at},
    support::{wait_on_changes, wait_until},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_pod_triggers_a_rollout_restart_and_recovery_is_reported() {
    let mut h = Harness::new(2).await;
    h.create_policy("web", json!({}));
    h.start_operator(Some(NS));

    let policy = h
        .wait_condition("web", "Healthy", "True", Some("ProbesSucceeding"))
        .await;
    let ready = condition(&policy, "Ready").unwrap();
    assert_eq!(ready["status"], "True");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .starts_with("Probing 2 ready pods of Deployment web every 2s"),
        "{ready}"
    );
    assert_eq!(policy["status"]["targets"], json!({"probed": 2, "healthy": 2}));
    assert_eq!(policy["status"]["observedGeneration"], 1);

    // One pod starts answering 503.
    h.pod("web-b").app.set(Mode::Status(503));
    let policy = h
        .wait_condition("web", "Healthy", "False", Some("TriggerFired"))
        .await;
    let evidence = &policy["status"]["verdict"]["evidence"][0];
    assert_eq!(evidence["trigger"], "consecutiveFailures");
    assert_eq!(evidence["pods"], json!(["web-b"]));
    assert!(
        evidence["message"]
            .as_str()
            .unwrap()
            .contains("(last: HTTP 503), threshold 2"),
        "{evidence}"
    );

    // The ladder's first step ran: the annotation is on the pod template and matches status.
    let policy = h.wait_remediation_result("web", "Succeeded").await;
    let record = &policy["status"]["history"][0];
    assert_eq!(record["action"], "RolloutRestart");
    assert_eq!(record["step"], 1);
    assert_eq!(restarted_at(&h.deployment()).as_deref(), record["at"].as_str());
    assert_eq!(condition(&policy, "Remediating").unwrap()["status"], "True");
    assert_eq!(policy["status"]["ladder"]["step"], 1);
    let note = h.wait_event("web", "RolloutRestarted").await;
    assert!(
        note.contains("Ran RolloutRestart (step 1 of 1) on Deployment web"),
        "{note}"
    );
    assert!(note.contains("web-b"), "the event names the bad pod: {note}");
    h.wait_event("web", "BecameUnhealthy").await;

    // The app recovers: Healthy again, ladder closed, no second action.
    h.pod("web-b").app.set(Mode::Healthy);
    let policy = h
        .wait_condition("web", "Remediating", "False", Some("Recovered"))
        .await;
    assert_eq!(condition(&policy, "Healthy").unwrap()["status"], "True");
    assert!(policy["status"]["ladder"].is_null(), "{}", policy["status"]);
    assert_eq!(
        h.writes_to("/deployments/web"),
        1,
        "exactly one patch of the Deployment"
    );
    h.wait_event("web", "Recovered").await;

    // Back to a steady state: more rounds cost no writes, and the record of the recovery stays.
    h.assert_no_writes_over("web-b", 3).await;
    let policy = h.policy("web");
    assert_eq!(condition(&policy, "Remediating").unwrap()["reason"], "Recovered");
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_decides_and_reports_but_changes_nothing() {
    let mut h = Harness::new(1).await;
    h.set_all(Mode::Status(502));
    h.create_policy("web", json!({"remediation": {"dryRun": true}}));
    h.start_operator(None);

    let policy = h
        .wait_condition("web", "RemediationBlocked", "True", Some("DryRun"))
        .await;
    let message = condition(&policy, "RemediationBlocked").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("RolloutRestart (step 1 of 1) would set apphealth.io/restartedAt="),
        "{message}"
    );
    let note = h.wait_event("web", "DryRun").await;
    assert!(
        note.contains("RolloutRestart (step 1 of 1) would set apphealth.io/restartedAt")
            && note.contains("HTTP 502"),
        "{note}"
    );
    assert_eq!(condition(&policy, "Remediating").unwrap()["status"], "False");
    let record = &policy["status"]["history"][0];
    assert_eq!(
        record["dryRun"], true,
        "the decision is in the history, marked as a dry run"
    );
    assert_eq!(record["result"], "Succeeded");
    assert_eq!(
        h.writes_to("/deployments/"),
        0,
        "dry run must not touch the Deployment"
    );
    assert_eq!(restarted_at(&h.deployment()), None);
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_failure_inside_the_cooldown_is_held_back_until_it_expires() {
    let mut h = Harness::new(1).await;
    h.create_policy(
        "web",
        json!({"remediation": {"cooldown": "1h", "steps": [{"action": "RolloutRestart", "timeout": "10s"}]}}),
    );
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;

    h.set_all(Mode::Status(503));
    h.wait_condition("web", "Remediating", "True", None).await;
    h.set_all(Mode::Healthy);
    h.wait_condition("web", "Remediating", "False", Some("Recovered"))
        .await;

    h.set_all(Mode::Status(503));
    let policy = h
        .wait_condition("web", "RemediationBlocked", "True", Some("Cooldown"))
        .await;
    let message = condition(&policy, "RemediationBlocked").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("cooldown of 1h holds RolloutRestart (step 1 of 1) back"),
        "{message}"
    );
    let note = h.wait_event("web", "Cooldown").await;
    assert!(note.contains("cooldown of 1h"), "{note}");
    assert_eq!(
        h.writes_to("/deployments/web"),
        1,
        "the cooldown held the second restart back"
    );
    let first_mark = restarted_at(&h.deployment()).unwrap();

    // An hour later (virtual), the guard lifts and the operator acts again.
    h.clock.jump(Duration::from_secs(3601));
    // Any event on the policy makes the controller look again; touch an annotation.
    let mut policy = h.policy("web");
    policy["metadata"]["annotations"] = json!({"touched": "1"});
    h.server.replace(policy).unwrap();
    let second = wait_on_changes(
        "a second restart after the cooldown",
        PATIENCE,
        h.server.changes(),
        || restarted_at(&h.deployment()).filter(|m| *m != first_mark),
    )
    .await;
    assert!(second > first_mark, "{second} should be later than {first_mark}");
    assert_eq!(h.writes_to("/deployments/web"), 2);
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_steady_state_costs_zero_writes() {
    let mut h = Harness::new(2).await;
    h.create_policy("web", json!({}));
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    // Ten healthy periods (five probes of each pod) after the first verdict was written.
    h.assert_no_writes_over("web-a", 5).await;
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_policies_are_reported_and_do_not_disturb_the_good_one() {
    let mut h = Harness::new(1).await;
    h.create_policy("good", json!({}));
    h.create_policy("orphan", json!({"targetRef": {"name": "missing"}}));
    h.create_policy(
        "reversed",
        json!({"probe": {"http": {"successCodes": ["399-200"]}}}),
    );
    h.create_policy("no-port", json!({"probe": {"http": {"port": "metrics"}}}));
    h.start_operator(Some(NS));

    let orphan = h
        .wait_condition("orphan", "Ready", "False", Some("TargetNotFound"))
        .await;
    let message = condition(&orphan, "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        message,
        "Deployment missing was not found in namespace shop; probing starts when it appears."
    );
    assert_eq!(condition(&orphan, "Healthy").unwrap()["status"], "Unknown");

    let reversed = h
        .wait_condition("reversed", "Ready", "False", Some("InvalidSpec"))
        .await;
    let message = condition(&reversed, "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("spec.probe.http.successCodes[0]: range \"399-200\" is empty"),
        "{message}"
    );
    h.wait_event("reversed", "InvalidSpec").await;

    let no_port = h
        .wait_condition("no-port", "Ready", "False", Some("NoProbeTargets"))
        .await;
    let message = condition(&no_port, "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("pod web-a has no container port named \"metrics\""),
        "{message}"
    );

    h.wait_condition("good", "Healthy", "True", None).await;

    // The missing target appears: the workload watch brings the policy to life.
    let mut deployment = h.deployment();
    deployment["metadata"] = json!({"name": "missing", "namespace": NS});
    h.server.create(deployment).unwrap();
    h.wait_condition("orphan", "Ready", "True", Some("Probing")).await;
    h.wait_condition("orphan", "Healthy", "True", None).await;
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_stops_probing_and_says_so() {
    let mut h = Harness::new(1).await;
    h.create_policy("web", json!({}));
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;

    let mut policy = h.policy("web");
    policy["spec"]["suspend"] = json!(true);
    h.server.replace(policy).unwrap();
    let policy = h.wait_condition("web", "Ready", "False", Some("Suspended")).await;
    assert_eq!(policy["status"]["observedGeneration"], 2);
    assert_eq!(condition(&policy, "Healthy").unwrap()["status"], "Unknown");
    assert_eq!(
        condition(&policy, "RemediationBlocked").unwrap()["reason"],
        "Suspended"
    );

    // A second, active policy is the witness that time passes: while it sees three more probe
    // rounds, the suspended target gets at most the one round that may have been in flight.
    let suspended_hits = h.pod("web-a").app.hits();
    h.pod("web-a").app.set(Mode::Status(503));
    let witness = h.add_workload("other").await;
    h.create_policy("witness", json!({"targetRef": {"name": "other"}}));
    let start = witness.hits();
    wait_until("three probe rounds of the witness", PATIENCE, || async {
        (witness.hits() >= start + 3).then_some(())
    })
    .await;
    let later = h.pod("web-a").app.hits();
    assert!(
        later <= suspended_hits + 1,
        "probing continued while suspended: {suspended_hits} -> {later}"
    );
    assert_eq!(h.writes_to("/deployments/web"), 0, "no action while suspended");
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_exits_with_a_hint_when_the_crd_is_missing() {
    let server = apphealth_testserver::TestServer::start().await.unwrap();
    let client = crate::harness::client(&server);
    let err = apphealth_operator::controller::run(
        client,
        apphealth_operator::controller::Config::default(),
        std::sync::Arc::new(apphealth_operator::clock::SystemClock),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("install it with: kubectl apply -f crds/"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_policy_stops_its_probes_and_drops_its_gauges() {
    let mut h = Harness::new(1).await;
    h.create_policy("web", json!({}));
    let metrics = std::sync::Arc::new(apphealth_operator::metrics::Metrics::default());
    h.start_operator_with(apphealth_operator::controller::Config {
        namespaces: vec![NS.into()],
        metrics: metrics.clone(),
        ..h.config()
    });
    h.wait_condition("web", "Healthy", "True", None).await;

    h.server
        .delete("apphealth.io/v1alpha1", "AppHealthPolicy", Some(NS), "web")
        .unwrap();
    let witness = h.add_workload("other").await;
    h.create_policy("witness", json!({"targetRef": {"name": "other"}}));
    h.wait_condition("witness", "Healthy", "True", None).await;
    // One more witness round lets any round that was in flight at deletion land; from then on, while
    // the witness sees three rounds, the deleted policy's pod sees none.
    let first = witness.hits() + 1;
    wait_until("a witness round", PATIENCE, || async {
        (witness.hits() >= first).then_some(())
    })
    .await;
    let deleted_hits = h.pod("web-a").app.hits();
    let start = witness.hits();
    wait_until("three probe rounds of the witness", PATIENCE, || async {
        (witness.hits() >= start + 3).then_some(())
    })
    .await;
    assert_eq!(
        h.pod("web-a").app.hits(),
        deleted_hits,
        "the deleted policy's target is still probed"
    );
    let text = metrics.render();
    assert!(!text.contains("policy=\"shop/web\""), "{text}");
    let policies: i64 = text
        .lines()
        .filter(|l| l.starts_with("apphealth_policies{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .sum();
    assert_eq!(policies, 1, "only the witness is counted: {text}");
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pod_of_the_target_is_probed_and_a_bad_one_named() {
    let mut h = Harness::new(1).await;
    h.create_policy("web", json!({}));
    h.start_operator(Some(NS));
    let policy = h.wait_condition("web", "Healthy", "True", None).await;
    assert_eq!(policy["status"]["targets"]["probed"], 1);

    // A second pod of the same Deployment appears (selected by the Deployment's selector) and fails.
    let extra = h.add_workload("unrelated").await; // served app, labelled app=unrelated
    extra.set(Mode::Status(503));
    let mut pod = h.server.get("v1", "Pod", Some(NS), "unrelated-a").unwrap();
    pod["metadata"]["labels"] = json!({"app": "web"});
    h.server.replace(pod).unwrap();
    let policy = h.wait_condition("web", "Healthy", "False", None).await;
    assert_eq!(
        policy["status"]["verdict"]["evidence"][0]["pods"],
        json!(["unrelated-a"])
    );
    assert_eq!(policy["status"]["targets"]["probed"], 2);
    let ready = condition(&policy, "Ready").unwrap();
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .starts_with("Probing 2 ready pods"),
        "{ready}"
    );
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_service_probes_the_cluster_ip() {
    let mut h = Harness::new(1).await;
    let ip = h.server.get("v1", "Pod", Some(NS), "web-a").unwrap()["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_owned();
    // The test server runs no kube-proxy: the Service's cluster IP is the pod's loopback address.
    h.server
        .create(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"clusterIP": ip, "selector": {"app": "web"}, "ports": [{"name": "http", "port": h.port}]}
        }))
        .unwrap();
    h.create_policy("web", json!({"probe": {"via": "Service", "service": "web"}}));
    h.create_policy(
        "no-svc",
        json!({"probe": {"via": "Service", "service": "missing"}}),
    );
    h.start_operator(Some(NS));

    let policy = h.wait_condition("web", "Healthy", "True", None).await;
    let ready = condition(&policy, "Ready").unwrap();
    assert_eq!(ready["message"], "Probing Service web every 2s.");
    h.set_all(Mode::Status(503));
    let policy = h.wait_condition("web", "Healthy", "False", None).await;
    assert_eq!(
        policy["status"]["verdict"]["evidence"][0]["pods"],
        json!(["service/web"])
    );

    let missing = h
        .wait_condition("no-svc", "Ready", "False", Some("NoProbeTargets"))
        .await;
    let message = condition(&missing, "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("Service missing was not found in namespace shop (spec.probe.service)"),
        "{message}"
    );
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_side_rate_limit_holds_requests_back() {
    use apphealth_operator::controller::{ApiRateLimit, rate_limited_client};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::Api;

    let server = apphealth_testserver::TestServer::start().await.unwrap();
    // Three requests per hour: a fourth would wait far longer than this test runs.
    let config = kube::Config::new(server.url().parse().unwrap());
    let limited = rate_limited_client(
        config,
        ApiRateLimit {
            qps: 3.0 / 3600.0,
            burst: 3,
        },
        None,
    )
    .unwrap();
    let asked: Vec<_> = (0..5)
        .map(|_| {
            let api: Api<ConfigMap> = Api::namespaced(limited.clone(), NS);
            tokio::spawn(async move { api.get_opt("limited").await })
        })
        .collect();
    let sent = || {
        server
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/limited"))
            .count()
    };
    wait_until("the burst to go out", PATIENCE, || async {
        (sent() >= 3).then_some(())
    })
    .await;
    // An unlimited client's five round trips, one after another, witness that time passed.
    let free: Api<ConfigMap> = Api::namespaced(crate::harness::client(&server), NS);
    for _ in 0..5 {
        free.get_opt("free").await.unwrap();
    }
    assert_eq!(
        sent(),
        3,
        "requests beyond the burst must wait for the next window"
    );
    for task in asked {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_retried_and_failing_events_do_not_block_status() {
    use apphealth_testserver::Fault;

    let mut h = Harness::new(1).await;
    let internal = |what: &str| Fault::Status {
        code: 500,
        reason: "InternalError".into(),
        message: format!("{what} is down"),
    };
    // Status writes and Event creation both fail at first.
    h.server.set_fault_hook(move |r| {
        let status_write = r.method == "PATCH" && r.path.ends_with("/status");
        let event = r.method == "POST" && r.path.contains("/events");
        (status_write || event).then(|| internal("the store"))
    });
    h.create_policy("web", json!({}));
    h.start_operator(Some(NS));
    let failed_status_writes = || {
        h.server
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/status") && r.status == 500)
            .count()
    };
    wait_until("a failed status write to be retried", PATIENCE, || async {
        (failed_status_writes() >= 2).then_some(())
    })
    .await;
    assert!(
        h.policy("web")["status"].is_null(),
        "nothing could be written yet"
    );

    // Status writes recover; Events keep failing: status still gets through.
    h.server.set_fault_hook(move |r| {
        (r.method == "POST" && r.path.contains("/events")).then(|| internal("events"))
    });
    h.wait_condition("web", "Healthy", "True", None).await;
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_this_version_cannot_read_is_reported_alone() {
    let mut h = Harness::new(1).await;
    h.create_policy("good", json!({}));
    // The test server does not validate against the CRD schema, as a newer CRD would not:
    // this policy carries an action this operator version does not know.
    h.create_policy("newer", json!({"remediation": {"steps": [{"action": "Reboot"}]}}));
    h.start_operator(Some(NS));

    h.wait_condition("good", "Healthy", "True", None).await;
    let newer = h
        .wait_condition("newer", "Ready", "False", Some("UnreadablePolicy"))
        .await;
    let message = condition(&newer, "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.starts_with(
            "This operator version cannot read the policy: spec.remediation.steps[0].action: unknown variant `Reboot`"
        ),
        "{message}"
    );
    h.wait_event("newer", "UnreadablePolicy").await;

    // Once it is readable again it is probed like any other.
    let mut policy = h.policy("newer");
    policy["spec"]["remediation"]["steps"][0]["action"] = json!("RolloutRestart");
    h.server.replace(policy).unwrap();
    h.wait_condition("newer", "Ready", "True", Some("Probing")).await;
    h.wait_condition("newer", "Healthy", "True", None).await;
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_namespaces_is_watched_with_namespaced_calls_only() {
    let mut h = Harness::new(1).await;
    h.create_policy("web", json!({}));
    // A policy in a namespace the operator does not watch.
    let mut outside = h.policy("web");
    outside["metadata"] = json!({"name": "outside", "namespace": "elsewhere"});
    h.server.create(outside).unwrap();
    h.start_operator_with(apphealth_operator::controller::Config {
        namespaces: vec![NS.into(), "team-b".into()],
        ..h.config()
    });
    h.wait_condition("web", "Healthy", "True", None).await;
    let requests = h.server.requests();
    let cluster_wide: Vec<_> = requests
        .iter()
        .filter(|r| {
            r.path.starts_with("/api") && r.path.split('/').count() > 3 && !r.path.contains("/namespaces/")
        })
        .collect();
    assert!(cluster_wide.is_empty(), "cluster-wide calls: {cluster_wide:?}");
    assert!(
        requests.iter().any(|r| r.path.contains("/namespaces/team-b/")),
        "the second namespace is watched"
    );
    h.assert_no_writes_over("web-a", 1).await;
    let outside = h
        .server
        .get(
            "apphealth.io/v1alpha1",
            "AppHealthPolicy",
            Some("elsewhere"),
            "outside",
        )
        .unwrap();
    assert!(
        outside["status"].is_null(),
        "a namespace not watched is not touched"
    );
    h.stop_operator().await;
}
