//! The operator binary itself against the API test server: it serves /healthz, /readyz and
//! /metrics on one port, and stops cleanly on SIGTERM (what Kubernetes sends) in time.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    harness::{Harness, NS, PATIENCE},
    support::wait_until,
};

/// A plain HTTP/1.1 GET on loopback: (status code, body), or None if nothing answers yet.
async fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_health_and_metrics_and_stops_on_sigterm() {
    let h = Harness::new(1).await;
    h.create_policy("web", json!({}));
    let dir = std::env::temp_dir().join(format!("apphealth-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, h.server.kubeconfig()).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_apphealth-operator"))
        .args(["run", "--namespace", NS, "--http-addr", &addr, "--allow-loopback"])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("POD_NAME")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    assert_eq!(
        wait_until("/healthz", PATIENCE, || async { get(&addr, "/healthz").await }).await,
        (200, "ok".to_owned())
    );
    wait_until("/readyz to say ready", PATIENCE, || async {
        get(&addr, "/readyz").await.filter(|(code, _)| *code == 200)
    })
    .await;
    h.wait_condition("web", "Healthy", "True", None).await;
    let metrics = wait_until("probes in /metrics", PATIENCE, || async {
        get(&addr, "/metrics")
            .await
            .map(|(_, body)| body)
            .filter(|b| b.contains("apphealth_policies{reason=\"Probing\"} 1"))
    })
    .await;
    for expected in [
        "apphealth_probes_total{result=\"ok\"}",
        "apphealth_leader 1",
        "apphealth_verdict_changes_total{health=\"Healthy\"} 1",
        "apphealth_kubernetes_api_requests_total{verb=\"PATCH\",code=\"200\"}",
        "apphealth_reconcile_duration_seconds_count",
    ] {
        assert!(metrics.contains(expected), "{expected} missing from:\n{metrics}");
    }
    assert!(!metrics.contains("web-a"), "no pod names as labels");

    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the operator stops within the grace period")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(get(&addr, "/healthz").await.is_none(), "the port is closed");
    let _ = std::fs::remove_dir_all(&dir);
}
