//! HTTP-level tests: the real `kube::Client` and `kube_runtime` watcher against the server on loopback.

use std::future::Future;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Fault, TestServer};

mod admission;
mod apply;
mod events;
mod exec;
mod faults;
mod managed_fields;
mod metadata;
mod metrics;
mod openapi;
mod pods;
mod policy;
mod refereed;
mod smd;
mod watch;

const DEADLINE: Duration = Duration::from_secs(10);

async fn client(server: &TestServer) -> kube::Client {
    let config = kube::Config::new(server.url().parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

/// Poll `check` until it yields `Some`, failing after a deadline.
async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Healthy", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Healthy\")].status"}
                ]
            }]
        }
    })
}

fn widget_api(client: &kube::Client) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.com", "v1", "Widget"), "widgets");
    Api::namespaced_with(client.clone(), "default", &ar)
}

fn cm(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})).unwrap()
}

/// Short string for each watcher event: "apply:name", "delete:name", "init", "initapply:name", "initdone".
fn describe(ev: &watcher::Event<ConfigMap>) -> String {
    let name = |o: &ConfigMap| o.metadata.name.clone().unwrap_or_default();
    match ev {
        watcher::Event::Apply(o) => format!("apply:{}", name(o)),
        watcher::Event::Delete(o) => format!("delete:{}", name(o)),
        watcher::Event::Init => "init".into(),
        watcher::Event::InitApply(o) => format!("initapply:{}", name(o)),
        watcher::Event::InitDone => "initdone".into(),
    }
}

