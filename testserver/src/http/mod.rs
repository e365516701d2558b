//! The HTTP layer: routing of Kubernetes API paths, content negotiation, watch streaming.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::admission::{Admission, FieldValidation};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::options::ListAt;
use crate::pods::{self, PodExtras};
use crate::registry::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Filter, PatchType, Store, Sub, Writer};
use crate::table::IncludeObject;
use crate::view::View;
use crate::{Fault, RecordedRequest};

mod route;

use route::{Route, route};

/// The fault hook type.
pub type FaultHook = Arc<dyn Fn(&RecordedRequest) -> Option<Fault> + Send + Sync + 'static>;

/// Request bodies larger than this are refused.
pub const MAX_BODY: usize = 32 * 1024 * 1024;
/// Longest `fieldManager` the API server accepts (bytes).
const FIELD_MANAGER_MAX_LENGTH: usize = 128;
/// The field manager of writes with neither `fieldManager` nor a User-Agent (kube-rs sends none).
pub const UNKNOWN_MANAGER: &str = "unknown";

/// State shared by the HTTP handlers and the [`crate::TestServer`] handle.
pub struct Shared {
    /// Objects.
    pub store: Store,
    /// Every request, in order of arrival, with the status it was answered with (0 until then).
    pub requests: Mutex<Vec<(RecordedRequest, Arc<std::sync::atomic::AtomicU16>)>>,
    /// Fault injection.
    pub hook: Mutex<Option<FaultHook>>,
    /// Becomes `true` on shutdown; ends open watches.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// `host:port` served.
    pub address: String,
    /// The resource metrics API.
    pub metrics: Metrics,
    /// Pod logs, the exec handler and the `resize` switch.
    pub pods: PodExtras,
    /// How late live watch events are delivered (a lagging watch cache); zero by default.
    pub watch_lag: Mutex<Duration>,
    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK.
    pub bookmark_interval: Mutex<Duration>,
    /// Bumped to end every open watch.
    pub cut_watches: tokio::sync::watch::Sender<u64>,
    /// Off while the server is unreachable (see [`crate::outage`]).
    pub reachable: tokio::sync::watch::Sender<bool>,
}

pub fn json_response(code: u16, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(bytes))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// The admission's warnings as `Warning: 299 - "…"` headers, as the API server sends them.
fn warn(mut resp: Response, admission: &Admission) -> Response {
    for text in admission.warnings() {
        let quoted = text.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(value) = header::HeaderValue::from_str(&format!("299 - \"{quoted}\"")) {
            resp.headers_mut().append(header::WARNING, value);
        }
    }
    resp
}

/// 429 as the API server's priority and fairness answers a throttled request.
fn throttled(retry_after_seconds: u32) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Too many requests, please try again later.",
        "reason": "TooManyRequests",
        "details": {"retryAfterSeconds": retry_after_seconds},
        "code": 429
    });
    let mut resp = json_response(429, &body);
    if let Ok(value) = header::HeaderValue::from_str(&retry_after_seconds.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, value);
    }
    resp
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status())
}

/// The namespace, label selector and field selector of a list, watch or delete-collection.
fn filter(namespace: &Option<String>, query: &HashMap<String, String>) -> Result<Filter, ApiError> {
    let param = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
    Ok(Filter {
        namespace: namespace.clone(),
        labels: LabelSelector::parse(param("labelSelector"))?,
        fields: FieldSelector::parse(param("fieldSelector"))?,
    })
}

/// `end_watches` as it stood when a request arrived.
#[derive(Clone)]
struct CutSince(tokio::sync::watch::Receiver<u64>);

