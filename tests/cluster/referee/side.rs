//! One side of the referee: a server (the test server or kube-apiserver) as a case sees it, the
//! requests cases send through it, the views of the answers that are compared, and the objects
//! cases write.

use std::time::Duration;

use apphealth_testserver::TestServer;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::env::PATIENCE;

pub(super) enum Server {
    Test(TestServer),
    /// kube-apiserver; etcd's URL, for compaction.
    Real {
        etcd: String,
    },
}

/// One server, as a case sees it: a client, the case's namespace, and what the case noted.
pub(super) struct Side {
    pub(super) server: Server,
    pub(super) client: kube::Client,
    pub(super) ns: String,
    pub(super) record: Vec<(String, Value)>,
}

/// An answer: status code, body (JSON, or the text as a string), `Warning` headers.
pub(super) struct Resp {
    pub(super) code: u16,
    pub(super) body: Value,
    pub(super) warnings: Vec<String>,
}

pub(super) const JSON: &str = "application/json";
pub(super) const MERGE: &str = "application/merge-patch+json";
pub(super) const STRATEGIC: &str = "application/strategic-merge-patch+json";
pub(super) const APPLY: &str = "application/apply-patch+yaml";

/// The operator's field manager, and the one of its guard conditions.
pub(super) const OPERATOR: &str = "apphealth-operator";
pub(super) const GUARD: &str = "apphealth-operator-guard";

pub(super) const POLICIES: &str = "/apis/apphealth.io/v1alpha1/namespaces/{ns}/apphealthpolicies";
pub(super) const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/{ns}/deployments";
pub(super) const STATEFULSETS: &str = "/apis/apps/v1/namespaces/{ns}/statefulsets";
pub(super) const PODS: &str = "/api/v1/namespaces/{ns}/pods";
pub(super) const CONFIGMAPS: &str = "/api/v1/namespaces/{ns}/configmaps";
pub(super) const SECRETS: &str = "/api/v1/namespaces/{ns}/secrets";
pub(super) const CORE_EVENTS: &str = "/api/v1/namespaces/{ns}/events";
pub(super) const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/{ns}/events";
pub(super) const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases";
pub(super) const PDBS: &str = "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets";
pub(super) const HPAS: &str = "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers";
pub(super) const WIDGETS: &str = "/apis/referee.apphealth.io/v1/namespaces/{ns}/widgets";
pub(super) const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

/// How long a watch is read at most.
const WATCH_LIMIT: Duration = Duration::from_secs(15);
/// Every event of a watch, to its end.
pub(super) const ALL: usize = usize::MAX;

impl Side {
    /// `server`, reached through `client`, for a case in namespace `ns`; nothing noted yet.
    pub(super) fn new(server: Server, client: kube::Client, ns: &str) -> Self {
        Self {
            server,
            client,
            ns: ns.to_owned(),
            record: Vec::new(),
        }
    }

    pub(super) fn is_real(&self) -> bool {
        matches!(self.server, Server::Real { .. })
    }

    /// Sends a request; `{ns}` in the path and body stands for the case's namespace.
    pub(super) async fn send(
        &self,
        method: &str,
        path: &str,
        ctype: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let path = path.replace("{ns}", &self.ns);
        let bytes = body
            .map(|b| b.to_string().replace("{ns}", &self.ns).into_bytes())
            .unwrap_or_default();
        let mut request = http::Request::builder()
            .method(method)
            .uri(&path)
            .header("content-type", ctype)
            .header("accept", JSON);
        for (k, v) in headers {
            request = request.header(*k, v.replace("{ns}", &self.ns));
        }
        let request = request.body(kube::client::Body::from(bytes)).unwrap();
        let response = tokio::time::timeout(PATIENCE, self.client.send(request))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within {PATIENCE:?}"))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let code = response.status().as_u16();
        let warnings = response
            .headers()
            .get_all("warning")
            .iter()
            .map(|w| String::from_utf8_lossy(w.as_bytes()).into_owned())
            .collect();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Resp { code, body, warnings }
    }

