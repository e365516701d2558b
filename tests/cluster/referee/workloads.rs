//! The cases about what the operator reads and writes besides its policies: workloads, pods,
//! evictions, events, ConfigMaps and Secrets, leases, autoscalers, and an RBAC refusal.

use apphealth_testserver::Fault;
use serde_json::{Value, json};

use super::side::*;

/// Create, get and list of the kinds the operator reads (one object each; the Deployment with no
/// replicas, so no controller adds pods), and a missing one.
pub(super) async fn kinds(s: &mut Side) {
    let secret =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "one"}, "stringData": {"k": "v"}});
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "one"},
                       "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}});
    for (path, object) in [
        (DEPLOYMENTS, deployment("one", 0)),
        (PODS, pod("one", json!({"app": "one"}))),
        (CONFIGMAPS, configmap("one", json!({}))),
        (SECRETS, secret),
        (LEASES, lease),
    ] {
        let r = s.post(path, &object).await;
        s.note(
            &format!("create {path}"),
            json!({"code": r.code, "kind": r.body["kind"]}),
        );
        let r = s.get(&format!("{path}/one")).await;
        s.note(
            &format!("get {path}"),
            json!({"code": r.code, "kind": r.body["kind"], "apiVersion": r.body["apiVersion"]}),
        );
        let r = s.get(path).await;
        s.note(&format!("list {path}"), names(&r));
        let r = s.get(&format!("{path}/missing")).await;
        s.note(&format!("get missing {path}"), view(&r, &[]));
    }
}

/// The scale subresource of Deployments and StatefulSets, as the operator reads and patches it.
pub(super) async fn scale(s: &mut Side) {
    let r = s
        .post(
            &format!("{DEPLOYMENTS}?fieldManager=referee"),
            &deployment("web", 1),
        )
        .await;
    s.note(
        "create deployment",
        view(&r, &["/spec/replicas", "/metadata/generation"]),
    );
    let r = s.get(&format!("{DEPLOYMENTS}/web/scale")).await;
    s.note(
        "get scale",
        view(&r, &["/metadata/name", "/spec", "/status/selector"]),
    );
    let path = format!("{DEPLOYMENTS}/web/scale?fieldManager={OPERATOR}");
    let r = s.patch(&path, MERGE, &json!({"spec": {"replicas": 3}})).await;
    s.note("patch scale", view(&r, &["/spec", "/status/selector"]));
    let r = s.get(&format!("{DEPLOYMENTS}/web")).await;
    s.note(
        "deployment after",
        view(&r, &["/spec/replicas", "/metadata/generation"]),
    );
    let r = s.get(&format!("{DEPLOYMENTS}/missing/scale")).await;
    s.note("scale of a missing deployment", view(&r, &[]));
    let mut set = deployment("db", 1);
    set["kind"] = json!("StatefulSet");
    set["spec"]["serviceName"] = json!("db");
    let r = s
        .post(&format!("{STATEFULSETS}?fieldManager=referee"), &set)
        .await;
    s.note(
        "create statefulset",
        view(&r, &["/spec/replicas", "/metadata/generation"]),
    );
    let r = s.get(&format!("{STATEFULSETS}/db/scale")).await;
    s.note("get statefulset scale", view(&r, &["/spec", "/status/selector"]));
    let path = format!("{STATEFULSETS}/db/scale?fieldManager={OPERATOR}");
    let r = s.patch(&path, MERGE, &json!({"spec": {"replicas": 2}})).await;
    s.note("patch statefulset scale", view(&r, &["/spec"]));
    let r = s.get(&format!("{STATEFULSETS}/db")).await;
    s.note(
        "statefulset after",
        view(&r, &["/spec/replicas", "/metadata/generation"]),
    );
}

/// RolloutRestart: a merge patch of the pod template's annotations; and kubectl's strategic one.
pub(super) async fn rollout_restart(s: &mut Side) {
    s.post(
        &format!("{DEPLOYMENTS}?fieldManager=referee"),
        &deployment("web", 1),
    )
    .await;
    let path = format!("{DEPLOYMENTS}/web?fieldManager={OPERATOR}");
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"apphealth.io/restartedAt": "2026-01-01T00:00:00Z"}}}}});
    let r = s.patch(&path, MERGE, &patch).await;
    s.note(
        "merge",
        view(&r, &["/metadata/generation", "/spec/template/metadata"]),
    );
    // On a real cluster the Deployment controller writes the status after the first merge (the
    // new generation, its ReplicaSet), which moves the resourceVersion by itself: the same merge is
    // a no-op when, once, the object it returns is the one read just before it. A server that writes
    // on every merge never shows that. Bounded attempts.
    let mut kept = false;
    for _ in 0..10 {
        let before = s.get(&format!("{DEPLOYMENTS}/web")).await;
        let again = s.patch(&path, MERGE, &patch).await;
        if rv(&before) == rv(&again) {
            kept = true;
            break;
        }
    }
    s.note("the same merge keeps the resourceVersion", json!(kept));
    let kubectl = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:01Z"}}}}});
    let r = s
        .patch(
            &format!("{DEPLOYMENTS}/web?fieldManager=kubectl-rollout"),
            STRATEGIC,
            &kubectl,
        )
        .await;
    s.note(
        "strategic",
        view(&r, &["/metadata/generation", "/spec/template/metadata"]),
    );
}