/// The axum handler for every request.
pub async fn handle(State(shared): State<Arc<Shared>>, mut req: Request) -> Response {
    // A watch is cut by every `end_watches` after it arrived, even one made while it was still
    // being set up (the hook, a fault's delay, the store).
    req.extensions_mut()
        .insert(CutSince(shared.cut_watches.subscribe()));
    let mut rec = RecordedRequest {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().unwrap_or_default().to_string(),
        content_type: req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        status: 0,
    };
    // Logged on arrival, so a write is in the log before its effect can be seen in the store.
    let answered = Arc::new(std::sync::atomic::AtomicU16::new(0));
    shared
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((rec.clone(), answered.clone()));
    let hook = shared.hook.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let fault = hook.and_then(|h| h(&rec));
    if let Some(Fault::Delay(by)) = &fault {
        tokio::time::sleep(*by).await;
    }
    let answer_late = match &fault {
        Some(Fault::AnswerLate(by)) => Some(*by),
        _ => None,
    };
    let resp = match fault {
        Some(Fault::Status {
            code,
            reason,
            message,
        }) => error_response(&ApiError::new(code, reason, message)),
        Some(Fault::Throttle { retry_after_seconds }) => throttled(retry_after_seconds),
        None | Some(Fault::Delay(_) | Fault::AnswerLate(_)) => match dispatch(&shared, req).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        },
    };
    rec.status = resp.status().as_u16();
    if let Some(by) = answer_late {
        // Served: the log says so now; only the client has yet to hear it.
        answered.store(rec.status, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(by).await;
    }
    tracing::info!(
        method = %rec.method,
        path = %rec.path,
        query = %rec.query,
        content_type = rec.content_type.as_deref().unwrap_or_default(),
        status = rec.status,
        "request"
    );
    answered.store(rec.status, std::sync::atomic::Ordering::SeqCst);
    resp
}

fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ApiError::bad_request(format!("invalid percent-encoding in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("path is not UTF-8"))
}

pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        ct.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

/// `unicode.IsPrint` of Go, near enough: no control characters, no whitespace but the ASCII space.
fn printable(c: char) -> bool {
    !c.is_control() && (c == ' ' || !c.is_whitespace())
}

/// The field manager of a write, like the API server: the `fieldManager` parameter (at most 128 bytes of
/// printable characters, else 422), else the User-Agent up to its first '/' with non-printable characters
/// dropped and cut to 128 bytes (`kubectl/v1.33.0 (linux/amd64) ...` gives `kubectl`), else `unknown`.
fn field_manager(query: &HashMap<String, String>, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(m) = query.get("fieldManager").filter(|m| !m.is_empty()) {
        if m.len() > FIELD_MANAGER_MAX_LENGTH {
            return Err(ApiError::invalid(format!(
                "fieldManager: Too long: may not be more than {FIELD_MANAGER_MAX_LENGTH} bytes"
            )));
        }
        if !m.chars().all(printable) {
            return Err(ApiError::invalid(format!(
                "fieldManager: Invalid value: {m:?}: must only contain printable characters"
            )));
        }
        return Ok(m.clone());
    }
    let ua = headers
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let mut manager = String::new();
    for c in ua
        .split('/')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|&c| printable(c))
    {
        if manager.len() + c.len_utf8() > FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        manager.push(c);
    }
    Ok(if manager.is_empty() {
        UNKNOWN_MANAGER.to_string()
    } else {
        manager
    })
}

fn not_found_path() -> ApiError {
    ApiError::not_found_message("the server could not find the requested resource")
}