/// Run a watcher in the background; its events arrive, described, on the returned channel.
fn spawn_watcher(
    api: Api<ConfigMap>,
    config: watcher::Config,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = watcher(api, config).boxed();
        while let Some(ev) = stream.next().await {
            if let Ok(ev) = ev {
                if tx.send(describe(&ev)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

async fn expect_event(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, want: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let got = tokio::time::timeout_at(deadline, rx.recv()).await;
        match got {
            Ok(Some(ev)) if ev == want => return,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("watcher ended before {want}"),
            Err(_) => panic!("timed out waiting for watcher event {want}"),
        }
    }
}

#[tokio::test]
async fn watcher_sees_added_modified_deleted_with_selectors() {
    let server = TestServer::start().await.unwrap();
    let client = client(&server).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("before", json!({"app": "web"})))
        .await
        .unwrap();

    let mut all = spawn_watcher(api.clone(), watcher::Config::default());
    let mut web = spawn_watcher(api.clone(), watcher::Config::default().labels("app=web"));
    let mut streaming = spawn_watcher(api.clone(), watcher::Config::default().streaming_lists());
    for rx in [&mut all, &mut web, &mut streaming] {
        expect_event(rx, "initapply:before").await;
        expect_event(rx, "initdone").await;
    }

    api.create(&PostParams::default(), &cm("other", json!({"app": "db"})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("web2", json!({"app": "web"})))
        .await
        .unwrap();
    expect_event(&mut all, "apply:other").await;
    expect_event(&mut all, "apply:web2").await;
    expect_event(&mut web, "apply:web2").await; // "other" filtered out
    expect_event(&mut streaming, "apply:web2").await;

    let patch = json!({"data": {"k": "changed"}});
    api.patch("web2", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    expect_event(&mut all, "apply:web2").await;
    // Relabelling out of the selector is a delete for that watcher.
    let relabel = json!({"metadata": {"labels": {"app": "db"}}});
    api.patch("before", &PatchParams::default(), &Patch::Merge(&relabel))
        .await
        .unwrap();
    expect_event(&mut web, "delete:before").await;

    api.delete("web2", &Default::default()).await.unwrap();
    expect_event(&mut all, "delete:web2").await;
    expect_event(&mut web, "delete:web2").await;
    expect_event(&mut streaming, "delete:web2").await;

    let reqs = server.requests();
    assert!(
        reqs.iter()
            .any(|r| r.is_watch() && r.query.contains("labelSelector=app%3Dweb"))
    );
    assert!(reqs.iter().any(|r| r.query.contains("sendInitialEvents=true")));
    assert!(
        reqs.iter()
            .any(|r| r.method == "DELETE" && r.path.ends_with("/configmaps/web2") && r.status == 200)
    );
}

#[tokio::test]
async fn watcher_recovers_from_expired_history() {
    let server = TestServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    api.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    // Watches time out quickly so the watcher resumes from its resourceVersion, into compacted history.
    let mut rx = spawn_watcher(api.clone(), watcher::Config::default().timeout(1));
    expect_event(&mut rx, "initdone").await;
    server.compact_history();
    api.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    // Either the live stream delivers it, or after the 410 the watcher re-lists; both show "b".
    wait_until("b to be seen", || {
        let got = rx.try_recv().ok();
        async move { got.filter(|e| e == "apply:b" || e == "initapply:b") }
    })
    .await;
    server.compact_history();
    let rv_before = server.resource_version();
    // A watch from a resourceVersion older than the history gets an ERROR event with 410.
    let raw = raw_request(
        &server,
        &format!("GET /api/v1/namespaces/default/configmaps?watch=true&resourceVersion={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", rv_before.saturating_sub(2)),
    )
    .await;
    assert!(
        raw.contains("\"type\":\"ERROR\"") && raw.contains("\"code\":410"),
        "{raw}"
    );
}

#[tokio::test]
async fn crd_registers_and_status_apply_leaves_spec_alone() {
    let server = TestServer::start().await.unwrap();
    let client = client(&server).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(widget_crd()).unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let discovered = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    let (ar, caps) = discovered
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
        .unwrap();
    assert_eq!(ar.plural, "widgets");
    assert!(
        caps.subresources
            .iter()
            .any(|(s, _)| s.plural == "widgets/status" || s.plural == "status")
    );

    let widgets = widget_api(&client);
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"},
                   "spec": {"size": 1}, "status": {"ignored": true}});
    let created = widgets
        .create(&PostParams::default(), &serde_json::from_value(w).unwrap())
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.data.get("status").is_none(),
        "status is dropped on create"
    );

    let status = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"},
        "spec": {"size": 99},
        "status": {"phase": "Ok", "conditions": [{"type": "Ready", "status": "True"}, {"type": "Healthy", "status": "True"}]}});
    let pp = PatchParams::apply("mgr").force();
    let after = widgets
        .patch_status("w1", &pp, &Patch::Apply(&status))
        .await
        .unwrap();
    assert_eq!(after.data["spec"]["size"], 1, "status apply must not touch spec");
    assert_eq!(after.metadata.generation, Some(1));
    assert_eq!(after.data["status"]["phase"], "Ok");

    // Another manager's condition survives; this manager's omitted condition is removed.
    let other = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"},
        "status": {"conditions": [{"type": "Other", "status": "True"}]}});
    widgets
        .patch_status("w1", &PatchParams::apply("other").force(), &Patch::Apply(&other))
        .await
        .unwrap();
    let again = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"},
        "status": {"phase": "Degraded", "conditions": [{"type": "Healthy", "status": "False"}]}});
    let after = widgets
        .patch_status("w1", &pp, &Patch::Apply(&again))
        .await
        .unwrap();
    let types: Vec<&str> = after.data["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Healthy", "Other"]);

    // Spec change bumps generation; writes to the main resource keep status.
    let spec = json!({"spec": {"size": 2}, "status": {"phase": "Overwritten"}});
    let after = widgets
        .patch("w1", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .unwrap();
    assert_eq!(after.metadata.generation, Some(2));
    assert_eq!(after.data["status"]["phase"], "Degraded");
    assert_eq!(
        server
            .get("example.com/v1", "Widget", Some("default"), "w1")
            .unwrap()["spec"]["size"],
        2
    );

    // Deleting the CRD unregisters the resource.
    crds.delete("widgets.example.com", &Default::default())
        .await
        .unwrap();
    let err = widgets.get("w1").await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 404), "{err:?}");
}