/// ScaleUp's template change: a strategic merge of containers by name (the others kept).
pub(super) async fn template_containers(s: &mut Side) {
    s.post(&format!("{DEPLOYMENTS}?fieldManager=referee"), &two_containers())
        .await;
    let path = format!("{DEPLOYMENTS}/web?fieldManager={OPERATOR}");
    let r = s.patch(&path, STRATEGIC, &limit_patch()).await;
    let containers: Vec<Value> = r.body["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| json!({"name": c["name"], "image": c["image"], "limits": c["resources"]["limits"], "requests": c["resources"]["requests"]}))
        .collect();
    s.note(
        "strategic",
        json!({"view": view(&r, &["/metadata/generation"]), "containers": containers}),
    );
}

fn two_containers() -> Value {
    let mut d = deployment("web", 1);
    d["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "proxy"}));
    d
}

fn limit_patch() -> Value {
    json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "resources": {"limits": {"cpu": "300m"}}}]}}}})
}

/// What the API server fills in of a pod template (left out above).
pub(super) async fn template_container_defaults(s: &mut Side) {
    let r = s.post(DEPLOYMENTS, &two_containers()).await;
    s.note(
        "create",
        json!({"code": r.code, "containers": r.body["spec"]["template"]["spec"]["containers"]}),
    );
}

/// A JSON merge patch replaces the containers list, leaving a container without an image.
pub(super) async fn template_containers_merge(s: &mut Side) {
    s.post(DEPLOYMENTS, &two_containers()).await;
    let r = s
        .patch(&format!("{DEPLOYMENTS}/web"), STRATEGIC, &limit_patch())
        .await;
    s.note("strategic", json!({"code": r.code}));
    let r = s
        .patch(&format!("{DEPLOYMENTS}/web"), MERGE, &limit_patch())
        .await;
    s.note(
        "merge replaces the list",
        view(&r, &["/spec/template/spec/containers"]),
    );
}

/// Rollback: the Deployment replaced whole under the resourceVersion read.
pub(super) async fn rollback_replace(s: &mut Side) {
    s.post(
        &format!("{DEPLOYMENTS}?fieldManager=referee"),
        &deployment("web", 1),
    )
    .await;
    if s.is_real() {
        // The Deployment controller writes status as the pod comes up; read once it is done, or
        // the replace meets its resourceVersion instead of ours.
        s.wait("the Deployment rolled out", &format!("{DEPLOYMENTS}/web"), |d| {
            d["status"]["observedGeneration"] == d["metadata"]["generation"]
                && d["status"]["availableReplicas"] == 1
        })
        .await;
    }
    let read = s.get(&format!("{DEPLOYMENTS}/web")).await.body;
    let mut d = read.clone();
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("flaky:previous");
    d["metadata"]["annotations"] = json!({"apphealth.io/rolledBackAt": "2026-01-01T00:00:00Z"});
    d["metadata"].as_object_mut().unwrap().remove("managedFields");
    let path = format!("{DEPLOYMENTS}/web?fieldManager={OPERATOR}");
    let r = s.put(&path, &d).await;
    s.note(
        "replace",
        view(
            &r,
            &[
                "/metadata/generation",
                "/metadata/annotations",
                "/spec/template/spec/containers/0/image",
            ],
        ),
    );
    let r = s.put(&path, &d).await;
    s.note("replace under a stale resourceVersion", view(&r, &[]));
}

