//! Pruning and nulls, as the API server does them for a custom resource: fields the schema does
//! not know are dropped (unless it preserves unknown fields), and a `nullable` field takes a null.

use serde_json::{Map, Value, json};

/// What `metadata` may hold (everything else is pruned, as for any object).
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

pub(super) fn prune_root(schema: &Value, root: &mut Map<String, Value>, unknown: &mut Vec<String>) {
    if let Some(Value::Object(meta)) = root.get_mut("metadata") {
        meta.retain(|k, _| {
            let known = OBJECT_META.contains(&k.as_str());
            if !known {
                unknown.push(format!("metadata.{k}"));
            }
            known
        });
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let keys: Vec<String> = root.keys().cloned().collect();
    for key in keys {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match properties.and_then(|p| p.get(&key)) {
            Some(sub) => {
                if let Some(value) = root.get_mut(&key) {
                    prune(sub, value, &key, unknown);
                }
            }
            None if preserves(schema) => {}
            None => {
                root.remove(&key);
                unknown.push(key);
            }
        }
    }
}

/// `nullable: true` as JSON Schema says it: `null` joins the allowed types.
pub(super) fn allow_null(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::String(t)) = map.get("type").cloned() {
                    map.insert("type".into(), json!([t, "null"]));
                }
                if let Some(Value::Array(options)) = map.get_mut("enum") {
                    options.push(Value::Null);
                }
            }
            map.values_mut().for_each(allow_null);
        }
        Value::Array(items) => items.iter_mut().for_each(allow_null),
        _ => {}
    }
}

/// Drops the `null` values of fields that are not `nullable`, as the API server does (silently).
fn drop_nulls(schema: &Value, map: &mut Map<String, Value>) {
    let properties = schema.get("properties").and_then(Value::as_object);
    map.retain(|k, v| {
        !v.is_null()
            || properties
                .and_then(|p| p.get(k))
                .is_some_and(|s| s["nullable"] == true)
    });
}

fn preserves(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == true
}

/// Drops what `schema` does not declare from `value` (at `path`), naming each field dropped.
fn prune(schema: &Value, value: &mut Value, path: &str, unknown: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            drop_nulls(schema, map);
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if properties.is_none() && additional.is_none() {
                if !preserves(schema) && schema.get("type").and_then(Value::as_str) == Some("object") {
                    unknown.extend(map.keys().map(|k| format!("{path}.{k}")));
                    map.clear();
                }
                return;
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let sub = properties.and_then(|p| p.get(&key)).or(additional);
                match sub {
                    Some(sub) => {
                        if let Some(v) = map.get_mut(&key) {
                            prune(sub, v, &format!("{path}.{key}"), unknown);
                        }
                    }
                    None if preserves(schema) => {}
                    None => {
                        map.remove(&key);
                        unknown.push(format!("{path}.{key}"));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item_schema, item, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}
