//! Field sets in the `FieldsV1` form of `metadata.managedFields`: what a server-side apply owns, and
//! the field paths apply conflicts are found on.

use std::collections::{BTreeMap, BTreeSet};

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
/// `{}`. As in structured-merge-diff, an empty map is owned as a whole (`{}`) while an empty list-map
/// owns nothing.
/// `apiVersion`, `kind` and server-set metadata are left out, as the API server does.
pub fn fields_v1(applied: &Value) -> Value {
    let Value::Object(top) = applied else {
        return json!({});
    };
    let mut out = Map::new();
    for (k, v) in top {
        if k == "apiVersion" || k == "kind" {
            continue;
        }
        let fields = if k == "metadata" {
            let mut meta = v.as_object().cloned().unwrap_or_default();
            meta.retain(|f, _| !SERVER_METADATA.contains(&f.as_str()));
            // The metadata map itself is never owned, only fields in it.
            Some(Value::Object(of_map(&meta))).filter(|f| f.as_object().is_some_and(|f| !f.is_empty()))
        } else {
            of_value(k, v)
        };
        if let Some(fields) = fields {
            out.insert(format!("f:{k}"), fields);
        }
    }
    Value::Object(out)
}

fn of_map(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter_map(|(k, v)| Some((format!("f:{k}"), of_value(k, v)?)))
        .collect()
}

fn of_value(field: &str, v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        // An empty map is owned itself; a map with fields, through them.
        Value::Object(m) if m.is_empty() => Some(json!({})),
        Value::Object(m) => {
            Some(Value::Object(of_map(m))).filter(|f| f.as_object().is_some_and(|f| !f.is_empty()))
        }
        Value::Array(items) => match merge_key(field, items, &[]) {
            Some(key) => {
                let elements: Map<String, Value> = items
                    .iter()
                    .filter_map(|e| {
                        let kv = e.get(key)?;
                        let mut fields = of_map(e.as_object()?);
                        fields.insert(".".into(), json!({}));
                        Some((format!("k:{}", json!({ key: kv })), Value::Object(fields)))
                    })
                    .collect();
                Some(Value::Object(elements)).filter(|f| f.as_object().is_some_and(|f| !f.is_empty()))
            }
            None => Some(json!({})),
        },
        _ => Some(json!({})),
    }
}

/// A field path as the steps of `fieldsV1`: `f:<field>` and `k:{"<key>":<value>}` (list-map elements).
pub type FieldPath = Vec<String>;

/// Every leaf of `obj` (scalars, atomic lists, empty maps) and every list-map element (as itself, with
/// the value `true`, beside its fields), by path: what structured-merge-diff compares two objects on.
pub fn leaves(obj: &Value) -> BTreeMap<FieldPath, Value> {
    let mut out = BTreeMap::new();
    walk_leaves(&mut Vec::new(), "", obj, &mut out);
    out
}

fn walk_leaves(path: &mut FieldPath, field: &str, v: &Value, out: &mut BTreeMap<FieldPath, Value>) {
    if let Value::Object(m) = v {
        if !m.is_empty() || path.is_empty() {
            walk_fields(path, m, out);
            return;
        }
    }
    if let Value::Array(items) = v {
        if let Some(key) = merge_key(field, items, &[]) {
            for e in items {
                let Some(kv) = e.get(key) else { continue };
                path.push(format!("k:{}", json!({ key: kv })));
                out.insert(path.clone(), Value::Bool(true));
                if let Value::Object(m) = e {
                    walk_fields(path, m, out);
                }
                path.pop();
            }
            return;
        }
    }
    if !path.is_empty() {
        out.insert(path.clone(), v.clone());
    }
}

fn walk_fields(path: &mut FieldPath, m: &Map<String, Value>, out: &mut BTreeMap<FieldPath, Value>) {
    for (k, child) in m.iter().filter(|(_, c)| !c.is_null()) {
        path.push(format!("f:{k}"));
        walk_leaves(path, k, child, out);
        path.pop();
    }
}

/// The paths of `new`'s leaves that `old` lacks or has with another value (structured-merge-diff's
/// added and modified fields).
pub fn changed(old: &Value, new: &Value) -> BTreeSet<FieldPath> {
    let before = leaves(old);
    leaves(new)
        .into_iter()
        .filter(|(p, v)| before.get(p) != Some(v))
        .map(|(p, _)| p)
        .collect()
}

