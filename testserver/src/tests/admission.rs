//! Custom resources written over HTTP are pruned and validated against their CRD's schema and
//! CEL rules, as the API server does; writes through the `TestServer` methods are not.

use serde_json::{Value, json};

use super::{merge_patch, send};
use crate::TestServer;

fn gadget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["mode"],
                            "properties": {
                                "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                                "mode": {"type": "string", "enum": ["A", "B"]},
                                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
                                "items": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                            },
                            "x-kubernetes-validations": [
                                {"rule": "!has(self.replicas) || self.replicas <= 5 || self.mode == 'B'",
                                 "message": "replicas above 5 need mode B"}
                            ]
                        },
                        "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
                    }
                }}
            }]
        }
    })
}

fn gadget(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Gadget",
           "metadata": {"name": "g", "namespace": "default"}, "spec": spec})
}

const PATH: &str = "/apis/example.com/v1/namespaces/default/gadgets";

async fn server() -> TestServer {
    let server = TestServer::start().await.unwrap();
    server.create(gadget_crd()).unwrap();
    server
}

async fn post(server: &TestServer, query: &str, obj: &Value) -> (u16, String, Value) {
    send(
        server,
        "POST",
        &format!("{PATH}{query}"),
        "application/json",
        Some(obj),
    )
    .await
}

#[tokio::test]
async fn unknown_fields_are_pruned_warned_of_or_refused() {
    let server = server().await;
    let obj = gadget(json!({"mode": "A", "colour": "red", "extra": {"anything": 1}}));
    let (code, _, body) = post(&server, "?fieldValidation=Strict", &obj).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body["message"],
        "Gadget in version \"v1\" cannot be handled as a Gadget: strict decoding error: unknown field \"spec.colour\""
    );
    assert!(
        server
            .get("example.com/v1", "Gadget", Some("default"), "g")
            .is_none()
    );

    let (code, head, body) = post(&server, "", &obj).await;
    assert_eq!(code, 201, "{body}");
    assert!(
        head.contains("warning: 299 - \"unknown field \\\"spec.colour\\\"\""),
        "{head}"
    );
    assert!(body["spec"].get("colour").is_none(), "pruned: {body}");
    assert_eq!(
        body["spec"]["extra"],
        json!({"anything": 1}),
        "kept where the schema preserves"
    );

    let obj = json!({"apiVersion": "example.com/v1", "kind": "Gadget",
        "metadata": {"name": "h", "namespace": "default"}, "spec": {"mode": "B", "size": 3}});
    let (code, head, body) = post(&server, "?fieldValidation=Ignore", &obj).await;
    assert_eq!(code, 201, "{body}");
    assert!(!head.contains("warning:"), "{head}");
    assert!(body["spec"].get("size").is_none(), "{body}");

    let (code, _, body) = post(&server, "?fieldValidation=Loud", &obj).await;
    assert_eq!(code, 400, "{body}");
}

#[tokio::test]
async fn schema_and_cel_violations_get_422_as_the_api_server_words_them() {
    let server = server().await;
    let cases = [
        (
            json!({"mode": "A", "replicas": 0}),
            "spec.replicas",
            "FieldValueInvalid",
            "Gadget.example.com \"g\" is invalid: spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
        ),
        (
            json!({"mode": "C"}),
            "spec.mode",
            "FieldValueNotSupported",
            "Gadget.example.com \"g\" is invalid: [spec.mode: Unsupported value: \"C\": supported values: \"A\", \"B\", <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]",
        ),
        (
            json!({"replicas": 2}),
            "spec.mode",
            "FieldValueRequired",
            "Gadget.example.com \"g\" is invalid: [spec.mode: Required value, <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]",
        ),
        (
            json!({"mode": "A", "name": "Ab"}),
            "spec.name",
            "FieldValueInvalid",
            "Gadget.example.com \"g\" is invalid: spec.name: Invalid value: \"Ab\": spec.name in body should match '^[a-z]+$'",
        ),
        (
            json!({"mode": "A", "name": "abcdefghij"}),
            "spec.name",
            "FieldValueTooLong",
            "Gadget.example.com \"g\" is invalid: [spec.name: Too long: may not be more than 8 bytes, <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]",
        ),
        (
            json!({"mode": "A", "items": ["a", "b", "c"]}),
            "spec.items",
            "FieldValueTooMany",
            "Gadget.example.com \"g\" is invalid: [spec.items: Too many: 3: must have at most 2 items, <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]",
        ),
        (
            json!({"mode": "A", "replicas": 7}),
            "spec",
            "FieldValueInvalid",
            "Gadget.example.com \"g\" is invalid: spec: Invalid value: replicas above 5 need mode B",
        ),
    ];
    for (spec, field, reason, message) in cases {
        let (code, _, body) = post(&server, "", &gadget(spec.clone())).await;
        assert_eq!(code, 422, "{spec}: {body}");
        assert_eq!(body["reason"], "Invalid");
        assert_eq!(body["message"], message, "{spec}");
        let cause = &body["details"]["causes"][0];
        assert_eq!(
            (cause["field"].as_str(), cause["reason"].as_str()),
            (Some(field), Some(reason)),
            "{spec}"
        );
    }
    assert!(
        server
            .get("example.com/v1", "Gadget", Some("default"), "g")
            .is_none()
    );
    let (code, _, body) = post(&server, "", &gadget(json!({"mode": "B", "replicas": 7}))).await;
    assert_eq!(code, 201, "valid: {body}");
}

