//! PodDisruptionBudgets, HorizontalPodAutoscalers and the pods `eviction` subresource, through kube-rs.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::{client, raw_request};
use crate::TestServer;

/// A client that does not retry 429s (kube-rs's default retry policy would retry a refused eviction 15
/// times with exponential backoff).
fn no_retry_client(server: &TestServer) -> kube::Client {
    let mut config = kube::Config::new(server.url().parse().unwrap());
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

fn api_error(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A pod with label `app`, in phase `phase`, Ready or not.
fn pod(server: &TestServer, name: &str, app: &str, phase: &str, ready: bool) {
    server
        .create(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}
        }))
        .unwrap();
    let ready = if ready { "True" } else { "False" };
    server
        .patch_status(
            "v1",
            "Pod",
            Some("shop"),
            name,
            json!({"status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]}}),
        )
        .unwrap();
}

fn pdb(server: &TestServer, name: &str, spec: Value) {
    server
        .create(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": "shop"}, "spec": spec
        }))
        .unwrap();
}

fn exists(server: &TestServer, name: &str) -> bool {
    server.get("v1", "Pod", Some("shop"), name).is_some()
}

#[tokio::test]
async fn pdb_and_hpa_round_trip() {
    let server = TestServer::start().await.unwrap();
    let client = client(&server).await;
    let pp = PostParams {
        field_manager: Some("test".into()),
        ..Default::default()
    };
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "shop");
    let created = pdbs
        .create(
            &pp,
            &serde_json::from_value(json!({
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}},
                "status": {"currentHealthy": 9, "desiredHealthy": 1, "disruptionsAllowed": 8, "expectedPods": 10}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    assert!(created.status.is_none(), "status is dropped on create");
    let got = pdbs.get("web").await.unwrap();
    assert_eq!(
        got.spec.unwrap().min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
            "50%".into()
        ))
    );
    let status = json!({"status": {"currentHealthy": 2, "desiredHealthy": 1, "disruptionsAllowed": 1, "expectedPods": 2}});
    let got = pdbs
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(got.status.unwrap().disruptions_allowed, 1);
    let listed = pdbs.list(&ListParams::default().labels("app=web")).await.unwrap();
    assert_eq!(listed.items.len(), 1);

    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client, "shop");
    hpas.create(
        &pp,
        &serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2, "maxReplicas": 5,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
            }
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let patch = json!({"spec": {"maxReplicas": 8}});
    let patched = hpas
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let spec = patched.spec.unwrap();
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 8));
    assert_eq!(patched.metadata.generation, Some(2));
    let status = json!({"status": {"currentReplicas": 3, "desiredReplicas": 4}});
    hpas.patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let got = hpas.get("web").await.unwrap();
    assert_eq!(got.status.unwrap().desired_replicas, 4);
    assert_eq!(got.spec.unwrap().max_replicas, 8);

    // Discovery lists both, with short names; `hpa` is in category `all`.
    for (path, name, short) in [
        ("/apis/policy/v1", "poddisruptionbudgets", "pdb"),
        ("/apis/autoscaling/v2", "horizontalpodautoscalers", "hpa"),
    ] {
        let resp = raw_request(
            &server,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        let list: Value = serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        let entry = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap();
        assert_eq!(entry["shortNames"], json!([short]));
        assert!(
            list["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == format!("{name}/status"))
        );
    }
}

#[tokio::test]
async fn eviction_respects_the_disruption_budget() {
    let server = TestServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(no_retry_client(&server), "shop");
    pod(&server, "web-0", "web", "Running", true);
    pod(&server, "web-1", "web", "Running", true);
    pod(&server, "web-2", "web", "Running", false);
    pod(&server, "db-0", "db", "Running", true);
    pdb(
        &server,
        "web-pdb",
        json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}),
    );

    // Two healthy pods, two needed: a ready pod may not go.
    let e = api_error(pods.evict("web-0", &EvictParams::default()).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(
        e.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    let causes = e.details.unwrap().causes;
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].reason, "DisruptionBudget");
    assert_eq!(
        causes[0].message,
        "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"
    );
    assert!(exists(&server, "web-0"));

    // An unready pod may go while the budget is met.
    let s = pods.evict("web-2", &EvictParams::default()).await.unwrap();
    assert_eq!(
        (s.code, s.status),
        (201, Some(kube::core::response::StatusSummary::Success))
    );
    assert!(!exists(&server, "web-2"));
    // Pods no budget selects go freely; a dry run deletes nothing.
    let dry = EvictParams {
        post_options: PostParams {
            dry_run: true,
            ..Default::default()
        },
        ..Default::default()
    };
    pods.evict("db-0", &dry).await.unwrap();
    assert!(exists(&server, "db-0"));
    pods.evict("db-0", &EvictParams::default()).await.unwrap();
    assert!(!exists(&server, "db-0"));

    // A third healthy pod makes one disruption allowed; the dry run leaves it there.
    pod(&server, "web-3", "web", "Running", true);
    pods.evict("web-0", &dry).await.unwrap();
    assert!(exists(&server, "web-0"));
    pods.evict("web-0", &EvictParams::default()).await.unwrap();
    assert!(!exists(&server, "web-0"));
    let e = api_error(pods.evict("web-1", &EvictParams::default()).await.unwrap_err());
    assert_eq!(e.code, 429);

    // Missing pod: 404 like a get.
    let e = api_error(pods.evict("nope", &EvictParams::default()).await.unwrap_err());
    assert_eq!((e.code, e.message.as_str()), (404, "pods \"nope\" not found"));

    // The wire form of a refusal.
    let body =
        r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web-1","namespace":"shop"}}"#;
    let resp = raw_request(
        &server,
        &format!(
            "POST /api/v1/namespaces/shop/pods/web-1/eviction HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 429"), "{resp}");
    let status: Value = serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(
        status,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Cannot evict pod as it would violate the pod's disruption budget.",
            "reason": "TooManyRequests", "code": 429,
            "details": {"causes": [{"reason": "DisruptionBudget",
                "message": "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"}]}
        })
    );
    let log = server.requests();
    let evictions: Vec<u16> = log
        .iter()
        .filter(|r| r.path.ends_with("/eviction"))
        .map(|r| r.status)
        .collect();
    assert_eq!(evictions, [429, 201, 201, 201, 201, 201, 429, 404, 429]);
}

