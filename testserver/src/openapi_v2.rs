//! `/openapi/v2`: one Swagger 2.0 document for every served kind, as JSON (`Accept:
//! application/json`) or as the gnostic `openapi.v2.Document` protobuf that kubectl asks for
//! (`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`). kubectl reads it for
//! `kubectl explain --output=plaintext-openapiv2`, and for client-side validation when
//! `/openapi/v3` fails.
//!
//! The document is built from the `/openapi/v3` documents: the kinds' schemas become
//! `definitions`, converted as the API server converts a CRD's schema for v2 (OpenAPI v2 has no
//! `nullable` and no junctors, and kubectl cannot cope with typed values that may be null or hold
//! unknown fields); the item paths keep their GET, PUT and PATCH operations.

use prost::encoding::{WireType, encode_key, encode_varint};
use serde_json::{Map, Value, json};

use crate::store::Store;

/// The media type clients ask for the protobuf form with (`@` is not valid in a `Content-Type`)…
pub const PROTOBUF_ACCEPT: [&str; 2] = [
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
];
/// …and the one the API server answers with.
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `GET /openapi/v2` as JSON.
pub fn document(store: &Store) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for doc in crate::openapi::documents(store).into_values() {
        if let Some(schemas) = doc["components"]["schemas"].as_object() {
            for (name, schema) in schemas {
                definitions.insert(name.clone(), to_v2_schema(schema));
            }
        }
        if let Some(items) = doc["paths"].as_object() {
            for (path, item) in items {
                paths.insert(path.clone(), to_v2_path_item(item));
            }
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "definitions": definitions,
    })
}

/// `GET /openapi/v2` in protobuf.
pub fn protobuf(store: &Store) -> Vec<u8> {
    encode_document(&document(store))
}

/// A schema as the API server publishes it in v2: junctors dropped; a nullable value or one that
/// keeps unknown fields loses its type (and its properties and items); an array left without
/// items loses its type; a nullable property is no longer required.
fn to_v2_schema(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = map.clone();
    for junctor in ["allOf", "oneOf", "anyOf", "not"] {
        out.remove(junctor);
    }
    if out.remove("nullable") == Some(Value::Bool(true)) {
        out.remove("type");
        out.remove("items");
        out.remove("properties");
    }
    if out.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        out.remove("items");
        out.remove("properties");
    }
    if out.get("type") == Some(&json!("array")) && !out.contains_key("items") {
        out.remove("type");
    }
    let nullable = |s: &Value| s.get("nullable") == Some(&Value::Bool(true));
    if let (Some(Value::Array(required)), Some(Value::Object(props))) =
        (out.get("required"), out.get("properties"))
    {
        let kept: Vec<Value> = required
            .iter()
            .filter(|r| !r.as_str().and_then(|r| props.get(r)).is_some_and(nullable))
            .cloned()
            .collect();
        out.insert("required".into(), Value::Array(kept));
    }
    if out.get("additionalProperties").is_some_and(nullable) {
        out.remove("required");
    }
    if out
        .get("required")
        .is_some_and(|r| r.as_array().is_some_and(Vec::is_empty))
    {
        out.remove("required");
    }
    if let Some(Value::Object(props)) = out.get_mut("properties") {
        for prop in props.values_mut() {
            *prop = to_v2_schema(prop);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = out.get_mut(key) {
            *sub = to_v2_schema(sub);
        }
    }
    if let Some(Value::String(r)) = out.get_mut("$ref") {
        *r = r.replace("#/components/schemas/", "#/definitions/");
    }
    Value::Object(out)
}

fn to_v2_path_item(item: &Value) -> Value {
    let Value::Object(ops) = item else {
        return item.clone();
    };
    let converted = ops
        .iter()
        .map(|(method, op)| {
            let schema = to_v2_schema(&op["responses"]["200"]["content"]["application/json"]["schema"]);
            let mut params: Vec<Value> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let mut q = json!({"name": p["name"], "in": p["in"]});
                    if let (Some(q), Some(Value::Object(s))) = (q.as_object_mut(), p.get("schema")) {
                        q.extend(s.clone());
                    }
                    q
                })
                .collect();
            if method != "get" {
                params.push(json!({"name": "body", "in": "body", "required": true, "schema": schema}));
            }
            let body = json!({
                "operationId": op["operationId"],
                "consumes": ["application/json"],
                "produces": ["application/json"],
                "parameters": params,
                "responses": {"200": {"description": "OK", "schema": schema}},
                "x-kubernetes-group-version-kind": op["x-kubernetes-group-version-kind"],
            });
            (method.clone(), body)
        })
        .collect();
    Value::Object(converted)
}