/// Lists with label and field selectors.
pub(super) async fn selectors(s: &mut Side) {
    for (name, labels) in [
        ("p1", json!({"app": "web", "tier": "a"})),
        ("p2", json!({"app": "web", "tier": "b"})),
        ("p3", json!({"app": "db"})),
    ] {
        s.post(PODS, &pod(name, labels)).await;
    }
    s.note_lists(
        "pods",
        PODS,
        &[
            "labelSelector=app%3Dweb",
            "labelSelector=app%20in%20(web,db),tier!%3Da",
            "labelSelector=!tier",
            "labelSelector=tier",
            "labelSelector=app%3D%3Dweb,tier%20notin%20(a)",
            "labelSelector=app%20in%20web",
            "fieldSelector=metadata.name%3Dp1",
            "fieldSelector=metadata.name!%3Dp1",
            "fieldSelector=metadata.namespace%3D{ns}",
            "fieldSelector=spec.restartPolicy%3DAlways",
            "fieldSelector=metadata.labels.app%3Dweb",
        ],
    )
    .await;
    s.post(CONFIGMAPS, &configmap("c1", json!({"app": "web"}))).await;
    s.note_lists(
        "configmaps",
        CONFIGMAPS,
        &[
            "labelSelector=app%3Dweb",
            "fieldSelector=metadata.name%3Dc1",
            "fieldSelector=data.k%3Dv",
        ],
    )
    .await;
}

fn eviction(name: &str) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}})
}

/// RestartPods without a budget: the eviction is granted and the pod goes; a missing pod, a body
/// naming another pod.
pub(super) async fn evict(s: &mut Side) {
    s.post(PODS, &pod("p1", json!({"app": "web"}))).await;
    s.ready_pod("p1").await;
    let r = s.post(&format!("{PODS}/p1/eviction"), &eviction("p1")).await;
    s.note("evict", view(&r, &[]));
    let r = s.get(&format!("{PODS}/p1")).await;
    s.note(
        "the pod after",
        json!({"code": r.code, "terminating": r.body["metadata"]["deletionTimestamp"].is_string()}),
    );
    let r = s
        .post(&format!("{PODS}/missing/eviction"), &eviction("missing"))
        .await;
    s.note("evict a missing pod", view(&r, &[]));
    s.post(PODS, &pod("p2", json!({"app": "web"}))).await;
    let r = s.post(&format!("{PODS}/p2/eviction"), &eviction("other")).await;
    s.note("evict under another name", view(&r, &[]));
}

/// RestartPods against a PodDisruptionBudget that refuses: 429 with the cause DisruptionBudget.
pub(super) async fn evict_budget(s: &mut Side) {
    for name in ["a", "b"] {
        s.post(PODS, &pod(name, json!({"app": "guarded"}))).await;
    }
    for name in ["a", "b"] {
        s.ready_pod(name).await;
    }
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "budget"},
                     "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "guarded"}}}});
    let r = s.post(PDBS, &pdb).await;
    s.note("create budget", view(&r, &["/spec"]));
    if s.is_real() {
        // The disruption controller computes the budget's status; evictions read it.
        s.wait("the budget's status", &format!("{PDBS}/budget"), |b| {
            b["status"]["observedGeneration"] == 1 && b["status"]["currentHealthy"] == 2
        })
        .await;
    }
    let r = s.post(&format!("{PODS}/a/eviction"), &eviction("a")).await;
    s.note("evict", view(&r, &[]));
    let r = s.get(&format!("{PODS}/a")).await;
    s.note(
        "the pod after",
        json!({"code": r.code, "terminating": r.body["metadata"]["deletionTimestamp"].is_string()}),
    );
}