#[tokio::test]
async fn stale_resource_version_conflicts_and_faults_are_injected() {
    let server = TestServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let first = api
        .create(&PostParams::default(), &cm("c", json!({})))
        .await
        .unwrap();
    let err = api
        .create(&PostParams::default(), &cm("c", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{err:?}"
    );
    let mut updated = first.clone();
    updated.data = Some([("k".to_string(), "new".to_string())].into());
    api.replace("c", &PostParams::default(), &updated).await.unwrap();
    // `first` now carries a stale resourceVersion.
    let err = api
        .replace("c", &PostParams::default(), &first)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{err:?}"
    );
    let stale = json!({"metadata": {"resourceVersion": first.metadata.resource_version}, "data": {"k": "x"}});
    let err = api
        .patch("c", &PatchParams::default(), &Patch::Merge(&stale))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 409), "{err:?}");

    server.set_fault_hook(|r| {
        (r.method == "PATCH").then(|| Fault::Status {
            code: 500,
            reason: "InternalError".into(),
            message: "injected".into(),
        })
    });
    let ok = json!({"data": {"k": "y"}});
    let err = api
        .patch("c", &PatchParams::default(), &Patch::Merge(&ok))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 500 && s.message == "injected"),
        "{err:?}"
    );
    assert!(api.get("c").await.is_ok(), "reads are not faulted");
    // kube's default client retries 429/503/504 by itself: two 503s are invisible to the caller.
    let left = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(2));
    server.set_fault_hook(move |r| {
        let fail = r.method == "PATCH" && left.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok();
        fail.then(|| Fault::Status {
            code: 503,
            reason: "ServiceUnavailable".into(),
            message: "busy".into(),
        })
    });
    api.patch("c", &PatchParams::default(), &Patch::Merge(&ok))
        .await
        .unwrap();
    server.clear_fault_hook();
    let patches: Vec<u16> = server
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.status)
        .collect();
    assert_eq!(patches, [409, 500, 503, 503, 200]);
    assert_eq!(
        server.requests().last().unwrap().content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    server.clear_requests();
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn deployments_scale_and_direct_state_access() {
    let server = TestServer::start().await.unwrap();
    let api: Api<Deployment> = Api::namespaced(client(&server).await, "apps");
    server
        .create(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "apps"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "w:1"}]}}}}))
        .unwrap();
    server
        .patch_status(
            "apps/v1",
            "Deployment",
            Some("apps"),
            "web",
            json!({"status": {"replicas": 1}}),
        )
        .unwrap();
    let scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));
    api.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 4}})),
    )
    .await
    .unwrap();
    let d = api.get("web").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(4));
    assert_eq!(d.metadata.generation, Some(2));
    assert_eq!(server.list("apps/v1", "Deployment", None).len(), 1);
    assert_eq!(server.list("apps/v1", "Deployment", Some("other")).len(), 0);
    // Strategic merge of containers by name.
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "w:2"}]}}}});
    api.patch("web", &PatchParams::default(), &Patch::Strategic(&smp))
        .await
        .unwrap();
    let d = server.get("apps/v1", "Deployment", Some("apps"), "web").unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"],
        json!([{"name": "web", "image": "w:2"}])
    );
    server
        .delete("apps/v1", "Deployment", Some("apps"), "web")
        .unwrap();
    assert!(server.get("apps/v1", "Deployment", Some("apps"), "web").is_none());
    assert_eq!(
        server
            .delete("apps/v1", "Deployment", Some("apps"), "web")
            .unwrap_err()
            .code,
        404
    );
}

/// Sends `method path` with `body` (none: an empty one) as `content_type`; returns (status code,
/// head in lower case, body as JSON, or as a string when it is not JSON).
/// A JSON merge patch of `path`, as `kubectl patch --type merge` sends it.
async fn merge_patch(server: &TestServer, path: &str, patch: &Value) -> (u16, String, Value) {
    send(server, "PATCH", path, "application/merge-patch+json", Some(patch)).await
}

