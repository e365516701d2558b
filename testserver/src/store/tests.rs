use std::time::Duration;

use super::*;

fn deploy(name: &str, replicas: u64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "ns"},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
           "status": {"replicas": 7}})
}

fn rt(store: &Store) -> ResourceType {
    store.resolve("apps", "v1", "deployments").unwrap()
}

#[test]
fn create_sets_metadata_and_drops_status() {
    let s = Store::new();
    let d = s.create_by_kind(deploy("a", 1), "t").unwrap();
    assert_eq!(d["metadata"]["generation"], 1);
    assert!(d["metadata"]["uid"].as_str().unwrap().len() == 36);
    assert!(
        d["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(d.get("status").is_none());
    assert_eq!(s.create_by_kind(deploy("a", 1), "t").unwrap_err().code, 409);
    let mut g = deploy("", 1);
    g["metadata"]["generateName"] = json!("web-");
    let g = s.create_by_kind(g, "t").unwrap();
    assert!(g["metadata"]["name"].as_str().unwrap().starts_with("web-"));
    assert_eq!(g["metadata"]["name"].as_str().unwrap().len(), 9);
    assert_eq!(s.create_by_kind(deploy("", 1), "t").unwrap_err().code, 422);
}

#[test]
fn generation_bumps_on_spec_change_only() {
    let s = Store::new();
    let t = rt(&s);
    let d = s.create_by_kind(deploy("a", 1), "t").unwrap();
    let rv0 = d["metadata"]["resourceVersion"].clone();
    // Label change: rv bumps, generation does not.
    let d = s
        .patch(
            &t,
            Some("ns"),
            "a",
            Sub::Main,
            &PatchType::Merge,
            &json!({"metadata": {"labels": {"x": "y"}}}),
            "t",
        )
        .unwrap();
    assert_eq!(d["metadata"]["generation"], 1);
    assert_ne!(d["metadata"]["resourceVersion"], rv0);
    // Spec change bumps.
    let d = s
        .patch(
            &t,
            Some("ns"),
            "a",
            Sub::Main,
            &PatchType::Merge,
            &json!({"spec": {"replicas": 3}}),
            "t",
        )
        .unwrap();
    assert_eq!(d["metadata"]["generation"], 2);
    // No-op: nothing changes, not even rv.
    let rv = d["metadata"]["resourceVersion"].clone();
    let d = s
        .patch(
            &t,
            Some("ns"),
            "a",
            Sub::Main,
            &PatchType::Merge,
            &json!({"spec": {"replicas": 3}}),
            "t",
        )
        .unwrap();
    assert_eq!(d["metadata"]["resourceVersion"], rv);
    // Status: no generation bump, spec untouched; main writes ignore status.
    let d = s
        .patch(
            &t,
            Some("ns"),
            "a",
            Sub::Status,
            &PatchType::Merge,
            &json!({"spec": {"replicas": 9}, "status": {"replicas": 3}}),
            "t",
        )
        .unwrap();
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["status"]["replicas"], 3);
    let d = s
        .patch(
            &t,
            Some("ns"),
            "a",
            Sub::Main,
            &PatchType::Merge,
            &json!({"status": {"replicas": 1}}),
            "t",
        )
        .unwrap();
    assert_eq!(d["status"]["replicas"], 3);
}

#[test]
fn conflicts_and_scale() {
    let s = Store::new();
    let t = rt(&s);
    let d = s.create_by_kind(deploy("a", 1), "t").unwrap();
    let mut stale = d.clone();
    s.patch(
        &t,
        Some("ns"),
        "a",
        Sub::Main,
        &PatchType::Merge,
        &json!({"spec": {"replicas": 2}}),
        "t",
    )
    .unwrap();
    stale["spec"]["replicas"] = json!(5);
    assert_eq!(
        s.replace(&t, Some("ns"), "a", Sub::Main, stale.clone(), "t")
            .unwrap_err()
            .code,
        409
    );
    let rv_patch =
        json!({"metadata": {"resourceVersion": d["metadata"]["resourceVersion"]}, "spec": {"replicas": 4}});
    assert_eq!(
        s.patch(&t, Some("ns"), "a", Sub::Main, &PatchType::Merge, &rv_patch, "t")
            .unwrap_err()
            .code,
        409
    );
    let sc = s
        .patch(
            &t,
            Some("ns"),
            "a",
            Sub::Scale,
            &PatchType::Merge,
            &json!({"spec": {"replicas": 6}}),
            "t",
        )
        .unwrap();
    assert_eq!(sc["kind"], "Scale");
    assert_eq!(sc["spec"]["replicas"], 6);
    assert_eq!(sc["status"]["selector"], "app=a");
    assert_eq!(s.get(&t, Some("ns"), "a").unwrap()["spec"]["replicas"], 6);
}

#[test]
fn apply_tracks_managers_per_subresource() {
    let s = Store::new();
    let t = rt(&s);
    let apply = |sub, body: Value, m: &str| {
        s.patch(
            &t,
            Some("ns"),
            "a",
            sub,
            &PatchType::Apply { force: false },
            &body,
            m,
        )
    };
    assert_eq!(
        apply(Sub::Status, json!({"status": {}}), "m").unwrap_err().code,
        404
    );
    let d = apply(Sub::Main, json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a", "labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1}}), "m").unwrap();
    assert_eq!(d["metadata"]["namespace"], "ns");
    let d = apply(
        Sub::Main,
        json!({"metadata": {"name": "a", "labels": {"a": "1"}}, "spec": {"replicas": 1}}),
        "m",
    )
    .unwrap();
    assert_eq!(d["metadata"]["labels"], json!({"a": "1"}));
    apply(
        Sub::Status,
        json!({"status": {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]}}),
        "m",
    )
    .unwrap();
    apply(
        Sub::Status,
        json!({"status": {"conditions": [{"type": "C", "status": "True"}]}}),
        "other",
    )
    .unwrap();
    let d = apply(
        Sub::Status,
        json!({"status": {"conditions": [{"type": "A", "status": "False"}]}}),
        "m",
    )
    .unwrap();
    assert_eq!(
        d["status"]["conditions"],
        json!([{"type": "A", "status": "False"}, {"type": "C", "status": "True"}])
    );
    assert_eq!(d["spec"]["replicas"], 1);
}