// The protobuf form: the fields of gnostic's `openapi/v2/OpenAPIv2.proto` this document uses.
// As Go's proto3 encoder does, fields holding their zero value are left out.

fn put_bytes(tag: u32, bytes: &[u8], buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.extend_from_slice(bytes);
}

fn put_str(tag: u32, v: Option<&Value>, buf: &mut Vec<u8>) {
    if let Some(s) = v.and_then(Value::as_str).filter(|s| !s.is_empty()) {
        put_bytes(tag, s.as_bytes(), buf);
    }
}

fn put_strs(tag: u32, v: Option<&Value>, buf: &mut Vec<u8>) {
    for s in v.and_then(Value::as_array).into_iter().flatten() {
        put_str(tag, Some(s), buf);
    }
}

fn put_bool(tag: u32, v: Option<&Value>, buf: &mut Vec<u8>) {
    if v.and_then(Value::as_bool) == Some(true) {
        prost::encoding::bool::encode(tag, &true, buf);
    }
}

fn put_int(tag: u32, v: Option<&Value>, buf: &mut Vec<u8>) {
    if let Some(n) = v.and_then(Value::as_i64).filter(|n| *n != 0) {
        prost::encoding::int64::encode(tag, &n, buf);
    }
}

fn put_double(tag: u32, v: Option<&Value>, buf: &mut Vec<u8>) {
    if let Some(n) = v.and_then(Value::as_f64).filter(|n| *n != 0.0) {
        prost::encoding::double::encode(tag, &n, buf);
    }
}

fn put_message(tag: u32, encode: impl FnOnce(&mut Vec<u8>), buf: &mut Vec<u8>) {
    let mut inner = Vec::new();
    encode(&mut inner);
    put_bytes(tag, &inner, buf);
}

/// `Any` with its value as YAML text (JSON is YAML).
fn put_any(tag: u32, v: &Value, buf: &mut Vec<u8>) {
    put_message(tag, |b| put_bytes(2, v.to_string().as_bytes(), b), buf);
}

/// `NamedAny` entries for the `x-` keys of a map.
fn put_extensions(tag: u32, map: &Map<String, Value>, buf: &mut Vec<u8>) {
    for (name, value) in map.iter().filter(|(k, _)| k.starts_with("x-")) {
        put_message(
            tag,
            |b| {
                put_bytes(1, name.as_bytes(), b);
                put_any(2, value, b);
            },
            buf,
        );
    }
}

fn encode_document(doc: &Value) -> Vec<u8> {
    let mut buf = Vec::new();
    put_str(1, doc.get("swagger"), &mut buf);
    put_message(
        2,
        |b| {
            put_str(1, doc["info"].get("title"), b);
            put_str(2, doc["info"].get("version"), b);
        },
        &mut buf,
    );
    put_message(
        8,
        |b| {
            for (path, item) in doc["paths"].as_object().into_iter().flatten() {
                put_message(
                    2,
                    |b| {
                        put_bytes(1, path.as_bytes(), b);
                        put_message(2, |b| encode_path_item(item, b), b);
                    },
                    b,
                );
            }
        },
        &mut buf,
    );
    put_message(
        9,
        |b| {
            for (name, schema) in doc["definitions"].as_object().into_iter().flatten() {
                put_message(1, |b| put_named_schema(name, schema, b), b);
            }
        },
        &mut buf,
    );
    buf
}

fn encode_path_item(item: &Value, buf: &mut Vec<u8>) {
    for (tag, method) in [(2, "get"), (3, "put"), (8, "patch")] {
        if let Some(op) = item.get(method) {
            put_message(tag, |b| encode_operation(op, b), buf);
        }
    }
}