#[tokio::test]
async fn direct_writes_are_stored_as_given_and_unchanged_values_ratchet() {
    let server = server().await;
    // Straight into storage: as an object admitted under an older schema would be.
    server
        .create(gadget(json!({"mode": "C", "replicas": 0})))
        .unwrap();
    let item = format!("{PATH}/g");
    // A status write leaves the invalid spec as it was: allowed.
    let status = json!({"status": {"phase": "Running"}});
    let (code, _, body) = merge_patch(&server, &format!("{item}/status"), &status).await;
    assert_eq!(code, 200, "{body}");
    // So is a spec change that leaves the invalid values alone.
    let patch = json!({"spec": {"name": "ok"}});
    let (code, _, body) = merge_patch(&server, &item, &patch).await;
    assert_eq!(code, 200, "{body}");
    // A new invalid value is not.
    let patch = json!({"spec": {"replicas": 11}});
    let (code, _, body) = merge_patch(&server, &item, &patch).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "spec.replicas");
    // The unchanged invalid mode ratchets; the rule over the changed spec is evaluated beside the
    // bound, as the API server does.
    let fields: Vec<&str> = body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert_eq!(fields, ["spec.replicas", "spec"], "spec.mode ratchets: {body}");
}

#[tokio::test]
async fn unknown_fields_stored_before_survive_later_writes() {
    let server = server().await;
    server
        .create(gadget(json!({"mode": "A", "legacy": true})))
        .unwrap();
    let item = format!("{PATH}/g");
    let status = json!({"status": {"phase": "Running"}});
    let (code, head, body) = merge_patch(&server, &format!("{item}/status"), &status).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        !head.contains("warning:"),
        "nothing of the request was unknown: {head}"
    );
    assert_eq!(
        body["spec"]["legacy"], true,
        "the stored spec is left alone: {body}"
    );

    let patch = json!({"spec": {"colour": "red"}});
    let (code, head, body) = merge_patch(&server, &item, &patch).await;
    assert_eq!(code, 200, "{body}");
    assert!(head.contains("unknown field \\\"spec.colour\\\""), "{head}");
    assert!(!head.contains("spec.legacy"), "{head}");
    assert_eq!(body["spec"]["legacy"], true);
    assert!(body["spec"].get("colour").is_none(), "{body}");
}

#[tokio::test]
async fn nulls_are_kept_where_nullable_and_dropped_elsewhere() {
    let server = TestServer::start().await.unwrap();
    let mut crd = gadget_crd();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["note"] =
        json!({"type": "string", "nullable": true});
    server.create(crd).unwrap();
    let (code, _, body) = post(
        &server,
        "",
        &gadget(json!({"mode": "A", "note": null, "name": null})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert!(
        body["spec"]["note"].is_null() && body["spec"].get("note").is_some(),
        "kept: {body}"
    );
    assert!(body["spec"].get("name").is_none(), "dropped: {body}");
}
