//! The operator binary itself against the API test server: it serves /healthz, /readyz and
//! /metrics on one port, and stops cleanly on SIGTERM (what Kubernetes sends) in time; and values
//! from Secrets never reach its logs, the status or Events.

use std::process::Stdio;

use serde_json::{Value, json};

use crate::{
    flaky::Mode,
    harness::{Harness, NS, PATIENCE},
    support::{Answer, AnsweringServer, get, wait_on_changes, wait_until},
};

/// A plain HTTP/1.1 GET on loopback: (status code, body), or None if nothing answers yet.

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

/// Secret `name` in the test namespace with `key` = `value`.
fn secret(h: &Harness, name: &str, key: &str, value: &str) {
    let data = [(key.to_owned(), k8s_openapi::ByteString(value.as_bytes().to_vec()))];
    let mut secret = serde_json::to_value(k8s_openapi::api::core::v1::Secret {
        data: Some(data.into_iter().collect()),
        ..Default::default()
    })
    .unwrap();
    secret["apiVersion"] = json!("v1");
    secret["kind"] = json!("Secret");
    secret["metadata"] = json!({"name": name, "namespace": NS});
    h.server.create(secret).unwrap();
}

fn notify_records(policy: &Value) -> Vec<Value> {
    policy["status"]["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["action"] == "Notify")
        .cloned()
        .collect()
}

/// The binary logging everything it can (`RUST_LOG=trace`, every crate) while it probes with a
/// header from a Secret and posts to two webhooks from Secrets: one that fails, one at the API
/// server's own address (refused). The secret values reach only where they are sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_header_values_and_webhook_urls_never_reach_logs_status_or_events() {
    const TOKEN: &str = "s3cr3t-pr0be-t0ken";
    const HOOK: &str = "/hooks/T000/s3cr3t-h00k";
    let h = Harness::new(1).await;
    // Only the header from the Secret gets a 200: Healthy proves it was sent.
    h.pod("web-a")
        .app
        .require_header("Authorization", &format!("Bearer {TOKEN}"));
    let hook = AnsweringServer::plain(Answer {
        status: 500,
        content_type: "text/plain",
        body: "down".into(),
    })
    .await;
    secret(&h, "probe-token", "bearer", &format!("Bearer {TOKEN}"));
    secret(&h, "hook", "url", &hook.http_url(HOOK));
    secret(&h, "api", "url", &format!("http://{}{HOOK}", h.server.addr()));
    let header = json!([{"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "probe-token", "key": "bearer"}}}]);
    h.create_policy(
        "web",
        json!({
            "probe": {"http": {"headers": header}},
            "triggers": [{"consecutiveFailures": {"threshold": 1}}],
            "remediation": {"steps": [
                {"action": "Notify", "notify": {"urlSecretRef": {"name": "hook", "key": "url"}}},
                {"action": "Notify", "notify": {"urlSecretRef": {"name": "api", "key": "url"}}}
            ]}
        }),
    );
    let dir = std::env::temp_dir().join(format!("apphealth-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, h.server.kubeconfig()).unwrap();
    let log = dir.join("operator.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_apphealth-operator"))
        .args([
            "run",
            "--namespace",
            NS,
            "--http-addr",
            "127.0.0.1:0",
            "--allow-loopback",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("POD_NAME")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    h.wait_condition("web", "Healthy", "True", None).await;
    h.set_all(Mode::Status(503));
    let policy = wait_on_changes(
        "both Notify steps recorded with their results",
        PATIENCE,
        h.server.changes(),
        || {
            let policy = h.policy("web");
            let records = notify_records(&policy);
            // The intent (Pending) is recorded before the step runs: wait for both outcomes.
            (records.len() == 2 && records.iter().all(|r| r["result"] != "Pending")).then_some(policy)
        },
    )
    .await;
    child.kill().await.unwrap();

    let messages: Vec<String> = notify_records(&policy)
        .iter()
        .map(|r| format!("{} {}", r["result"], r["message"]))
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m
                .contains("the webhook in Secret hook failed: 3 attempts failed, the last with: HTTP 500")),
        "{messages:?}"
    );
    let refused = format!(
        "refused: {} is the Kubernetes API server; the operator never connects to it",
        h.server.addr()
    );
    assert!(messages.iter().any(|m| m.contains(&refused)), "{messages:?}");
    // The failing webhook was really called, at its secret path; the API server never was.
    // Three attempts; a step resumed after a failed status write (a loaded machine) sends them
    // again, as a resumed Notify does by design.
    let calls = hook.requests.lock().unwrap().clone();
    assert!(calls.len() >= 3, "retried: {calls:?}");
    assert!(
        calls.iter().all(|c| c.starts_with(&format!("POST {HOOK} "))),
        "{calls:?}"
    );
    assert!(!h.server.requests().iter().any(|r| r.path.contains("s3cr3t")));

    let status = policy.to_string();
    let events = serde_json::to_string(&h.server.list("events.k8s.io/v1", "Event", Some(NS))).unwrap();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.lines().count() > 100,
        "the operator logged at trace level:\n{logs}"
    );
    for (what, text) in [("status", &status), ("Events", &events), ("logs", &logs)] {
        assert!(!text.contains("s3cr3t"), "a secret value in the {what}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