async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<&Value>,
) -> (u16, String, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_request(server, &request).await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let code = head[9..12].parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
    (code, head.to_ascii_lowercase(), body)
}

async fn raw_request(server: &TestServer, request: &str) -> String {
    String::from_utf8_lossy(&raw_request_bytes(server, request).await).into_owned()
}

/// The whole answer, head and body, as bytes (for bodies that are not text).
async fn raw_request_bytes(server: &TestServer, request: &str) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test]
async fn malformed_requests_get_status_errors() {
    let server = TestServer::start().await.unwrap();
    let body = "{not json";
    let cases = [
        (
            format!(
                "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
            "400",
            "BadRequest",
        ),
        ("GET /api/v1/namespaces/default/nothings HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(), "404", "NotFound"),
        ("GET /api/v1/namespaces/default/configmaps/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(), "404", "NotFound"),
        (
            "PATCH /api/v1/namespaces/default/configmaps/x HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".into(),
            "415",
            "UnsupportedMediaType",
        ),
        ("GET /api/v1/configmaps?labelSelector=a%20in%20b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(), "400", "BadRequest"),
        ("GET /api/v1/namespaces/default/pods/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(), "400", "BadRequest"),
        (
            "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".into(),
            "422",
            "Invalid",
        ),
        ("PUT /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(), "405", "MethodNotAllowed"),
    ];
    for (req, code, reason) in cases {
        let resp = raw_request(&server, &req).await;
        assert!(resp.starts_with(&format!("HTTP/1.1 {code}")), "{req}\n=> {resp}");
        assert!(
            resp.contains("\"kind\":\"Status\"") && resp.contains(&format!("\"reason\":\"{reason}\"")),
            "{resp}"
        );
    }
    // The server still serves afterwards.
    let ok = raw_request(
        &server,
        "GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(ok.contains("v1.33.0"));
}

#[tokio::test]
async fn tables_for_kubectl() {
    let server = TestServer::start().await.unwrap();
    server.create(widget_crd()).unwrap();
    server
        .create(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1", "namespace": "default"}}))
        .unwrap();
    server
        .patch_status(
            "example.com/v1",
            "Widget",
            Some("default"),
            "w1",
            json!({"status": {"conditions": [{"type": "Healthy", "status": "True"}]}}),
        )
        .unwrap();
    let resp = raw_request(
        &server,
        "GET /apis/example.com/v1/namespaces/default/widgets HTTP/1.1\r\nHost: x\r\nAccept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json\r\nConnection: close\r\n\r\n",
    )
    .await;
    let body = resp.split("\r\n\r\n").nth(1).unwrap();
    let table: Value = serde_json::from_str(body).unwrap();
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"][0]["cells"][0], "w1");
    assert_eq!(table["rows"][0]["cells"][1], "True");
    assert_eq!(table["rows"][0]["object"]["metadata"]["name"], "w1");
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let server = TestServer::start().await.unwrap();
    let addr = server.addr();
    let clone = server.clone();
    drop(server);
    // A clone keeps it alive.
    assert!(
        raw_request(
            &clone,
            "GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .await
        .contains("gitVersion")
    );
    drop(clone);
    wait_until("the port to close", || async move {
        tokio::net::TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
}

#[tokio::test]
async fn dry_run_writes_change_nothing() {
    let server = TestServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let created = api.create(&pp, &cm("dry", json!({}))).await.unwrap();
    assert_eq!(created.metadata.name.as_deref(), Some("dry"));
    assert!(server.get("v1", "ConfigMap", Some("default"), "dry").is_none());
    api.create(&PostParams::default(), &cm("real", json!({})))
        .await
        .unwrap();
    let patch = json!({"data": {"k": "dry"}});
    let patched = api
        .patch("real", &PatchParams::default().dry_run(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["k"], "dry");
    assert_eq!(
        server.get("v1", "ConfigMap", Some("default"), "real").unwrap()["data"]["k"],
        "v"
    );
}
