//! Field sets in the `FieldsV1` form of `metadata.managedFields`: what a server-side apply owns.

use serde_json::{Map, Value, json};

use crate::patch::merge_key;

/// Metadata fields the API server never records as owned.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "managedFields",
    "selfLink",
];

/// The `fieldsV1` of an applied configuration: `f:<field>` for every field it sets (maps nested),
/// `k:{"<key>":<value>}` with a `.` member for each element of a list-map, atomic lists and scalars as
/// `{}`. `apiVersion`, `kind` and server-set metadata are left out, as the API server does.
pub fn fields_v1(applied: &Value) -> Value {
    let Value::Object(top) = applied else {
        return json!({});
    };
    let mut out = Map::new();
    for (k, v) in top {
        if v.is_null() || k == "apiVersion" || k == "kind" {
            continue;
        }
        let fields = if k == "metadata" {
            let mut meta = v.as_object().cloned().unwrap_or_default();
            meta.retain(|f, _| !SERVER_METADATA.contains(&f.as_str()));
            if meta.values().all(Value::is_null) {
                continue;
            }
            of_value(k, &Value::Object(meta))
        } else {
            of_value(k, v)
        };
        out.insert(format!("f:{k}"), fields);
    }
    Value::Object(out)
}

fn of_map(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (format!("f:{k}"), of_value(k, v)))
        .collect()
}

fn of_value(field: &str, v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(of_map(m)),
        Value::Array(items) => match merge_key(field, items, &[]) {
            Some(key) => Value::Object(
                items
                    .iter()
                    .filter_map(|e| {
                        let kv = e.get(key)?;
                        let mut fields = of_map(e.as_object()?);
                        fields.insert(".".into(), json!({}));
                        Some((format!("k:{}", json!({ key: kv })), Value::Object(fields)))
                    })
                    .collect(),
            ),
            None => json!({}),
        },
        _ => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_configuration_as_fields_v1() {
        let applied = json!({
            "apiVersion": "v1", "kind": "X",
            "metadata": {"name": "a", "namespace": "ns", "labels": {"app": "a"}},
            "spec": {"replicas": 1, "args": ["x"], "skip": null},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        });
        assert_eq!(
            fields_v1(&applied),
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:replicas": {}, "f:args": {}},
                "f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {
                    ".": {}, "f:type": {}, "f:status": {}
                }}}
            })
        );
        assert_eq!(fields_v1(&json!({"metadata": {"name": "a"}})), json!({}));
    }
}
