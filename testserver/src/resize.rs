//! The pods `resize` subresource (in-place resize, Kubernetes 1.33): what a write through it keeps and
//! what it refuses, after the API server's `dropNonResizeUpdates` and `ValidatePodResize`.
//!
//! Of the written pod only `resources` and `resizePolicy` of each container and init container are kept;
//! every other change (metadata, other spec fields, status, image, ...) is dropped silently, as the API
//! server does. Refused with 422 Invalid: adding, removing, renaming or reordering containers; removing a
//! request or limit; changing anything but cpu and memory (including `resizePolicy`); a cpu or memory
//! request above its limit; changing the resources of a non-sidecar init container; a change of the
//! pod's QoS class.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The container lists that may be resized, in the order the API server checks them.
const LISTS: [&str; 2] = ["containers", "initContainers"];
/// The resources that may change.
const RESIZABLE: [&str; 2] = ["cpu", "memory"];

fn containers<'a>(pod: &'a Value, field: &str) -> &'a [Value] {
    pod.get("spec")
        .and_then(|s| s.get(field))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn section<'a>(container: &'a Value, section: &str) -> Option<&'a Map<String, Value>> {
    container
        .get("resources")
        .and_then(|r| r.get(section))
        .and_then(Value::as_object)
}

/// A quantity (`100m`, `1.5Gi`, `2e3`, ...) in nano-units; None if it does not parse.
pub fn parse_quantity(s: &str) -> Option<i128> {
    let s = s.trim();
    let (negative, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(end);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let digits: i128 = format!("{int}{frac}").parse().ok()?;
    let pow10 = |e: u32| 10i128.checked_pow(e);
    let multiplier: i128 = match suffix {
        "n" => 1,
        "u" => 1_000,
        "m" => 1_000_000,
        "" => 1_000_000_000,
        "k" => pow10(12)?,
        "M" => pow10(15)?,
        "G" => pow10(18)?,
        "T" => pow10(21)?,
        "P" => pow10(24)?,
        "E" => pow10(27)?,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
            let steps = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
                .iter()
                .position(|x| *x == suffix)
                .map_or(0, |p| p as u32 + 1);
            (1i128 << (10 * steps)).checked_mul(1_000_000_000)?
        }
        exp => {
            let e: i32 = exp.strip_prefix(['e', 'E'])?.parse().ok()?;
            pow10(u32::try_from(e.checked_add(9)?).ok()?)?
        }
    };
    let scale = pow10(u32::try_from(frac.len()).ok()?)?;
    let value = digits.checked_mul(multiplier)? / scale;
    Some(if negative { -value } else { value })
}

