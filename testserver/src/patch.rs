//! Patch semantics: JSON merge patch (RFC 7386), JSON patch (RFC 6902), a strategic-merge subset and the
//! field-removal/merge steps of server-side apply.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// RFC 7386 JSON merge patch: objects merge recursively, `null` removes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target_map) = target {
        for (k, v) in patch_map {
            if v.is_null() {
                target_map.remove(k);
            } else {
                merge_patch(target_map.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn unescape_pointer_token(t: &str) -> String {
    t.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<Vec<String>, ApiError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path.strip_prefix('/').ok_or_else(|| {
        ApiError::bad_request(format!("invalid JSON pointer {path:?}: must start with '/'"))
    })?;
    Ok(rest.split('/').map(unescape_pointer_token).collect())
}

fn parse_index(tok: &str, len: usize, allow_end: bool) -> Result<usize, ApiError> {
    if allow_end && tok == "-" {
        return Ok(len);
    }
    let idx: usize = tok
        .parse()
        .map_err(|_| ApiError::unprocessable(format!("invalid array index {tok:?}")))?;
    let max = if allow_end { len } else { len.saturating_sub(1) };
    if idx > max || (!allow_end && len == 0) {
        return Err(ApiError::unprocessable(format!(
            "array index {idx} out of bounds"
        )));
    }
    Ok(idx)
}

fn pointer_get<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for tok in path {
        cur = match cur {
            Value::Object(m) => m.get(tok)?,
            Value::Array(a) => a.get(tok.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn pointer_parent_mut<'a>(doc: &'a mut Value, path: &[String]) -> Result<&'a mut Value, ApiError> {
    let mut cur = doc;
    for tok in path {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(tok)
                .ok_or_else(|| ApiError::unprocessable(format!("path element {tok:?} does not exist")))?,
            Value::Array(a) => {
                let len = a.len();
                let idx = parse_index(tok, len, false)?;
                a.get_mut(idx)
                    .ok_or_else(|| ApiError::unprocessable(format!("array index {idx} out of bounds")))?
            }
            _ => {
                return Err(ApiError::unprocessable(format!(
                    "path element {tok:?} is not a container"
                )));
            }
        };
    }
    Ok(cur)
}

fn pointer_add(doc: &mut Value, path: &[String], value: Value) -> Result<(), ApiError> {
    let Some((last, parent_path)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    match pointer_parent_mut(doc, parent_path)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let idx = parse_index(last, a.len(), true)?;
            a.insert(idx, value);
            Ok(())
        }
        _ => Err(ApiError::unprocessable(format!(
            "cannot add {last:?} to a scalar"
        ))),
    }
}

fn pointer_remove(doc: &mut Value, path: &[String]) -> Result<Value, ApiError> {
    let Some((last, parent_path)) = path.split_last() else {
        return Ok(std::mem::take(doc));
    };
    match pointer_parent_mut(doc, parent_path)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| ApiError::unprocessable(format!("path element {last:?} does not exist"))),
        Value::Array(a) => {
            let idx = parse_index(last, a.len(), false)?;
            Ok(a.remove(idx))
        }
        _ => Err(ApiError::unprocessable(format!(
            "cannot remove {last:?} from a scalar"
        ))),
    }
}

/// RFC 6902 JSON patch (`add`, `remove`, `replace`, `test`, `move`, `copy`), all-or-nothing.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be an array of operations"))?;
    let mut doc = target.clone();
    for op in ops {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("json patch operation without \"op\""))?;
        let path = op.get("path").and_then(Value::as_str).ok_or_else(|| {
            ApiError::bad_request(format!("json patch {name:?} operation without \"path\""))
        })?;
        let path = split_pointer(path)?;
        let value = || {
            op.get("value").cloned().ok_or_else(|| {
                ApiError::bad_request(format!("json patch {name:?} operation without \"value\""))
            })
        };
        let from = || -> Result<Vec<String>, ApiError> {
            let f = op.get("from").and_then(Value::as_str).ok_or_else(|| {
                ApiError::bad_request(format!("json patch {name:?} operation without \"from\""))
            })?;
            split_pointer(f)
        };
        match name {
            "add" => pointer_add(&mut doc, &path, value()?)?,
            "remove" => {
                pointer_remove(&mut doc, &path)?;
            }
            "replace" => {
                pointer_remove(&mut doc, &path)?;
                pointer_add(&mut doc, &path, value()?)?;
            }
            "test" => {
                let expected = value()?;
                if pointer_get(&doc, &path) != Some(&expected) {
                    return Err(ApiError::unprocessable(format!(
                        "testing value {} failed",
                        op.get("path").and_then(Value::as_str).unwrap_or_default()
                    )));
                }
            }
            "move" => {
                let from = from()?;
                let v = pointer_remove(&mut doc, &from)?;
                pointer_add(&mut doc, &path, v)?;
            }
            "copy" => {
                let from = from()?;
                let v = pointer_get(&doc, &from)
                    .cloned()
                    .ok_or_else(|| ApiError::unprocessable("copy from a path that does not exist"))?;
                pointer_add(&mut doc, &path, v)?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown json patch operation {other:?}"
                )));
            }
        }
    }
    Ok(doc)
}

