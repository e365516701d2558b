//! What `kubectl` shows of the test server's Kubernetes semantics that the operator depends on:
//! server-side apply keeping a field another manager still applies, `generation` moving only with
//! the spec, watch bookmarks, and `410 Gone` for a resourceVersion older than the history.

use std::time::Duration;

use apphealth_testserver::TestServer;
use serde_json::Value;

use crate::kubectl::Scratch;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn config_map(data: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n  namespace: default\ndata: {data}\n"
    )
}

fn apply(scratch: &Scratch, manager: &str, manifest: &str) {
    let file = scratch.file(&format!("{manager}.yaml"), manifest);
    let file = file.to_str().unwrap();
    scratch.ok(&["apply", "--server-side", "--field-manager", manager, "-f", file]);
}

fn data(scratch: &Scratch) -> Value {
    let out = scratch.ok(&["get", "configmap", "shared", "-o", "jsonpath={.data}"]);
    if out.trim().is_empty() {
        return Value::Null;
    }
    serde_json::from_str(&out).unwrap()
}

#[test]
fn server_side_apply_keeps_a_field_another_manager_still_applies() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start()).expect("start test server");
    let scratch = Scratch::new(&server);
    apply(&scratch, "alpha", &config_map("{x: '1', z: '2'}"));
    apply(&scratch, "beta", &config_map("{z: '2'}"));
    // alpha stops applying z: beta still applies it, so it stays.
    apply(&scratch, "alpha", &config_map("{x: '1'}"));
    assert_eq!(data(&scratch), serde_json::json!({"x": "1", "z": "2"}));
    let out = scratch.ok(&[
        "get",
        "configmap",
        "shared",
        "--show-managed-fields",
        "-o",
        "json",
    ]);
    let cm: Value = serde_json::from_str(&out).unwrap();
    let owners: Vec<(&str, bool)> = cm["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let z = m["fieldsV1"]["f:data"]["f:z"].is_object();
            (m["manager"].as_str().unwrap(), z)
        })
        .collect();
    assert!(owners.contains(&("alpha", false)), "{owners:?}");
    assert!(owners.contains(&("beta", true)), "{owners:?}");
    // beta stops too: nobody applies z any more, and it goes.
    apply(&scratch, "beta", &config_map("{}"));
    assert_eq!(data(&scratch), serde_json::json!({"x": "1"}));
}

#[test]
fn generation_moves_with_the_spec_only() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start()).expect("start test server");
    let scratch = Scratch::new(&server);
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\n\
        spec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      \
        labels: {app: web}\n    spec:\n      containers:\n        - {name: web, image: 'example/web:1'}\n";
    let file = scratch.file("web.yaml", deployment);
    scratch.ok(&["apply", "--server-side", "-f", file.to_str().unwrap()]);
    let generation = || {
        scratch.ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.metadata.generation}",
        ])
    };
    assert_eq!(generation(), "1");
    scratch.ok(&["label", "deployment", "web", "team=shop"]);
    scratch.ok(&["annotate", "deployment", "web", "note=hello"]);
    assert_eq!(generation(), "1", "metadata changes leave generation alone");
    scratch.ok(&["scale", "deployment", "web", "--replicas", "3"]);
    assert_eq!(generation(), "2", "a spec change bumps it");
}

