//! `/openapi/v2`: the CRD's schema converted as the API server converts it for OpenAPI v2, as
//! JSON and as gnostic's protobuf (decoded here with messages derived independently of the
//! encoder).

use prost::Message;
use serde_json::{Value, json};

use super::raw_request_bytes;
use crate::TestServer;

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A widget.",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["size", "note"],
                            "properties": {
                                "size": {"type": "integer", "minimum": 1, "maximum": 10,
                                         "description": "How big."},
                                "note": {"type": "string", "nullable": true},
                                "tags": {"type": "array", "maxItems": 3,
                                         "items": {"type": "string", "enum": ["a", "b"]}},
                                "port": {"x-kubernetes-int-or-string": true,
                                         "anyOf": [{"type": "integer"}, {"type": "string"}]},
                                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                                          "properties": {"known": {"type": "string"}}}
                            },
                            "x-kubernetes-validations": [{"rule": "self.size < 9", "message": "too big"}]
                        }
                    }
                }}
            }]
        }
    })
}

async fn get(server: &TestServer, accept: &str) -> (String, Vec<u8>) {
    let request =
        format!("GET /openapi/v2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccept: {accept}\r\n\r\n");
    let answer = raw_request_bytes(server, &request).await;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    (head, answer[split + 4..].to_vec())
}

#[tokio::test]
async fn openapi_v2_json_carries_the_crd_schema_converted_for_v2() {
    let server = TestServer::start().await.unwrap();
    server.create(widget_crd()).unwrap();
    let (head, body) = get(&server, "application/json").await;
    assert!(head.contains("content-type: application/json"), "{head}");
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["swagger"], "2.0");

    let widget = &doc["definitions"]["com.example.v1.Widget"];
    assert_eq!(
        widget["x-kubernetes-group-version-kind"],
        json!([{"group": "example.com", "version": "v1", "kind": "Widget"}])
    );
    let spec = &widget["properties"]["spec"];
    assert_eq!(
        spec["properties"]["size"],
        json!({"type": "integer", "minimum": 1, "maximum": 10, "description": "How big."})
    );
    // A nullable value loses its type, and is no longer required.
    assert_eq!(spec["properties"]["note"], json!({}));
    assert_eq!(spec["required"], json!(["size"]));
    // Junctors are dropped; a value keeping unknown fields loses its properties.
    assert_eq!(
        spec["properties"]["port"],
        json!({"x-kubernetes-int-or-string": true})
    );
    assert_eq!(
        spec["properties"]["extra"],
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
    );
    assert_eq!(spec["properties"]["tags"]["items"]["enum"], json!(["a", "b"]));
    assert_eq!(spec["x-kubernetes-validations"][0]["rule"], "self.size < 9");
    // Built-in kinds are there too, with an open schema.
    assert_eq!(
        doc["definitions"]["core.v1.Pod"]["x-kubernetes-preserve-unknown-fields"],
        true
    );

    // The item path takes a body of the kind and fieldValidation, as Swagger 2.0 words it.
    let patch = &doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
    let params = patch["parameters"].as_array().unwrap();
    assert!(
        params.contains(
            &json!({"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": true})
        )
    );
    assert!(params.contains(
        &json!({"name": "body", "in": "body", "required": true, "schema": {"$ref": "#/definitions/com.example.v1.Widget"}})
    ));
    assert_eq!(
        patch["responses"]["200"]["schema"]["$ref"],
        "#/definitions/com.example.v1.Widget"
    );
}

