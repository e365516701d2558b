//! Reading and shaping stored objects: metadata, dotted paths, the served form, the Scale view.

use serde_json::{Map, Value, json};

use crate::convert;
use crate::error::ApiError;
use crate::registry::ResourceType;

pub(super) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

pub(super) fn metadata_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let map = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("object must be a JSON object"))?;
    let meta = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    meta.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// `.a.b` dotted path lookup.
pub fn get_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .try_fold(obj, |cur, seg| cur.get(seg))
}

pub(super) fn set_path(obj: &mut Value, path: &str, value: Value) {
    let segs: Vec<&str> = path
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .collect();
    let mut cur = obj;
    for seg in segs.iter().take(segs.len().saturating_sub(1)) {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(m) = cur else { return };
        cur = m
            .entry(seg.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let (Some(last), true) = (segs.last(), cur.is_object() || cur.is_null()) {
        if cur.is_null() {
            *cur = Value::Object(Map::new());
        }
        if let Value::Object(m) = cur {
            m.insert(last.to_string(), value);
        }
    }
}

/// Everything except `metadata` and `status`: a change here bumps `metadata.generation`.
pub(super) fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    strip(old) != strip(new)
}

/// A stored object as served at the version of `rt`: converted (core v1 ↔ events.k8s.io events), with
/// `apiVersion` and `kind`.
pub fn present(rt: &ResourceType, obj: Value) -> Value {
    with_type(rt, convert::from_storage(rt, obj))
}

/// Set `apiVersion` and `kind` for the version the object is served at.
pub fn with_type(rt: &ResourceType, mut obj: Value) -> Value {
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), Value::String(rt.api_version()));
        m.insert("kind".into(), Value::String(rt.kind.clone()));
    }
    obj
}

pub(super) fn label_selector_string(obj: &Value) -> Option<String> {
    let labels = obj.pointer("/spec/selector/matchLabels")?.as_object()?;
    Some(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
    )
}

pub(super) fn check_type(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str) {
        if kind != rt.kind {
            return Err(ApiError::bad_request(format!(
                "the kind of the object ({kind}) does not match the kind of the request ({})",
                rt.kind
            )));
        }
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
        let group = av.rsplit_once('/').map_or("", |(g, _)| g);
        if group != rt.group {
            return Err(ApiError::bad_request(format!(
                "the API version of the object ({av}) does not match the group of the request ({})",
                rt.api_version()
            )));
        }
    }
    Ok(())
}

/// The `autoscaling/v1` Scale view of an object.
pub fn scale_view(rt: &ResourceType, obj: &Value) -> Option<Value> {
    let spec = rt.scale.as_ref()?;
    let meta = obj.get("metadata").and_then(Value::as_object);
    let pick = |f: &str| meta.and_then(|m| m.get(f)).cloned().unwrap_or(Value::Null);
    let selector = match &spec.label_selector_path {
        Some(p) => get_path(obj, p).and_then(Value::as_str).map(str::to_string),
        None => label_selector_string(obj),
    };
    let mut metadata = json!({
        "name": pick("name"), "namespace": pick("namespace"), "uid": pick("uid"),
        "resourceVersion": pick("resourceVersion"), "creationTimestamp": pick("creationTimestamp"),
    });
    if !rt.namespaced {
        if let Value::Object(m) = &mut metadata {
            m.remove("namespace");
        }
    }
    let mut status =
        json!({"replicas": get_path(obj, &spec.status_replicas_path).cloned().unwrap_or(json!(0))});
    if let (Some(sel), Value::Object(m)) = (selector, &mut status) {
        m.insert("selector".into(), json!(sel));
    }
    Some(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": get_path(obj, &spec.spec_replicas_path).cloned().unwrap_or(json!(0))},
        "status": status,
    }))
}
