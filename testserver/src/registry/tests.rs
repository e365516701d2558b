use super::*;

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [
                {"name": "v1alpha1", "served": true, "storage": false},
                {"name": "v1", "served": true, "storage": true,
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}},
                 "additionalPrinterColumns": [{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}]}
            ]
        }
    })
}

#[test]
fn crd_registration_and_discovery() {
    let mut r = Registry::new();
    let types = Registry::types_from_crd(&crd()).unwrap();
    assert_eq!(types.len(), 2);
    r.register_crd("widgets.example.com", types).unwrap();
    let t = r.by_kind("example.com/v1", "Widget").unwrap();
    assert!(t.has_status && t.namespaced);
    assert_eq!(t.scale.as_ref().unwrap().spec_replicas_path, ".spec.size");
    assert_eq!(t.printer_columns.len(), 1);
    assert!(
        !r.by_resource("example.com", "v1alpha1", "widgets")
            .unwrap()
            .has_status
    );
    let groups = r.api_group_list();
    let g = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "example.com")
        .unwrap();
    assert_eq!(g["preferredVersion"]["version"], "v1");
    let list = r.api_resource_list("example.com", "v1").unwrap();
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    assert_eq!(names, ["widgets", "widgets/status", "widgets/scale"]);
    assert_eq!(
        r.unregister_crd("widgets.example.com"),
        vec![("example.com".to_string(), "widgets".to_string())]
    );
    assert!(r.by_kind("example.com/v1", "Widget").is_none());
    assert!(r.api_resource_list("example.com", "v1").is_none());
}

#[test]
fn crd_validation() {
    let mut bad = crd();
    bad["metadata"]["name"] = json!("wrong");
    assert_eq!(Registry::types_from_crd(&bad).unwrap_err().code, 422);
    let mut bad = crd();
    bad["spec"]["versions"] = json!([]);
    assert!(Registry::types_from_crd(&bad).is_err());
}

#[test]
fn builtins_discovery() {
    let r = Registry::new();
    let core = r.api_resource_list("", "v1").unwrap();
    let pods = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "pods")
        .unwrap();
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(pods["categories"], json!(["all"]));
    assert!(
        core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "pods/status")
    );
    let apps = r.api_resource_list("apps", "v1").unwrap();
    assert!(
        apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "deployments/scale")
    );
    let pod_subs: Vec<&str> = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["name"].as_str())
        .filter(|n| n.starts_with("pods/"))
        .collect();
    assert_eq!(
        pod_subs,
        [
            "pods/status",
            "pods/eviction",
            "pods/exec",
            "pods/log",
            "pods/resize"
        ]
    );
    let policy = r.api_resource_list("policy", "v1").unwrap();
    assert_eq!(policy["resources"][0]["name"], "poddisruptionbudgets");
    assert_eq!(policy["resources"][0]["shortNames"], json!(["pdb"]));
    assert_eq!(policy["resources"][1]["name"], "poddisruptionbudgets/status");
    let hpa = &r.api_resource_list("autoscaling", "v2").unwrap()["resources"];
    assert_eq!(hpa[0]["kind"], "HorizontalPodAutoscaler");
    assert_eq!(hpa[0]["shortNames"], json!(["hpa"]));
    assert_eq!(hpa[0]["categories"], json!(["all"]));
    assert_eq!(hpa[1]["name"], "horizontalpodautoscalers/status");
    assert_eq!(
        r.api_group("autoscaling").unwrap()["preferredVersion"]["version"],
        "v2"
    );
    assert!(r.by_kind("v1", "Pod").is_some());
    assert!(r.by_kind("apps/v1", "Deployment").is_some());
    assert!(version_priority("v1") > version_priority("v2beta1"));
    assert!(version_priority("v1beta2") > version_priority("v1beta1"));
    assert!(version_priority("v1alpha1") > version_priority("foo"));
}
