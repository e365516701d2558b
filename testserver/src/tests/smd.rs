//! Server-side apply compared with Kubernetes' own implementation: the same table of apply sequences
//! runs through `smd-apply` (tools/smd: the structured-merge-diff library the API server uses, built
//! by `make tools` into target/tools/bin) and through this server over HTTP; after every step the
//! object, each applier's `fieldsV1` and any conflict (409 message and causes) must be the same.
//!
//! `smd-apply` must be on PATH (`make test` puts target/tools/bin there). Without it the test fails,
//! unless `APPHEALTH_SKIP_SMD=1` allows skipping it (then it says so loudly).
//!
//! Not compared: the order of list-map elements. Debian's library (4.1.2) appends new elements after
//! the live ones ("ordering is totally wrong", says its source), which later releases changed; both
//! sides are sorted by key before comparing.

use std::io::Write;
use std::process::{Command, Stdio};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Map, Value, json};

use super::client;
use crate::TestServer;

const TOOL: &str = "smd-apply";
const SKIP_VAR: &str = "APPHEALTH_SKIP_SMD";
const API_VERSION: &str = "example.com/v1";

/// The `Gadget` type in structured-merge-diff's schema language: maps, a granular map of strings,
/// an atomic list and a list-map keyed by `type`, like the CRD below.
const SCHEMA: &str = r#"
types:
- name: gadget
  map:
    fields:
    - {name: "apiVersion", type: {scalar: string}}
    - {name: "kind", type: {scalar: string}}
    - {name: "metadata", type: {namedType: meta}}
    - {name: "spec", type: {namedType: spec}}
- name: meta
  map:
    fields:
    - {name: "name", type: {scalar: string}}
    - {name: "labels", type: {map: {elementType: {scalar: string}}}}
- name: spec
  map:
    fields:
    - {name: "x", type: {scalar: string}}
    - {name: "size", type: {scalar: numeric}}
    - {name: "settings", type: {map: {elementType: {scalar: string}}}}
    - {name: "args", type: {list: {elementType: {scalar: string}, elementRelationship: atomic}}}
    - name: "conditions"
      type:
        list:
          elementType: {namedType: condition}
          elementRelationship: associative
          keys: ["type"]
- name: condition
  map:
    fields:
    - {name: "type", type: {scalar: string}}
    - {name: "status", type: {scalar: string}}
    - {name: "reason", type: {scalar: string}}
"#;

fn gadget_crd() -> Value {
    let strings = json!({"type": "object", "additionalProperties": {"type": "string"}});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                    "type": "object",
                    "properties": {
                        "x": {"type": "string"},
                        "size": {"type": "integer"},
                        "settings": strings,
                        "args": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "atomic"},
                        "conditions": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["type"],
                            "items": {"type": "object", "required": ["type"], "properties": {
                                "type": {"type": "string"},
                                "status": {"type": "string"},
                                "reason": {"type": "string"}
                            }}
                        }
                    }
                }}}}
            }]
        }
    })
}

/// One apply: `manager` applies `spec` (and `labels`, when given), with `force` or not.
fn step(manager: &str, force: bool, labels: Option<Value>, spec: Value) -> Value {
    let mut metadata = json!({});
    if let Some(labels) = labels {
        metadata["labels"] = labels;
    }
    json!({"manager": manager, "force": force, "object": {
        "apiVersion": API_VERSION, "kind": "Gadget", "metadata": metadata, "spec": spec
    }})
}

fn apply(manager: &str, spec: Value) -> Value {
    step(manager, false, None, spec)
}

fn force(manager: &str, spec: Value) -> Value {
    step(manager, true, None, spec)
}

/// A write that is not an apply (a PUT of the whole object) by `manager`: it takes over every field
/// it changes, adds or removes (appliers lose them; the test server does not record what the
/// update itself then owns, so no step applies over an update's value).
fn update(manager: &str, spec: Value) -> Value {
    let mut s = step(manager, false, None, spec);
    s["operation"] = json!("update");
    s
}

