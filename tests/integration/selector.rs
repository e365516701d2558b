//! Policies over many workloads (`targetSelector`) on the API test server: each selected workload
//! judged and remediated on its own, Events on the workload with the policy related, workloads
//! picked up and released as their labels change, precedence over a policy naming a workload.
//! Scenarios whose outcome Kubernetes decides run on the local control plane too:
//! tests/cluster/selector.rs.

use serde_json::{Value, json};

use crate::{
    flaky::Mode,
    harness::{Harness, NS},
};

/// Sets (or with None, removes) label `tier` on Deployment `name`.
fn label(h: &Harness, name: &str, tier: Option<&str>) {
    let mut deployment = h.server.get("apps/v1", "Deployment", Some(NS), name).unwrap();
    match tier {
        Some(tier) => deployment["metadata"]["labels"] = json!({ "tier": tier }),
        None => deployment["metadata"]["labels"] = json!({}),
    }
    h.server.replace(deployment).unwrap();
}

/// Creates policy `name` over the Deployments labelled tier=web (RestartPods, cooldown 1h, probing
/// every 2s as the harness's policies do), after merging `patch` into its spec.
fn create_fleet(h: &Harness, name: &str, patch: Value) {
    let mut spec = json!({
        "targetRef": null,
        "targetSelector": {"matchLabels": {"tier": "web"}},
        "remediation": {"steps": [{"action": "RestartPods", "timeout": "1h"}]}
    });
    crate::support::merge(&mut spec, patch);
    h.create_policy(name, spec);
}