    pub(super) async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, JSON, None, &[]).await
    }

    pub(super) async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send("POST", path, JSON, Some(body), &[]).await
    }

    pub(super) async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send("PUT", path, JSON, Some(body), &[]).await
    }

    pub(super) async fn patch(&self, path: &str, ctype: &str, body: &Value) -> Resp {
        self.send("PATCH", path, ctype, Some(body), &[]).await
    }

    pub(super) async fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, JSON, None, &[]).await
    }

    /// Server-side apply as `manager`.
    pub(super) async fn apply(&self, path: &str, manager: &str, force: bool, body: &Value) -> Resp {
        let path = format!("{path}?fieldManager={manager}&force={force}");
        self.patch(&path, APPLY, body).await
    }

    /// Notes a step's result under `label`.
    pub(super) fn note(&mut self, label: &str, value: Value) {
        self.record.push((label.to_owned(), value));
    }

    /// Makes pod `name` Running and Ready: kwok does it on the real cluster (this waits for it); on
    /// the test server it is written, as the controller tests' harness does.
    pub(super) async fn ready_pod(&self, name: &str) {
        match &self.server {
            Server::Test(server) => {
                server
                    .patch_status(
                        "v1",
                        "Pod",
                        Some(&self.ns),
                        name,
                        json!({"status": {"phase": "Running", "podIP": "127.0.0.9",
                                "conditions": [{"type": "Ready", "status": "True"}]}}),
                    )
                    .unwrap();
            }
            Server::Real { .. } => {
                self.wait_true(&format!("pod {name} Ready"), &format!("{PODS}/{name}"), "Ready")
                    .await;
            }
        }
    }

    /// Polls `path` until `ready` holds of it (the real cluster's controllers work meanwhile).
    pub(super) async fn wait(&self, what: &str, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let r = self.get(path).await;
            if r.code == 200 && ready(&r.body) {
                return r.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {PATIENCE:?}: {}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls `path` until its condition `type_` is True.
    pub(super) async fn wait_true(&self, what: &str, path: &str, type_: &str) -> Value {
        self.wait(what, path, |o| {
            crate::support::condition(o, type_).is_some_and(|c| c["status"] == "True")
        })
        .await
    }

    /// The current resourceVersion of `path`'s list.
    pub(super) async fn list_rv(&self, path: &str) -> String {
        let r = self.get(path).await;
        r.body["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_else(|| panic!("list {path}: {}", r.body))
            .to_owned()
    }

    /// A watch of `path` as [`events`] views it, read as [`Side::watch`] reads it.
    pub(super) async fn watch_events(&self, path: &str, count: usize) -> Value {
        let (code, seen) = self.watch(path, count).await;
        events(code, &seen)
    }

    /// Lists `path` with each of `queries`, noting each list's [`names`] as `{label} {query}`.
    pub(super) async fn note_lists(&mut self, label: &str, path: &str, queries: &[&str]) {
        for query in queries {
            let r = self.get(&format!("{path}?{query}")).await;
            self.note(&format!("{label} {query}"), names(&r));
        }
    }

    /// Reads a watch until the server ends it, `count` events came or [`WATCH_LIMIT`] passed: its
    /// status code and events ([`ALL`] reads to the end).
    async fn watch(&self, path: &str, count: usize) -> (u16, Vec<Value>) {
        let path = path.replace("{ns}", &self.ns);
        let request = http::Request::get(&path)
            .header("accept", JSON)
            .body(kube::client::Body::empty())
            .unwrap();
        let response = self
            .client
            .send(request)
            .await
            .unwrap_or_else(|e| panic!("watch {path}: {e}"));
        let code = response.status().as_u16();
        let mut body = response.into_body();
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + WATCH_LIMIT;
        while text.lines().filter(|l| !l.trim().is_empty()).count() < count {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        text.push_str(&String::from_utf8_lossy(&data));
                    }
                }
                _ => break,
            }
        }
        let events = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.to_owned())))
            .collect();
        (code, events)
    }

    /// Makes resourceVersion `r0` of widgets unavailable. The test server forgets its history.
    /// kube-apiserver serves watches from its watch cache, whatever etcd compacted, until the cache
    /// drops the version: it keeps at least 75s of events (`eventFreshDuration`), then as many as
    /// its capacity holds (100 at first). So: wait that out, write until a watch from `r0` expires,
    /// and compact etcd so that lists at `r0` expire too.
    pub(super) async fn expire(&self, r0: &str) {
        /// Writes enough for a watch cache that grew large in earlier runs (it doubles while
        /// full of fresh events, up to 102400).
        const CHURN_MAX: usize = 20_000;
        match &self.server {
            Server::Test(server) => server.compact_history(),
            Server::Real { etcd } => {
                tokio::time::sleep(Duration::from_secs(80)).await;
                let path = format!("{WIDGETS}?watch=1&resourceVersion={r0}&timeoutSeconds=1");
                let mut writes = 0;
                while writes < CHURN_MAX {
                    for _ in 0..100 {
                        writes += 1;
                        let patch = json!({"metadata": {"labels": {"n": writes.to_string()}}});
                        self.patch(&format!("{WIDGETS}/churn"), MERGE, &patch).await;
                    }
                    let (_, seen) = self.watch(&path, 1).await;
                    if seen.first().is_some_and(|e| e["type"] == "ERROR") {
                        break;
                    }
                }
                eprintln!("watch-gone: the watch cache dropped {r0} after {writes} writes");
                crate::etcd::compact(etcd).await;
            }
        }
    }
}

// --- Views: the parts of an answer that are compared. ---

/// A `Status` answer: code, status, reason, message and details (name, group, kind, causes).
pub(super) fn status_view(r: &Resp) -> Value {
    let b = &r.body;
    let mut details = b["details"].clone();
    if let Some(d) = details.as_object_mut() {
        d.remove("uid");
    }
    json!({"code": r.code, "status": b["status"], "reason": b["reason"], "message": b["message"], "details": details})
}

