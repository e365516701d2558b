//! Routing: the paths answered here (version, OpenAPI, health checks, discovery, the metrics
//! API) and the paths under a group-version's resources, which the caller serves.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use serde_json::Value;

use super::{Shared, json_response, not_found_path, version_info};
use crate::error::ApiError;
use crate::metrics::{self, Metrics};
use crate::pods;
use crate::view::wants_table;

/// Where a request goes: answered here (version, OpenAPI, health, discovery, metrics), or a path
/// under a group-version's resources.
pub(super) enum Route<'a> {
    Answered(Response),
    Resource {
        group: String,
        version: String,
        rest: &'a [String],
    },
}

pub(super) fn route<'a>(
    shared: &Arc<Shared>,
    parts: &axum::http::request::Parts,
    segs: &'a [String],
    query: &HashMap<String, String>,
) -> Result<Route<'a>, ApiError> {
    let seg_refs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let is_get = parts.method == Method::GET;
    let registry = || shared.store.registry();
    let answered = |r: Response| Ok(Route::Answered(r));
    match seg_refs.as_slice() {
        ["version"] if is_get => answered(json_response(200, &version_info())),
        ["openapi", "v2"] if is_get => answered(openapi_v2_response(&shared.store, &parts.headers)),
        ["openapi", "v3"] if is_get => answered(json_response(200, &crate::openapi::root(&shared.store))),
        ["openapi", "v3", rest @ ..] if is_get => {
            crate::openapi::group_version(&shared.store, &rest.join("/"))
                .map(|doc| Route::Answered(json_response(200, &doc)))
                .ok_or_else(not_found_path)
        }
        ["healthz" | "readyz" | "livez"] if is_get => answered(
            Response::builder()
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("ok"))
                .unwrap_or_else(|_| Response::new(Body::empty())),
        ),
        ["api"] if is_get => answered(json_response(200, &registry().api_versions(&shared.address))),
        ["api", v] if is_get => {
            let mut list = registry().api_resource_list("", v).ok_or_else(not_found_path)?;
            if !shared.pods.resize_enabled() {
                pods::hide_resize(&mut list);
            }
            answered(json_response(200, &list))
        }
        ["apis"] if is_get => {
            let mut list = registry().api_group_list();
            if shared.metrics.enabled() {
                if let Some(groups) = list.get_mut("groups").and_then(Value::as_array_mut) {
                    groups.push(Metrics::group_entry());
                }
            }
            answered(json_response(200, &list))
        }
        ["apis", metrics::GROUP, rest @ ..] if shared.metrics.enabled() => {
            answered(json_response(200, &metrics_api(shared, parts, rest, query)?))
        }
        ["apis", g] if is_get => registry()
            .api_group(g)
            .map(|l| Route::Answered(json_response(200, &l)))
            .ok_or_else(not_found_path),
        ["apis", g, v] if is_get => registry()
            .api_resource_list(g, v)
            .map(|l| Route::Answered(json_response(200, &l)))
            .ok_or_else(not_found_path),
        ["api", v, ..] if segs.len() > 2 => Ok(Route::Resource {
            group: String::new(),
            version: (*v).to_string(),
            rest: segs.get(2..).unwrap_or_default(),
        }),
        ["apis", g, v, ..] if segs.len() > 3 => Ok(Route::Resource {
            group: (*g).to_string(),
            version: (*v).to_string(),
            rest: segs.get(3..).unwrap_or_default(),
        }),
        _ => Err(not_found_path()),
    }
}

/// The `metrics.k8s.io` API, when the server serves it.
fn metrics_api(
    shared: &Arc<Shared>,
    parts: &axum::http::request::Parts,
    rest: &[&str],
    query: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let is_get = parts.method == Method::GET;
    Ok(match rest {
        [] if is_get => Metrics::api_group(),
        [metrics::VERSION] if is_get => Metrics::api_resource_list(),
        [] | [metrics::VERSION] => {
            return Err(ApiError::method_not_allowed(format!(
                "method {} is not supported on this path",
                parts.method
            )));
        }
        [metrics::VERSION, rest @ ..] => shared.metrics.serve(
            &shared.store,
            &parts.method,
            rest,
            query,
            wants_table(&parts.headers),
        )?,
        _ => return Err(not_found_path()),
    })
}

/// `GET /openapi/v2`: protobuf when the client asks for it (kubectl does), JSON otherwise.
fn openapi_v2_response(store: &crate::store::Store, headers: &HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !crate::openapi_v2::PROTOBUF_ACCEPT
        .iter()
        .any(|pb| accept.contains(pb))
    {
        return json_response(200, &crate::openapi_v2::document(store));
    }
    Response::builder()
        .header(header::CONTENT_TYPE, crate::openapi_v2::PROTOBUF)
        .body(Body::from(crate::openapi_v2::protobuf(store)))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