impl ApiError {
    /// 422 for a patch that cannot be applied (k8s answers a failed json patch with 422 Invalid).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        ApiError::invalid(format!(
            "the server rejected our request due to an error in our request: {}",
            message.into()
        ))
    }
}

/// The merge key of a known Kubernetes list-map field, chosen by field name (and, for `ports`, by what the
/// elements look like: `containerPort` for container ports, `port` for service ports).
pub fn merge_key(field: &str, a: &[Value], b: &[Value]) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "volumeMounts"
        | "imagePullSecrets" => Some("name"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        // AppHealthPolicy status: each shard's part.
        "shards" => Some("shard"),
        "ports" => {
            let has = |k: &str| a.iter().chain(b).any(|e| e.get(k).is_some());
            if has("containerPort") {
                Some("containerPort")
            } else {
                Some("port")
            }
        }
        _ => None,
    }
}

fn find_by_key(items: &[Value], key: &str, want: &Value) -> Option<usize> {
    if want.is_null() {
        return None;
    }
    items.iter().position(|e| e.get(key) == Some(want))
}

/// Strategic merge patch (the subset described in the crate doc): merge-patch semantics, lists of known
/// list-map fields merged by key (an element with `"$patch": "delete"` removes the match), other lists
/// replaced, and `$`-directive keys (`$setElementOrder/...`, `$retainKeys`, `$patch` on maps) ignored.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else { return };
    for (k, v) in patch_map {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            target_map.remove(k);
            continue;
        }
        if let (Value::Array(patch_items), Some(Value::Array(cur_items))) = (v, target_map.get_mut(k)) {
            if let Some(key) = merge_key(k, cur_items, patch_items) {
                for item in patch_items {
                    let Some(want) = item.get(key) else {
                        cur_items.push(strip_directives(item));
                        continue;
                    };
                    let is_delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    match find_by_key(cur_items, key, want) {
                        Some(i) if is_delete => {
                            cur_items.remove(i);
                        }
                        Some(i) => {
                            if let Some(cur) = cur_items.get_mut(i) {
                                strategic_merge(cur, item);
                            }
                        }
                        None if is_delete => {}
                        None => cur_items.push(strip_directives(item)),
                    }
                }
                continue;
            }
        }
        let entry = target_map.entry(k.clone()).or_insert(Value::Null);
        if v.is_object() {
            strategic_merge(entry, v);
        } else {
            *entry = strip_directives(v);
        }
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Server-side apply, step 1: remove from `current` every field that the same manager applied last time
/// (`previous`) but omits now (`applied`), unless another applier still applies it (`others`: the other
/// managers' last applied configurations at the same place): as in structured-merge-diff, a co-owned
/// field stays and only this manager's ownership of it ends. A dropped map is walked, so that only its
/// fields nobody else applies are removed. List-map elements are identified by their merge key.
pub fn remove_unapplied(current: &mut Value, previous: &Value, applied: &Value, others: &[&Value]) {
    let (Value::Object(prev), Value::Object(cur)) = (previous, &mut *current) else {
        return;
    };
    let empty = Map::new();
    let now = applied.as_object().unwrap_or(&empty);
    for (k, pv) in prev {
        let nv = now.get(k).unwrap_or(&Value::Null);
        let co: Vec<&Value> = others
            .iter()
            .filter_map(|o| o.get(k))
            .filter(|v| !v.is_null())
            .collect();
        if nv.is_null() && co.is_empty() {
            cur.remove(k);
            continue;
        }
        match (pv, cur.get_mut(k)) {
            (Value::Object(_), Some(cv)) if nv.is_object() || nv.is_null() => {
                remove_unapplied(cv, pv, nv, &co);
            }
            (Value::Array(pa), Some(Value::Array(ca))) => {
                let na: &[Value] = nv.as_array().map_or(&[], Vec::as_slice);
                if let Some(key) = merge_key(k, pa, na) {
                    remove_unapplied_elements(ca, pa, na, key, &co);
                }
            }
            _ => {}
        }
    }
}

