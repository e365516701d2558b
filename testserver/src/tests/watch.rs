//! Watch bookmarks and watches ended by the server ([`TestServer::end_watches`]).

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::{client, cm, expect_event, raw_request, spawn_watcher};
use crate::TestServer;

fn watch_requests(server: &TestServer) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.query.contains("watch=true") || r.query.contains("watch=1"))
        .map(|r| r.query)
        .collect()
}

#[tokio::test]
async fn watches_that_allow_bookmarks_get_them_with_the_version_reached() {
    let server = TestServer::start().await.unwrap();
    server.set_bookmark_interval(Duration::from_millis(50));
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    api.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let rv = server.resource_version();
    let get = |bookmarks: bool| {
        let server = server.clone();
        async move {
            let request = format!(
                "GET /api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=1{} \
                 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                if bookmarks {
                    "&allowWatchBookmarks=true"
                } else {
                    ""
                }
            );
            raw_request(&server, &request).await
        }
    };
    let raw = get(true).await;
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default();
    let bookmarks: Vec<Value> = body
        .lines()
        .filter_map(|l| {
            serde_json::from_str::<Value>(l.trim_start_matches(|c: char| c.is_ascii_hexdigit())).ok()
        })
        .filter(|ev| ev["type"] == "BOOKMARK")
        .collect();
    assert!(!bookmarks.is_empty(), "{raw}");
    for b in &bookmarks {
        assert_eq!(b["object"]["kind"], "ConfigMap");
        assert_eq!(b["object"]["apiVersion"], "v1");
        assert_eq!(b["object"]["metadata"]["resourceVersion"], rv.to_string());
    }
    assert!(!get(false).await.contains("BOOKMARK"));
}

#[tokio::test]
async fn ended_watches_resume_and_after_compaction_relist() {
    let server = TestServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    api.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let mut rx = spawn_watcher(api.clone(), watcher::Config::default());
    expect_event(&mut rx, "initdone").await;
    // kube's watcher asks for bookmarks.
    assert!(
        watch_requests(&server)
            .iter()
            .all(|q| q.contains("allowWatchBookmarks=true"))
    );
    let watches = watch_requests(&server).len();

    // Ended: the watcher resumes from its resourceVersion and misses nothing.
    server.end_watches();
    api.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    expect_event(&mut rx, "apply:b").await;
    assert!(watch_requests(&server).len() > watches);

    // Ended with the history compacted past what the watcher saw (a change it does not watch): the
    // resumed watch gets 410 Gone and the watcher relists.
    let elsewhere: Api<ConfigMap> = Api::namespaced(client(&server).await, "other");
    elsewhere
        .create(&PostParams::default(), &cm("x", json!({})))
        .await
        .unwrap();
    server.compact_history();
    server.end_watches();
    expect_event(&mut rx, "init").await;
    expect_event(&mut rx, "initapply:a").await;
    expect_event(&mut rx, "initapply:b").await;
    expect_event(&mut rx, "initdone").await;
    api.create(&PostParams::default(), &cm("c", json!({})))
        .await
        .unwrap();
    expect_event(&mut rx, "apply:c").await;
}
