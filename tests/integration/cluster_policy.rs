//! ClusterAppHealthPolicy on the API test server: one policy over the workloads of the namespaces
//! its namespaceSelector selects, each judged and remediated on its own, namespaces picked up as
//! their labels change, a namespaced policy's precedence over it, and a namespaced install that
//! does not serve it. What Kubernetes decides (admission, eviction) runs on the local control
//! plane: tests/cluster/selector.rs.

use serde_json::{Value, json};

use crate::{
    flaky::Mode,
    harness::{Harness, NS},
};

/// Creates namespace `name` labelled `env`, or relabels it.
fn namespace(h: &Harness, name: &str, env: &str) {
    let labels = json!({ "env": env, "kubernetes.io/metadata.name": name });
    match h.server.get("v1", "Namespace", None, name) {
        Some(mut ns) => {
            ns["metadata"]["labels"] = labels;
            h.server.replace(ns).unwrap();
        }
        None => {
            h.server
                .create(json!({"apiVersion": "v1", "kind": "Namespace",
                               "metadata": {"name": name, "labels": labels}}))
                .unwrap();
        }
    }
}

/// Labels Deployment `namespace`/`name` tier=web.
fn web(h: &Harness, namespace: &str, name: &str) {
    let mut deployment = h
        .server
        .get("apps/v1", "Deployment", Some(namespace), name)
        .unwrap();
    deployment["metadata"]["labels"] = json!({ "tier": "web" });
    h.server.replace(deployment).unwrap();
}

fn create_cluster_policy(h: &Harness, name: &str, spec: Value) {
    let mut base = json!({
        "targetSelector": {"matchLabels": {"tier": "web"}},
        "probe": {"http": {"port": "http", "path": "/healthz", "timeoutSeconds": 1}, "periodSeconds": 2},
        "triggers": [{"consecutiveFailures": {"threshold": 2}}],
        "recovery": {"consecutiveSuccesses": 1},
        "remediation": {"steps": [{"action": "RestartPods", "timeout": "1h"}], "cooldown": "1h"}
    });
    crate::support::merge(&mut base, spec);
    h.server
        .create(json!({
            "apiVersion": "apphealth.io/v1alpha1", "kind": "ClusterAppHealthPolicy",
            "metadata": {"name": name}, "spec": base
        }))
        .unwrap();
}

fn cluster_policy(h: &Harness, name: &str) -> Value {
    h.server
        .get("apphealth.io/v1alpha1", "ClusterAppHealthPolicy", None, name)
        .unwrap_or(Value::Null)
}