/// An answer: a `Status` as [`status_view`], else the code, kind, the JSON pointers `fields` of
/// the body, its `managedFields` (see [`managed`]) and `Warning` headers.
pub(super) fn view(r: &Resp, fields: &[&str]) -> Value {
    if r.body["kind"] == "Status" || r.code >= 300 {
        return status_view(r);
    }
    let mut v = json!({"code": r.code, "kind": r.body["kind"], "apiVersion": r.body["apiVersion"]});
    for f in fields {
        v[*f] = r.body.pointer(f).cloned().unwrap_or(Value::Null);
    }
    if r.body["metadata"].is_object() {
        v["managedFields"] = managed(&r.body);
    }
    if !r.warnings.is_empty() {
        v["warnings"] = json!(r.warnings);
    }
    v
}

/// `metadata.managedFields` by `manager|operation|subresource`: apiVersion, fieldsType, fieldsV1
/// (times are left out); `{}` for none, so that each entry is compared on its own.
pub(super) fn managed(object: &Value) -> Value {
    let mut by = serde_json::Map::new();
    for e in object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = format!(
            "{}|{}|{}",
            e["manager"].as_str().unwrap_or(""),
            e["operation"].as_str().unwrap_or(""),
            e["subresource"].as_str().unwrap_or("")
        );
        by.insert(
            key,
            json!({"apiVersion": e["apiVersion"], "fieldsType": e["fieldsType"], "fieldsV1": e["fieldsV1"]}),
        );
    }
    Value::Object(by)
}

/// A list: code, kind, item names (sorted), and whether it has a resourceVersion.
pub(super) fn names(r: &Resp) -> Value {
    if r.code >= 300 {
        return status_view(r);
    }
    let mut names: Vec<String> = r.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or("?").to_owned())
        .collect();
    names.sort();
    json!({"code": r.code, "kind": r.body["kind"], "apiVersion": r.body["apiVersion"],
           "resourceVersion": r.body["metadata"]["resourceVersion"].is_string(), "items": names})
}

/// Watch events as `TYPE name` (BOOKMARK with its annotations, ERROR with its Status), with
/// consecutive BOOKMARKs as one (the API server may send a second one a second later).
fn events(code: u16, events: &[Value]) -> Value {
    let mut out: Vec<Value> = Vec::new();
    for e in events {
        let object = &e["object"];
        let line = match e["type"].as_str() {
            Some("BOOKMARK") => {
                let annotations = object["metadata"]["annotations"].clone();
                json!({"BOOKMARK": {"kind": object["kind"], "apiVersion": object["apiVersion"],
                    "metadata keys": object["metadata"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()),
                    "annotations": annotations}})
            }
            Some("ERROR") => json!({"ERROR": {"code": object["code"], "reason": object["reason"],
                "kind": object["kind"], "message": object["message"]}}),
            Some(t) => json!(format!(
                "{t} {}",
                object["metadata"]["name"].as_str().unwrap_or("?")
            )),
            None => e.clone(),
        };
        if out.last() != Some(&line) || line.get("BOOKMARK").is_none() {
            out.push(line);
        }
    }
    json!({"code": code, "events": out})
}

pub(super) fn rv(r: &Resp) -> String {
    r.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

// --- Objects. ---

/// A policy spec targeting Deployment `web`, with `patch` merged in (null removes).
pub(super) fn policy(name: &str, patch: Value) -> Value {
    let mut spec = json!({
        "targetRef": {"kind": "Deployment", "name": "web"},
        "probe": {"http": {"port": "http", "path": "/healthz", "timeoutSeconds": 1}, "periodSeconds": 2},
        "triggers": [{"consecutiveFailures": {"threshold": 2}}],
        "remediation": {"steps": [{"action": "RolloutRestart", "timeout": "1h"}], "cooldown": "1h"}
    });
    crate::scenario::merge(&mut spec, patch);
    json!({"apiVersion": "apphealth.io/v1alpha1", "kind": "AppHealthPolicy",
           "metadata": {"name": name, "namespace": "{ns}"}, "spec": spec})
}

pub(super) fn deployment(name: &str, replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "{ns}", "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [container()]}}}})
}

pub(super) fn container() -> Value {
    json!({"name": "app", "image": "flaky", "ports": [{"name": "http", "containerPort": 8080}],
           "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}})
}

pub(super) fn pod(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "{ns}", "labels": labels},
           "spec": {"terminationGracePeriodSeconds": 0, "containers": [container()]}})
}

pub(super) fn configmap(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

/// A condition as the operator writes it.
pub(super) fn condition(type_: &str, status: &str, reason: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": format!("{type_} is {status}"),
           "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

pub(super) fn status_patch(status: Value) -> Value {
    json!({"apiVersion": "apphealth.io/v1alpha1", "kind": "AppHealthPolicy", "status": status})
}
