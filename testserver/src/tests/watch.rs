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

/// Reads a raw watch's stream until `until` appears in it (or it ends); returns what was read.
async fn read_until(stream: &mut tokio::net::TcpStream, until: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(until) {
        match tokio::time::timeout(super::DEADLINE, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// A change made after `end_watches` never reaches a watch it cut, even when the watch has not
/// yet noticed the cut (single-threaded here: the watch runs only once the test yields, by which
/// time both the cut and the change are waiting). A client that saw such a change would resume past
/// it, and a compaction in between would not make it relist.
#[tokio::test]
async fn a_cut_watch_sends_no_change_made_after_the_cut() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await.unwrap();
    let config_map = |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}});
    server.create(config_map("a")).unwrap();
    for i in 0..30 {
        let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        stream
            .write_all(
                b"GET /api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=5 HTTP/1.1\r\n\
                  Host: x\r\nConnection: close\r\n\r\n",
            )
            .await
            .unwrap();
        let first = read_until(&mut stream, r#""name":"a""#).await;
        assert!(first.contains(r#""name":"a""#), "{first}");
        server.end_watches();
        let name = format!("after-cut-{i}");
        server.create(config_map(&name)).unwrap();
        // The watch ends (Connection: close): read all that is left.
        let mut rest = Vec::new();
        tokio::time::timeout(super::DEADLINE, stream.read_to_end(&mut rest))
            .await
            .expect("the cut watch ended")
            .unwrap();
        let rest = String::from_utf8_lossy(&rest);
        assert!(!rest.contains(&name), "round {i}: {rest}");
    }
}
