//! The pods `log` and `resize` subresources, through kube-rs.

use futures::AsyncReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::{client, raw_request};
use crate::TestServer;

fn api_error(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn two_containers(server: &TestServer) {
    server
        .create(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"containers": [{"name": "app", "image": "app:1"}, {"name": "proxy", "image": "envoy:1"}]}
        }))
        .unwrap();
}

#[tokio::test]
async fn pod_logs_with_tail_limit_previous_and_errors() {
    let server = TestServer::start().await.unwrap();
    two_containers(&server);
    server
        .create(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo", "namespace": "shop"},
                       "spec": {"containers": [{"name": "only", "image": "x"}]}}),
        )
        .unwrap();
    server.set_pod_log("shop", "web", "app", false, "one\ntwo\nthree\n");
    server.set_pod_log("shop", "web", "app", true, "crashed: out of memory\n");
    server.set_pod_log("shop", "solo", "only", false, "hello\n");
    let pods: Api<Pod> = Api::namespaced(client(&server).await, "shop");
    let lp = |container: &str| LogParams {
        container: Some(container.into()),
        ..Default::default()
    };

    assert_eq!(pods.logs("web", &lp("app")).await.unwrap(), "one\ntwo\nthree\n");
    let tail = LogParams {
        tail_lines: Some(2),
        timestamps: true,
        ..lp("app")
    };
    assert_eq!(pods.logs("web", &tail).await.unwrap(), "two\nthree\n");
    let limited = LogParams {
        limit_bytes: Some(5),
        ..lp("app")
    };
    assert_eq!(pods.logs("web", &limited).await.unwrap(), "one\nt");
    let previous = LogParams {
        previous: true,
        ..lp("app")
    };
    assert_eq!(
        pods.logs("web", &previous).await.unwrap(),
        "crashed: out of memory\n"
    );
    // No log set: empty; replaced: the new text.
    assert_eq!(pods.logs("web", &lp("proxy")).await.unwrap(), "");
    server.set_pod_log("shop", "web", "proxy", false, "ready\n");
    assert_eq!(pods.logs("web", &lp("proxy")).await.unwrap(), "ready\n");
    // A pod with one container needs no container name; log_stream reads the same.
    assert_eq!(pods.logs("solo", &LogParams::default()).await.unwrap(), "hello\n");
    let mut streamed = String::new();
    pods.log_stream("solo", &LogParams::default())
        .await
        .unwrap()
        .read_to_string(&mut streamed)
        .await
        .unwrap();
    assert_eq!(streamed, "hello\n");

    let err = |e: kube::Error| {
        let s = api_error(e);
        (s.code, s.message)
    };
    assert_eq!(
        err(pods.logs("web", &LogParams::default()).await.unwrap_err()),
        (
            400,
            "a container name must be specified for pod web, choose one of: [app proxy]".into()
        )
    );
    assert_eq!(
        err(pods.logs("web", &lp("db")).await.unwrap_err()),
        (400, "container db is not valid for pod web".into())
    );
    let previous_proxy = LogParams {
        previous: true,
        ..lp("proxy")
    };
    assert_eq!(
        err(pods.logs("web", &previous_proxy).await.unwrap_err()),
        (
            400,
            "previous terminated container \"proxy\" in pod \"web\" not found".into()
        )
    );
    assert_eq!(
        err(pods.logs("gone", &lp("app")).await.unwrap_err()),
        (404, "pods \"gone\" not found".into())
    );
    let negative = LogParams {
        tail_lines: Some(-1),
        ..lp("app")
    };
    assert_eq!(err(pods.logs("web", &negative).await.unwrap_err()).0, 422);

    // Served as text/plain.
    let resp = raw_request(
        &server,
        "GET /api/v1/namespaces/shop/pods/web/log?container=app&tailLines=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("content-type: text/plain"),
        "{resp}"
    );
    assert!(resp.ends_with("\r\n\r\nthree\n"), "{resp}");
}

fn resources(pod: &Pod, i: usize) -> Value {
    serde_json::to_value(&pod.spec.as_ref().unwrap().containers[i].resources).unwrap()
}