/// [`remove_unapplied`] for the elements of a list-map: an element this manager no longer applies is
/// removed unless another applier has an element with the same key, then its fields are walked.
fn remove_unapplied_elements(ca: &mut Vec<Value>, pa: &[Value], na: &[Value], key: &str, co: &[&Value]) {
    for pe in pa {
        let Some(kv) = pe.get(key) else { continue };
        let Some(ci) = find_by_key(ca, key, kv) else {
            continue;
        };
        let others: Vec<&Value> = co
            .iter()
            .filter_map(|o| o.as_array())
            .filter_map(|items| find_by_key(items, key, kv).and_then(|i| items.get(i)))
            .collect();
        let now = find_by_key(na, key, kv).and_then(|i| na.get(i));
        if now.is_none() && others.is_empty() {
            ca.remove(ci);
        } else if let Some(ce) = ca.get_mut(ci) {
            remove_unapplied(ce, pe, now.unwrap_or(&Value::Null), &others);
        }
    }
}

/// Server-side apply, step 2: merge the applied configuration into `current`: maps recursively, list-maps
/// by key (element fields merged), other lists and scalars replaced. `null`s in the applied configuration
/// are ignored.
pub fn apply_merge(current: &mut Value, applied: &Value) {
    let Value::Object(applied_map) = applied else {
        *current = applied.clone();
        return;
    };
    if !current.is_object() {
        *current = Value::Object(Map::new());
    }
    let Value::Object(cur) = current else { return };
    for (k, v) in applied_map {
        if v.is_null() {
            continue;
        }
        if let (Value::Array(items), Some(Value::Array(cur_items))) = (v, cur.get_mut(k)) {
            if let Some(key) = merge_key(k, cur_items, items) {
                let mut merged = Vec::with_capacity(items.len());
                // Applied elements first in applied order, then elements owned by others.
                for item in items {
                    let mut e = item
                        .get(key)
                        .and_then(|kv| find_by_key(cur_items, key, kv))
                        .map_or_else(
                            || Value::Object(Map::new()),
                            |i| cur_items.get(i).cloned().unwrap_or(Value::Null),
                        );
                    apply_merge(&mut e, item);
                    merged.push(e);
                }
                for e in cur_items.iter() {
                    let applied_has = e.get(key).is_some_and(|kv| find_by_key(items, key, kv).is_some());
                    if !applied_has {
                        merged.push(e.clone());
                    }
                }
                *cur_items = merged;
                continue;
            }
        }
        let entry = cur.entry(k.clone()).or_insert(Value::Null);
        if v.is_object() {
            apply_merge(entry, v);
        } else {
            *entry = strip_nulls(v);
        }
    }
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (json!({"a":"b","b":"c"}), json!({"a":null}), json!({"b":"c"})),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (target, patch, want) in cases {
            let mut t = target.clone();
            merge_patch(&mut t, &patch);
            assert_eq!(t, want, "{target} + {patch}");
        }
    }

    #[test]
    fn json_patch_ops() {
        let doc = json!({"a": {"b": [1, 2, 3]}, "c": "x"});
        let p = json!([
            {"op": "add", "path": "/a/b/1", "value": 9},
            {"op": "add", "path": "/a/b/-", "value": 10},
            {"op": "remove", "path": "/a/b/0"},
            {"op": "replace", "path": "/c", "value": "y"},
            {"op": "test", "path": "/c", "value": "y"},
            {"op": "copy", "from": "/c", "path": "/d"},
            {"op": "move", "from": "/d", "path": "/e~1f"},
            {"op": "add", "path": "/metadata", "value": {"labels": {"k": "v"}}},
        ]);
        let out = json_patch(&doc, &p).unwrap();
        assert_eq!(
            out,
            json!({"a": {"b": [9, 2, 3, 10]}, "c": "y", "e/f": "y", "metadata": {"labels": {"k": "v"}}})
        );
        // Original untouched, test failure is all-or-nothing.
        assert!(json_patch(&doc, &json!([{"op":"test","path":"/c","value":"nope"}])).is_err());
        assert!(json_patch(&doc, &json!([{"op":"remove","path":"/zzz"}])).is_err());
        assert!(json_patch(&doc, &json!([{"op":"replace","path":"/a/b/7","value":1}])).is_err());
        assert!(json_patch(&doc, &json!([{"op":"bogus","path":"/a"}])).is_err());
        assert!(json_patch(&doc, &json!({"op":"add"})).is_err());
        assert!(json_patch(&doc, &json!([{"op":"add","path":"a","value":1}])).is_err());
        assert_eq!(
            json_patch(&doc, &json!([{"op":"replace","path":"","value":1}])).unwrap(),
            json!(1)
        );
        assert_eq!(doc["c"], "x");
    }

    #[test]
    fn strategic_merges_lists_by_key() {
        let mut pod = json!({"spec": {
            "containers": [
                {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}], "ports": [{"containerPort": 80}]},
                {"name": "b", "image": "b:1"}
            ],
            "tolerations": [{"key": "t1"}]
        }});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [
                {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}],
                 "ports": [{"containerPort": 80, "name": "http"}]},
                {"name": "c", "image": "c:1"},
                {"name": "b", "$patch": "delete"}
            ],
            "tolerations": [{"key": "t2"}]
        }});
        strategic_merge(&mut pod, &patch);
        assert_eq!(
            pod,
            json!({"spec": {
                "containers": [
                    {"name": "a", "image": "a:2",
                     "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                     "ports": [{"containerPort": 80, "name": "http"}]},
                    {"name": "c", "image": "c:1"}
                ],
                "tolerations": [{"key": "t2"}]
            }})
        );
        let mut svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        strategic_merge(
            &mut svc,
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
        );
        assert_eq!(
            svc,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}})
        );
        let mut st = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        strategic_merge(
            &mut st,
            &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(
            st,
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        );
        let mut m = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        strategic_merge(&mut m, &json!({"metadata": {"labels": {"a": null, "c": "3"}}}));
        assert_eq!(m, json!({"metadata": {"labels": {"b": "2", "c": "3"}}}));
    }

    #[test]
    fn ssa_removes_fields_previously_applied_and_merges_conditions() {
        let mut cur = json!({"status": {
            "phase": "Healthy", "observedGeneration": 1, "message": "ok",
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Degraded", "status": "False"},
                {"type": "Other", "status": "True"}
            ]
        }});
        let prev = json!({"status": {
            "phase": "Healthy", "message": "ok",
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "Degraded", "status": "False"}]
        }});
        let now = json!({"status": {
            "phase": "Failing",
            "conditions": [{"type": "Ready", "status": "False", "reason": "ProbeFailed"}]
        }});
        remove_unapplied(&mut cur, &prev, &now, &[]);
        apply_merge(&mut cur, &now);
        assert_eq!(
            cur,
            json!({"status": {
                "phase": "Failing", "observedGeneration": 1,
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "ProbeFailed"},
                    {"type": "Other", "status": "True"}
                ]
            }})
        );
    }

    #[test]
    fn ssa_nested_removal_and_list_replacement() {
        let mut cur = json!({"spec": {"a": {"x": 1, "y": 2}, "list": [1, 2], "keep": true}});
        let prev = json!({"spec": {"a": {"x": 1, "y": 2}, "list": [1, 2]}});
        let now = json!({"spec": {"a": {"x": 5}, "list": [3]}});
        remove_unapplied(&mut cur, &prev, &now, &[]);
        apply_merge(&mut cur, &now);
        assert_eq!(cur, json!({"spec": {"a": {"x": 5}, "list": [3], "keep": true}}));
        // First apply (no previous): plain merge.
        let mut fresh = json!({});
        remove_unapplied(&mut fresh, &json!({}), &now, &[]);
        apply_merge(&mut fresh, &now);
        assert_eq!(fresh, now);
    }
}