/// The table: (name, steps). Every object gets `metadata.name` = the case's name.
fn cases() -> Vec<(&'static str, Vec<Value>)> {
    let cond = |t: &str, s: &str| json!({"type": t, "status": s});
    vec![
        (
            "overlapping-managers",
            vec![
                step(
                    "a",
                    false,
                    Some(json!({"app": "g", "tier": "x"})),
                    json!({"x": "1", "settings": {"shared": "s", "a": "1"}}),
                ),
                // Same value for a field A owns: no conflict, both own it.
                apply("b", json!({"size": 3, "settings": {"shared": "s", "b": "2"}})),
                // A drops the co-owned field (kept, only B owns it now) and a label it alone owns
                // (removed).
                step(
                    "a",
                    false,
                    Some(json!({"app": "g"})),
                    json!({"x": "1", "settings": {"a": "1"}}),
                ),
                // B drops it too: nobody owns it, it goes.
                apply("b", json!({"size": 3, "settings": {"b": "2"}})),
                // A drops its whole spec but x, which only A owns: its settings go.
                apply("a", json!({"x": "1"})),
                // A third manager co-owns x, then A stops applying anything of spec.
                apply("c", json!({"x": "1"})),
                step("a", false, Some(json!({"app": "g"})), json!({})),
            ],
        ),
        (
            "list-map-by-type",
            vec![
                apply("a", json!({"conditions": [cond("A", "True"), cond("B", "True")]})),
                // B co-owns B with the same values and adds C.
                apply(
                    "b",
                    json!({"conditions": [cond("B", "True"), cond("C", "False")]}),
                ),
                // A drops B (kept: B applies it) and A (removed: only A applied it).
                apply("a", json!({"conditions": []})),
                // A adds a field to B's element: A owns that field and the element, B its own fields.
                apply("a", json!({"conditions": [{"type": "B", "reason": "ByA"}]})),
                // B drops element B: only A's fields (and the key) stay.
                apply("b", json!({"conditions": [cond("C", "False")]})),
                apply("a", json!({"conditions": [{"type": "D", "status": "Unknown"}]})),
            ],
        ),
        (
            "atomic-list",
            vec![
                apply("a", json!({"args": ["x", "y"]})),
                // Replaced as a whole, never merged.
                apply("a", json!({"args": ["z"]})),
                apply("b", json!({"args": ["z"]})),
                // A drops the co-owned list: kept.
                apply("a", json!({"x": "1"})),
                // B changes it: B alone owns it now, so no conflict.
                apply("b", json!({"args": ["q", "r"]})),
                // A sets another value: conflict with B.
                apply("a", json!({"x": "1", "args": ["z"]})),
                force("a", json!({"x": "1", "args": ["z"]})),
            ],
        ),
        (
            "conflicts-and-force",
            vec![
                apply("a", json!({"x": "1", "size": 1, "settings": {"k": "a"}})),
                apply("c", json!({"settings": {"c": "c"}})),
                // A different value for a field A owns: 409, nothing changes.
                apply("b", json!({"x": "2"})),
                // Several conflicts, with two managers.
                apply(
                    "b",
                    json!({"x": "2", "size": 2, "settings": {"k": "b", "c": "b"}}),
                ),
                // Forced: B takes the fields over; A and C keep the rest.
                force(
                    "b",
                    json!({"x": "2", "size": 2, "settings": {"k": "b", "c": "b"}}),
                ),
                // A applying its old value now conflicts with B.
                apply("a", json!({"x": "1", "size": 1, "settings": {"k": "a"}})),
                // A drops x, which B owns now: x stays.
                apply("a", json!({"size": 2})),
                // C lost everything it had to B: its entry is gone; its field stays B's.
                apply("c", json!({"settings": {"c": "b"}})),
                // Forcing with the values already there takes nothing over.
                force("a", json!({"size": 2, "x": "2"})),
            ],
        ),
        (
            "list-map-element-conflict",
            vec![
                apply(
                    "a",
                    json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Up"}]}),
                ),
                apply("b", json!({"conditions": [{"type": "Ready", "status": "False"}]})),
                force("b", json!({"conditions": [{"type": "Ready", "status": "False"}]})),
                // A drops the element: its reason goes, B's status and the element stay.
                apply("a", json!({"conditions": [{"type": "Other", "status": "True"}]})),
                apply(
                    "a",
                    json!({"conditions": [{"type": "Other", "status": "True"}, {"type": "Ready", "status": "True"}]}),
                ),
            ],
        ),
        (
            "updates-take-fields-over",
            vec![
                apply(
                    "a",
                    json!({"x": "1", "size": 1, "settings": {"k": "a", "j": "a"}}),
                ),
                // An update changes x and removes settings.k: A owns neither any more.
                update("editor", json!({"x": "2", "size": 1, "settings": {"j": "a"}})),
                // A dropping x removes nothing (it is not A's now).
                apply("a", json!({"size": 1, "settings": {"j": "a"}})),
                // Nobody owns settings.k: B sets it without a conflict.
                apply("b", json!({"size": 1, "settings": {"k": "b"}})),
            ],
        ),
        (
            "released-then-taken",
            vec![
                // A lease's pattern: A applies a holder, then clears it with an update (as
                // kube-lease-manager releases); B then applies another holder: no conflict.
                apply("a", json!({"x": "a", "size": 15})),
                update("a", json!({})),
                apply("b", json!({"x": "b", "size": 15})),
            ],
        ),
    ]
}

/// `smd-apply` on PATH, if any.
fn tool() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(TOOL))
        .find(|p| p.is_file())
}

/// Sort list-map elements by key (see the module doc) and keep only the metadata the table sets.
fn normalized(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.retain(|k, _| k == "name" || k == "labels");
    }
    if let Some(Value::Array(conditions)) = obj.pointer_mut("/spec/conditions") {
        conditions.sort_by_key(|c| c["type"].to_string());
    }
    obj
}

