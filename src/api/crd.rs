//! The CustomResourceDefinition as it is installed: the one derived from the types, with the
//! integer formats schemars writes for unsigned types (`uint32` for a `u32`), which Kubernetes does
//! not know and warns about at every install ("unrecognized format"), replaced by the ones it knows:
//! `int32` where every value fits, `int64` for `uint32`, none for `uint64`. The bounds (`minimum`,
//! `maximum`) stay as they were. Two of them: AppHealthPolicy's, and ClusterAppHealthPolicy's
//! (its spec cut down to what a cluster policy holds).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

use super::{AppHealthPolicy, ClusterAppHealthPolicy};

/// The AppHealthPolicy CRD: what `apphealth-operator crd` prints and the chart installs.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = AppHealthPolicy::crd();
    edit_schemas(&mut crd, known_formats);
    crd
}

/// The ClusterAppHealthPolicy CRD: an AppHealthPolicy's spec over a targetSelector (which it
/// requires, and no targetRef: a cluster policy names no one workload) and a namespaceSelector.
pub fn cluster_crd() -> CustomResourceDefinition {
    let mut crd = ClusterAppHealthPolicy::crd();
    edit_schemas(&mut crd, |schema| {
        selector_only(schema);
        known_formats(schema);
    });
    crd
}

/// Edits each version's schema as JSON: the typed schema's `format` sits at every depth of a
/// recursive structure.
fn edit_schemas(crd: &mut CustomResourceDefinition, edit: impl Fn(&mut Value)) {
    for version in &mut crd.spec.versions {
        let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        if let Ok(mut value) = serde_json::to_value(&*schema) {
            edit(&mut value);
            if let Ok(fixed) = serde_json::from_value(value) {
                *schema = fixed;
            }
        }
    }
}

/// The cluster policy's spec schema: targetSelector required, targetRef gone, and with it the rule
/// that one of the two is set; its targetSelector selects in every namespace selected.
fn selector_only(root: &mut Value) {
    let Some(spec) = root.pointer_mut("/properties/spec") else {
        return;
    };
    if let Some(properties) = spec.get_mut("properties").and_then(Value::as_object_mut) {
        properties.remove("targetRef");
        if let Some(Value::Object(selector)) = properties.get_mut("targetSelector") {
            selector.insert(
                "description".into(),
                Value::String(
                    "The workloads this policy judges and remediates, each on its own (its own \
                     verdict, ladder, history, cooldown and circuit breaker): those of the given \
                     kinds whose labels the selector matches, in every namespace the \
                     namespaceSelector selects. Workloads that start or stop matching are picked up \
                     or released within a probe period."
                        .into(),
                ),
            );
        }
    }
    if let Some(spec) = spec.as_object_mut() {
        spec.remove("x-kubernetes-validations");
        let required = spec.entry("required").or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(required) = required {
            if !required.iter().any(|r| r == "targetSelector") {
                required.push(Value::String("targetSelector".into()));
            }
        }
    }
}

/// The format Kubernetes knows for an integer format schemars writes, or None to drop it.
fn known_format(format: &str) -> Option<&str> {
    match format {
        "int8" | "int16" | "uint8" | "uint16" => Some("int32"),
        "uint32" | "uint" => Some("int64"),
        "uint64" | "uint128" | "int128" => None,
        other => Some(other),
    }
}

fn known_formats(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(format)) = map.get("format") {
                match known_format(format).map(str::to_owned) {
                    Some(known) => {
                        map.insert("format".into(), Value::String(known));
                    }
                    None => {
                        map.remove("format");
                    }
                }
            }
            map.values_mut().for_each(known_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(known_formats),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_formats_become_ones_kubernetes_knows() {
        let cases = [
            ("uint8", Some("int32")),
            ("int16", Some("int32")),
            ("uint32", Some("int64")),
            ("uint64", None),
            ("int32", Some("int32")),
            ("int64", Some("int64")),
            ("date-time", Some("date-time")),
        ];
        for (format, expected) in cases {
            assert_eq!(known_format(format), expected, "{format}");
        }
    }

    #[test]
    fn the_installed_crd_has_only_formats_kubernetes_knows() {
        let text = serde_json::to_string(&crd()).unwrap();
        let formats: std::collections::BTreeSet<&str> = text
            .split("\"format\":\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .collect();
        let known = [
            "int32",
            "int64",
            "float",
            "double",
            "byte",
            "date",
            "date-time",
            "duration",
            "password",
        ];
        assert!(!formats.is_empty());
        for f in &formats {
            assert!(known.contains(f), "unknown format {f:?} in {formats:?}");
        }
        // The bounds that the unsigned types carried are still there.
        assert!(text.contains("\"periodSeconds\":{\"default\":10,"), "{text:.300}");
    }

    #[test]
    fn the_cluster_crd_is_cluster_scoped_and_selects_only() {
        let cluster = serde_json::to_value(cluster_crd()).unwrap();
        assert_eq!(cluster["spec"]["scope"], "Cluster");
        assert_eq!(
            cluster["spec"]["names"]["shortNames"],
            serde_json::json!(["cahp"])
        );
        let spec = &cluster["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let properties = spec["properties"].as_object().unwrap();
        assert!(properties.contains_key("namespaceSelector"));
        assert!(properties.contains_key("probe") && properties.contains_key("remediation"));
        assert!(
            !properties.contains_key("targetRef"),
            "a cluster policy names no one workload"
        );
        let required: Vec<&str> = spec["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r.as_str())
            .collect();
        assert!(required.contains(&"targetSelector") && required.contains(&"probe"));
        assert!(spec.get("x-kubernetes-validations").is_none());
        // The namespaced CRD is untouched by it.
        let namespaced = serde_json::to_value(crd()).unwrap();
        assert_eq!(namespaced["spec"]["scope"], "Namespaced");
        assert!(
            namespaced["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
                ["properties"]
                .get("namespaceSelector")
                .is_none()
        );
    }
}
