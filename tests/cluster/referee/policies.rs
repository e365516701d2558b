//! The cases about AppHealthPolicies: their API, status writes, the CRD's schema and CEL rules.

use serde_json::{Value, json};

use super::side::*;

/// Create, get, list and delete of a policy; AlreadyExists and NotFound.
pub(super) async fn policy_crud(s: &mut Side) {
    let create = format!("{POLICIES}?fieldManager=referee");
    let r = s.post(&create, &policy("web", json!({}))).await;
    s.note(
        "create",
        view(
            &r,
            &[
                "/spec/targetRef",
                "/spec/probe/http/port",
                "/metadata/generation",
                "/metadata/namespace",
                "/status",
            ],
        ),
    );
    let r = s.post(&create, &policy("web", json!({}))).await;
    s.note("create again", view(&r, &[]));
    let r = s.get(&format!("{POLICIES}/web")).await;
    s.note("get", view(&r, &["/spec/targetRef", "/metadata/generation"]));
    let r = s.get(POLICIES).await;
    s.note("list", names(&r));
    let r = s.get(&format!("{POLICIES}/missing")).await;
    s.note("get missing", view(&r, &[]));
    let r = s.delete(&format!("{POLICIES}/web")).await;
    s.note("delete", view(&r, &["/metadata/name"]));
    let r = s.get(&format!("{POLICIES}/web")).await;
    s.note("get deleted", view(&r, &[]));
    let r = s.delete(&format!("{POLICIES}/web")).await;
    s.note("delete missing", view(&r, &[]));
}

/// The operator's status write: server-side apply of `/status`, forced, as `apphealth-operator`;
/// an apply that changes nothing is no write.
pub(super) async fn policy_status_apply(s: &mut Side) {
    s.post(POLICIES, &policy("web", json!({}))).await;
    let path = format!("{POLICIES}/web/status");
    let status = json!({"observedGeneration": 1, "conditions": [
        condition("Ready", "True", "Probing"), condition("Healthy", "True", "ProbesSucceeding")]});
    let first = s
        .apply(&path, OPERATOR, true, &status_patch(status.clone()))
        .await;
    s.note("apply", view(&first, &["/status", "/metadata/generation"]));
    let same = s
        .apply(&path, OPERATOR, true, &status_patch(status.clone()))
        .await;
    s.note("same apply", view(&same, &["/metadata/generation"]));
    s.note(
        "same apply keeps the resourceVersion",
        json!(rv(&first) == rv(&same)),
    );
    let mut changed = status.clone();
    changed["conditions"][1]["message"] = json!("changed");
    let r = s.apply(&path, OPERATOR, true, &status_patch(changed)).await;
    s.note(
        "changed apply",
        view(&r, &["/status/conditions/1/message", "/metadata/generation"]),
    );
    s.note(
        "changed apply moves the resourceVersion",
        json!(rv(&r) != rv(&same)),
    );
    let r = s.get(&format!("{POLICIES}/web")).await;
    s.note(
        "get",
        view(&r, &["/status/observedGeneration", "/metadata/generation"]),
    );
    let r = s.get(&path).await;
    s.note(
        "get status",
        view(&r, &["/status/observedGeneration", "/spec/targetRef"]),
    );
    let r = s
        .apply(
            &format!("{POLICIES}/missing/status"),
            OPERATOR,
            true,
            &status_patch(status),
        )
        .await;
    s.note("apply to a missing policy", view(&r, &[]));
}

/// Conditions as `Type=Status/Reason`, sorted (the operator finds them by type).
fn conditions(r: &Resp) -> Value {
    let mut c: Vec<String> = r.body["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}={}/{}",
                c["type"].as_str().unwrap_or("?"),
                c["status"].as_str().unwrap_or("?"),
                c["reason"].as_str().unwrap_or("?")
            )
        })
        .collect();
    c.sort();
    json!(c)
}

