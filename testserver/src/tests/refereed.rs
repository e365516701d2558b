//! What refereeing against kube-apiserver (tests/cluster/referee.rs) found and the test server now
//! does as the API server does: list options and field selectors checked, exact lists, what DELETE
//! and PUT answer, errors naming their object, and the bookmark before a watch times out.

use serde_json::{Value, json};

use super::{raw_request, send};
use crate::TestServer;

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

/// Sends `method path` (with a JSON body); returns (status code, body as JSON or text).
async fn call(server: &TestServer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let (code, _, body) = send(server, method, path, "application/json", body.as_ref()).await;
    (code, body)
}

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}})
}

fn names(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn field_selectors_name_the_fields_each_type_supports() {
    let server = TestServer::start().await.unwrap();
    let pods = "/api/v1/namespaces/default/pods";
    for (path, query, code, message) in [
        (pods, "status.phase%3DRunning", 200, ""),
        (pods, "metadata.name%3Dp", 200, ""),
        (
            pods,
            "metadata.labels.app%3Dweb",
            400,
            "field label not supported: metadata.labels.app",
        ),
        (
            CONFIGMAPS,
            "data.k%3Dv",
            400,
            "\"data.k\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
        ),
        (
            "/api/v1/namespaces/default/events",
            "involvedObject.name%3Dp",
            200,
            "",
        ),
        (
            "/apis/events.k8s.io/v1/namespaces/default/events",
            "regarding.name%3Dp",
            200,
            "",
        ),
    ] {
        let (got, body) = call(&server, "GET", &format!("{path}?fieldSelector={query}"), None).await;
        assert_eq!(got, code, "{path} {query}: {body}");
        if code == 400 {
            assert_eq!(body["message"], message);
        }
    }
}

#[tokio::test]
async fn lists_check_their_resource_version_and_list_exactly_at_one() {
    let server = TestServer::start().await.unwrap();
    call(&server, "POST", CONFIGMAPS, Some(cm("a", json!({})))).await;
    let at = server.resource_version();
    call(&server, "POST", CONFIGMAPS, Some(cm("b", json!({})))).await;
    call(&server, "DELETE", &format!("{CONFIGMAPS}/a"), None).await;
    let exact = format!("{CONFIGMAPS}?resourceVersion={at}&resourceVersionMatch=Exact");
    let (code, list) = call(&server, "GET", &exact, None).await;
    assert_eq!((code, names(&list)), (200, vec!["a"]), "{list}");
    assert_eq!(list["metadata"]["resourceVersion"], at.to_string());
    let (_, list) = call(&server, "GET", CONFIGMAPS, None).await;
    assert_eq!(names(&list), ["b"]);
    for (query, code) in [("resourceVersionMatch=Exact", 422), ("resourceVersion=abc", 400)] {
        let (got, body) = call(&server, "GET", &format!("{CONFIGMAPS}?{query}"), None).await;
        assert_eq!(got, code, "{query}: {body}");
    }
    server.compact_history();
    let (code, body) = call(&server, "GET", &exact, None).await;
    assert_eq!((code, &body["reason"]), (410, &json!("Expired")), "{body}");
}

#[tokio::test]
async fn deletes_answer_a_status_or_the_object_and_errors_name_it() {
    let server = TestServer::start().await.unwrap();
    call(&server, "POST", CONFIGMAPS, Some(cm("a", json!({})))).await;
    let (code, body) = call(&server, "DELETE", &format!("{CONFIGMAPS}/a"), None).await;
    assert_eq!(
        (code, &body["kind"], &body["status"]),
        (200, &json!("Status"), &json!("Success"))
    );
    assert_eq!(
        (&body["details"]["name"], &body["details"]["kind"]),
        (&json!("a"), &json!("configmaps"))
    );
    let (code, body) = call(&server, "DELETE", &format!("{CONFIGMAPS}/a"), None).await;
    assert_eq!(
        (code, &body["details"]),
        (404, &json!({"name": "a", "kind": "configmaps"}))
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                     "spec": {"containers": [{"name": "c", "image": "i"}]}});
    call(&server, "POST", "/api/v1/namespaces/default/pods", Some(pod)).await;
    let (_, body) = call(&server, "DELETE", "/api/v1/namespaces/default/pods/p", None).await;
    assert_eq!(body["kind"], "Pod", "pods are answered with the pod: {body}");
}

#[tokio::test]
async fn replace_needs_the_url_s_name_and_for_custom_resources_a_version() {
    let server = TestServer::start().await.unwrap();
    call(&server, "POST", CONFIGMAPS, Some(cm("a", json!({})))).await;
    let (code, body) = call(
        &server,
        "PUT",
        &format!("{CONFIGMAPS}/other"),
        Some(cm("a", json!({}))),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body["message"],
        "the name of the object (a) does not match the name on the URL (other)"
    );
    // Built-ins allow an unconditional update.
    let (code, _) = call(
        &server,
        "PUT",
        &format!("{CONFIGMAPS}/a"),
        Some(cm("a", json!({"x": "1"}))),
    )
    .await;
    assert_eq!(code, 200);
    server
        .create(json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "gizmos.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"kind": "Gizmo", "plural": "gizmos"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}))
        .unwrap();
    let gizmos = "/apis/example.com/v1/namespaces/default/gizmos";
    let gizmo = json!({"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "g"}});
    call(&server, "POST", gizmos, Some(gizmo.clone())).await;
    let (code, body) = call(&server, "PUT", &format!("{gizmos}/g"), Some(gizmo.clone())).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "metadata.resourceVersion");
    let (code, _) = call(
        &server,
        "PUT",
        &format!("{gizmos}/missing"),
        Some(json!({"metadata": {"name": "missing"}})),
    )
    .await;
    assert_eq!(code, 404, "a missing object is NotFound first");
}

#[tokio::test]
async fn a_watch_with_bookmarks_gets_one_before_it_times_out_if_changes_passed_it_by() {
    let server = TestServer::start().await.unwrap();
    let watch = |rv: u64, bookmarks: bool| {
        let server = server.clone();
        async move {
            let request = format!(
                "GET {CONFIGMAPS}?watch=1&resourceVersion={rv}&timeoutSeconds=3&labelSelector=w%3D1\
                 &allowWatchBookmarks={bookmarks} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            raw_request(&server, &request).await
        }
    };
    let rv = server.resource_version();
    let (with, without, _) = tokio::join!(watch(rv, true), watch(rv, false), async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        call(&server, "POST", CONFIGMAPS, Some(cm("unwatched", json!({})))).await
    });
    assert_eq!(with.matches("\"BOOKMARK\"").count(), 1, "{with}");
    assert!(!without.contains("BOOKMARK"), "{without}");
    // Nothing passed it by since: no bookmark.
    let quiet = watch(server.resource_version(), true).await;
    assert!(!quiet.contains("BOOKMARK"), "{quiet}");
}