fn version_info() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2", "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub fn parse_body(bytes: &[u8], media: Option<&str>) -> Result<Value, ApiError> {
    if media.is_some_and(|m| m.contains("protobuf") || m.contains("cbor")) {
        return Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format ({}) - accepted media types include: \
             application/json, application/yaml",
            media.unwrap_or_default()
        )));
    }
    if bytes.is_empty() {
        return Err(ApiError::bad_request("request body is empty"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ApiError::bad_request("request body is not UTF-8"))?;
    let yaml = matches!(
        media,
        Some("application/yaml" | "application/x-yaml" | "text/yaml" | "application/apply-patch+yaml")
    );
    match serde_json::from_str::<Value>(text) {
        Ok(v) => Ok(v),
        Err(e) if !yaml => Err(ApiError::bad_request(format!(
            "error decoding request body as JSON: {e}"
        ))),
        Err(_) => serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding request body as YAML: {e}"))),
    }
}

/// A parsed resource path.
struct Target {
    rt: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    sub: Sub,
}

fn resolve_target(store: &Store, group: &str, version: &str, rest: &[String]) -> Result<Target, ApiError> {
    let namespaced_path = rest.first().map(String::as_str) == Some("namespaces")
        && rest.len() >= 3
        && rest
            .get(2)
            .and_then(|p| store.resolve(group, version, p))
            .is_some_and(|rt| rt.namespaced);
    let (namespace, plural, name, sub, extra) = if namespaced_path {
        (
            rest.get(1).cloned(),
            rest.get(2),
            rest.get(3).cloned(),
            rest.get(4),
            rest.len() > 5,
        )
    } else {
        (
            None,
            rest.first(),
            rest.get(1).cloned(),
            rest.get(2),
            rest.len() > 3,
        )
    };
    let plural = plural.ok_or_else(not_found_path)?;
    if extra {
        return Err(not_found_path());
    }
    let rt = store.resolve(group, version, plural).ok_or_else(not_found_path)?;
    if rt.namespaced && namespace.is_none() && name.is_some() {
        return Err(not_found_path());
    }
    let sub = match sub.map(String::as_str) {
        None => Sub::Main,
        Some("status") if rt.has_status => Sub::Status,
        Some("scale") if rt.scale.is_some() => Sub::Scale,
        Some("resize") if rt.crd.is_none() && rt.group.is_empty() && rt.plural == "pods" => Sub::Resize,
        Some(_) => return Err(not_found_path()),
    };
    Ok(Target {
        rt,
        namespace,
        name,
        sub,
    })
}

async fn dispatch(shared: &Arc<Shared>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let query: HashMap<String, String> = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    let segs: Vec<String> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect::<Result<_, _>>()?;
    let (group, version, rest) = match route(shared, &parts, &segs, &query)? {
        Route::Answered(response) => return Ok(response),
        Route::Resource { group, version, rest } => (group, version, rest),
    };
    if let (
        true,
        [
            "namespaces",
            ns,
            "pods",
            name,
            sub @ ("log" | "eviction" | "exec"),
        ],
    ) = (
        group.is_empty() && version == "v1",
        rest.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
    ) {
        return pods::serve(shared, parts, body, &query, ns, name, sub).await;
    }
    let target = resolve_target(&shared.store, &group, &version, rest)?;
    serve_resource(shared, parts, body, &query, target).await
}

/// A request on a resource type, an object or its subresource.
async fn serve_resource(
    shared: &Arc<Shared>,
    parts: axum::http::request::Parts,
    body: Body,
    query: &HashMap<String, String>,
    target: Target,
) -> Result<Response, ApiError> {
    if target.sub == Sub::Resize && !shared.pods.resize_enabled() {
        return Err(not_found_path());
    }
    let media = media_type(&parts.headers);
    let include = IncludeObject::parse(query.get("includeObject").map(String::as_str));
    let view = View::of_request(&parts.headers, include);
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|e| ApiError::bad_request(format!("error reading request body: {e}")))?;
    // dryRun: run the write against a throw-away copy of the state.
    let dry_run_store;
    let store = if parts.method != Method::GET && query.contains_key("dryRun") {
        dry_run_store = shared.store.snapshot();
        &dry_run_store
    } else {
        &shared.store
    };
    let Target {
        rt,
        namespace,
        name,
        sub,
    } = target;
    let ns = namespace.as_deref();
    let respond = |code: u16, obj: Value| -> Response {
        if sub == Sub::Main && obj.get("kind").and_then(Value::as_str) == Some(rt.kind.as_str()) {
            json_response(code, &view.object(&rt, obj, store.now()))
        } else {
            json_response(code, &obj)
        }
    };
    let admission = Admission::new(FieldValidation::parse(
        query.get("fieldValidation").map(String::as_str),
    )?);
    match (&parts.method, name) {
        (&Method::GET, None) => {
            let filter = filter(&namespace, query)?;
            let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
            let at = crate::options::check(&rt, query, watch)?;
            if watch {
                let cut = parts
                    .extensions
                    .get::<CutSince>()
                    .map_or_else(|| shared.cut_watches.subscribe(), |c| c.0.clone());
                return crate::watch::watch(shared, rt, filter, query, view, cut);
            }
            let (items, rv) = match at {
                ListAt::Latest => store.list(&rt, &filter),
                ListAt::Exact(rv) => (store.list_at(&rt, &filter, rv)?, rv),
            };
            Ok(json_response(200, &view.list(&rt, items, rv, store.now())))
        }
        (&Method::GET, Some(name)) => Ok(respond(200, store.get_sub(&rt, ns, &name, sub)?)),
        (&Method::POST, None) => {
            let body = parse_body(&bytes, media.as_deref())?;
            let ns = ns.map(str::to_string).or_else(|| {
                body.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            let manager = field_manager(query, &parts.headers)?;
            let by = Writer {
                manager: &manager,
                admission: Some(&admission),
            };
            let created = store.create(&rt, ns.as_deref(), body, by)?;
            Ok(warn(respond(201, created), &admission))
        }
        (&Method::PUT, Some(name)) => {
            let manager = field_manager(query, &parts.headers)?;
            let body = parse_body(&bytes, media.as_deref())?;
            let by = Writer {
                manager: &manager,
                admission: Some(&admission),
            };
            let replaced = store.replace(&rt, ns, &name, sub, body, by)?;
            Ok(warn(respond(200, replaced), &admission))
        }
        (&Method::PATCH, Some(name)) => {
            let ptype = patch_type(media.as_deref(), query)?;
            let manager = field_manager(query, &parts.headers)?;
            let body = parse_body(&bytes, media.as_deref())?;
            let existed = store.get(&rt, ns, &name).is_ok();
            let by = Writer {
                manager: &manager,
                admission: Some(&admission),
            };
            let obj = store.patch(&rt, ns, &name, sub, &ptype, &body, by)?;
            Ok(warn(respond(if existed { 200 } else { 201 }, obj), &admission))
        }
        (&Method::DELETE, Some(name)) if sub == Sub::Main => {
            let deleted = store.delete(&rt, ns, &name)?;
            Ok(match crate::view::deleted_status(&rt, &deleted) {
                Some(status) => json_response(200, &status),
                None => respond(200, deleted),
            })
        }
        (&Method::DELETE, None) => {
            crate::options::check(&rt, query, false)?;
            delete_collection(store, &rt, &filter(&namespace, query)?)
        }
        (m, _) => Err(ApiError::method_not_allowed(format!(
            "method {m} is not supported on this path"
        ))),
    }
}

/// The patch type a PATCH request's `Content-Type` names; apply needs a field manager.
fn patch_type(media: Option<&str>, query: &HashMap<String, String>) -> Result<PatchType, ApiError> {
    Ok(match media {
        Some("application/merge-patch+json") => PatchType::Merge,
        Some("application/json-patch+json") => PatchType::Json,
        Some("application/strategic-merge-patch+json") => PatchType::Strategic,
        Some("application/apply-patch+yaml" | "application/apply-patch+json") => {
            if query.get("fieldManager").is_none_or(String::is_empty) {
                return Err(ApiError::bad_request(
                    "PATCH request with apply-patch content type requires fieldManager",
                ));
            }
            PatchType::Apply {
                force: matches!(query.get("force").map(String::as_str), Some("true" | "1")),
            }
        }
        other => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format ({}) - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, \
                 application/apply-patch+yaml, application/strategic-merge-patch+json",
                other.unwrap_or("none")
            )));
        }
    })
}