#[tokio::test]
async fn eviction_special_cases() {
    let server = TestServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(no_retry_client(&server), "shop");
    pod(&server, "web-0", "web", "Running", true);
    pod(&server, "web-1", "web", "Running", false);
    pod(&server, "done", "web", "Succeeded", false);
    pod(&server, "new", "web", "Pending", false);
    pdb(
        &server,
        "web-pdb",
        json!({"maxUnavailable": 0, "selector": {"matchLabels": {"app": "web"}}}),
    );
    // An empty selector matches nothing (for evictions).
    pdb(&server, "empty", json!({"minAvailable": 5, "selector": {}}));

    // Terminal and pending pods go without looking at budgets.
    pods.evict("done", &EvictParams::default()).await.unwrap();
    pods.evict("new", &EvictParams::default()).await.unwrap();
    // Unready pod, budget not met (1 healthy of 2 needed): refused unless the policy is AlwaysAllow.
    let e = api_error(pods.evict("web-1", &EvictParams::default()).await.unwrap_err());
    assert_eq!(
        e.details.unwrap().causes[0].message,
        "The disruption budget web-pdb needs 2 healthy pods and has 1 currently"
    );
    let always = json!({"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}});
    Api::<PodDisruptionBudget>::namespaced(client(&server).await, "shop")
        .patch("web-pdb", &PatchParams::default(), &Patch::Merge(&always))
        .await
        .unwrap();
    pods.evict("web-1", &EvictParams::default()).await.unwrap();
    assert!(!exists(&server, "web-1"));

    // A precondition that does not hold: 409.
    let uid = server.get("v1", "Pod", Some("shop"), "web-0").unwrap()["metadata"]["uid"].clone();
    let body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-0"},
        "deleteOptions": {"preconditions": {"uid": "other"}}})
    .to_string();
    server
        .delete("policy/v1", "PodDisruptionBudget", Some("shop"), "web-pdb")
        .unwrap();
    let evict = |body: String| {
        format!(
            "POST /api/v1/namespaces/shop/pods/web-0/eviction HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let resp = raw_request(&server, &evict(body)).await;
    assert!(resp.starts_with("HTTP/1.1 409"), "{resp}");
    assert!(
        resp.contains(&format!(
            "UID in precondition: other, UID in object meta: {}",
            uid.as_str().unwrap()
        )),
        "{resp}"
    );
    // The name in the body must be the pod's.
    let resp = raw_request(&server, &evict(json!({"metadata": {"name": "x"}}).to_string())).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");

    // Two budgets for one pod: 500 (and the pod stays).
    pdb(
        &server,
        "a",
        json!({"minAvailable": 0, "selector": {"matchLabels": {"app": "web"}}}),
    );
    pdb(
        &server,
        "b",
        json!({"maxUnavailable": 1, "selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}),
    );
    let e = api_error(pods.evict("web-0", &EvictParams::default()).await.unwrap_err());
    assert_eq!(e.code, 500);
    assert_eq!(
        e.message,
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
    assert!(exists(&server, "web-0"));
    // GET on eviction is not allowed.
    let resp = raw_request(
        &server,
        "GET /api/v1/namespaces/shop/pods/web-0/eviction HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
}