fn encode_operation(op: &Value, buf: &mut Vec<u8>) {
    put_str(5, op.get("operationId"), buf);
    put_strs(6, op.get("produces"), buf);
    put_strs(7, op.get("consumes"), buf);
    for param in op["parameters"].as_array().into_iter().flatten() {
        // ParametersItem.parameter → Parameter.{body_parameter | non_body_parameter}.
        put_message(8, |b| put_message(1, |b| encode_parameter(param, b), b), buf);
    }
    put_message(
        9,
        |b| {
            for (code, response) in op["responses"].as_object().into_iter().flatten() {
                put_message(
                    1,
                    |b| {
                        put_bytes(1, code.as_bytes(), b);
                        // ResponseValue.response → Response{description, schema: SchemaItem.schema}.
                        put_message(
                            2,
                            |b| {
                                put_message(
                                    1,
                                    |b| {
                                        put_str(1, response.get("description"), b);
                                        put_message(
                                            2,
                                            |b| put_message(1, |b| encode_schema(&response["schema"], b), b),
                                            b,
                                        );
                                    },
                                    b,
                                )
                            },
                            b,
                        );
                    },
                    b,
                );
            }
        },
        buf,
    );
    if let Some(map) = op.as_object() {
        put_extensions(13, map, buf);
    }
}

fn encode_parameter(param: &Value, buf: &mut Vec<u8>) {
    if param["in"] == "body" {
        put_message(
            1,
            |b| {
                put_str(2, param.get("name"), b);
                put_str(3, param.get("in"), b);
                put_bool(4, param.get("required"), b);
                put_message(5, |b| encode_schema(&param["schema"], b), b);
            },
            buf,
        );
    } else {
        // NonBodyParameter.query_parameter_sub_schema.
        put_message(
            2,
            |b| {
                put_message(
                    3,
                    |b| {
                        put_str(2, param.get("in"), b);
                        put_str(4, param.get("name"), b);
                        put_str(6, param.get("type"), b);
                        put_bool(20, param.get("uniqueItems"), b);
                    },
                    b,
                )
            },
            buf,
        );
    }
}

fn put_named_schema(name: &str, schema: &Value, buf: &mut Vec<u8>) {
    put_bytes(1, name.as_bytes(), buf);
    put_message(2, |b| encode_schema(schema, b), buf);
}

fn encode_schema(schema: &Value, buf: &mut Vec<u8>) {
    let get = |k: &str| schema.get(k);
    put_str(1, get("$ref"), buf);
    put_str(2, get("format"), buf);
    put_str(3, get("title"), buf);
    put_str(4, get("description"), buf);
    if let Some(default) = get("default") {
        put_any(5, default, buf);
    }
    put_double(6, get("multipleOf"), buf);
    put_double(7, get("maximum"), buf);
    put_bool(8, get("exclusiveMaximum"), buf);
    put_double(9, get("minimum"), buf);
    put_bool(10, get("exclusiveMinimum"), buf);
    for (tag, key) in [
        (11, "maxLength"),
        (12, "minLength"),
        (14, "maxItems"),
        (15, "minItems"),
        (17, "maxProperties"),
        (18, "minProperties"),
    ] {
        put_int(tag, get(key), buf);
    }
    put_str(13, get("pattern"), buf);
    put_bool(16, get("uniqueItems"), buf);
    put_strs(19, get("required"), buf);
    for value in get("enum").and_then(Value::as_array).into_iter().flatten() {
        put_any(20, value, buf);
    }
    match get("additionalProperties") {
        Some(Value::Bool(allowed)) => put_message(21, |b| prost::encoding::bool::encode(2, allowed, b), buf),
        Some(sub @ Value::Object(_)) => {
            put_message(21, |b| put_message(1, |b| encode_schema(sub, b), b), buf)
        }
        _ => {}
    }
    if let Some(ty) = get("type") {
        let types = match ty {
            Value::Array(_) => ty.clone(),
            other => json!([other]),
        };
        put_message(22, |b| put_strs(1, Some(&types), b), buf);
    }
    match get("items") {
        Some(Value::Array(items)) => put_message(
            23,
            |b| {
                items
                    .iter()
                    .for_each(|s| put_message(1, |b| encode_schema(s, b), b))
            },
            buf,
        ),
        Some(item @ Value::Object(_)) => {
            put_message(23, |b| put_message(1, |b| encode_schema(item, b), b), buf)
        }
        _ => {}
    }
    if let Some(Value::Object(props)) = get("properties") {
        put_message(
            25,
            |b| {
                for (name, sub) in props {
                    put_message(1, |b| put_named_schema(name, sub, b), b);
                }
            },
            buf,
        );
    }
    if let Some(example) = get("example") {
        put_any(30, example, buf);
    }
    if let Some(map) = schema.as_object() {
        put_extensions(31, map, buf);
    }
}