/// ScaleUp in place: `pods/resize`.
pub(super) async fn resize(s: &mut Side) {
    s.post(PODS, &pod("r", json!({"app": "web"}))).await;
    s.ready_pod("r").await;
    if s.is_real() {
        // kwok's Stage reports the resources the containers run with a moment after they run;
        // until then the API server refuses a resize ("Pod running on node without support for
        // resize").
        s.wait("pod r reporting its resources", &format!("{PODS}/r"), |p| {
            p["status"]["containerStatuses"][0]["resources"].is_object()
        })
        .await;
    }
    let path = format!("{PODS}/r/resize?fieldManager={OPERATOR}");
    let patch = json!({"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "300m"}}}]}});
    let r = s.patch(&path, STRATEGIC, &patch).await;
    s.note(
        "resize",
        view(&r, &["/spec/containers/0/resources", "/spec/containers/0/image"]),
    );
    let image = json!({"spec": {"containers": [{"name": "app", "image": "other", "resources": {"limits": {"cpu": "400m"}}}]}});
    let r = s.patch(&path, STRATEGIC, &image).await;
    s.note(
        "resize with an image",
        view(&r, &["/spec/containers/0/resources", "/spec/containers/0/image"]),
    );
    let above =
        json!({"spec": {"containers": [{"name": "app", "resources": {"requests": {"memory": "256Mi"}}}]}});
    let r = s.patch(&path, STRATEGIC, &above).await;
    s.note("request above the limit", view(&r, &[]));
    let r = s.get(&format!("{PODS}/r")).await;
    s.note(
        "the pod after",
        view(&r, &["/spec/containers/0/resources", "/spec/containers/0/image"]),
    );
}

/// Events as kube-runtime's Recorder writes them (events.k8s.io/v1: create, then a merge patch of
/// the series), read as CollectDiagnostics reads them (core v1, by involvedObject.name); and a
/// kubelet's core v1 Event read back as events.k8s.io/v1.
pub(super) async fn events_api(s: &mut Side) {
    let policy_uid = "00000000-0000-0000-0000-000000000001";
    let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "regarding": {"apiVersion": "apphealth.io/v1alpha1", "kind": "AppHealthPolicy", "name": "web", "namespace": "{ns}", "uid": policy_uid},
        "reason": "TriggerFired", "note": "3 failed probes", "action": "Evaluate", "type": "Warning",
        "reportingController": "apphealth-operator", "reportingInstance": "apphealth-operator"});
    let fields = [
        "/regarding",
        "/reason",
        "/note",
        "/action",
        "/type",
        "/eventTime",
        "/series",
        "/reportingController",
        "/reportingInstance",
        "/deprecatedCount",
        "/deprecatedSource",
    ];
    let r = s.post(EVENTS, &event).await;
    s.note("create", view(&r, &fields));
    let mut series = event.clone();
    series["series"] = json!({"count": 2, "lastObservedTime": "2026-01-01T00:00:05.000000Z"});
    let r = s.patch(&format!("{EVENTS}/web.1"), MERGE, &series).await;
    s.note("series", view(&r, &fields));
    let core = [
        "/involvedObject",
        "/reason",
        "/message",
        "/type",
        "/count",
        "/source",
        "/reportingComponent",
        "/reportingInstance",
        "/firstTimestamp",
        "/lastTimestamp",
        "/eventTime",
        "/series",
        "/action",
    ];
    let r = s.get(&format!("{CORE_EVENTS}/web.1")).await;
    s.note("as core v1", view(&r, &core));
    let kubelet = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "p1.1"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "p1", "namespace": "{ns}"},
        "reason": "BackOff", "message": "Back-off restarting failed container", "type": "Warning",
        "count": 3, "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:01:00Z",
        "source": {"component": "kubelet", "host": "node-1"}});
    let r = s.post(CORE_EVENTS, &kubelet).await;
    s.note("create core v1", view(&r, &core));
    let r = s.get(&format!("{EVENTS}/p1.1")).await;
    s.note("as events.k8s.io/v1", view(&r, &fields));
    s.note_lists(
        "core v1",
        CORE_EVENTS,
        &[
            "fieldSelector=involvedObject.name%3Dp1",
            "fieldSelector=involvedObject.name%3Dweb",
            "fieldSelector=reason%3DBackOff",
        ],
    )
    .await;
    s.note_lists(
        "events.k8s.io",
        EVENTS,
        &[
            "fieldSelector=regarding.name%3Dp1",
            "fieldSelector=reportingController%3Dapphealth-operator",
        ],
    )
    .await;
    let mut invalid = event.clone();
    invalid["metadata"]["name"] = json!("web.2");
    invalid.as_object_mut().unwrap().remove("reportingController");
    let r = s.post(EVENTS, &invalid).await;
    s.note("without reportingController", view(&r, &[]));
}

/// CollectDiagnostics' ConfigMaps (created once, listed by label, pruned) and Notify's Secret.
pub(super) async fn configmaps_and_secrets(s: &mut Side) {
    let p = s.post(POLICIES, &policy("web", json!({}))).await;
    let uid = p.body["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
    let capture = |name: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": OPERATOR, "apphealth.io/policy-uid": uid},
                "ownerReferences": [{"apiVersion": "apphealth.io/v1alpha1", "kind": "AppHealthPolicy", "name": "web", "uid": uid}]},
            "data": {"summary.txt": "why"}})
    };
    let create = format!("{CONFIGMAPS}?fieldManager={OPERATOR}");
    let r = s.post(&create, &capture("web-diag-1")).await;
    s.note(
        "create",
        view(&r, &["/metadata/labels", "/metadata/ownerReferences", "/data"]),
    );
    let r = s.post(&create, &capture("web-diag-1")).await;
    s.note("create again", view(&r, &[]));
    s.post(&create, &capture("web-diag-2")).await;
    s.post(CONFIGMAPS, &configmap("unrelated", json!({}))).await;
    let r = s
        .get(&format!(
            "{CONFIGMAPS}?labelSelector=apphealth.io%2Fpolicy-uid%3D{uid}"
        ))
        .await;
    s.note("list by label", names(&r));
    let r = s.delete(&format!("{CONFIGMAPS}/web-diag-1")).await;
    s.note("delete", view(&r, &["/metadata/name"]));
    let r = s.delete(&format!("{CONFIGMAPS}/web-diag-1")).await;
    s.note("delete again", view(&r, &[]));
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook"},
                        "data": {"url": "aHR0cDovLzEyNy4wLjAuMTo5L2hvb2s="}});
    let r = s.post(SECRETS, &secret).await;
    s.note("create secret", view(&r, &["/data", "/type"]));
    let r = s.get(&format!("{SECRETS}/hook")).await;
    s.note("get secret", view(&r, &["/data", "/type"]));
    let r = s.get(&format!("{SECRETS}/missing")).await;
    s.note("get a missing secret", view(&r, &[]));
}