/// The operator and its guard apply conditions to one status (a list-map by type): each owns its
/// own; a forced apply takes a condition over; an unforced one conflicts.
pub(super) async fn policy_status_appliers(s: &mut Side) {
    s.post(POLICIES, &policy("web", json!({}))).await;
    let path = format!("{POLICIES}/web/status");
    let both = json!({"observedGeneration": 1, "conditions": [
        condition("Ready", "True", "Probing"), condition("Healthy", "True", "ProbesSucceeding")]});
    s.apply(&path, OPERATOR, true, &status_patch(both)).await;
    let guard = json!({"conditions": [condition("Ready", "False", "UnreadablePolicy")]});
    let r = s.apply(&path, GUARD, true, &status_patch(guard)).await;
    s.note(
        "guard applies Ready",
        json!({"view": view(&r, &[]), "conditions": conditions(&r)}),
    );
    let healthy =
        json!({"observedGeneration": 1, "conditions": [condition("Healthy", "False", "TriggerFired")]});
    let r = s.apply(&path, OPERATOR, true, &status_patch(healthy)).await;
    s.note(
        "operator drops Ready",
        json!({"view": view(&r, &[]), "conditions": conditions(&r)}),
    );
    let unforced = json!({"conditions": [condition("Healthy", "Unknown", "Guarded")]});
    let r = s.apply(&path, GUARD, false, &status_patch(unforced)).await;
    s.note("guard's unforced apply of Healthy", view(&r, &[]));
    let r = s
        .apply(
            &path,
            "referee",
            false,
            &status_patch(json!({"observedGeneration": 7})),
        )
        .await;
    s.note("another manager's unforced apply", view(&r, &[]));
}

/// The operator's fallback for policies apply cannot type: a JSON merge patch of `/status` under
/// the resourceVersion read.
pub(super) async fn policy_status_merge(s: &mut Side) {
    s.post(POLICIES, &policy("web", json!({}))).await;
    let path = format!("{POLICIES}/web/status");
    let read = s.get(&path).await;
    let patch = json!({"metadata": {"resourceVersion": rv(&read)},
                       "status": {"conditions": [condition("Ready", "False", "UnreadablePolicy")]}});
    let r = s
        .patch(&format!("{path}?fieldManager={GUARD}"), MERGE, &patch)
        .await;
    s.note(
        "merge",
        json!({"view": view(&r, &["/metadata/generation"]), "conditions": conditions(&r)}),
    );
    let r = s
        .patch(&format!("{path}?fieldManager={GUARD}"), MERGE, &patch)
        .await;
    s.note("merge under a stale resourceVersion", view(&r, &[]));
}

/// `metadata.generation` moves with the spec only.
pub(super) async fn policy_generation(s: &mut Side) {
    s.post(POLICIES, &policy("web", json!({}))).await;
    let main = format!("{POLICIES}/web");
    let spec = json!({"spec": {"probe": {"periodSeconds": 5}}});
    let r = s.patch(&main, MERGE, &spec).await;
    s.note(
        "spec changed",
        view(&r, &["/metadata/generation", "/spec/probe/periodSeconds"]),
    );
    let again = s.patch(&main, MERGE, &spec).await;
    s.note(
        "spec unchanged keeps the resourceVersion",
        json!(rv(&r) == rv(&again)),
    );
    let r = s
        .patch(
            &format!("{main}/status"),
            MERGE,
            &json!({"status": {"observedGeneration": 2}}),
        )
        .await;
    s.note("status changed", view(&r, &["/metadata/generation", "/status"]));
    let r = s
        .patch(&main, MERGE, &json!({"metadata": {"labels": {"team": "a"}}}))
        .await;
    s.note(
        "labels changed",
        view(&r, &["/metadata/generation", "/metadata/labels"]),
    );
    let r = s
        .patch(&main, MERGE, &json!({"status": {"observedGeneration": 9}}))
        .await;
    s.note(
        "status through the main resource",
        view(&r, &["/metadata/generation", "/status"]),
    );
    let r = s
        .patch(
            &format!("{main}/status"),
            MERGE,
            &json!({"spec": {"suspend": true}}),
        )
        .await;
    s.note(
        "spec through /status",
        view(&r, &["/metadata/generation", "/spec/suspend"]),
    );
}