#[tokio::test]
async fn resize_changes_only_container_resources() {
    let server = TestServer::start().await.unwrap();
    server
        .create(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"containers": [
                {"name": "app", "image": "app:1",
                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}},
                {"name": "proxy", "image": "envoy:1"}
            ]}
        }))
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client(&server).await, "shop");
    let pp = PatchParams::default();

    // Strategic merge: the list-map by name leaves the other container alone.
    let patch =
        json!({"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "150m"}}}]}});
    let pod = pods
        .patch_resize("web", &pp, &Patch::Strategic(&patch))
        .await
        .unwrap();
    assert_eq!(
        resources(&pod, 0),
        json!({"requests": {"cpu": "150m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}})
    );
    assert_eq!(pod.spec.as_ref().unwrap().containers.len(), 2);
    let stored = server.get("v1", "Pod", Some("shop"), "web").unwrap();
    assert_eq!(
        stored["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "150m"
    );
    let fields = &pod.metadata.managed_fields.as_ref().unwrap();
    assert!(fields.iter().any(|f| f.subresource.as_deref() == Some("resize")));

    // Other changes in the result are dropped, as by the API server.
    let patch = json!({"metadata": {"labels": {"app": "other"}},
                       "spec": {"containers": [{"name": "app", "image": "app:2", "resources": {"limits": {"memory": "256Mi"}}}]}});
    let pod = pods
        .patch_resize("web", &pp, &Patch::Strategic(&patch))
        .await
        .unwrap();
    assert_eq!(resources(&pod, 0)["limits"]["memory"], "256Mi");
    let c = &pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(c.image.as_deref(), Some("app:1"));
    assert_eq!(pod.metadata.labels.as_ref().unwrap()["app"], "web");

    // JSON patch, and PUT through replace_resize.
    let body =
        json!([{"op": "replace", "path": "/spec/containers/0/resources/requests/memory", "value": "96Mi"}])
            .to_string();
    let resp = raw_request(
        &server,
        &format!(
            "PATCH /api/v1/namespaces/shop/pods/web/resize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json-patch+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let pod: Pod = serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(resources(&pod, 0)["requests"]["memory"], "96Mi");
    let mut whole = pods.get_resize("web").await.unwrap();
    whole.spec.as_mut().unwrap().containers[0]
        .resources
        .as_mut()
        .unwrap()
        .requests
        .as_mut()
        .unwrap()
        .insert(
            "cpu".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("120m".into()),
        );
    let pod = pods
        .replace_resize("web", &PostParams::default(), &whole)
        .await
        .unwrap();
    assert_eq!(resources(&pod, 0)["requests"]["cpu"], "120m");

    // Refused: other resources, renamed containers, removed requests, a QoS change.
    let refused = |patch: Value| {
        let pods = pods.clone();
        async move {
            let e = api_error(
                pods.patch_resize("web", &PatchParams::default(), &Patch::Strategic(&patch))
                    .await
                    .unwrap_err(),
            );
            assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{}", e.message);
            e.message
        }
    };
    let m = refused(json!({"spec": {"containers": [{"name": "app", "resources": {"limits": {"ephemeral-storage": "1Gi"}}}]}})).await;
    assert_eq!(
        m,
        "Pod \"web\" is invalid: spec: Forbidden: only cpu and memory resources are mutable"
    );
    let m = refused(
        json!({"spec": {"containers": [{"name": "app", "resources": {"requests": {"memory": null}}}]}}),
    )
    .await;
    assert!(m.contains("resource requests cannot be removed"), "{m}");
    // Requests equal to limits everywhere would make the Burstable pod Guaranteed.
    let m = refused(json!({"spec": {"containers": [
        {"name": "app", "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}}},
        {"name": "proxy", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}
    ]}}))
    .await;
    assert_eq!(
        m,
        "Pod \"web\" is invalid: spec: Invalid value: \"Guaranteed\": Pod QOS Class may not change as a result of resizing"
    );
    let merge = Patch::Merge(json!({"spec": {"containers": [{"name": "web", "image": "x"}]}}));
    let e = api_error(pods.patch_resize("web", &pp, &merge).await.unwrap_err());
    assert!(
        e.message.contains("may not be added or removed on resize"),
        "{}",
        e.message
    );
    assert_eq!(
        resources(&pods.get("web").await.unwrap(), 0)["requests"]["cpu"],
        "120m"
    );

    // Before Kubernetes 1.33 there is no resize subresource.
    server.disable_resize();
    let e = api_error(pods.get_resize("web").await.unwrap_err());
    assert_eq!(e.code, 404);
    let patch =
        json!({"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "110m"}}}]}});
    assert_eq!(
        api_error(
            pods.patch_resize("web", &pp, &Patch::Strategic(&patch))
                .await
                .unwrap_err()
        )
        .code,
        404
    );
    let resp = raw_request(
        &server,
        "GET /api/v1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        resp.contains("\"pods/eviction\"") && !resp.contains("\"pods/resize\""),
        "{resp}"
    );
}