// The parts of gnostic's `openapi.v2` messages the assertions read.
#[derive(Clone, PartialEq, Message)]
struct Document {
    #[prost(string, tag = "1")]
    swagger: String,
    #[prost(message, optional, tag = "8")]
    paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    definitions: Option<Definitions>,
}
#[derive(Clone, PartialEq, Message)]
struct Paths {
    #[prost(message, repeated, tag = "2")]
    path: Vec<NamedPathItem>,
}
#[derive(Clone, PartialEq, Message)]
struct NamedPathItem {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<PathItem>,
}
#[derive(Clone, PartialEq, Message)]
struct PathItem {
    #[prost(message, optional, tag = "8")]
    patch: Option<Operation>,
}
#[derive(Clone, PartialEq, Message)]
struct Operation {
    #[prost(string, tag = "5")]
    operation_id: String,
    #[prost(message, repeated, tag = "13")]
    vendor_extension: Vec<NamedAny>,
}
#[derive(Clone, PartialEq, Message)]
struct Definitions {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSchema>,
}
#[derive(Clone, PartialEq, Message)]
struct NamedSchema {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Schema>,
}
#[derive(Clone, PartialEq, Message)]
struct Schema {
    #[prost(string, tag = "4")]
    description: String,
    #[prost(double, tag = "7")]
    maximum: f64,
    #[prost(double, tag = "9")]
    minimum: f64,
    #[prost(int64, tag = "14")]
    max_items: i64,
    #[prost(string, repeated, tag = "19")]
    required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    enum_: Vec<Any>,
    #[prost(message, optional, tag = "22")]
    r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    items: Option<ItemsItem>,
    #[prost(message, optional, tag = "25")]
    properties: Option<Properties>,
    #[prost(message, repeated, tag = "31")]
    vendor_extension: Vec<NamedAny>,
}
#[derive(Clone, PartialEq, Message)]
struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    value: Vec<String>,
}
#[derive(Clone, PartialEq, Message)]
struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    schema: Vec<Schema>,
}
#[derive(Clone, PartialEq, Message)]
struct Properties {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSchema>,
}
#[derive(Clone, PartialEq, Message)]
struct NamedAny {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Any>,
}
#[derive(Clone, PartialEq, Message)]
struct Any {
    #[prost(string, tag = "2")]
    yaml: String,
}

fn property<'a>(schema: &'a Schema, name: &str) -> &'a Schema {
    let props = schema.properties.as_ref().unwrap();
    let found = props.additional_properties.iter().find(|p| p.name == name);
    found.and_then(|p| p.value.as_ref()).unwrap()
}

fn extension(extensions: &[NamedAny], name: &str) -> Value {
    let found = extensions.iter().find(|e| e.name == name).unwrap();
    serde_json::from_str(&found.value.as_ref().unwrap().yaml).unwrap()
}

#[tokio::test]
async fn openapi_v2_protobuf_decodes_to_the_same_document() {
    let server = TestServer::start().await.unwrap();
    server.create(widget_crd()).unwrap();
    let (head, body) = get(
        &server,
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    )
    .await;
    // As the API server answers: `@` is not allowed in a media type.
    assert!(
        head.contains("content-type: application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
        "{head}"
    );
    let doc = Document::decode(body.as_slice()).unwrap();
    let json: Value = serde_json::from_slice(&get(&server, "application/json").await.1).unwrap();
    assert_eq!(doc.swagger, "2.0");

    let definitions = &doc.definitions.as_ref().unwrap().additional_properties;
    let names: Vec<&str> = definitions.iter().map(|d| d.name.as_str()).collect();
    let json_names: Vec<&str> = json["definitions"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, json_names);

    let widget = definitions
        .iter()
        .find(|d| d.name == "com.example.v1.Widget")
        .unwrap();
    let widget = widget.value.as_ref().unwrap();
    assert_eq!(widget.description, "A widget.");
    assert_eq!(
        extension(&widget.vendor_extension, "x-kubernetes-group-version-kind"),
        json["definitions"]["com.example.v1.Widget"]["x-kubernetes-group-version-kind"]
    );
    let spec = property(widget, "spec");
    assert_eq!(spec.required, ["size"]);
    let size = property(spec, "size");
    assert_eq!((size.minimum, size.maximum), (1.0, 10.0));
    assert_eq!(size.r#type.as_ref().unwrap().value, ["integer"]);
    assert_eq!(size.description, "How big.");
    assert_eq!(property(spec, "note").r#type, None);
    let tags = property(spec, "tags");
    assert_eq!(tags.max_items, 3);
    let item = &tags.items.as_ref().unwrap().schema[0];
    let values: Vec<&str> = item.enum_.iter().map(|a| a.yaml.as_str()).collect();
    assert_eq!(values, [r#""a""#, r#""b""#]);
    assert_eq!(
        extension(&spec.vendor_extension, "x-kubernetes-validations"),
        json!([{"rule": "self.size < 9", "message": "too big"}])
    );
    assert!(property(spec, "extra").properties.is_none());

    let paths = &doc.paths.as_ref().unwrap().path;
    let item = paths
        .iter()
        .find(|p| p.name == "/apis/example.com/v1/namespaces/{namespace}/widgets/{name}")
        .unwrap();
    let patch = item.value.as_ref().unwrap().patch.as_ref().unwrap();
    assert_eq!(patch.operation_id, "patchWidget");
    assert_eq!(
        extension(&patch.vendor_extension, "x-kubernetes-group-version-kind"),
        json!({"group": "example.com", "version": "v1", "kind": "Widget"})
    );
}