fn lease_apply(holder: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {
        "acquireTime": "2026-01-01T00:00:00.000000Z", "renewTime": "2026-01-01T00:00:00.000000Z",
        "holderIdentity": holder, "leaseDurationSeconds": 15}})
}

/// Leader election as kube-lease-manager does it: create, lock by apply (unforced), renew and
/// release by strategic merge, a rival's apply conflicting while the lock is held, not after.
pub(super) async fn lease(s: &mut Side) {
    let r = s
        .post(
            LEASES,
            &json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "lock"}}),
        )
        .await;
    s.note("create", view(&r, &["/spec"]));
    let path = format!("{LEASES}/lock");
    let r = s.apply(&path, "lease-a", false, &lease_apply("a")).await;
    s.note("a locks", view(&r, &["/spec"]));
    let r = s.apply(&path, "lease-b", false, &lease_apply("b")).await;
    s.note("b conflicts", view(&r, &[]));
    let renew = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"renewTime": "2026-01-01T00:00:05.000000Z", "leaseDurationSeconds": 15}});
    let r = s
        .patch(&format!("{path}?fieldManager=lease-a"), STRATEGIC, &renew)
        .await;
    s.note("a renews", view(&r, &["/spec"]));
    let release = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {
        "acquireTime": null, "renewTime": null, "holderIdentity": null, "leaseDurationSeconds": null}});
    let r = s
        .patch(&format!("{path}?fieldManager=lease-a"), STRATEGIC, &release)
        .await;
    s.note("a releases", view(&r, &["/spec"]));
    let r = s.apply(&path, "lease-b", false, &lease_apply("b")).await;
    s.note("b locks", view(&r, &["/spec"]));
}

/// ScaleOut of a workload under an autoscaler: the HPA listed and merge-patched.
pub(super) async fn autoscaler(s: &mut Side) {
    let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 1, "maxReplicas": 4,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}});
    let r = s.post(HPAS, &hpa).await;
    s.note("create", view(&r, &["/spec"]));
    let r = s.get(HPAS).await;
    s.note("list", names(&r));
    let patch = json!({"metadata": {"annotations": {"apphealth.io/scaledOutAt": "2026-01-01T00:00:00Z", "apphealth.io/scaledOutFrom": "1/4"}},
                       "spec": {"minReplicas": 3, "maxReplicas": 6}});
    let r = s
        .patch(&format!("{HPAS}/web?fieldManager={OPERATOR}"), MERGE, &patch)
        .await;
    s.note(
        "patch",
        view(
            &r,
            &["/spec/minReplicas", "/spec/maxReplicas", "/metadata/annotations"],
        ),
    );
}

/// An RBAC refusal: kube-apiserver refuses an account without rights; the controller tests
/// inject the same answer through the test server's fault hook (as tests/integration/guards.rs).
pub(super) async fn forbidden(s: &mut Side) {
    if let Server::Test(server) = &s.server {
        server.set_fault_hook(|r| {
            r.path.ends_with("/eviction").then(|| Fault::Status {
                code: 403,
                reason: "Forbidden".into(),
                message: "pods \"web-b\" is forbidden: User cannot create resource \"pods/eviction\"".into(),
            })
        });
    }
    s.post(PODS, &pod("web-b", json!({"app": "web"}))).await;
    let nobody = [("Impersonate-User", "system:serviceaccount:{ns}:nobody")];
    let r = s
        .send(
            "POST",
            &format!("{PODS}/web-b/eviction"),
            JSON,
            Some(&eviction("web-b")),
            &nobody,
        )
        .await;
    s.note("evict without the right", view(&r, &[]));
}