/// The `fieldsV1` of each Apply entry, by manager (`Update` entries record no fields here).
fn applied_fields(obj: &Value) -> Map<String, Value> {
    let entries = obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    entries
        .iter()
        .filter(|e| e["operation"] == "Apply")
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or_default().to_string(),
                e["fieldsV1"].clone(),
            )
        })
        .collect()
}

fn sorted_causes(causes: &Value) -> Vec<Value> {
    let mut causes = causes.as_array().cloned().unwrap_or_default();
    causes.sort_by_key(|c| (c["message"].to_string(), c["field"].to_string()));
    causes
}

#[tokio::test]
async fn server_side_apply_matches_structured_merge_diff() {
    let Some(tool) = tool() else {
        let allowed = std::env::var(SKIP_VAR).is_ok_and(|v| v == "1");
        assert!(
            allowed,
            "{TOOL} is not on PATH: run `make tools` and put target/tools/bin on PATH (make test does), \
             or set {SKIP_VAR}=1 to skip this comparison"
        );
        eprintln!(
            "\n!!!!!!!! SKIPPED: server-side apply is NOT compared with structured-merge-diff: {TOOL} \
             is not on PATH and {SKIP_VAR}=1 allows skipping !!!!!!!!\n"
        );
        return;
    };

    let mut table = cases();
    for (name, steps) in &mut table {
        for s in steps.iter_mut() {
            s["object"]["metadata"]["name"] = json!(name);
        }
    }
    let input = json!({
        "schema": SCHEMA,
        "type": "gadget",
        "apiVersion": API_VERSION,
        "cases": table.iter().map(|(name, steps)| json!({"name": name, "steps": steps})).collect::<Vec<_>>(),
    });
    let mut child = Command::new(&tool)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{TOOL} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Value = serde_json::from_slice(&out.stdout).unwrap();

    let server = TestServer::start().await.unwrap();
    let client = client(&server).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(gadget_crd()).unwrap(),
    )
    .await
    .unwrap();
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.com", "v1", "Gadget"), "gadgets");
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &ar);

    let mut compared = 0;
    let mut conflicts = 0;
    for ((name, steps), want_case) in table.iter().zip(expected["cases"].as_array().unwrap()) {
        assert_eq!(want_case["name"], *name);
        for (i, (s, want)) in steps
            .iter()
            .zip(want_case["steps"].as_array().unwrap())
            .enumerate()
        {
            let verb = if s["operation"] == "update" {
                "updates to"
            } else {
                "applies"
            };
            let at = format!(
                "case {name}, step {} ({} {verb} {})",
                i + 1,
                s["manager"],
                s["object"]["spec"]
            );
            let mut pp = PatchParams::apply(s["manager"].as_str().unwrap());
            if s["force"] == true {
                pp = pp.force();
            }
            let result = if s["operation"] == "update" {
                let pp = PostParams {
                    field_manager: s["manager"].as_str().map(str::to_owned),
                    ..Default::default()
                };
                let mut obj: DynamicObject = serde_json::from_value(s["object"].clone()).unwrap();
                // Custom resources allow no unconditional update: it names the version it replaces.
                obj.metadata.resource_version =
                    api.get(name).await.ok().and_then(|o| o.metadata.resource_version);
                api.replace(name, &pp, &obj).await
            } else {
                api.patch(name, &pp, &Patch::Apply(&s["object"])).await
            };
            let got = match (&want["conflict"], result) {
                (Value::Null, Ok(obj)) => serde_json::to_value(obj).unwrap(),
                (Value::Null, Err(e)) => panic!("{at}: the server refused what Kubernetes accepts: {e}"),
                (conflict, Ok(obj)) => panic!(
                    "{at}: Kubernetes answers 409 {}, the server accepted it: {}",
                    conflict["message"],
                    serde_json::to_value(obj).unwrap()
                ),
                (conflict, Err(kube::Error::Api(status))) => {
                    conflicts += 1;
                    let status = serde_json::to_value(&*status).unwrap();
                    assert_eq!(status["code"], 409, "{at}: {status}");
                    assert_eq!(status["reason"], "Conflict", "{at}: {status}");
                    assert_eq!(status["message"], conflict["message"], "{at}");
                    assert_eq!(
                        sorted_causes(&status["details"]["causes"]),
                        sorted_causes(&conflict["causes"]),
                        "{at}: causes"
                    );
                    serde_json::to_value(api.get(name).await.unwrap()).unwrap()
                }
                (_, Err(e)) => panic!("{at}: {e}"),
            };
            assert_eq!(normalized(&got), normalized(&want["object"]), "{at}: object");
            let want_fields = want["managedFields"].as_object().cloned().unwrap_or_default();
            assert_eq!(applied_fields(&got), want_fields, "{at}: managedFields");
            compared += 1;
        }
    }
    assert_eq!(compared, table.iter().map(|(_, s)| s.len()).sum::<usize>());
    // The table's conflicts: one in atomic-list, two in list-map-element-conflict, three in
    // conflicts-and-force (one of them on several fields of two managers).
    assert_eq!(conflicts, 6, "conflicts Kubernetes reports in the table");
}
