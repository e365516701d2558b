//! `metadata.managedFields`: who wrote what and when, and the conflicts of server-side apply.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use super::{AppliedKey, Sub};
use crate::admission::Admission;
use crate::error::ApiError;
use crate::fields;

/// `managedFields[].operation` of server-side apply.
pub const OPERATION_APPLY: &str = "Apply";
/// `managedFields[].operation` of every other write (create, update, patch).
pub const OPERATION_UPDATE: &str = "Update";
/// The field manager of the namespaces that exist from the start (as in a cluster).
pub const BOOTSTRAP_MANAGER: &str = "kube-apiserver";

/// Who writes and when: what a write records in `metadata.managedFields`.
pub(super) struct Write<'a> {
    pub(super) manager: &'a str,
    pub(super) operation: &'static str,
    pub(super) time: String,
    /// `fieldsV1` of the entry: what an apply owns (its applied configuration); `{}` for other writes.
    pub(super) fields: Option<Value>,
    /// Other appliers' Apply entries whose fields a forced apply took over: (manager, subresource,
    /// their `fieldsV1` now; an entry left owning nothing is dropped).
    pub(super) transferred: Vec<(String, &'static str, Value)>,
    /// Admission of a write over HTTP; None for a write straight into storage.
    pub(super) admission: Option<&'a Admission>,
}

/// The paths an applier's configuration owns that are among `paths`.
pub(super) fn owned_among(config: &Value, paths: &BTreeSet<fields::FieldPath>) -> Vec<fields::FieldPath> {
    fields::owned_paths(&fields::fields_v1(config))
        .into_iter()
        .filter(|p| paths.contains(p))
        .collect()
}

pub(super) fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// Set or refresh the `managedFields` entry of the writer's (manager, operation, subresource) in `meta`,
/// then sort the entries like the API server (operation, time, manager, apiVersion, subresource).
/// Only appliers' ownership is tracked: `fieldsV1` of other writes is `{}`.
pub(super) fn record_manager(
    meta: &mut Map<String, Value>,
    w: &Write<'_>,
    disowned: &[(String, &'static str, Value)],
    api_version: &str,
    sub: Sub,
) {
    let mut entries: Vec<Value> = meta
        .get("managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    entries.retain(|e| {
        !(str_of(e, "manager") == w.manager
            && str_of(e, "operation") == w.operation
            && str_of(e, "subresource") == sub.name())
    });
    for (manager, subresource, fields) in w.transferred.iter().chain(disowned) {
        let theirs = |e: &Value| {
            str_of(e, "manager") == manager
                && str_of(e, "operation") == OPERATION_APPLY
                && str_of(e, "subresource") == *subresource
        };
        if fields.as_object().is_none_or(Map::is_empty) {
            entries.retain(|e| !theirs(e));
        } else if let Some(e) = entries.iter_mut().find(|e| theirs(e)) {
            e["fieldsV1"] = fields.clone();
        }
    }
    let mut entry = Map::new();
    entry.insert("manager".into(), json!(w.manager));
    entry.insert("operation".into(), json!(w.operation));
    entry.insert("apiVersion".into(), json!(api_version));
    entry.insert("time".into(), json!(w.time));
    entry.insert("fieldsType".into(), json!("FieldsV1"));
    entry.insert("fieldsV1".into(), w.fields.clone().unwrap_or_else(|| json!({})));
    if !sub.name().is_empty() {
        entry.insert("subresource".into(), json!(sub.name()));
    }
    // As in structured-merge-diff, an applier that owns nothing has no entry.
    let owns_nothing = w
        .fields
        .as_ref()
        .is_some_and(|f| f.as_object().is_none_or(Map::is_empty));
    if !(w.operation == OPERATION_APPLY && owns_nothing) {
        entries.push(Value::Object(entry));
    }
    let seconds = |e: &Value| {
        e.get("time")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map_or(0, |t| t.as_second())
    };
    entries.sort_by(|p, q| {
        str_of(p, "operation")
            .cmp(str_of(q, "operation"))
            .then_with(|| seconds(p).cmp(&seconds(q)))
            .then_with(|| str_of(p, "manager").cmp(str_of(q, "manager")))
            .then_with(|| str_of(p, "apiVersion").cmp(str_of(q, "apiVersion")))
            .then_with(|| str_of(p, "subresource").cmp(str_of(q, "subresource")))
    });
    meta.insert("managedFields".into(), Value::Array(entries));
}

/// Whether an apply changes what its manager owns (its entry's `fieldsV1`, or a first entry): then the
/// write is recorded even if the object stays the same, as in Kubernetes.
pub(super) fn ownership_changed(meta: &Map<String, Value>, w: &Write<'_>, sub: Sub) -> bool {
    let Some(fields) = &w.fields else { return false };
    let entries = meta.get("managedFields").and_then(Value::as_array);
    let entry = entries.into_iter().flatten().find(|e| {
        str_of(e, "manager") == w.manager
            && str_of(e, "operation") == w.operation
            && str_of(e, "subresource") == sub.name()
    });
    let owns_nothing = fields.as_object().is_none_or(Map::is_empty);
    match entry {
        Some(e) => e.get("fieldsV1") != Some(fields) || owns_nothing,
        None => !owns_nothing,
    }
}

/// Apply conflicts, as structured-merge-diff finds them: the fields the apply adds or changes
/// (`before` → `after`) that other appliers of the same object (any subresource) own. Without
/// `force` they fail the apply (409); with it they pass to the applier: the other appliers'
/// configurations without those fields are returned, to be stored once the write succeeds. Fields
/// set by `Update` writes are not tracked, so they never conflict.
pub(super) fn apply_conflicts(
    applied: &HashMap<AppliedKey, Value>,
    akey: &AppliedKey,
    before: &Value,
    after: &Value,
    force: bool,
) -> Result<Vec<(AppliedKey, Value)>, ApiError> {
    let changed = fields::changed(before, after);
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    let mut others: Vec<(&AppliedKey, &Value)> = applied
        .iter()
        .filter(|(k, _)| k.0 == akey.0 && k.1 == akey.1 && k.2 == akey.2 && *k != akey)
        .collect();
    others.sort_by(|p, q| p.0.4.cmp(&q.0.4).then(p.0.3.cmp(q.0.3)));
    let mut conflicts: Vec<(String, String)> = Vec::new();
    let mut taken = Vec::new();
    for (key, config) in others {
        let lost = owned_among(config, &changed);
        if lost.is_empty() {
            continue;
        }
        let mut config = config.clone();
        for path in &lost {
            conflicts.push((
                ApiError::conflicting_manager(&key.4, key.3),
                fields::path_string(path),
            ));
            fields::remove_path(&mut config, path);
        }
        taken.push((key.clone(), config));
    }
    if !conflicts.is_empty() && !force {
        return Err(ApiError::apply_conflict(&conflicts));
    }
    Ok(taken)
}