fn ready_message(policy: &Value) -> String {
    policy["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn fleet(h: &Harness, name: &str) -> Value {
    h.policy(name)["status"]["fleet"].clone()
}

async fn wait_fleet(h: &Harness, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    h.wait_state(what, || {
        let fleet = fleet(h, name);
        check(&fleet).then_some(fleet)
    })
    .await
}

/// Events regarding `kind`/`name`, as (reason, related object's name).
fn events_regarding(h: &Harness, kind: &str, name: &str) -> Vec<(String, String)> {
    h.server
        .list("events.k8s.io/v1", "Event", Some(NS))
        .into_iter()
        .filter(|e| e["regarding"]["kind"] == kind && e["regarding"]["name"] == name)
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_owned(),
                e["related"]["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_selected_workload_is_judged_and_remediated_on_its_own() {
    let mut h = Harness::new(2).await;
    let api = h.add_workload("api").await;
    let _cart = h.add_workload("cart").await;
    label(&h, "web", Some("web"));
    label(&h, "api", Some("web"));
    label(&h, "cart", Some("batch"));
    create_fleet(&h, "fleet", json!({}));
    let metrics = std::sync::Arc::new(apphealth_operator::metrics::Metrics::default());
    h.start_operator_with(apphealth_operator::controller::Config {
        namespaces: vec![NS.to_owned()],
        metrics: metrics.clone(),
        ..h.config()
    });

    wait_fleet(&h, "fleet", "two workloads healthy", |f| {
        f["selected"] == 2 && f["healthy"] == 2
    })
    .await;
    let policy = h
        .wait_condition("fleet", "Ready", "True", Some("WorkloadsSelected"))
        .await;
    assert_eq!(ready_message(&policy), "2 workloads match tier=web");

    // One workload's pod fails: only it is remediated, and its record is in status.
    api.set(Mode::Status(503));
    let record = h
        .wait_state("api's RestartPods in status.workloads", || {
            let policy = h.policy("fleet");
            let listed = policy["status"]["workloads"].as_array()?.clone();
            let api = listed.iter().find(|w| w["name"] == "api")?;
            (api["history"][0]["action"] == "RestartPods" && api["history"][0]["result"] == "Succeeded")
                .then(|| api.clone())
        })
        .await;
    assert_eq!(record["kind"], "Deployment");
    assert_eq!(record["history"][0]["pods"], json!(["api-a"]));
    assert!(
        h.server.get("v1", "Pod", Some(NS), "api-a").is_none(),
        "api's bad pod evicted"
    );
    for pod in ["web-a", "web-b", "cart-a"] {
        assert!(
            h.server.get("v1", "Pod", Some(NS), pod).is_some(),
            "{pod} left alone"
        );
    }
    // Its Events regard the Deployment, with the policy related.
    let events = events_regarding(&h, "Deployment", "api");
    assert!(
        events
            .iter()
            .any(|(reason, related)| reason == "PodsRestarted" && related == "fleet"),
        "{events:?}"
    );
    assert!(
        events_regarding(&h, "Deployment", "web").is_empty(),
        "nothing about web"
    );

    // Labels decide: cart joins, web leaves.
    label(&h, "cart", Some("web"));
    wait_fleet(&h, "fleet", "cart picked up", |f| f["selected"] == 3).await;
    label(&h, "web", None);
    wait_fleet(&h, "fleet", "web released", |f| f["selected"] == 2).await;
    let policy = h
        .wait_condition("fleet", "Ready", "True", Some("WorkloadsSelected"))
        .await;
    assert_eq!(ready_message(&policy), "2 workloads match tier=web");
    let text = metrics.render();
    let health: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("apphealth_policy_health"))
        .collect();
    assert!(
        health.iter().any(|l| l.contains("shop/fleet/Deployment/cart")),
        "cart's health gauge: {health:?}"
    );
    assert!(
        !health.iter().any(|l| l.contains("shop/fleet/Deployment/web\"")),
        "web's removed: {health:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_matching_nothing_is_ready_and_says_so() {
    let mut h = Harness::new(1).await;
    create_fleet(&h, "fleet", json!({}));
    h.start_operator(Some(NS));
    let policy = h
        .wait_condition("fleet", "Ready", "True", Some("WorkloadsSelected"))
        .await;
    assert_eq!(ready_message(&policy), "0 workloads match tier=web");
    assert_eq!(fleet(&h, "fleet")["selected"], 0);
    assert!(h.policy("fleet")["status"]["workloads"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_naming_a_workload_owns_it_over_a_selector() {
    let mut h = Harness::new(1).await;
    label(&h, "web", Some("web"));
    h.create_policy("web-pinned", json!({}));
    create_fleet(&h, "fleet", json!({}));
    h.start_operator(Some(NS));
    h.wait_condition("web-pinned", "Healthy", "True", None).await;
    // Observed: probed and judged here too.
    let counts = wait_fleet(&h, "fleet", "web owned elsewhere, judged healthy", |f| {
        f["ownedElsewhere"] == 1 && f["healthy"] == 1
    })
    .await;
    assert_eq!(counts["selected"], 1);

    // The named policy remediates; the selector policy observes, says who owns it, takes no step.
    h.set_all(Mode::Status(503));
    h.wait_record("web-pinned", "RolloutRestart", "Succeeded").await;
    let listed = h
        .wait_state(
            "fleet lists web as owned elsewhere, held by OwnedElsewhere",
            || {
                let listed = h.policy("fleet")["status"]["workloads"][0].clone();
                let held = listed["conditions"]
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "RemediationBlocked" && c["reason"] == "OwnedElsewhere");
                held.then_some(listed)
            },
        )
        .await;
    assert_eq!(
        (listed["name"].as_str(), listed["ownedBy"].as_str()),
        (Some("web"), Some("shop/web-pinned"))
    );
    let acted: Vec<&Value> = listed["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["result"] != "Held")
        .collect();
    assert!(acted.is_empty(), "the selector policy took no step: {listed}");
    assert_eq!(fleet(&h, "fleet")["remediating"], 0);
    assert_eq!(
        h.writes_to("/pods/web-a/eviction"),
        0,
        "no eviction by the selector policy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_holds_further_workloads_ladders() {
    let mut h = Harness::new(1).await;
    let api = h.add_workload("api").await;
    let cart = h.add_workload("cart").await;
    for name in ["web", "api", "cart"] {
        label(&h, name, Some("web"));
    }
    create_fleet(&h, "fleet", json!({"remediation": {"maxConcurrent": 1}}));
    h.start_operator(Some(NS));
    wait_fleet(&h, "fleet", "three healthy", |f| f["healthy"] == 3).await;

    h.pod("web-a").app.set(Mode::Status(503));
    api.set(Mode::Status(503));
    cart.set(Mode::Status(503));
    let listed = h
        .wait_state("one ladder acting, two held by PolicyLimit", || {
            let listed = h.policy("fleet")["status"]["workloads"].as_array()?.clone();
            let acted = listed
                .iter()
                .filter(|w| w["history"][0]["action"] == "RestartPods")
                .count();
            let held = listed
                .iter()
                .filter(|w| {
                    w["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "RemediationBlocked" && c["reason"] == "PolicyLimit")
                })
                .count();
            (acted == 1 && held == 2).then_some(listed)
        })
        .await;
    let fleet = fleet(&h, "fleet");
    assert_eq!(
        (fleet["remediating"].as_u64(), fleet["blocked"].as_u64()),
        (Some(1), Some(2)),
        "{fleet}"
    );
    let evicted = ["web-a", "api-a", "cart-a"]
        .iter()
        .filter(|p| h.server.get("v1", "Pod", Some(NS), p).is_none())
        .count();
    assert_eq!(evicted, 1, "one workload's pod evicted: {listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_fleet_writes_nothing_and_a_restart_resumes_from_status() {
    let mut h = Harness::new(2).await;
    let api = h.add_workload("api").await;
    label(&h, "web", Some("web"));
    label(&h, "api", Some("web"));
    create_fleet(&h, "fleet", json!({}));
    h.start_operator(Some(NS));
    wait_fleet(&h, "fleet", "two healthy", |f| f["healthy"] == 2).await;
    h.assert_no_writes_over("web-a", 3).await;

    api.set(Mode::Status(503));
    h.wait_state("api's RestartPods recorded", || {
        let listed = h.policy("fleet")["status"]["workloads"].as_array()?.clone();
        listed
            .iter()
            .any(|w| w["name"] == "api" && w["history"][0]["result"] == "Succeeded")
            .then_some(())
    })
    .await;
    h.kill_operator().await;
    h.start_operator(Some(NS));
    // The new process probes (and so has reconciled the fleet) before anything is judged.
    h.wait_rounds("web-a", 3).await;
    let listed = h.policy("fleet")["status"]["workloads"].clone();
    let api_record = listed
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["name"] == "api")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        api_record["history"].as_array().map(Vec::len),
        Some(1),
        "kept, not repeated: {listed}"
    );
    assert_eq!(h.writes_to("/pods/api-a/eviction"), 1, "evicted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_workloads_scale_out_is_put_back() {
    let mut h = Harness::new(1).await;
    let api = h.add_workload("api").await;
    label(&h, "web", Some("web"));
    label(&h, "api", Some("web"));
    create_fleet(
        &h,
        "fleet",
        json!({"remediation": {"steps": [
            {"action": "ScaleOut", "scaleOut": {"by": 2, "maxReplicas": 8, "restoreAfter": "10m"}, "timeout": "1h"}
        ]}}),
    );
    h.start_operator(Some(NS));
    wait_fleet(&h, "fleet", "two healthy", |f| f["healthy"] == 2).await;

    let replicas = |name: &str| {
        h.server.get("apps/v1", "Deployment", Some(NS), name).unwrap()["spec"]["replicas"].clone()
    };
    api.set(Mode::Status(503));
    h.wait_state("api scaled out from 2 to 4", || {
        (replicas("api") == 4).then_some(())
    })
    .await;
    assert_eq!(replicas("web"), 2, "web left alone");

    // Unlabelled: no longer the policy's, so what it raised is put back at once.
    label(&h, "api", None);
    h.wait_state("api back to 2 replicas", || (replicas("api") == 2).then_some(()))
        .await;
    h.wait_state("a ScaleRestored Event regarding api, the policy related", || {
        events_regarding(&h, "Deployment", "api")
            .iter()
            .any(|(reason, related)| reason == "ScaleRestored" && related == "fleet")
            .then_some(())
    })
    .await;
    wait_fleet(&h, "fleet", "api released", |f| f["selected"] == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_that_recovers_gives_its_place_under_max_concurrent_to_the_next() {
    let mut h = Harness::new(2).await;
    let api = h.add_workload("api").await;
    label(&h, "web", Some("web"));
    label(&h, "api", Some("web"));
    create_fleet(&h, "fleet", json!({"remediation": {"maxConcurrent": 1}}));
    h.start_operator(Some(NS));
    wait_fleet(&h, "fleet", "two healthy", |f| f["healthy"] == 2).await;

    // web's bad pod is evicted; web-a alone is healthy, so web recovers and its ladder ends.
    h.pod("web-b").app.set(Mode::Status(503));
    h.wait_state("web-b evicted", || {
        h.server
            .get("v1", "Pod", Some(NS), "web-b")
            .is_none()
            .then_some(())
    })
    .await;
    wait_fleet(&h, "fleet", "web recovered, its ladder closed", |f| {
        f["healthy"] == 2 && f["remediating"] == 0
    })
    .await;
    // Its place is free: api's ladder is not held by PolicyLimit.
    api.set(Mode::Status(503));
    h.wait_state("api's pod evicted", || {
        h.server
            .get("v1", "Pod", Some(NS), "api-a")
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn among_selectors_the_higher_priority_remediates() {
    let mut h = Harness::new(1).await;
    label(&h, "web", Some("web"));
    create_fleet(&h, "a-low", json!({}));
    create_fleet(&h, "b-high", json!({"priority": 10}));
    h.start_operator(Some(NS));
    wait_fleet(&h, "a-low", "web owned by b-high", |f| f["ownedElsewhere"] == 1).await;
    let high = wait_fleet(&h, "b-high", "web its own", |f| f["healthy"] == 1).await;
    assert!(high["ownedElsewhere"].is_null(), "{high}");

    h.set_all(Mode::Status(503));
    let record = h
        .wait_state("b-high's RestartPods", || {
            let listed = h.policy("b-high")["status"]["workloads"][0].clone();
            (listed["history"][0]["action"] == "RestartPods" && listed["history"][0]["result"] == "Succeeded")
                .then_some(listed)
        })
        .await;
    assert_eq!(record["history"][0]["pods"], json!(["web-a"]));
    let low = h.policy("a-low")["status"]["workloads"][0].clone();
    assert_eq!(low["ownedBy"], "shop/b-high", "{low}");
    assert_eq!(h.writes_to("/pods/web-a/eviction"), 1, "evicted once, by b-high");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_selector_policy_lets_its_workloads_go() {
    let mut h = Harness::new(1).await;
    let _api = h.add_workload("api").await;
    label(&h, "web", Some("web"));
    label(&h, "api", Some("web"));
    create_fleet(&h, "fleet", json!({}));
    let metrics = std::sync::Arc::new(apphealth_operator::metrics::Metrics::default());
    h.start_operator_with(apphealth_operator::controller::Config {
        namespaces: vec![NS.to_owned()],
        metrics: metrics.clone(),
        ..h.config()
    });
    wait_fleet(&h, "fleet", "two healthy", |f| f["healthy"] == 2).await;
    let gauges = |text: &str| -> usize {
        text.lines()
            .filter(|l| l.starts_with("apphealth_policy_health") && l.contains("shop/fleet/"))
            .count()
    };
    assert_eq!(gauges(&metrics.render()), 2, "one health gauge per workload");

    h.server
        .delete("apphealth.io/v1alpha1", "AppHealthPolicy", Some(NS), "fleet")
        .unwrap();
    crate::support::wait_until(
        "the workloads' gauges removed",
        std::time::Duration::from_secs(30),
        || {
            let left = gauges(&metrics.render());
            async move { (left == 0).then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workloads_diagnostics_are_named_after_it_and_owned_by_the_policy() {
    let mut h = Harness::new(1).await;
    let api = h.add_workload("api").await;
    label(&h, "web", Some("web"));
    label(&h, "api", Some("web"));
    create_fleet(
        &h,
        "fleet",
        json!({"remediation": {"steps": [
            {"action": "CollectDiagnostics", "collectDiagnostics": {"logLines": 2}},
            {"action": "RestartPods", "timeout": "1h"}
        ]}}),
    );
    h.start_operator(Some(NS));
    wait_fleet(&h, "fleet", "two healthy", |f| f["healthy"] == 2).await;

    api.set(Mode::Status(503));
    let capture = h
        .wait_state("api's diagnostics ConfigMap", || {
            h.server.list("v1", "ConfigMap", Some(NS)).into_iter().find(|c| {
                c["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("fleet-api-diagnostics-"))
            })
        })
        .await;
    let owner = &capture["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str()),
        (Some("AppHealthPolicy"), Some("fleet"))
    );
    assert_eq!(owner["uid"], h.policy("fleet")["metadata"]["uid"]);
    let summary = capture["data"]["summary.txt"].as_str().unwrap_or_default();
    assert!(
        summary.contains("by AppHealthPolicy fleet ") && summary.contains("Deployment api"),
        "{summary}"
    );
}
