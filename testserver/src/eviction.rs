//! `POST /api/v1/namespaces/{ns}/pods/{name}/eviction`, like the API server's eviction subresource.
//!
//! There is no disruption controller, so the budget of a PodDisruptionBudget is computed on the fly from
//! the pods its selector matches in its namespace (`expected`) and those of them with condition
//! `Ready=True` (`healthy`); `desiredHealthy` comes from `minAvailable` (an int, or a percentage of
//! `expected` rounded up) or `expected - maxUnavailable` (int or percentage rounded up); `disruptionsAllowed`
//! is `healthy - desiredHealthy` (at least 0). The controller would take `expected` from the scale of the
//! pods' controller for percentages and `maxUnavailable`; here it is always the number of matching pods.

use axum::response::Response;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::http::json_response;
use crate::selector::LabelSelector;
use crate::store::{Filter, Store};

/// The message of a refused eviction.
pub const REFUSED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";
/// The message when several budgets select the pod.
pub const MULTIPLE: &str =
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

/// Condition `Ready` is `True` (`podutil.IsPodReady`).
fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| str_at(c, "/type") == Some("Ready") && str_at(c, "/status") == Some("True"))
        })
}

/// An int-or-string scaled against `total` (`intstr.GetScaledValueFromIntOrPercent`, rounding up).
fn scaled(v: &Value, total: i64, field: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::internal(format!("invalid value for IntOrString {field}: {v}"));
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(bad),
        Value::String(s) => {
            let p: i64 = s.strip_suffix('%').and_then(|p| p.parse().ok()).ok_or_else(bad)?;
            Ok((p * total + 99).div_euclid(100))
        }
        _ => Err(bad()),
    }
}

/// (desiredHealthy, currentHealthy) of a budget over the pods of its namespace.
fn budget(pdb: &Value, selector: &LabelSelector, pods: &[Value]) -> Result<(i64, i64), ApiError> {
    let matching: Vec<&Value> = pods.iter().filter(|p| selector.matches(p)).collect();
    let expected = i64::try_from(matching.len()).unwrap_or(i64::MAX);
    let healthy = matching
        .iter()
        .filter(|p| is_ready(p) && p.pointer("/metadata/deletionTimestamp").is_none())
        .count();
    let healthy = i64::try_from(healthy).unwrap_or(i64::MAX);
    let desired = if let Some(max) = pdb.pointer("/spec/maxUnavailable").filter(|v| !v.is_null()) {
        (expected - scaled(max, expected, "maxUnavailable")?).max(0)
    } else if let Some(min) = pdb.pointer("/spec/minAvailable").filter(|v| !v.is_null()) {
        scaled(min, expected, "minAvailable")?
    } else {
        0
    };
    Ok((desired, healthy))
}

fn status(code: u16, body: Value) -> Response {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}});
    if let (Value::Object(m), Value::Object(b)) = (&mut s, body) {
        m.extend(b);
        m.insert("code".into(), json!(code));
    }
    json_response(code, &s)
}

fn too_many_requests(message: String, retry_after: Option<u32>) -> Response {
    let mut details = json!({"causes": [{"reason": "DisruptionBudget", "message": message}]});
    if let (Some(s), Value::Object(m)) = (retry_after, &mut details) {
        m.insert("retryAfterSeconds".into(), json!(s));
    }
    status(
        429,
        json!({"status": "Failure", "message": REFUSED, "reason": "TooManyRequests", "details": details}),
    )
}

/// The check of `deleteOptions.preconditions` (and of the resourceVersion the eviction read, if any).
fn preconditions(
    eviction: &Value,
    read_version: Option<String>,
    name: &str,
) -> impl FnOnce(&Value) -> Result<(), ApiError> {
    let uid = str_at(eviction, "/deleteOptions/preconditions/uid").map(str::to_string);
    let rv = str_at(eviction, "/deleteOptions/preconditions/resourceVersion")
        .map(str::to_string)
        .or(read_version);
    let name = name.to_string();
    move |pod: &Value| {
        let fail = |what: &str, want: &str, have: &str| {
            Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on pods \"{name}\": Precondition failed: {what} in precondition: \
                     {want}, {what} in object meta: {have}"
                ),
            ))
        };
        let have_uid = str_at(pod, "/metadata/uid").unwrap_or_default();
        if let Some(u) = uid.filter(|u| u != have_uid) {
            return fail("UID", &u, have_uid);
        }
        let have_rv = str_at(pod, "/metadata/resourceVersion").unwrap_or_default();
        if let Some(r) = rv.filter(|r| r != have_rv) {
            return fail("ResourceVersion", &r, have_rv);
        }
        Ok(())
    }
}

