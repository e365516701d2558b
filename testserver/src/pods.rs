//! Pod subresources besides `status` and `resize` (see [`crate::resize`]): `log`, `eviction` (see
//! [`crate::eviction`]) and `exec` (see [`crate::exec`]), and the state behind them that belongs to no
//! object: container logs, the exec handler and the `resize` switch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::response::Response;
use serde_json::Value;

use crate::error::ApiError;
use crate::exec::ExecHandler;
use crate::http::{self, Shared};
use crate::store::Store;

/// (namespace, pod, container, previous).
type LogKey = (String, String, String, bool);

/// Container logs, the exec handler and the `resize` switch.
#[derive(Default)]
pub struct PodExtras {
    logs: Mutex<HashMap<LogKey, String>>,
    exec: Mutex<Option<ExecHandler>>,
    resize_disabled: AtomicBool,
}

impl PodExtras {
    /// Set (replace) the log of a container (`previous`: of its previous, terminated instance).
    pub fn set_log(&self, namespace: &str, pod: &str, container: &str, previous: bool, text: &str) {
        self.logs.lock().unwrap_or_else(PoisonError::into_inner).insert(
            (namespace.into(), pod.into(), container.into(), previous),
            text.into(),
        );
    }

    fn log(&self, namespace: &str, pod: &str, container: &str, previous: bool) -> Option<String> {
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(namespace.into(), pod.into(), container.into(), previous))
            .cloned()
    }

    /// Install (Some) or remove (None) the exec handler.
    pub fn set_exec_handler(&self, handler: Option<ExecHandler>) {
        *self.exec.lock().unwrap_or_else(PoisonError::into_inner) = handler;
    }

    /// The exec handler, if any.
    pub fn exec_handler(&self) -> Option<ExecHandler> {
        self.exec.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Answer 404 for `pods/resize` from now on, and leave it out of discovery.
    pub fn disable_resize(&self) {
        self.resize_disabled.store(true, Ordering::SeqCst);
    }

    /// Whether `pods/resize` is served.
    pub fn resize_enabled(&self) -> bool {
        !self.resize_disabled.load(Ordering::SeqCst)
    }
}

/// Drop `pods/resize` from an `APIResourceList`.
pub fn hide_resize(list: &mut Value) {
    if let Some(resources) = list.get_mut("resources").and_then(Value::as_array_mut) {
        resources.retain(|r| r.get("name").and_then(Value::as_str) != Some("pods/resize"));
    }
}

/// Names of all containers of a pod in the API server's order: init containers, containers, ephemeral
/// containers.
fn container_names(pod: &Value) -> Vec<&str> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|f| pod.get("spec").and_then(|s| s.get(*f)).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect()
}

/// The container a `log` or `exec` request is for, like the API server's `validateContainer`: the one
/// named (400 if the pod has none of that name), else the pod's only container (400 if it has none or
/// several).
pub fn pick_container(pod: &Value, name: &str, requested: Option<&str>) -> Result<String, ApiError> {
    if let Some(c) = requested.filter(|c| !c.is_empty()) {
        return if container_names(pod).contains(&c) {
            Ok(c.to_string())
        } else {
            Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )))
        };
    }
    let regular: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    match regular.as_slice() {
        [one] => Ok((*one).to_string()),
        [] => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}"
        ))),
        _ => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            container_names(pod).join(" ")
        ))),
    }
}

/// A boolean query parameter, as Go's `strconv.ParseBool` reads it; absent is false.
pub fn bool_param(query: &HashMap<String, String>, name: &str) -> Result<bool, ApiError> {
    match query.get(name).map(String::as_str) {
        None | Some("") => Ok(false),
        Some(v) => {
            parse_bool(v).ok_or_else(|| ApiError::bad_request(format!("{name}: invalid boolean value {v:?}")))
        }
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn int_param(query: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    query
        .get(name)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("{name}: invalid integer value {v:?}")))
        })
        .transpose()
}

/// The last `n` lines of `text` (a final line without newline counts as a line).
fn tail(text: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut seen = 0;
    for (i, b) in body.bytes().enumerate().rev() {
        if b == b'\n' {
            seen += 1;
            if seen == n {
                return text.get(i + 1..).unwrap_or_default();
            }
        }
    }
    text
}

