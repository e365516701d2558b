//! ClusterAppHealthPolicy on the real control plane: a namespaced install refuses it at admission
//! (the chart's ValidatingAdmissionPolicy), and a cluster-wide install, on a control plane of its
//! own (it watches every namespace), remediates the failing workload of a namespace the policy
//! selects — with the chart's ClusterRole, the pod evicted and replaced by Kubernetes' own
//! controllers, the Event regarding the Deployment with the cluster policy related.

use apphealth_cluster::{LocalCluster, Options};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use crate::{
    env::workspace,
    flaky::Mode,
    scenario::{Install, Scenario},
};

fn cluster_policies(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("apphealth.io", "v1alpha1", "ClusterAppHealthPolicy");
    Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
}

fn cluster_policy(name: &str, namespace: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "apphealth.io/v1alpha1", "kind": "ClusterAppHealthPolicy",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {"matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [namespace]}]},
            "targetSelector": {"kinds": ["Deployment"], "matchLabels": {"tier": "web"}},
            "probe": {"http": {"port": "http", "path": "/healthz", "timeoutSeconds": 1}, "periodSeconds": 2},
            "triggers": [{"consecutiveFailures": {"threshold": 2}}],
            "recovery": {"consecutiveSuccesses": 1},
            "remediation": {"steps": [{"action": "RestartPods", "timeout": "1h"}], "cooldown": "1h"}
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn a_namespaced_install_refuses_cluster_policies_at_admission() {
    let s = Scenario::new("cahp-refused", Install::default()).await;
    let api = cluster_policies(&s.client);
    // The API server compiles a new admission policy in the background: bounded retries until it
    // refuses.
    let message = s
        .wait("the ClusterAppHealthPolicy refused", || async {
            match api
                .create(&PostParams::default(), &cluster_policy(&s.ns, &s.ns))
                .await
            {
                Err(kube::Error::Api(status)) if status.code == 403 || status.code == 422 => {
                    Some(status.message)
                }
                Ok(_) => {
                    let _ = api.delete(&s.ns, &Default::default()).await;
                    None
                }
                Err(_) => None,
            }
        })
        .await;
    assert!(
        message.contains("ClusterAppHealthPolicy is not served here")
            && message.contains("watches only the namespaces")
            && message.contains("spec.targetSelector"),
        "{message}"
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn a_cluster_wide_install_remediates_the_workloads_a_cluster_policy_selects() {
    let shared = crate::env::env().await;
    let dir = workspace().join(format!("target/cluster-tests/cahp-cp-{}", std::process::id()));
    let mut options = Options::new(&dir, &shared.cluster.state.bin);
    options.nodes = 1;
    let cluster = LocalCluster::start(options)
        .await
        .expect("a control plane of its own");
    // Cluster-wide (watchNamespaces empty): alone on this control plane, it watches everything.
    let install = Install {
        values: vec!["watchNamespaces=null".into()],
        ..Install::default()
    };
    let mut s = Scenario::on(cluster.access(), "cahp", install).await;
    let web = s.deploy("web", 2, json!({})).await;
    let api_pods = s.deploy("api", 1, json!({})).await;
    let deployments: Api<Deployment> = Api::namespaced(s.client.clone(), &s.ns);
    for name in ["web", "api"] {
        deployments
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"tier": "web"}}})),
            )
            .await
            .unwrap();
    }
    let policies = cluster_policies(&s.client);
    policies
        .create(&PostParams::default(), &cluster_policy("web-everywhere", &s.ns))
        .await
        .unwrap();
    s.start_operator().await;
    let read = || async { serde_json::to_value(policies.get("web-everywhere").await.ok()?).ok() };
    s.wait("both workloads healthy", || async {
        let fleet = read().await?["status"]["fleet"].clone();
        (fleet["selected"] == 2 && fleet["healthy"] == 2).then_some(())
    })
    .await;

    // api's one pod fails: it is evicted, and the Deployment controller replaces it.
    s.app(&api_pods[0]).set(Mode::Status(503));
    s.wait("api's pod evicted and replaced", || async {
        let pods = s.running_pods("api").await;
        (pods.len() == 1 && pods[0] != api_pods[0]).then_some(())
    })
    .await;
    assert_eq!(s.running_pods("web").await, web, "web's pods left alone");
    let policy: Value = read().await.unwrap_or_default();
    let record = policy["status"]["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["name"] == "api")
        .cloned()
        .unwrap_or_default();
    assert_eq!(record["namespace"], s.ns.as_str(), "{policy}");
    assert_eq!(record["history"][0]["action"], "RestartPods", "{policy}");
    assert_eq!(record["history"][0]["pods"], json!([api_pods[0]]), "{policy}");

    let restarted = s.wait_event_object("api", "PodsRestarted").await;
    let regarding = restarted.regarding.clone().unwrap_or_default();
    assert_eq!(regarding.kind.as_deref(), Some("Deployment"), "{restarted:?}");
    let related = restarted.related.clone().unwrap_or_default();
    assert_eq!(
        (related.kind.as_deref(), related.name.as_deref()),
        (Some("ClusterAppHealthPolicy"), Some("web-everywhere")),
        "{restarted:?}"
    );
    s.finish().await;
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