/// The paths a `fieldsV1` set owns: its leaves and the list-map elements marked with `.`.
pub fn owned_paths(fields_v1: &Value) -> Vec<FieldPath> {
    let mut out = Vec::new();
    walk_owned(&mut Vec::new(), fields_v1, &mut out);
    out
}

fn walk_owned(path: &mut FieldPath, set: &Value, out: &mut Vec<FieldPath>) {
    let Value::Object(m) = set else { return };
    for (k, child) in m.iter().filter(|(k, _)| *k != ".") {
        path.push(k.clone());
        let member = child
            .as_object()
            .is_none_or(|c| c.is_empty() || c.contains_key("."));
        if member {
            out.push(path.clone());
        }
        walk_owned(path, child, out);
        path.pop();
    }
}

/// A path as the API server prints it in apply conflicts: `.spec.x`,
/// `.status.conditions[type="Ready"].status`.
pub fn path_string(path: &[String]) -> String {
    let mut out = String::new();
    for step in path {
        if let Some(f) = step.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(Value::Object(key)) =
            step.strip_prefix("k:").and_then(|k| serde_json::from_str(k).ok())
        {
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        }
    }
    out
}

/// Remove `path` from an applied configuration (its manager lost the field to a forced apply);
/// maps and lists left empty go too, so the manager does not come to own them as leaves. Returns
/// whether `config` itself is empty afterwards.
pub fn remove_path(config: &mut Value, path: &[String]) -> bool {
    let Some((step, rest)) = path.split_first() else {
        return false;
    };
    if let Some(f) = step.strip_prefix("f:") {
        let Value::Object(m) = config else { return false };
        let gone = rest.is_empty() || m.get_mut(f).is_some_and(|c| remove_path(c, rest));
        if gone {
            m.remove(f);
        }
        return m.is_empty();
    }
    let key: Option<Map<String, Value>> = step.strip_prefix("k:").and_then(|k| serde_json::from_str(k).ok());
    let (Some(key), Value::Array(items)) = (key, config) else {
        return false;
    };
    let Some(i) = items
        .iter()
        .position(|e| key.iter().all(|(k, v)| e.get(k) == Some(v)))
    else {
        return false;
    };
    if rest.is_empty() {
        items.remove(i);
    } else if let Some(e) = items.get_mut(i) {
        remove_path(e, rest);
    }
    items.is_empty()
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

    #[test]
    fn conflict_paths() {
        let old = json!({"spec": {"x": "1", "args": ["a"], "conditions": [{"type": "A", "status": "T"}]}});
        let new = json!({"spec": {"x": "2", "args": ["a"], "conditions": [
            {"type": "A", "status": "F"}, {"type": "B", "status": "T"}
        ]}});
        let changed: Vec<String> = changed(&old, &new).iter().map(|p| path_string(p)).collect();
        assert_eq!(
            changed,
            [
                r#".spec.conditions[type="A"].status"#,
                r#".spec.conditions[type="B"]"#,
                r#".spec.conditions[type="B"].status"#,
                r#".spec.conditions[type="B"].type"#,
                ".spec.x"
            ]
        );
        let owned: Vec<String> = owned_paths(&fields_v1(&old))
            .iter()
            .map(|p| path_string(p))
            .collect();
        assert_eq!(
            owned,
            [
                ".spec.args",
                r#".spec.conditions[type="A"]"#,
                r#".spec.conditions[type="A"].status"#,
                r#".spec.conditions[type="A"].type"#,
                ".spec.x"
            ]
        );
        let mut config = old.clone();
        for p in owned_paths(&fields_v1(&old)) {
            if path_string(&p).ends_with(".status") || path_string(&p).ends_with(".x") {
                remove_path(&mut config, &p);
            }
        }
        assert_eq!(
            config,
            json!({"spec": {"args": ["a"], "conditions": [{"type": "A"}]}})
        );
        let mut only_x = json!({"spec": {"x": "1"}});
        remove_path(&mut only_x, &["f:spec".into(), "f:x".into()]);
        assert_eq!(only_x, json!({}));
    }
}