/// `DELETE` on a collection: every object the filter selects, deleted and listed.
fn delete_collection(store: &Store, rt: &ResourceType, filter: &Filter) -> Result<Response, ApiError> {
    let (items, _) = store.list(rt, filter);
    let mut deleted = Vec::new();
    for item in items {
        let n = item
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ins = item.pointer("/metadata/namespace").and_then(Value::as_str);
        if let Ok(d) = store.delete(rt, ins, n) {
            deleted.push(d);
        }
    }
    Ok(json_response(
        200,
        &json!({
            "kind": rt.list_kind, "apiVersion": rt.api_version(),
            "metadata": {"resourceVersion": store.resource_version().to_string()},
            "items": deleted,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::wants_table;

    #[test]
    fn decoding_and_negotiation() {
        assert_eq!(percent_decode("a%3Ab").unwrap(), "a:b");
        assert!(percent_decode("a%zz").is_err());
        assert!(percent_decode("a%").is_err());
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert!(wants_table(&h));
        h.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert!(!wants_table(&h));
        assert!(parse_body(b"a: [1", Some("application/apply-patch+yaml")).is_err());
        assert_eq!(
            parse_body(b"a: 1", Some("application/apply-patch+yaml")).unwrap(),
            json!({"a": 1})
        );
        assert!(parse_body(b"a: 1", Some("application/json")).is_err());
        assert!(parse_body(b"", None).is_err());
    }
}
