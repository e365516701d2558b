//! The fault hooks that API-fault scenarios use: throttling with `Retry-After`, answers held back
//! after the write took effect, and an API server that cannot be reached.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use futures::StreamExt;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::{client, cm, raw_request, wait_until};
use crate::{Fault, TestServer};

#[tokio::test]
async fn throttled_requests_get_429_with_retry_after() {
    let server = TestServer::start().await.unwrap();
    server.set_fault_hook(|r| {
        (r.method == "GET").then_some(Fault::Throttle {
            retry_after_seconds: 7,
        })
    });
    let answer = raw_request(
        &server,
        "GET /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 7\r\n"),
        "{answer}"
    );
    assert!(answer.contains(r#""reason":"TooManyRequests""#), "{answer}");
    assert!(answer.contains(r#""retryAfterSeconds":7"#), "{answer}");
}

#[tokio::test]
async fn kube_waits_out_retry_after_before_trying_again() {
    let server = TestServer::start().await.unwrap();
    let left = Arc::new(AtomicUsize::new(1));
    server.set_fault_hook(move |r| {
        let throttle = r.method == "POST" && left.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok();
        throttle.then_some(Fault::Throttle {
            retry_after_seconds: 1,
        })
    });
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let started = std::time::Instant::now();
    api.create(&PostParams::default(), &cm("c", json!({})))
        .await
        .unwrap();
    // A lower bound only: the retry cannot come before the server said it may.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let posts: Vec<u16> = server
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.status)
        .collect();
    assert_eq!(posts, [429, 201]);
}

#[tokio::test]
async fn an_answer_held_back_comes_after_the_write_took_effect() {
    let server = TestServer::start().await.unwrap();
    server.set_fault_hook(|r| (r.method == "POST").then_some(Fault::AnswerLate(Duration::from_secs(3600))));
    let api: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let create = tokio::spawn(async move { api.create(&PostParams::default(), &cm("c", json!({}))).await });
    wait_until("the ConfigMap is stored", || async {
        server.get("v1", "ConfigMap", Some("default"), "c")
    })
    .await;
    assert!(!create.is_finished(), "the answer is still held back");
    create.abort();
}

#[tokio::test]
async fn an_unreachable_server_cuts_connections_and_keeps_its_state() {
    let server = TestServer::start().await.unwrap();
    let mut config = kube::Config::new(server.url().parse().unwrap());
    config.default_retry = false;
    let api: Api<ConfigMap> = Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    api.create(&PostParams::default(), &cm("c", json!({})))
        .await
        .unwrap();
    // A watch open on a kept-alive connection ends too.
    let mut watch = {
        let api = api.clone();
        Box::pin(kube::runtime::watcher(api, Default::default()))
    };
    loop {
        let event = tokio::time::timeout(super::DEADLINE, watch.next()).await.unwrap();
        if matches!(event, Some(Ok(kube::runtime::watcher::Event::InitDone))) {
            break;
        }
    }

    server.set_reachable(false);
    let cut = tokio::time::timeout(super::DEADLINE, watch.next()).await.unwrap();
    assert!(
        matches!(cut, Some(Err(_))),
        "the watch ends with an error: {cut:?}"
    );
    let err = api.get("c").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::HyperError(_) | kube::Error::Service(_)),
        "a transport error, not an HTTP answer: {err:?}"
    );
    let served = server.requests().len();
    assert!(api.list(&Default::default()).await.is_err());
    assert_eq!(server.requests().len(), served, "nothing reaches the handlers");

    server.set_reachable(true);
    let got = api.get("c").await.unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some("c"));
}
