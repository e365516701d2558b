//! Server-side apply between several managers: co-owned fields and what `managedFields` records.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::{client, widget_api, widget_crd};
use crate::TestServer;

/// The `fieldsV1` of `manager`'s Apply entry (`None` without one).
fn owned(obj: &Value, manager: &str) -> Option<Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == "Apply")
        .map(|e| e["fieldsV1"].clone())
}

fn cm_config(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data})
}

#[tokio::test]
async fn a_field_another_applier_co_owns_stays_when_one_stops_applying_it() {
    let server = TestServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let apply = |manager: &'static str, data: Value| {
        let api = api.clone();
        async move {
            let pp = PatchParams::apply(manager);
            let c = api.patch("c", &pp, &Patch::Apply(cm_config(data))).await.unwrap();
            serde_json::to_value(c).unwrap()
        }
    };
    apply("a", json!({"shared": "1", "a": "x"})).await;
    let c = apply("b", json!({"shared": "1", "b": "y"})).await;
    assert_eq!(
        owned(&c, "b"),
        Some(json!({"f:data": {"f:shared": {}, "f:b": {}}}))
    );
    // A first apply that changes no value still records its ownership (a new resourceVersion).
    let before = c["metadata"]["resourceVersion"].clone();
    let c = apply("c", json!({"b": "y"})).await;
    assert_ne!(c["metadata"]["resourceVersion"], before);
    assert_eq!(owned(&c, "c"), Some(json!({"f:data": {"f:b": {}}})));
    // Applying the same again changes nothing at all.
    let again = apply("c", json!({"b": "y"})).await;
    assert_eq!(
        again["metadata"]["resourceVersion"],
        c["metadata"]["resourceVersion"]
    );

    // A stops applying the shared field: B still owns it, so it stays; A owns only what it applies.
    let c = apply("a", json!({"a": "x"})).await;
    assert_eq!(c["data"], json!({"shared": "1", "a": "x", "b": "y"}));
    assert_eq!(owned(&c, "a"), Some(json!({"f:data": {"f:a": {}}})));
    assert_eq!(
        owned(&c, "b"),
        Some(json!({"f:data": {"f:shared": {}, "f:b": {}}}))
    );

    // B stops too: nobody owns it any more, so it is removed.
    let c = apply("b", json!({"b": "y"})).await;
    assert_eq!(c["data"], json!({"a": "x", "b": "y"}));
}

#[tokio::test]
async fn a_condition_another_applier_co_owns_stays_and_its_unshared_fields_go() {
    let server = TestServer::start().await.unwrap();
    let client = client(&server).await;
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(client.clone());
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(widget_crd()).unwrap(),
    )
    .await
    .unwrap();
    let api = widget_api(&client);
    let widget =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}});
    api.create(
        &PostParams::default(),
        &serde_json::from_value::<DynamicObject>(widget).unwrap(),
    )
    .await
    .unwrap();
    let status = |manager: &'static str, conditions: Value| {
        let api = api.clone();
        async move {
            let body = json!({"apiVersion": "example.com/v1", "kind": "Widget", "status": {"conditions": conditions}});
            let w = api
                .patch_status("w", &PatchParams::apply(manager), &Patch::Apply(body))
                .await
                .unwrap();
            serde_json::to_value(w).unwrap()
        }
    };
    status(
        "a",
        json!([{"type": "Ready", "status": "True", "reason": "Probed"}]),
    )
    .await;
    status(
        "b",
        json!([{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}]),
    )
    .await;
    // A drops Ready: B's fields of it (type, status) stay, A's own reason goes.
    let w = status("a", json!([])).await;
    assert_eq!(
        w["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}])
    );
    // An empty list-map owns nothing (structured-merge-diff): A's entry is gone.
    assert_eq!(owned(&w, "a"), None);
    let ready = json!({".": {}, "f:type": {}, "f:status": {}});
    assert_eq!(
        owned(&w, "b").unwrap()["f:status"]["f:conditions"]["k:{\"type\":\"Ready\"}"],
        ready
    );
}