/// `GET .../pods/{name}/log`: what [`PodExtras::set_log`] set, with `tailLines` and `limitBytes`
/// (`timestamps`, `sinceSeconds`, `sinceTime` are ignored; `follow` returns what is there and ends).
fn logs(
    shared: &Shared,
    query: &HashMap<String, String>,
    ns: &str,
    name: &str,
) -> Result<Response, ApiError> {
    let tail_lines = int_param(query, "tailLines")?;
    let limit_bytes = int_param(query, "limitBytes")?;
    let mut errs = Vec::new();
    if let Some(t) = tail_lines.filter(|t| *t < 0) {
        errs.push(format!(
            "tailLines: Invalid value: {t}: must be greater than or equal to 0"
        ));
    }
    if let Some(l) = limit_bytes.filter(|l| *l < 1) {
        errs.push(format!("limitBytes: Invalid value: {l}: must be greater than 0"));
    }
    if !errs.is_empty() {
        let all = match errs.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        return Err(ApiError::invalid(format!(
            "PodLogOptions \"{name}\" is invalid: {all}"
        )));
    }
    let previous = bool_param(query, "previous")?;
    let pods = shared.store.resolve_kind("v1", "Pod")?;
    let pod = shared.store.get(&pods, Some(ns), name)?;
    let container = pick_container(&pod, name, query.get("container").map(String::as_str))?;
    let text = match shared.pods.log(ns, name, &container, previous) {
        Some(t) => t,
        None if previous => {
            return Err(ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )));
        }
        None => String::new(),
    };
    let mut out = tail(
        &text,
        tail_lines.map_or(usize::MAX, |t| usize::try_from(t).unwrap_or(0)),
    )
    .as_bytes()
    .to_vec();
    if let Some(limit) = limit_bytes.and_then(|l| usize::try_from(l).ok()) {
        out.truncate(limit);
    }
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(out))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Serve `sub` (`log`, `eviction` or `exec`) of pod `name` in `ns`.
pub async fn serve(
    shared: &Arc<Shared>,
    parts: Parts,
    body: Body,
    query: &HashMap<String, String>,
    ns: &str,
    name: &str,
    sub: &str,
) -> Result<Response, ApiError> {
    let not_allowed =
        || ApiError::method_not_allowed(format!("method {} is not supported on pods/{sub}", parts.method));
    match sub {
        "log" if parts.method == Method::GET => logs(shared, query, ns, name),
        "eviction" if parts.method == Method::POST => {
            let bytes = axum::body::to_bytes(body, http::MAX_BODY)
                .await
                .map_err(|e| ApiError::bad_request(format!("error reading request body: {e}")))?;
            let eviction = http::parse_body(&bytes, http::media_type(&parts.headers).as_deref())?;
            let dry_run = query.contains_key("dryRun")
                || eviction
                    .pointer("/deleteOptions/dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|d| !d.is_empty());
            let snapshot: Store;
            let store = if dry_run {
                snapshot = shared.store.snapshot();
                &snapshot
            } else {
                &shared.store
            };
            crate::eviction::evict(store, ns, name, &eviction)
        }
        "exec" => crate::exec::serve(shared, parts, ns, name).await,
        _ => Err(not_allowed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tails() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a\nb\nc\n", 5), "a\nb\nc\n");
        assert_eq!(tail("a\nb\n", 0), "");
        assert_eq!(tail("", 3), "");
    }

    #[test]
    fn containers_are_picked_like_the_api_server() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "a"}, {"name": "b"}]
        }});
        assert_eq!(pick_container(&pod, "p", Some("b")).unwrap(), "b");
        assert_eq!(pick_container(&pod, "p", Some("init")).unwrap(), "init");
        assert_eq!(
            pick_container(&pod, "p", None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [init a b]"
        );
        assert_eq!(
            pick_container(&pod, "p", Some("x")).unwrap_err().message,
            "container x is not valid for pod p"
        );
        let one = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(pick_container(&one, "p", Some("")).unwrap(), "only");
        assert_eq!(pick_container(&json!({}), "p", None).unwrap_err().code, 400);
    }
}
