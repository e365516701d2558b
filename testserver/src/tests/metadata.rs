//! Metadata-only reads (`Accept: application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`),
//! as kube's watchers of `Api<PartialObjectMeta<_>>` make them for the operator's ConfigMaps and Secrets.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::{DEADLINE, client, cm, raw_request};
use crate::TestServer;

#[tokio::test]
async fn metadata_lists_gets_and_watches_carry_no_data() {
    let server = TestServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    api.create(&PostParams::default(), &cm("a", json!({"app": "x"})))
        .await
        .unwrap();

    let list = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.labels.as_ref().unwrap()["app"], "x");
    let one = api.get_metadata("a").await.unwrap();
    assert_eq!(one.metadata.name.as_deref(), Some("a"));

    // On the wire: the meta.k8s.io kinds and nothing but metadata.
    let raw = raw_request(
        &server,
        "GET /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1\r\n\r\n",
    )
    .await;
    let body: Value = serde_json::from_str(raw.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["kind"], "PartialObjectMetadataList");
    assert_eq!(body["apiVersion"], "meta.k8s.io/v1");
    let item = body["items"][0].as_object().unwrap();
    assert_eq!(
        item.keys().collect::<Vec<_>>(),
        ["apiVersion", "kind", "metadata"]
    );
    assert_eq!(item["kind"], "PartialObjectMetadata");

    // A metadata watch gets metadata-only objects too.
    let mut stream = api
        .watch_metadata(
            &WatchParams::default(),
            list.metadata.resource_version.as_deref().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    let rv = server.resource_version();
    api.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    let ev = tokio::time::timeout(DEADLINE, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let WatchEvent::Added(b) = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(b.metadata.name.as_deref(), Some("b"));
    let raw_watch = raw_request(
        &server,
        &format!(
            "GET /api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=1 \
             HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1\r\n\r\n"
        ),
    )
    .await;
    assert!(
        raw_watch.contains("\"kind\":\"PartialObjectMetadata\""),
        "{raw_watch}"
    );
    assert!(!raw_watch.contains("\"data\""), "{raw_watch}");

    // kube's metadata_watcher (the operator's ConfigMap and Secret reflectors) works against it.
    let meta: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client(&server).await, "default");
    let mut w = watcher(meta, watcher::Config::default()).boxed();
    let mut names = Vec::new();
    while let Ok(Some(Ok(ev))) = tokio::time::timeout(DEADLINE, w.next()).await {
        match ev {
            watcher::Event::InitApply(o) => names.push(o.metadata.name.unwrap_or_default()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    names.sort();
    assert_eq!(names, ["a", "b"]);
}
