//! `/openapi/v3`: the root listing each group-version's document, and those documents, as kubectl
//! reads them. kubectl finds in them whether the server validates fields itself (a PATCH
//! operation of the kind with the `fieldValidation` query parameter: then `kubectl apply` leaves
//! validation to the server instead of downloading `/openapi/v2`), and `kubectl explain` reads the
//! kinds' schemas from `components.schemas` (found by `x-kubernetes-group-version-kind`). A
//! custom resource's schema is its CRD's `openAPIV3Schema`; built-in kinds get an open schema
//! (`x-kubernetes-preserve-unknown-fields`) that says only what they are.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use serde_json::{Map, Value, json};

use crate::registry::ResourceType;
use crate::store::{Filter, Store};

/// The key of a group-version in the root: `api/v1`, `apis/apps/v1`.
fn key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The name of a kind's schema: `io.k8s.api.core.v1.Pod` style, reversed group.
fn schema_name(rt: &ResourceType) -> String {
    let group = if rt.group.is_empty() {
        "core".to_string()
    } else {
        rt.group.split('.').rev().collect::<Vec<_>>().join(".")
    };
    format!("{group}.{}.{}", rt.version, rt.kind)
}

/// Every group-version's document, by its root key.
pub(crate) fn documents(store: &Store) -> BTreeMap<String, Value> {
    let registry = store.registry();
    let crds: HashMap<String, Value> = registry
        .by_kind("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        .map(|rt| store.list(rt, &Filter::default()).0)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| Some((c.pointer("/metadata/name")?.as_str()?.to_string(), c)))
        .collect();
    let mut by_gv: BTreeMap<String, Vec<&ResourceType>> = BTreeMap::new();
    for rt in registry.types() {
        by_gv.entry(key(&rt.group, &rt.version)).or_default().push(rt);
    }
    by_gv
        .into_iter()
        .map(|(k, types)| (k, document(&types, &crds)))
        .collect()
}

fn document(types: &[&ResourceType], crds: &HashMap<String, Value>) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for rt in types {
        let gvk = json!({"group": rt.group, "version": rt.version, "kind": rt.kind});
        let mut schema = rt
            .crd
            .as_ref()
            .and_then(|name| crds.get(name))
            .and_then(|crd| crd["spec"]["versions"].as_array())
            .and_then(|vs| vs.iter().find(|v| v["name"] == rt.version.as_str()))
            .and_then(|v| v.pointer("/schema/openAPIV3Schema").cloned())
            .unwrap_or_else(|| {
                json!({
                    "description": format!("{} ({}): the API test server serves no schema for built-in kinds.", rt.kind, rt.api_version()),
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true
                })
            });
        if let Value::Object(m) = &mut schema {
            m.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
        }
        let name = schema_name(rt);
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        schemas.insert(name, schema);
        let prefix = if rt.group.is_empty() {
            format!("/api/{}", rt.version)
        } else {
            format!("/apis/{}/{}", rt.group, rt.version)
        };
        let item = if rt.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", rt.plural)
        } else {
            format!("{prefix}/{}/{{name}}", rt.plural)
        };
        let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        let body = json!({"content": {"application/json": {"schema": reference}}});
        let op = |id: &str, params: Vec<Value>| {
            json!({
                "operationId": format!("{id}{}", rt.kind),
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "requestBody": body,
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}}
            })
        };
        let writes = || vec![query("dryRun"), query("fieldManager"), query("fieldValidation")];
        paths.insert(
            item,
            json!({
                "get": op("read", Vec::new()),
                "put": op("replace", writes()),
                "patch": op("patch", [writes(), vec![query("force")]].concat()),
            }),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas}
    })
}

fn hash(doc: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    doc.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// `GET /openapi/v3`.
pub fn root(store: &Store) -> Value {
    let paths: Map<String, Value> = documents(store)
        .into_iter()
        .map(|(k, doc)| {
            let url = format!("/openapi/v3/{k}?hash={}", hash(&doc));
            (k, json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

/// `GET /openapi/v3/{api/v1 | apis/group/version}`.
pub fn group_version(store: &Store, key: &str) -> Option<Value> {
    documents(store).remove(key)
}