/// A store whose clock reads `secs` (seconds since the epoch).
fn clocked() -> (Store, Arc<std::sync::atomic::AtomicI64>) {
    let secs = Arc::new(std::sync::atomic::AtomicI64::new(1_700_000_000));
    let clock = Clock::default();
    let read = secs.clone();
    clock.set(Arc::new(move || {
        jiff::Timestamp::from_second(read.load(std::sync::atomic::Ordering::SeqCst)).unwrap()
    }));
    (Store::with_clock(clock), secs)
}

fn cm_rt(s: &Store) -> ResourceType {
    s.resolve("", "v1", "configmaps").unwrap()
}

fn managed(obj: &Value) -> &[Value] {
    obj["metadata"]["managedFields"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

#[test]
fn writes_record_managers_and_times() {
    let (s, secs) = clocked();
    let t = cm_rt(&s);
    let c = s
        .create_by_kind(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns",
                   "managedFields": [{"manager": "forged"}]}, "data": {"a": "1"}}),
            "creator",
        )
        .unwrap();
    assert_eq!(c["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(
        managed(&c),
        [
            json!({"manager": "creator", "operation": "Update", "apiVersion": "v1",
                "time": "2023-11-14T22:13:20Z", "fieldsType": "FieldsV1", "fieldsV1": {}})
        ]
    );
    // An update by another manager adds its entry, later entries sort after earlier ones.
    secs.fetch_add(60, std::sync::atomic::Ordering::SeqCst);
    let merge = |body: Value, m: &str| s.patch(&t, Some("ns"), "c", Sub::Main, &PatchType::Merge, &body, m);
    let c = merge(json!({"data": {"a": "2"}}), "editor").unwrap();
    let names: Vec<&str> = managed(&c)
        .iter()
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["creator", "editor"]);
    assert_eq!(managed(&c)[1]["time"], "2023-11-14T22:14:20Z");
    // The creator writes again: its one entry is refreshed; creationTimestamp stays.
    secs.fetch_add(60, std::sync::atomic::Ordering::SeqCst);
    let mut body = c.clone();
    body["data"]["a"] = json!("3");
    body["metadata"]["managedFields"] = json!([]);
    let c = s
        .replace(&t, Some("ns"), "c", Sub::Main, body, "creator")
        .unwrap();
    let entries = managed(&c);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["manager"], "editor");
    assert_eq!(entries[1]["manager"], "creator");
    assert_eq!(entries[1]["time"], "2023-11-14T22:15:20Z");
    assert_eq!(c["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
    // A no-op write (only the time would change) changes nothing, not even resourceVersion.
    secs.fetch_add(60, std::sync::atomic::Ordering::SeqCst);
    let rv = s.resource_version();
    let same = merge(json!({"data": {"a": "3"}}), "editor").unwrap();
    assert_eq!(same, c);
    let same = s
        .replace(&t, Some("ns"), "c", Sub::Main, c.clone(), "third")
        .unwrap();
    assert_eq!(same, c);
    assert_eq!(s.resource_version(), rv);
    assert_eq!(s.get(&t, Some("ns"), "c").unwrap(), c);
    // Server-side apply: operation Apply, its own entry beside the same manager's Update.
    let c = s
        .patch(
            &t,
            Some("ns"),
            "c",
            Sub::Main,
            &PatchType::Apply { force: false },
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"b": "1"}}),
            "editor",
        )
        .unwrap();
    let ops: Vec<(&str, &str)> = managed(&c)
        .iter()
        .map(|e| (e["manager"].as_str().unwrap(), e["operation"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ops,
        [("editor", "Apply"), ("editor", "Update"), ("creator", "Update")]
    );
    assert_eq!(managed(&c)[0]["time"], "2023-11-14T22:16:20Z");
}

#[test]
fn apply_create_status_and_scale_entries() {
    let (s, _) = clocked();
    let t = rt(&s);
    let apply = |sub, body: Value| {
        s.patch(
            &t,
            Some("ns"),
            "a",
            sub,
            &PatchType::Apply { force: false },
            &body,
            "ssa",
        )
    };
    let d = apply(
        Sub::Main,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"}, "spec": {"replicas": 1}}),
    )
    .unwrap();
    assert_eq!(managed(&d).len(), 1);
    assert_eq!(managed(&d)[0]["operation"], "Apply");
    assert_eq!(managed(&d)[0]["apiVersion"], "apps/v1");
    assert!(managed(&d)[0].get("subresource").is_none());
    let d = apply(Sub::Status, json!({"status": {"replicas": 1}})).unwrap();
    assert_eq!(managed(&d).len(), 2);
    assert_eq!(managed(&d)[1]["operation"], "Apply");
    assert_eq!(managed(&d)[1]["subresource"], "status");
    let d = s
        .patch(
            &t,
            Some("ns"),
            "a",
            Sub::Status,
            &PatchType::Merge,
            &json!({"status": {"replicas": 2}}),
            "ctl",
        )
        .unwrap();
    let ctl = managed(&d).iter().find(|e| e["manager"] == "ctl").unwrap();
    assert_eq!(
        (&ctl["operation"], &ctl["subresource"]),
        (&json!("Update"), &json!("status"))
    );
    s.patch(
        &t,
        Some("ns"),
        "a",
        Sub::Scale,
        &PatchType::Merge,
        &json!({"spec": {"replicas": 3}}),
        "ctl",
    )
    .unwrap();
    let d = s.get(&t, Some("ns"), "a").unwrap();
    let subs: Vec<&str> = managed(&d)
        .iter()
        .filter(|e| e["manager"] == "ctl")
        .map(|e| e["subresource"].as_str().unwrap())
        .collect();
    assert_eq!(subs, ["scale", "status"]);
    assert_eq!(d["metadata"]["generation"], 2);
}

#[test]
fn clock_offsets_and_crd_conditions_keep_times() {
    let (s, _) = clocked();
    s.clock().advance(Duration::from_secs(3600));
    assert_eq!(s.clock().now_rfc3339(), "2023-11-14T23:13:20Z");
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true}]}});
    let created = s.create_by_kind(crd.clone(), "t").unwrap();
    assert_eq!(created["metadata"]["creationTimestamp"], "2023-11-14T23:13:20Z");
    assert_eq!(
        created["status"]["conditions"][1]["lastTransitionTime"],
        "2023-11-14T23:13:20Z"
    );
    // Rewriting the same CRD later is a no-op: the conditions keep their times.
    s.clock().advance(Duration::from_secs(60));
    let crt = s
        .resolve("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .unwrap();
    let again = s
        .replace(&crt, None, "widgets.example.com", Sub::Main, crd, "t")
        .unwrap();
    assert_eq!(again, created);
    s.clock().reset();
    let real = jiff::Timestamp::now().as_second();
    assert!((s.now().as_second() - real).abs() < 5);
}

#[test]
fn watch_history_and_gone() {
    let s = Store::new();
    let t = rt(&s);
    s.create_by_kind(deploy("a", 1), "t").unwrap();
    let rv = s.resource_version();
    s.create_by_kind(deploy("b", 1), "t").unwrap();
    s.delete(&t, Some("ns"), "a").unwrap();
    let w = s.watch(&t, &Filter::default(), Some(rv)).unwrap();
    let kinds: Vec<EventKind> = w.replay.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Added, EventKind::Deleted]);
    let w = s.watch(&t, &Filter::default(), None).unwrap();
    assert_eq!(w.initial.len(), 1);
    s.compact();
    assert_eq!(
        s.watch(&t, &Filter::default(), Some(rv)).err().map(|e| e.code),
        Some(410)
    );
    assert!(
        s.watch(&t, &Filter::default(), Some(s.resource_version()))
            .is_ok()
    );
}