/// Evict pod `name` in `ns` (the Eviction `eviction` was posted): 201 with a Success `Status` after
/// deleting it, or the API server's refusal.
pub fn evict(store: &Store, ns: &str, name: &str, eviction: &Value) -> Result<Response, ApiError> {
    if str_at(eviction, "/metadata/name") != Some(name) {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let pods = store.resolve_kind("v1", "Pod")?;
    let pod = store.get(&pods, Some(ns), name)?;
    let success = || status(201, json!({"status": "Success"}));
    let user_rv_set = str_at(eviction, "/deleteOptions/preconditions/resourceVersion").is_some();
    // Terminal, pending or terminating pods are deleted without looking at budgets (`canIgnorePDB`).
    let phase = str_at(&pod, "/status/phase").unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed" | "Pending")
        || pod.pointer("/metadata/deletionTimestamp").is_some()
    {
        let rv = (!matches!(phase, "Succeeded" | "Failed")).then(|| {
            str_at(&pod, "/metadata/resourceVersion")
                .unwrap_or_default()
                .to_string()
        });
        store.delete_if(&pods, Some(ns), name, preconditions(eviction, rv, name))?;
        return Ok(success());
    }
    let pdb_type = store.resolve_kind("policy/v1", "PodDisruptionBudget")?;
    let in_ns = Filter {
        namespace: Some(ns.to_string()),
        ..Default::default()
    };
    let mut budgets = Vec::new();
    for pdb in store.list(&pdb_type, &in_ns).0 {
        // An invalid, absent or empty selector matches nothing here.
        let Some(Ok(selector)) = pdb.pointer("/spec/selector").map(LabelSelector::from_object) else {
            continue;
        };
        if !selector.is_empty() && selector.matches(&pod) {
            budgets.push((pdb, selector));
        }
    }
    let mut read_version = None;
    match budgets.as_slice() {
        [] => {}
        [(pdb, selector)] => {
            let pdb_name = str_at(pdb, "/metadata/name").unwrap_or_default();
            let (desired, healthy) = budget(pdb, selector, &store.list(&pods, &in_ns).0)?;
            let always_allow = str_at(pdb, "/spec/unhealthyPodEvictionPolicy") == Some("AlwaysAllow");
            if !is_ready(&pod) && (always_allow || (healthy >= desired && desired > 0)) {
                // Deleted only if the pod has not changed (become ready) since.
                read_version = Some(
                    str_at(&pod, "/metadata/resourceVersion")
                        .unwrap_or_default()
                        .to_string(),
                );
            } else if healthy - desired <= 0 {
                return Ok(too_many_requests(
                    format!(
                        "The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently"
                    ),
                    None,
                ));
            }
            if read_version.is_some() && !user_rv_set {
                let check = preconditions(eviction, read_version, name);
                return match store.delete_if(&pods, Some(ns), name, check) {
                    Ok(_) => Ok(success()),
                    Err(e) if e.code == 409 => Ok(too_many_requests(
                        format!("The disruption budget {pdb_name} is still being processed by the server."),
                        Some(10),
                    )),
                    Err(e) => Err(e),
                };
            }
        }
        _ => return Ok(status(500, json!({"status": "Failure", "message": MULTIPLE}))),
    }
    store.delete_if(&pods, Some(ns), name, preconditions(eviction, None, name))?;
    Ok(success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_like_the_disruption_controller() {
        let sel = LabelSelector::from_object(&json!({"matchLabels": {"app": "web"}})).unwrap();
        let pod = |ready: bool| {
            json!({"metadata": {"labels": {"app": "web"}},
                   "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
        };
        let pods = [
            pod(true),
            pod(true),
            pod(true),
            pod(false),
            json!({"metadata": {"labels": {"app": "db"}}}),
        ];
        let b = |spec: Value| budget(&json!({"spec": spec}), &sel, &pods).unwrap();
        assert_eq!(b(json!({"minAvailable": 2})), (2, 3));
        assert_eq!(b(json!({"minAvailable": "50%"})), (2, 3));
        assert_eq!(b(json!({"minAvailable": "51%"})), (3, 3));
        assert_eq!(b(json!({"maxUnavailable": 1})), (3, 3));
        assert_eq!(b(json!({"maxUnavailable": "30%"})), (2, 3));
        assert_eq!(b(json!({"maxUnavailable": 9})), (0, 3));
        assert_eq!(b(json!({})), (0, 3));
        assert!(budget(&json!({"spec": {"minAvailable": "x"}}), &sel, &pods).is_err());
    }
}
