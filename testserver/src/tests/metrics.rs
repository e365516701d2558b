//! The resource metrics API (`metrics.k8s.io/v1beta1`).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use super::{client, raw_request};
use crate::TestServer;

fn pod_metrics() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics"),
        "pods",
    )
}

fn api_error_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn get_json(server: &TestServer, method: &str, path: &str) -> (String, Value) {
    let resp = raw_request(
        server,
        &format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    )
    .await;
    let status = resp.split(' ').nth(1).unwrap_or_default().to_string();
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn metrics_api_is_absent_until_enabled() {
    let server = TestServer::start().await.unwrap();
    let client = client(&server).await;
    server.set_pod_metrics("shop", "web-0", &[("web", "250m", "128Mi")]);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "shop", &pod_metrics());
    assert_eq!(
        api_error_code(api.list(&ListParams::default()).await.unwrap_err()),
        404
    );
    let (_, groups) = get_json(&server, "GET", "/apis").await;
    assert!(
        !groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "metrics.k8s.io")
    );
    for path in ["/apis/metrics.k8s.io", "/apis/metrics.k8s.io/v1beta1"] {
        assert_eq!(get_json(&server, "GET", path).await.0, "404", "{path}");
    }

    server.enable_metrics_api();
    let (_, groups) = get_json(&server, "GET", "/apis").await;
    let group = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "metrics.k8s.io")
        .cloned()
        .expect("listed once enabled");
    assert_eq!(
        group["preferredVersion"]["groupVersion"],
        "metrics.k8s.io/v1beta1"
    );
    let (code, group) = get_json(&server, "GET", "/apis/metrics.k8s.io").await;
    assert_eq!((code.as_str(), &group["kind"]), ("200", &json!("APIGroup")));
    let (_, resources) = get_json(&server, "GET", "/apis/metrics.k8s.io/v1beta1").await;
    let kinds: Vec<(&str, &str, bool)> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["kind"].as_str().unwrap(),
                r["namespaced"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("nodes", "NodeMetrics", false), ("pods", "PodMetrics", true)]
    );
    assert_eq!(resources["resources"][1]["verbs"], json!(["get", "list"]));
    assert_eq!(api.list(&ListParams::default()).await.unwrap().items.len(), 1);
}

#[tokio::test]
async fn pod_metrics_round_trip_with_selectors() {
    let server = TestServer::start().await.unwrap();
    server.enable_metrics_api();
    let client = client(&server).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    for (name, app) in [("web-0", "web"), ("web-1", "web"), ("db-0", "db")] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"containers": [{"name": "main", "image": "x"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    server.set_pod_metrics(
        "shop",
        "web-0",
        &[("web", "250m", "128Mi"), ("sidecar", "5m", "16Mi")],
    );
    server.set_pod_metrics("shop", "web-1", &[("web", "1", "1Gi")]);
    server.set_pod_metrics("shop", "db-0", &[("db", "100m", "512Mi")]);
    server.set_pod_metrics("other", "lonely", &[("c", "1m", "1Mi")]);

    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "shop", &pod_metrics());
    let list = api.list(&ListParams::default()).await.unwrap();
    let names: Vec<String> = list
        .items
        .iter()
        .map(|o| o.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["db-0", "web-0", "web-1"]);

    let web0 = api.get("web-0").await.unwrap();
    assert_eq!(web0.metadata.namespace.as_deref(), Some("shop"));
    assert!(web0.metadata.creation_timestamp.is_some());
    assert_eq!(
        web0.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app"))
            .map(String::as_str),
        Some("web")
    );
    assert_eq!(web0.data["window"], "30s");
    assert!(web0.data["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        web0.data["containers"],
        json!([{"name": "web", "usage": {"cpu": "250m", "memory": "128Mi"}},
               {"name": "sidecar", "usage": {"cpu": "5m", "memory": "16Mi"}}])
    );

    let web = api.list(&ListParams::default().labels("app=web")).await.unwrap();
    assert_eq!(web.items.len(), 2);
    let one = api
        .list(&ListParams::default().fields("metadata.name=web-1"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    assert_eq!(one.items[0].data["containers"][0]["usage"]["memory"], "1Gi");

    let all: Api<DynamicObject> = Api::all_with(client.clone(), &pod_metrics());
    assert_eq!(all.list(&ListParams::default()).await.unwrap().items.len(), 4);

    // Replace, clear; missing pods 404.
    server.set_pod_metrics("shop", "web-1", &[("web", "2", "2Gi")]);
    assert_eq!(
        api.get("web-1").await.unwrap().data["containers"][0]["usage"]["cpu"],
        "2"
    );
    server.clear_pod_metrics("shop", "web-1");
    assert_eq!(api_error_code(api.get("web-1").await.unwrap_err()), 404);
    assert_eq!(api.list(&ListParams::default()).await.unwrap().items.len(), 2);

    // Read-only; no watch; node metrics are an empty list.
    let (code, status) = get_json(
        &server,
        "DELETE",
        "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods/web-0",
    )
    .await;
    assert_eq!(
        (code.as_str(), &status["reason"]),
        ("405", &json!("MethodNotAllowed"))
    );
    let (code, _) = get_json(
        &server,
        "POST",
        "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods",
    )
    .await;
    assert_eq!(code, "405");
    let (code, _) = get_json(
        &server,
        "GET",
        "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods?watch=true",
    )
    .await;
    assert_eq!(code, "405");
    let (code, nodes) = get_json(&server, "GET", "/apis/metrics.k8s.io/v1beta1/nodes").await;
    assert_eq!(
        (code.as_str(), &nodes["kind"]),
        ("200", &json!("NodeMetricsList"))
    );
    assert_eq!(nodes["items"], json!([]));
    assert_eq!(
        get_json(&server, "GET", "/apis/metrics.k8s.io/v1beta1/nodes/n1")
            .await
            .0,
        "404"
    );
    assert_eq!(
        get_json(&server, "GET", "/apis/metrics.k8s.io/v1beta1/widgets")
            .await
            .0,
        "404"
    );
}