/// Replace: the resourceVersion read, a stale one, none, a missing object, a mismatched name.
pub(super) async fn policy_replace(s: &mut Side) {
    s.post(POLICIES, &policy("web", json!({}))).await;
    let main = format!("{POLICIES}/web");
    let read = s.get(&main).await.body;
    let mut changed = read.clone();
    changed["spec"]["probe"]["periodSeconds"] = json!(3);
    let r = s.put(&main, &changed).await;
    s.note(
        "replace",
        view(&r, &["/metadata/generation", "/spec/probe/periodSeconds"]),
    );
    let r = s.put(&main, &changed).await;
    s.note("replace under a stale resourceVersion", view(&r, &[]));
    let mut unversioned = changed.clone();
    unversioned["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let r = s.put(&main, &unversioned).await;
    s.note("replace without a resourceVersion", view(&r, &[]));
    let mut missing = unversioned.clone();
    missing["metadata"]["name"] = json!("missing");
    let r = s.put(&format!("{POLICIES}/missing"), &missing).await;
    s.note("replace a missing policy", view(&r, &[]));
    let r = s.put(&format!("{POLICIES}/other"), &unversioned).await;
    s.note("replace under another name", view(&r, &[]));
}

/// The CRD's schema and CEL rules: the hostile-input matrix, each policy created once.
pub(super) async fn policy_admission(s: &mut Side) {
    for case in crate::hostile_cases::all() {
        let body = json!({"apiVersion": "apphealth.io/v1alpha1", "kind": "AppHealthPolicy",
                          "metadata": {"name": case.name}, "spec": case.spec});
        let r = s.post(POLICIES, &body).await;
        let causes: Vec<Value> = r.body["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| json!({"reason": c["reason"], "field": c["field"], "message": c["message"]}))
            .collect();
        let seen = if r.code >= 300 {
            json!({"code": r.code, "reason": r.body["reason"], "message": r.body["message"], "causes": causes,
                   "details": {"name": r.body["details"]["name"], "group": r.body["details"]["group"], "kind": r.body["details"]["kind"]}})
        } else {
            json!({"code": r.code})
        };
        s.note(case.name, seen);
    }
}

/// Fields the schema does not declare: pruned (with a warning), refused by `Strict`, kept below
/// `x-kubernetes-preserve-unknown-fields`.
pub(super) async fn unknown_fields(s: &mut Side) {
    let mut p = policy("warn", json!({"bogus": 1, "probe": {"http": {"bogus": 2}}}));
    p["metadata"]["bogus"] = json!(3);
    let r = s.post(POLICIES, &p).await;
    s.note(
        "default (Warn)",
        view(&r, &["/spec/bogus", "/spec/probe/http/bogus", "/metadata/bogus"]),
    );
    p["metadata"]["name"] = json!("strict");
    let r = s.post(&format!("{POLICIES}?fieldValidation=Strict"), &p).await;
    s.note("Strict", view(&r, &[]));
    p["metadata"]["name"] = json!("ignore");
    let r = s.post(&format!("{POLICIES}?fieldValidation=Ignore"), &p).await;
    s.note("Ignore", view(&r, &["/spec/bogus"]));
    let widget = json!({"apiVersion": "referee.apphealth.io/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"size": 1, "free": {"anything": {"deep": [1, "two"]}}, "bogus": true},
        "status": {"set": "on create"}});
    let r = s.post(WIDGETS, &widget).await;
    s.note("preserved", view(&r, &["/spec", "/status"]));
    let r = s
        .patch(
            &format!("{WIDGETS}/w/status"),
            MERGE,
            &json!({"status": {"any": {"thing": 1}}}),
        )
        .await;
    s.note("preserved status", view(&r, &["/status"]));
}

/// Server-side apply of a whole policy by two managers: the second conflicts, then forces.
pub(super) async fn policy_apply_conflict(s: &mut Side) {
    let main = format!("{POLICIES}/web");
    let r = s
        .apply(&main, "referee-a", false, &policy("web", json!({})))
        .await;
    s.note("apply creates", view(&r, &["/metadata/generation"]));
    let other = policy("web", json!({"targetRef": {"name": "other"}, "suspend": true}));
    let r = s.apply(&main, "referee-b", false, &other).await;
    s.note("conflict", view(&r, &[]));
    let r = s.apply(&main, "referee-b", true, &other).await;
    s.note("forced", view(&r, &["/spec/targetRef", "/metadata/generation"]));
    let dropped = policy("web", json!({"suspend": null}));
    let r = s.apply(&main, "referee-a", false, &dropped).await;
    s.note(
        "first manager again",
        view(&r, &["/spec/targetRef", "/spec/suspend"]),
    );
}

/// The CRD schema's defaults.
pub(super) async fn policy_defaults(s: &mut Side) {
    let r = s.post(POLICIES, &policy("web", json!({}))).await;
    s.note("create", json!({"code": r.code, "/spec": r.body["spec"]}));
}
