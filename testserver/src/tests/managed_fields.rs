//! `metadata.managedFields`: field managers, operations, subresources and the server's clock.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::{client, cm, raw_request};
use crate::TestServer;

/// (manager, operation, subresource) of each entry, in order.
fn entries(obj: &ConfigMap) -> Vec<(String, String, String)> {
    managers(obj.metadata.managed_fields.as_deref().unwrap_or_default())
}

fn managers(fields: &[ManagedFieldsEntry]) -> Vec<(String, String, String)> {
    fields
        .iter()
        .map(|e| {
            (
                e.manager.clone().unwrap_or_default(),
                e.operation.clone().unwrap_or_default(),
                e.subresource.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn entry(m: &str, op: &str, sub: &str) -> (String, String, String) {
    (m.into(), op.into(), sub.into())
}

fn time_of(obj: &ConfigMap, manager: &str) -> jiff::Timestamp {
    let entry = obj
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|e| e.manager.as_deref() == Some(manager))
        .unwrap_or_else(|| panic!("no entry of {manager}"));
    assert_eq!(entry.fields_type.as_deref(), Some("FieldsV1"));
    assert_eq!(entry.api_version.as_deref(), Some("v1"));
    entry.time.as_ref().unwrap().0
}

#[tokio::test]
async fn managers_come_from_field_manager_or_user_agent() {
    let server = TestServer::start().await.unwrap();
    let t0: jiff::Timestamp = "2025-03-01T10:00:00Z".parse().unwrap();
    server.set_clock(move || t0);
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let pp = PostParams {
        field_manager: Some("operator".into()),
        ..Default::default()
    };
    let c = api.create(&pp, &cm("c", json!({}))).await.unwrap();
    assert_eq!(entries(&c), [entry("operator", "Update", "")]);
    assert_eq!(time_of(&c, "operator"), t0);
    assert_eq!(c.metadata.creation_timestamp.as_ref().unwrap().0, t0);

    // kube-rs sends no User-Agent: without fieldManager the manager is "unknown".
    server.advance_clock(Duration::from_secs(90));
    let data = |v: &str| Patch::Merge(json!({"data": {"k": v}}));
    let c = api.patch("c", &PatchParams::default(), &data("1")).await.unwrap();
    assert_eq!(
        entries(&c),
        [entry("operator", "Update", ""), entry("unknown", "Update", "")]
    );
    assert_eq!(time_of(&c, "unknown"), t0 + jiff::SignedDuration::from_secs(90));
    assert_eq!(c.metadata.creation_timestamp.as_ref().unwrap().0, t0);

    // A User-Agent gives its product token, like the API server.
    let mut config = kube::Config::new(server.url().parse().unwrap());
    config.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_static("kubectl/v1.33.0 (linux/amd64) kubernetes/60a317e"),
    ));
    let kubectl: Api<ConfigMap> = Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    server.advance_clock(Duration::from_secs(10));
    let c = kubectl
        .patch("c", &PatchParams::default(), &data("2"))
        .await
        .unwrap();
    assert!(entries(&c).contains(&entry("kubectl", "Update", "")));
    // ... unless fieldManager is given.
    let c = kubectl
        .patch(
            "c",
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..Default::default()
            },
            &data("3"),
        )
        .await
        .unwrap();
    assert!(entries(&c).contains(&entry("kubectl-edit", "Update", "")));

    // Server-side apply records an Apply; entries sort Apply first, then by time.
    server.advance_clock(Duration::from_secs(10));
    let applied =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x": "1"}});
    let c = api
        .patch("c", &PatchParams::apply("operator"), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(
        entries(&c),
        [
            entry("operator", "Apply", ""),
            entry("operator", "Update", ""),
            entry("unknown", "Update", ""),
            entry("kubectl", "Update", ""),
            entry("kubectl-edit", "Update", ""),
        ]
    );

    // A no-op write changes nothing, even with the clock moved on.
    server.advance_clock(Duration::from_secs(3600));
    let same = api
        .patch("c", &PatchParams::apply("operator"), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(same, c);
    let same = api.replace("c", &PostParams::default(), &c).await.unwrap();
    assert_eq!(same, c);

    // Direct writes are by "testserver".
    server
        .replace(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}, "data": {"direct": "1"}}))
        .unwrap();
    let c = api.get("c").await.unwrap();
    assert!(entries(&c).contains(&entry("testserver", "Update", "")));
    assert_eq!(c.metadata.creation_timestamp.as_ref().unwrap().0, t0);
}

#[tokio::test]
async fn status_writes_record_the_subresource() {
    let server = TestServer::start().await.unwrap();
    server
        .create(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "w"}]}}}}))
        .unwrap();
    server
        .patch_status(
            "apps/v1",
            "Deployment",
            Some("default"),
            "web",
            json!({"status": {"replicas": 1}}),
        )
        .unwrap();
    let api: Api<Deployment> = Api::namespaced(client(&server).await, "default");
    let d = api
        .patch_status(
            "web",
            &PatchParams::apply("ctl").force(),
            &Patch::Apply(
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "status": {"readyReplicas": 1}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        managers(d.metadata.managed_fields.as_deref().unwrap()),
        [
            entry("ctl", "Apply", "status"),
            entry("testserver", "Update", ""),
            entry("testserver", "Update", "status"),
        ]
    );
}

#[tokio::test]
async fn invalid_field_managers_are_refused() {
    let server = TestServer::start().await.unwrap();
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#;
    let long = "m".repeat(129);
    let resp = raw_request(
        &server,
        &format!(
            "POST /api/v1/namespaces/default/configmaps?fieldManager={long} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 422"), "{resp}");
    // A long User-Agent is cut instead.
    let ua = format!("{}/1.0", "u".repeat(200));
    let resp = raw_request(
        &server,
        &format!(
            "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nUser-Agent: {ua}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    let c = server.get("v1", "ConfigMap", Some("default"), "x").unwrap();
    let manager: &Value = &c["metadata"]["managedFields"][0]["manager"];
    assert_eq!(manager.as_str().unwrap(), "u".repeat(128));
}
