//! How objects are served, chosen by the `Accept` header: whole, as a `Table` (kubectl), or metadata only
//! (`PartialObjectMetadata`, kube's `metadata_watcher`).

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use crate::registry::ResourceType;
use crate::table::{self, IncludeObject};

/// The shape objects are served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The objects themselves.
    Full,
    /// A `meta.k8s.io/v1` `Table`.
    Table(IncludeObject),
    /// `meta.k8s.io/v1` `PartialObjectMetadata` (lists: `PartialObjectMetadataList`).
    Metadata,
}

/// Whether an `Accept` header asks for `as=<kind>` of group `meta.k8s.io`.
fn accepts(headers: &HeaderMap, kinds: &[&str]) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let params: Vec<&str> = part.split(';').map(str::trim).collect();
            params
                .iter()
                .any(|p| p.strip_prefix("as=").is_some_and(|k| kinds.contains(&k)))
                && params.iter().any(|p| p.starts_with("g=meta.k8s.io"))
        })
}

/// Whether the request asks for a Table.
pub fn wants_table(headers: &HeaderMap) -> bool {
    accepts(headers, &["Table"])
}

const META_API_VERSION: &str = "meta.k8s.io/v1";

impl View {
    /// The view a request asks for.
    pub fn of_request(headers: &HeaderMap, include: IncludeObject) -> View {
        if wants_table(headers) {
            View::Table(include)
        } else if accepts(headers, &["PartialObjectMetadata", "PartialObjectMetadataList"]) {
            View::Metadata
        } else {
            View::Full
        }
    }

    /// One object (of `rt`, as served) in this view.
    pub fn object(self, rt: &ResourceType, obj: Value, now: jiff::Timestamp) -> Value {
        match self {
            View::Full => obj,
            View::Table(include) => {
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                table::table(rt, &[obj], rv, include, now)
            }
            View::Metadata => partial(obj),
        }
    }

    /// A list of objects of `rt` at resourceVersion `rv` in this view.
    pub fn list(self, rt: &ResourceType, items: Vec<Value>, rv: u64, now: jiff::Timestamp) -> Value {
        match self {
            View::Table(include) => table::table(rt, &items, Some(rv.to_string()), include, now),
            View::Full => json!({
                "kind": rt.list_kind,
                "apiVersion": rt.api_version(),
                "metadata": {"resourceVersion": rv.to_string()},
                "items": items,
            }),
            View::Metadata => json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": META_API_VERSION,
                "metadata": {"resourceVersion": rv.to_string()},
                "items": items.into_iter().map(partial).collect::<Vec<_>>(),
            }),
        }
    }
}

/// An object's `PartialObjectMetadata`: its metadata and nothing else.
fn partial(obj: Value) -> Value {
    let metadata = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    json!({"kind": "PartialObjectMetadata", "apiVersion": META_API_VERSION, "metadata": metadata})
}

/// What a DELETE of `deleted` answers when it is not the object itself: a `Status` `Success`
/// naming it, as the API server answers for objects deleted at once. Pods, services, namespaces
/// and CRDs (which may linger, terminating) are answered with the object (None). Found by the
/// referee (tests/cluster/referee.rs).
pub fn deleted_status(rt: &ResourceType, deleted: &Value) -> Option<Value> {
    let lingers = rt.crd.is_none()
        && matches!(
            (rt.group.as_str(), rt.plural.as_str()),
            ("", "pods" | "services" | "namespaces") | ("apiextensions.k8s.io", "customresourcedefinitions")
        );
    if lingers {
        return None;
    }
    let mut details = json!({
        "name": deleted.pointer("/metadata/name"),
        "kind": rt.plural,
        "uid": deleted.pointer("/metadata/uid"),
    });
    if !rt.group.is_empty() {
        details["group"] = json!(rt.group);
    }
    Some(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
    )
}
