//! The options of a list or watch (`resourceVersion`, `resourceVersionMatch`, `sendInitialEvents`,
//! `fieldSelector`) checked as the API server checks them, so a client that sends what a cluster
//! refuses is refused here too. Found by the referee (tests/cluster/referee.rs): the test server
//! used to accept any field selector and any resourceVersion.

use std::collections::HashMap;

use crate::error::ApiError;
use crate::registry::ResourceType;
use crate::selector::FieldSelector;

/// How a list chooses the resourceVersion it answers at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListAt {
    /// The current state (no resourceVersion, `0`, or `NotOlderThan`: the newest is never older).
    Latest,
    /// `resourceVersionMatch=Exact`: the state at that resourceVersion.
    Exact(u64),
}

/// A 422 about the `ListOptions`, as the API server words it.
fn invalid_options(field: &str, reason: &str, detail: &str) -> ApiError {
    ApiError::invalid_fields(
        "ListOptions.meta.k8s.io",
        ("", "meta.k8s.io", "ListOptions"),
        [(reason, field, detail)],
    )
}

/// Checks the options of a list (or, `watch`, of a watch) of `rt`; what a list answers at.
pub fn check(rt: &ResourceType, query: &HashMap<String, String>, watch: bool) -> Result<ListAt, ApiError> {
    let param = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
    let (rv, rv_match) = (param("resourceVersion"), param("resourceVersionMatch"));
    let version = match rv {
        "" => None,
        rv => Some(rv.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid resource version: resourceVersion: Invalid value: \"{rv}\": strconv.ParseUint: parsing \"{rv}\": invalid syntax"
            ))
        })?),
    };
    let forbidden = |why: &str| {
        Err(invalid_options(
            "resourceVersionMatch",
            "FieldValueForbidden",
            &format!("Forbidden: {why}"),
        ))
    };
    if watch && param("sendInitialEvents") == "true" {
        if rv_match != "NotOlderThan" {
            return forbidden("sendInitialEvents requires setting resourceVersionMatch to NotOlderThan");
        }
    } else if watch && !rv_match.is_empty() {
        return forbidden("resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided");
    } else if !rv_match.is_empty() && version.is_none() {
        return forbidden("resourceVersionMatch is forbidden unless resourceVersion is provided");
    }
    check_fields(rt, &FieldSelector::parse(param("fieldSelector"))?)?;
    Ok(match (rv_match, version) {
        ("Exact", Some(n)) if !watch => ListAt::Exact(n),
        _ => ListAt::Latest,
    })
}

/// Field selectors every type supports.
const META: &[&str] = &["metadata.name", "metadata.namespace"];
const POD: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
];
const CORE_EVENT: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];
const EVENT: &[&str] = &[
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reason",
    "reportingController",
    "type",
];

/// The fields `rt`'s field selectors may name besides `metadata.name` and `metadata.namespace`,
/// for the types with a field-label conversion of their own in the API server (None: the others).
fn own_fields(rt: &ResourceType) -> Option<Vec<&str>> {
    if rt.crd.is_some() {
        return Some(rt.selectable_fields.iter().map(String::as_str).collect());
    }
    let own: &[&str] = match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => POD,
        ("", "events") => CORE_EVENT,
        ("events.k8s.io", "events") => EVENT,
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("", "services") => &["spec.clusterIP", "spec.type"],
        _ => return None,
    };
    Some(own.to_vec())
}

/// Refuses field selectors on fields `rt` does not support, with the API server's words: types
/// with a conversion of their own say `field label not supported: x`, the others `"x" is not a
/// known field selector: only "metadata.name", "metadata.namespace"`.
pub fn check_fields(rt: &ResourceType, selector: &FieldSelector) -> Result<(), ApiError> {
    let own = own_fields(rt);
    for r in &selector.requirements {
        let field = r.field.as_str();
        if META.contains(&field) || own.as_ref().is_some_and(|o| o.contains(&field)) {
            continue;
        }
        return Err(ApiError::bad_request(match own {
            Some(_) => format!("field label not supported: {field}"),
            None => format!(
                "{field:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
            ),
        }));
    }
    Ok(())
}
