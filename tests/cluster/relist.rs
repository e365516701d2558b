//! A relist after etcd compaction, with a real `410 Gone`: on a control plane of its own (the test
//! stops its API server), with a second API server on the same etcd, as in an HA control plane.
//! The operator's API server goes away; a policy is created through the other; etcd's history is
//! compacted; the first comes back with an empty watch cache, so every watch the operator resumes
//! from where it was is answered 410 Gone, and it relists: losing nothing (the new policy is
//! picked up) and repeating nothing (the restart it did is not done again).

use apphealth_cluster::{Component, LocalCluster, Options};
use kube::{Api, api::PostParams};
use serde_json::json;

use crate::{
    env::workspace,
    flaky::Mode,
    scenario::{Install, Scenario, condition, policy_resource},
};

/// `apiserver_request_total` for LISTs of AppHealthPolicies, on the API server `client` talks to
/// (since it started).
async fn policy_lists(client: &kube::Client) -> u64 {
    let metrics = client
        .request_text(http::Request::get("/metrics").body(Vec::new()).unwrap())
        .await
        .unwrap();
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains("resource=\"apphealthpolicies\"")
                && l.contains("verb=\"LIST\"")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn a_relist_after_compaction_loses_and_repeats_nothing() {
    let shared = crate::env::env().await;
    let dir = workspace().join(format!("target/cluster-tests/relist-cp-{}", std::process::id()));
    let mut options = Options::new(&dir, &shared.cluster.state.bin);
    options.nodes = 1;
    let mut cluster = LocalCluster::start(options)
        .await
        .expect("a control plane of its own");
    let access = cluster.access();

    // A second API server on the same etcd, on a port of its own.
    let first = cluster
        .state
        .processes
        .iter()
        .find(|p| p.name == "kube-apiserver")
        .unwrap()
        .clone();
    // Below the ephemeral range, where the probes' connections cannot take it meanwhile.
    let port = apphealth_cluster::Ports::free().unwrap().apiserver;
    let args: Vec<String> = first
        .args
        .iter()
        .map(|a| {
            if a.starts_with("--secure-port=") {
                format!("--secure-port={port}")
            } else {
                a.clone()
            }
        })
        .collect();
    let log = std::fs::File::create(dir.join("logs/kube-apiserver-2.log")).unwrap();
    let _second = tokio::process::Command::new(&first.program)
        .args(&args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&access.kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    config.cluster_url = format!("https://127.0.0.1:{port}").parse().unwrap();
    let other = kube::Client::try_from(config).unwrap();

    let mut s = Scenario::on(access.clone(), "relist", Install::default()).await;
    s.deploy("web", 1, json!({})).await;
    s.create_policy("web", "web", json!({})).await;
    s.start_operator().await;
    s.wait_condition("web", "Healthy", "True", None).await;
    s.set_all("web", Mode::Status(503)).await;
    let record = s.wait_record("web", "RolloutRestart", "Succeeded").await;
    s.wait_served("web", 1).await;
    s.wait_condition("web", "Remediating", "False", Some("Recovered"))
        .await;
    s.wait("the second API server", || async {
        other.apiserver_version().await.ok().map(|_| ())
    })
    .await;

    // The gap: the operator's API server is down; a policy is created through the other one, and
    // etcd's history is compacted past everything the operator has seen.
    cluster.stop_component(Component::KubeApiserver);
    let spec = json!({
        "targetRef": {"kind": "Deployment", "name": "web"},
        "probe": {"http": {"port": "http", "path": "/healthz", "timeoutSeconds": 1}, "periodSeconds": 2},
        "triggers": [{"consecutiveFailures": {"threshold": 2}}],
        "recovery": {"consecutiveSuccesses": 1},
        "remediation": {"steps": [{"action": "RolloutRestart", "timeout": "1h"}], "cooldown": "1h"}
    });
    let second: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apphealth.io/v1alpha1", "kind": "AppHealthPolicy",
        "metadata": {"name": "second", "namespace": s.ns}, "spec": spec
    }))
    .unwrap();
    Api::<kube::api::DynamicObject>::namespaced_with(other.clone(), &s.ns, &policy_resource())
        .create(&PostParams::default(), &second)
        .await
        .unwrap();
    let revision = crate::etcd::compact(&access.etcd).await;
    assert!(revision > 0);
    cluster
        .start_component(Component::KubeApiserver)
        .await
        .expect("the API server starts again");

    // The operator relists and finds the new policy.
    s.wait("the new policy's verdict", || async {
        let p = s.policy("second").await;
        (condition(&p, "Healthy")?["status"] == "True").then_some(())
    })
    .await;
    // The watches it resumed were answered 410 Gone (a watch's ERROR event: the HTTP status is
    // 200), and it listed the policies again on the restarted server.
    let log = std::fs::read_to_string(&s.operator(0).log).unwrap();
    assert!(
        log.contains("too old resource version") && log.contains("Expired"),
        "no resumed watch was answered 410 Gone:\n{log}"
    );
    assert!(
        policy_lists(&s.client).await > 0,
        "the policies were not listed again"
    );

    // Nothing repeated: one restart, one record, and the first policy still healthy.
    let web = s.policy("web").await;
    let history = web["status"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["at"], record["at"]);
    assert_eq!(s.deployment("web").await["metadata"]["generation"], 2);
    assert_eq!(condition(&web, "Healthy").unwrap()["status"], "True");
    s.finish().await;
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