#[test]
fn raw_watches_show_bookmarks_and_410_gone() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start()).expect("start test server");
    server.set_bookmark_interval(Duration::from_millis(200));
    let scratch = Scratch::new(&server);
    apply(&scratch, "alpha", &config_map("{x: '1'}"));
    let rv = scratch.ok(&[
        "get",
        "configmap",
        "shared",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);

    let path = format!(
        "/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=true&timeoutSeconds=1&resourceVersion={rv}"
    );
    let out = scratch.ok(&["get", "--raw", &path]);
    assert!(out.contains(r#""type":"BOOKMARK""#), "{out}");

    apply(&scratch, "alpha", &config_map("{x: '2'}"));
    server.compact_history();
    let path = format!("/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1&resourceVersion={rv}");
    let out = scratch.ok(&["get", "--raw", &path]);
    assert!(out.contains(r#""type":"ERROR""#), "{out}");
    assert!(out.contains(r#""code":410"#) && out.contains("Expired"), "{out}");
}

const CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/apphealthpolicies.apphealth.io.yaml"
);

fn policy(extra: &str, period: u32) -> String {
    format!(
        "apiVersion: apphealth.io/v1alpha1\nkind: AppHealthPolicy\nmetadata:\n  name: web\n  namespace: default\n\
         spec:\n  targetRef: {{kind: Deployment, name: web}}\n{extra}  probe:\n    http: {{port: 8080, path: /healthz}}\n    \
         periodSeconds: {period}\n    via: Service\n  triggers:\n    - consecutiveFailures: {{threshold: 3}}\n"
    )
}

fn stderr_of(scratch: &Scratch, args: &[&str]) -> String {
    let out = scratch.run(args);
    assert!(!out.status.success(), "kubectl {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn kubectl_validates_with_the_servers_openapi_and_explains_the_crd() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start()).expect("start test server");
    let scratch = Scratch::new(&server);
    // Default validation: kubectl reads /openapi/v3, sees that the server validates fields, and
    // sends fieldValidation=Strict.
    scratch.ok(&["apply", "-f", CRD]);
    let valid = scratch.file("valid.yaml", &policy("", 10).replace("    via: Service\n", ""));
    scratch.ok(&["apply", "-f", valid.to_str().unwrap()]);

    let unknown = scratch.file(
        "unknown.yaml",
        &policy("  colour: red\n", 10).replace("    via: Service\n", ""),
    );
    let err = stderr_of(&scratch, &["apply", "-f", unknown.to_str().unwrap()]);
    assert!(
        err.contains(r#"strict decoding error: unknown field "spec.colour""#),
        "{err}"
    );
    let out = scratch.run(&["apply", "--validate=warn", "-f", unknown.to_str().unwrap()]);
    assert!(out.status.success());
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(
        warned.contains(r#"Warning: unknown field "spec.colour""#),
        "{warned}"
    );
    let spec = scratch.ok(&["get", "apphealthpolicy", "web", "-o", "jsonpath={.spec}"]);
    assert!(!spec.contains("colour"), "pruned: {spec}");

    // The schema's bounds and its CEL rules, worded as the API server words them.
    let zero = scratch.file("zero.yaml", &policy("", 0).replace("    via: Service\n", ""));
    let err = stderr_of(&scratch, &["apply", "-f", zero.to_str().unwrap()]);
    // A bound broken beside a CEL rule (timeoutSeconds ≤ periodSeconds): both are reported, as a
    // list, as kube-apiserver does (refereed: tests/cluster/referee.rs).
    assert!(err.contains(r#"The AppHealthPolicy "web" is invalid"#), "{err}");
    assert!(
        err.contains("spec.probe.periodSeconds: Invalid value: 0"),
        "{err}"
    );
    assert!(
        err.contains("timeoutSeconds must be at most probe.periodSeconds"),
        "{err}"
    );
    let no_service = scratch.file("cel.yaml", &policy("", 10));
    let err = stderr_of(&scratch, &["apply", "-f", no_service.to_str().unwrap()]);
    assert!(
        err.contains("probe.service is required when probe.via is Service"),
        "{err}"
    );

    // kubectl explain reads the CRD's schema from /openapi/v3.
    let explained = scratch.ok(&["explain", "apphealthpolicies.spec.probe"]);
    assert!(explained.contains("KIND:       AppHealthPolicy"), "{explained}");
    assert!(explained.contains("periodSeconds"), "{explained}");
    // The v2 form comes from /openapi/v2 in protobuf. As on a cluster, values that may be null
    // have no type there.
    let v2 = scratch.ok(&[
        "explain",
        "apphealthpolicies.spec.probe",
        "--output=plaintext-openapiv2",
    ]);
    assert!(v2.contains("RESOURCE: probe <Object>"), "{v2}");
    assert!(v2.contains("periodSeconds\t<integer>"), "{v2}");
    assert!(v2.contains("http\t<>"), "{v2}");
}