/// Two resource values are the same quantity (or, unparsable, the same JSON).
fn same_quantity(a: &Value, b: &Value) -> bool {
    match (
        a.as_str().and_then(parse_quantity),
        b.as_str().and_then(parse_quantity),
    ) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A JSON value with null, empty objects and empty arrays dropped (Go's semantic equality treats them as
/// absent).
fn normalized(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(m) => {
            let m: Map<String, Value> = m
                .iter()
                .filter_map(|(k, v)| normalized(v).map(|v| (k.clone(), v)))
                .collect();
            (!m.is_empty()).then_some(Value::Object(m))
        }
        Value::Array(a) if a.is_empty() => None,
        other => Some(other.clone()),
    }
}

/// What resize may not change in a container: its resources without cpu and memory requests and limits
/// (other quantities compared by value), and its `resizePolicy`.
fn fixed_part(container: &Value) -> (Option<Value>, Option<Value>) {
    let mut resources = container.get("resources").cloned().unwrap_or(Value::Null);
    if let Value::Object(r) = &mut resources {
        for s in ["requests", "limits"] {
            if let Some(Value::Object(m)) = r.get_mut(s) {
                for name in RESIZABLE {
                    m.remove(name);
                }
                for q in m.values_mut() {
                    if let Some(n) = q.as_str().and_then(parse_quantity) {
                        *q = Value::String(n.to_string());
                    }
                }
            }
        }
    }
    (
        normalized(&resources),
        container.get("resizePolicy").and_then(normalized),
    )
}

/// The QoS class of a pod, like `GetPodQOS` (with requests defaulting to limits, as the API server's
/// defaulting would have set them).
pub fn qos_class(pod: &Value) -> &'static str {
    let mut requests: [i128; 2] = [0, 0];
    let mut limits: [i128; 2] = [0, 0];
    let mut guaranteed = true;
    for field in ["initContainers", "containers"] {
        for c in containers(pod, field) {
            for (i, name) in RESIZABLE.iter().enumerate() {
                let get = |s: &str| {
                    section(c, s)
                        .and_then(|m| m.get(*name))
                        .and_then(Value::as_str)
                        .and_then(parse_quantity)
                        .filter(|q| *q != 0)
                };
                let limit = get("limits");
                if let Some(r) = get("requests").or(limit) {
                    requests[i] += r;
                }
                match limit {
                    Some(l) => limits[i] += l,
                    None => guaranteed = false,
                }
            }
        }
    }
    if requests == [0, 0] && limits == [0, 0] {
        "BestEffort"
    } else if guaranteed && requests == limits {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// A `details.causes` entry (reason, field, message) for an error worded `field: Reason...`.
fn cause(err: &str) -> (&'static str, &str, &str) {
    let (field, message) = err.split_once(": ").unwrap_or(("", err));
    let reason = match message.split(':').next() {
        Some("Forbidden") => "FieldValueForbidden",
        Some("Required value") => "FieldValueRequired",
        _ => "FieldValueInvalid",
    };
    (reason, field, message)
}

/// The pod a resize write leaves: `old` (the stored pod) with the container `resources` and
/// `resizePolicy` of `candidate` (the patched or PUT pod), or 422 Invalid.
pub fn apply(old: &Value, candidate: &Value, name: &str) -> Result<Value, ApiError> {
    // As the API server: one cause per error, and the pod named in `details` (the referee found
    // them missing).
    let invalid =
        |errs: Vec<String>| ApiError::invalid_fields("Pod", (name, "", "Pod"), errs.iter().map(|e| cause(e)));
    let errs = shape_errors(old, candidate);
    if !errs.is_empty() {
        return Err(invalid(errs));
    }
    let mut new = with_resources(old, candidate);
    let errs = resize_errors(old, &new);
    if !errs.is_empty() {
        return Err(invalid(errs));
    }
    keep_equal_quantities(old, &mut new);
    Ok(new)
}

/// Containers added, removed, renamed or reordered: a resize changes none of that.
fn shape_errors(old: &Value, candidate: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    for field in LISTS {
        let (o, n) = (containers(old, field), containers(candidate, field));
        if o.len() != n.len() {
            errs.push(format!(
                "spec.{field}: Forbidden: {field} may not be added or removed on resize"
            ));
            continue;
        }
        for (i, (o, n)) in o.iter().zip(n).enumerate() {
            if o.get("name") != n.get("name") {
                errs.push(format!(
                    "spec.{field}[{i}].name: Forbidden: {field} may not be renamed or reordered on resize"
                ));
            }
        }
    }
    errs
}

/// `old` with the containers' `resources` and `resizePolicy` of `candidate`.
fn with_resources(old: &Value, candidate: &Value) -> Value {
    let mut new = old.clone();
    for field in LISTS {
        let from = containers(candidate, field);
        if let Some(list) = new
            .get_mut("spec")
            .and_then(|s| s.get_mut(field))
            .and_then(Value::as_array_mut)
        {
            for (c, n) in list.iter_mut().zip(from) {
                if let Value::Object(m) = c {
                    for key in ["resources", "resizePolicy"] {
                        match n.get(key).filter(|v| !v.is_null()) {
                            Some(v) => m.insert(key.into(), v.clone()),
                            None => m.remove(key),
                        };
                    }
                }
            }
        }
    }
    new
}

/// What the API server refuses in a resize of `old` to `new`: a QoS class change, resources of
/// non-sidecar init containers, removed requests or limits, requests above limits, and changes
/// to anything but cpu and memory.
fn resize_errors(old: &Value, new: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let old_qos = old
        .pointer("/status/qosClass")
        .and_then(Value::as_str)
        .unwrap_or_else(|| qos_class(old));
    let new_qos = qos_class(new);
    if old_qos != new_qos {
        errs.push(format!(
            "spec: Invalid value: \"{new_qos}\": Pod QOS Class may not change as a result of resizing"
        ));
    }
    let mut only_cpu_memory = true;
    for field in LISTS {
        for (i, (o, n)) in containers(old, field)
            .iter()
            .zip(containers(new, field))
            .enumerate()
        {
            let path = format!("spec.{field}[{i}]");
            if field == "initContainers" && o.get("restartPolicy").and_then(Value::as_str) != Some("Always") {
                if normalized(o) != normalized(n) {
                    errs.push(format!(
                        "{path}.resources: Forbidden: resources for non-sidecar init containers are immutable"
                    ));
                }
                continue;
            }
            for s in ["requests", "limits"] {
                let now = section(n, s);
                if section(o, s)
                    .is_some_and(|before| before.keys().any(|k| now.is_none_or(|m| !m.contains_key(k))))
                {
                    errs.push(format!(
                        "{path}.resources.{s}: Forbidden: resource {s} cannot be removed"
                    ));
                }
            }
            only_cpu_memory &= fixed_part(o) == fixed_part(n);
            for res in RESIZABLE {
                let get = |s: &str| section(n, s).and_then(|m| m.get(res)).and_then(Value::as_str);
                if let (Some(req), Some(lim)) = (get("requests"), get("limits")) {
                    if let (Some(r), Some(l)) = (parse_quantity(req), parse_quantity(lim)) {
                        if r > l {
                            errs.push(format!(
                                "{path}.resources.requests: Invalid value: \"{req}\": must be less than or equal to {res} limit of {lim}"
                            ));
                        }
                    }
                }
            }
        }
    }
    if !only_cpu_memory {
        errs.push("spec: Forbidden: only cpu and memory resources are mutable".into());
    }
    errs
}

/// Equal quantities written differently ("1" and "1000m") are no change: such containers keep
/// the stored `resources`.
fn keep_equal_quantities(old: &Value, new: &mut Value) {
    for field in LISTS {
        for (i, o) in containers(old, field).iter().enumerate() {
            let unchanged = containers(new, field).get(i).is_some_and(|n| {
                ["requests", "limits"].iter().all(|s| {
                    let (a, b) = (section(o, s), section(n, s));
                    a.map(Map::len) == b.map(Map::len)
                        && a.zip(b).is_none_or(|(a, b)| {
                            a.iter()
                                .all(|(k, v)| b.get(k).is_some_and(|w| same_quantity(v, w)))
                        })
                })
            });
            if unchanged {
                if let (Some(slot), Some(before)) = (
                    new.get_mut("spec")
                        .and_then(|s| s.get_mut(field))
                        .and_then(|l| l.get_mut(i))
                        .and_then(Value::as_object_mut),
                    o.get("resources"),
                ) {
                    slot.insert("resources".into(), before.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(resources: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "1"}},
            "spec": {"containers": [{"name": "c", "image": "app:1", "resources": resources}]},
            "status": {"phase": "Running"}
        })
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("100m"), Some(100_000_000));
        assert_eq!(parse_quantity("1"), parse_quantity("1000m"));
        assert_eq!(parse_quantity("1Gi"), parse_quantity("1073741824"));
        assert_eq!(parse_quantity("1.5Gi"), parse_quantity("1536Mi"));
        assert_eq!(parse_quantity("2e3"), parse_quantity("2k"));
        assert_eq!(parse_quantity("-1"), Some(-1_000_000_000));
        for bad in ["", "m", "1x", "1e", "abc"] {
            assert_eq!(parse_quantity(bad), None, "{bad}");
        }
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(qos_class(&pod(json!({"requests": {"cpu": "100m"}}))), "Burstable");
        let g = json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m"}});
        assert_eq!(qos_class(&pod(g)), "Guaranteed");
        let b = json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}});
        assert_eq!(qos_class(&pod(b)), "Burstable");
    }

    #[test]
    fn keeps_only_resources() {
        let old = pod(json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "200m"}}));
        let mut cand = old.clone();
        cand["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("150m");
        cand["spec"]["containers"][0]["image"] = json!("app:2");
        cand["metadata"]["labels"]["a"] = json!("2");
        cand["spec"]["nodeName"] = json!("n1");
        let new = apply(&old, &cand, "p").unwrap();
        assert_eq!(
            new["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "150m"
        );
        assert_eq!(new["spec"]["containers"][0]["image"], "app:1");
        assert_eq!(new["metadata"]["labels"]["a"], "1");
        assert!(new["spec"].get("nodeName").is_none());
        // The same quantity written differently changes nothing.
        let mut same = old.clone();
        same["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!("0.2");
        assert_eq!(apply(&old, &same, "p").unwrap(), old);
    }

    #[test]
    fn refusals() {
        let old = pod(json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}));
        let refused = |f: &dyn Fn(&mut Value)| {
            let mut cand = old.clone();
            f(&mut cand);
            let e = apply(&old, &cand, "p").unwrap_err();
            assert_eq!(e.code, 422);
            e.message
        };
        let m = refused(&|c| {
            c["spec"]["containers"][0]["resources"]["limits"]["ephemeral-storage"] = json!("1Gi")
        });
        assert_eq!(
            m,
            "Pod \"p\" is invalid: spec: Forbidden: only cpu and memory resources are mutable"
        );
        let m = refused(&|c| c["spec"]["containers"][0]["name"] = json!("d"));
        assert!(
            m.contains(
                "spec.containers[0].name: Forbidden: containers may not be renamed or reordered on resize"
            ),
            "{m}"
        );
        let m = refused(&|c| c["spec"]["containers"] = json!([]));
        assert!(m.contains("may not be added or removed"), "{m}");
        let m = refused(&|c| {
            c["spec"]["containers"][0]["resources"]["requests"]
                .as_object_mut()
                .unwrap()
                .remove("memory");
        });
        assert!(
            m.contains(
                "spec.containers[0].resources.requests: Forbidden: resource requests cannot be removed"
            ),
            "{m}"
        );
        let m = refused(&|c| c["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("300m"));
        assert!(
            m.contains("Invalid value: \"300m\": must be less than or equal to cpu limit of 200m"),
            "{m}"
        );
        let m = refused(&|c| {
            c["spec"]["containers"][0]["resizePolicy"] =
                json!([{"resourceName": "cpu", "restartPolicy": "RestartContainer"}])
        });
        assert!(m.contains("only cpu and memory resources are mutable"), "{m}");
        // Burstable -> Guaranteed.
        let m = refused(&|c| {
            c["spec"]["containers"][0]["resources"] =
                json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
        });
        assert!(
            m.contains("Pod QOS Class may not change as a result of resizing"),
            "{m}"
        );
    }
}