fn condition(policy: &Value, type_: &str) -> Value {
    policy["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn wait_cluster(h: &Harness, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    h.wait_state(what, || {
        let policy = cluster_policy(h, name);
        check(&policy).then_some(policy)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_policy_covers_the_workloads_of_the_namespaces_it_selects() {
    let mut h = Harness::new(2).await;
    namespace(&h, NS, "prod");
    namespace(&h, "bank", "prod");
    namespace(&h, "lab", "dev");
    let _api = h.add_workload("api").await;
    let ledger = h.add_workload_in("bank", "ledger").await;
    let _toy = h.add_workload_in("lab", "toy").await;
    for (ns, name) in [(NS, "web"), (NS, "api"), ("bank", "ledger"), ("lab", "toy")] {
        web(&h, ns, name);
    }
    create_cluster_policy(
        &h,
        "web-everywhere",
        json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}}),
    );
    h.start_operator(None);

    let policy = wait_cluster(&h, "web-everywhere", "three workloads healthy", |p| {
        p["status"]["fleet"]["selected"] == 3 && p["status"]["fleet"]["healthy"] == 3
    })
    .await;
    let ready = condition(&policy, "Ready");
    assert_eq!(ready["status"], "True");
    assert_eq!(
        ready["message"],
        "3 workloads match tier=web in namespaces env=prod"
    );

    // bank/ledger's pod fails: only it is remediated; its record names its namespace.
    ledger.set(Mode::Status(503));
    let record = h
        .wait_state("ledger's RestartPods in status.workloads", || {
            let policy = cluster_policy(&h, "web-everywhere");
            let listed = policy["status"]["workloads"].as_array()?.clone();
            let ledger = listed.iter().find(|w| w["name"] == "ledger")?;
            (ledger["history"][0]["action"] == "RestartPods" && ledger["history"][0]["result"] == "Succeeded")
                .then(|| ledger.clone())
        })
        .await;
    assert_eq!(record["namespace"], "bank");
    assert_eq!(record["history"][0]["pods"], json!(["ledger-a"]));
    assert!(
        h.server.get("v1", "Pod", Some("bank"), "ledger-a").is_none(),
        "evicted"
    );
    for (ns, pod) in [(NS, "web-a"), (NS, "api-a"), ("lab", "toy-a")] {
        assert!(
            h.server.get("v1", "Pod", Some(ns), pod).is_some(),
            "{pod} left alone"
        );
    }
    // Its Event is in bank, regarding the Deployment, with the cluster policy related.
    let events: Vec<Value> = h
        .server
        .list("events.k8s.io/v1", "Event", Some("bank"))
        .into_iter()
        .filter(|e| e["regarding"]["name"] == "ledger" && e["reason"] == "PodsRestarted")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["related"]["kind"], "ClusterAppHealthPolicy");
    assert_eq!(events[0]["related"]["name"], "web-everywhere");
    assert_eq!(events[0]["regarding"]["kind"], "Deployment");

    // A namespaced policy naming shop/api wins: the cluster policy observes it and says who owns it.
    h.create_policy("api-own", json!({"targetRef": {"name": "api"}}));
    let policy = wait_cluster(&h, "web-everywhere", "api owned elsewhere", |p| {
        p["status"]["fleet"]["ownedElsewhere"] == 1
    })
    .await;
    assert_eq!(policy["status"]["fleet"]["selected"], 3);

    // lab becomes prod: toy is picked up.
    namespace(&h, "lab", "prod");
    let policy = wait_cluster(&h, "web-everywhere", "lab's toy picked up", |p| {
        p["status"]["fleet"]["selected"] == 4
    })
    .await;
    assert_eq!(
        condition(&policy, "Ready")["message"],
        "4 workloads match tier=web in namespaces env=prod"
    );
    // And released when it is dev again.
    namespace(&h, "lab", "dev");
    wait_cluster(&h, "web-everywhere", "lab's toy released", |p| {
        p["status"]["fleet"]["selected"] == 3
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_policy_with_a_bad_namespace_selector_is_refused_naming_the_field() {
    let mut h = Harness::new(1).await;
    web(&h, NS, "web");
    create_cluster_policy(
        &h,
        "bad-namespaces",
        json!({"namespaceSelector": {"matchLabels": {"bad key": "x"}}}),
    );
    h.start_operator(None);
    let policy = wait_cluster(&h, "bad-namespaces", "Ready=False", |p| {
        condition(p, "Ready")["status"] == "False"
    })
    .await;
    let ready = condition(&policy, "Ready");
    assert_eq!(ready["reason"], "InvalidSpec");
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.namespaceSelector.matchLabels[\"bad key\"]"),
        "{message}"
    );
    assert!(policy["status"]["workloads"].as_array().is_none_or(Vec::is_empty));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespaced_install_does_not_serve_cluster_policies() {
    let mut h = Harness::new(1).await;
    web(&h, NS, "web");
    create_cluster_policy(&h, "everywhere", json!({}));
    // A namespaced policy in the same scope shows the operator is running and has reconciled.
    h.create_policy("own", json!({}));
    h.start_operator(Some(NS));
    h.wait_condition("own", "Ready", "True", None).await;
    assert!(
        cluster_policy(&h, "everywhere")["status"].is_null(),
        "a namespaced install leaves cluster policies alone"
    );
    assert_eq!(
        h.writes_to("/clusterapphealthpolicies"),
        0,
        "no write to a cluster policy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_cluster_policy_writes_nothing_and_a_restart_resumes_from_status() {
    let mut h = Harness::new(2).await;
    namespace(&h, NS, "prod");
    namespace(&h, "bank", "prod");
    let ledger = h.add_workload_in("bank", "ledger").await;
    web(&h, NS, "web");
    web(&h, "bank", "ledger");
    create_cluster_policy(&h, "everywhere", json!({}));
    h.start_operator(None);
    wait_cluster(&h, "everywhere", "two healthy", |p| {
        p["status"]["fleet"]["healthy"] == 2
    })
    .await;
    h.assert_no_writes_over("web-a", 3).await;

    ledger.set(Mode::Status(503));
    h.wait_state("ledger's RestartPods recorded", || {
        let listed = cluster_policy(&h, "everywhere")["status"]["workloads"]
            .as_array()?
            .clone();
        listed
            .iter()
            .any(|w| w["name"] == "ledger" && w["history"][0]["result"] == "Succeeded")
            .then_some(())
    })
    .await;
    h.kill_operator().await;
    h.start_operator(None);
    // The new process probes (and so has reconciled the policy) before anything is judged.
    h.wait_rounds("web-a", 3).await;
    let listed = cluster_policy(&h, "everywhere")["status"]["workloads"].clone();
    let record = listed
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["name"] == "ledger")
        .cloned()
        .unwrap_or_default();
    assert_eq!(record["namespace"], "bank", "{listed}");
    assert_eq!(
        record["history"].as_array().map(Vec::len),
        Some(1),
        "kept, not repeated: {listed}"
    );
    assert_eq!(
        h.writes_to("/namespaces/bank/pods/ledger-a/eviction"),
        1,
        "evicted once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_policys_diagnostics_are_written_in_the_workloads_namespace_owned_by_it() {
    let mut h = Harness::new(1).await;
    namespace(&h, "bank", "prod");
    let ledger = h.add_workload_in("bank", "ledger").await;
    web(&h, "bank", "ledger");
    create_cluster_policy(
        &h,
        "everywhere",
        json!({"remediation": {"steps": [
            {"action": "CollectDiagnostics", "collectDiagnostics": {"logLines": 2}},
            {"action": "RestartPods", "timeout": "1h"}
        ]}}),
    );
    h.start_operator(None);
    wait_cluster(&h, "everywhere", "ledger healthy", |p| {
        p["status"]["fleet"]["healthy"] == 1
    })
    .await;

    ledger.set(Mode::Status(503));
    let capture = h
        .wait_state("ledger's diagnostics ConfigMap in bank", || {
            h.server
                .list("v1", "ConfigMap", Some("bank"))
                .into_iter()
                .find(|c| {
                    c["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("everywhere-ledger-diagnostics-"))
                })
        })
        .await;
    let owner = &capture["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str()),
        (Some("ClusterAppHealthPolicy"), Some("everywhere"))
    );
    assert_eq!(owner["uid"], cluster_policy(&h, "everywhere")["metadata"]["uid"]);
    let summary = capture["data"]["summary.txt"].as_str().unwrap_or_default();
    assert!(
        summary.contains("by ClusterAppHealthPolicy everywhere ") && summary.contains("Deployment ledger"),
        "{summary}"
    );
}
