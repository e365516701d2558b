//! Controller scenarios for each class of health signal: probe responses over sliding windows and
//! memory pressure from metrics.k8s.io. Restarts, crash loops and OOM kills, as a kubelet reports
//! them, run on the local control plane: tests/cluster/signals.rs.

use serde_json::json;

use crate::{
    flaky::Mode,
    harness::{Harness, NS, PATIENCE, condition},
    support::{reconciles, wait_until},
};

/// The first evidence entry of an Unhealthy policy.
async fn unhealthy_evidence(h: &Harness, policy: &str) -> serde_json::Value {
    let p = h
        .wait_condition(policy, "Healthy", "False", Some("TriggerFired"))
        .await;
    p["status"]["verdict"]["evidence"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_503s_fires_the_status_codes_trigger() {
    let mut h = Harness::new(2).await;
    h.create_policy(
        "web",
        json!({"triggers": [{"statusCodes": {"codes": ["502", "503"], "count": 2, "window": "1m"}}]}),
    );
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.pod("web-a").app.set(Mode::Status(503));
    let evidence = unhealthy_evidence(&h, "web").await;
    assert_eq!(evidence["trigger"], "statusCodes");
    assert_eq!(evidence["pods"], json!(["web-a"]));
    let message = evidence["message"].as_str().unwrap();
    assert!(
        message.starts_with("web-a: 2 × 503 in the last 1m, threshold 2"),
        "{message}"
    );
    h.wait_event("web", "RolloutRestarted").await;
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_fire_the_slow_responses_trigger() {
    let mut h = Harness::new(1).await;
    h.create_policy(
        "web",
        json!({"triggers": [{"slowResponses": {"threshold": "300ms", "count": 2, "window": "1m"}}]}),
    );
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h.set_all(Mode::Slow);
    let evidence = unhealthy_evidence(&h, "web").await;
    assert_eq!(evidence["trigger"], "slowResponses");
    let message = evidence["message"].as_str().unwrap();
    assert!(
        message.starts_with("web-a: 2 responses slower than 300ms in the last 1m (slowest 6"),
        "{message}"
    );
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_near_the_limit_from_metrics_k8s_io_fires_the_memory_trigger() {
    let mut h = Harness::new(1).await;
    h.server.enable_metrics_api();
    h.set_pod_limits("web-a", "512Mi", "500m");
    h.server.set_pod_metrics(NS, "web-a", &[("app", "20m", "200Mi")]);
    h.create_policy(
        "web",
        json!({"triggers": [{"memory": {"percentOfLimit": 90, "for": "0s"}}]}),
    );
    h.start_operator(Some(NS));
    let policy = h.wait_condition("web", "Healthy", "True", None).await;
    let ready = condition(&policy, "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!ready.contains("inactive"), "{ready}");

    h.server.set_pod_metrics(NS, "web-a", &[("app", "20m", "500Mi")]);
    let evidence = unhealthy_evidence(&h, "web").await;
    assert_eq!(evidence["trigger"], "memory");
    let message = evidence["message"].as_str().unwrap();
    assert!(
        message.starts_with("web-a: container app uses 500Mi of its 512Mi memory limit (97%) for"),
        "{message}"
    );

    // The leak is fixed: usage drops and the pod recovers.
    h.server.set_pod_metrics(NS, "web-a", &[("app", "20m", "100Mi")]);
    h.wait_condition("web", "Healthy", "True", None).await;
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_metrics_api_memory_triggers_are_inactive_and_ready_says_so() {
    let mut h = Harness::new(1).await;
    h.create_policy(
        "web",
        json!({"triggers": [{"memory": {"percentOfLimit": 90}}, {"consecutiveFailures": {"threshold": 2}}]}),
    );
    h.start_operator(Some(NS));
    let policy = h.wait_condition("web", "Healthy", "True", None).await;
    let ready = condition(&policy, "Ready").unwrap();
    assert_eq!(ready["status"], "True");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains(
            "Note: the memory and cpu triggers are inactive: the metrics.k8s.io API is not available"
        ),
        "{message}"
    );
    // The other signals keep working.
    h.set_all(Mode::Status(500));
    let evidence = unhealthy_evidence(&h, "web").await;
    assert_eq!(evidence["trigger"], "consecutiveFailures");
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_values_come_from_a_secret_and_never_show_in_status_or_events() {
    const TOKEN: &str = "s3cr3t-probe-token";
    let mut h = Harness::new(1).await;
    h.pod("web-a")
        .app
        .require_header("Authorization", &format!("Bearer {TOKEN}"));
    let header = json!([{"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "probe-token", "key": "bearer"}}}]);
    h.create_policy("web", json!({"probe": {"http": {"headers": header}}, "triggers": [{"consecutiveFailures": {"threshold": 1}}]}));
    let metrics = std::sync::Arc::new(apphealth_operator::metrics::Metrics::default());
    h.start_operator_with(apphealth_operator::controller::Config {
        namespaces: vec![NS.to_owned()],
        metrics: metrics.clone(),
        ..h.config()
    });

    // The Secret does not exist yet: Ready names the field and the Secret.
    let policy = h
        .wait_condition("web", "Ready", "False", Some("InvalidReference"))
        .await;
    let message = condition(&policy, "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.starts_with(
            "spec.probe.http.headers[0].valueFrom.secretKeyRef: Secret probe-token does not exist"
        ),
        "{message}"
    );

    // With the right value the app answers 200; the Secret's arrival re-evaluates the policy.
    let secret = |value: &str| {
        let data = [(
            "bearer".to_owned(),
            k8s_openapi::ByteString(format!("Bearer {value}").into_bytes()),
        )];
        let mut secret = serde_json::to_value(k8s_openapi::api::core::v1::Secret {
            data: Some(data.into_iter().collect()),
            ..Default::default()
        })
        .unwrap();
        secret["apiVersion"] = json!("v1");
        secret["kind"] = json!("Secret");
        secret["metadata"] = json!({"name": "probe-token", "namespace": NS});
        secret
    };
    h.server.create(secret(TOKEN)).unwrap();
    h.wait_condition("web", "Healthy", "True", None).await;

    // While the Secret does not change, reconciles read it from the cache, not the API.
    let secret_reads = || {
        h.server
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/secrets/probe-token"))
            .count()
    };
    let reads = secret_reads();
    assert!(reads >= 1, "the Secret was read");
    for _ in 0..2 {
        let before = reconciles(&metrics);
        h.touch_policy("web");
        wait_until("a reconcile after the touch", PATIENCE, || async {
            (reconciles(&metrics) > before).then_some(())
        })
        .await;
    }
    assert_eq!(secret_reads(), reads, "an unchanged Secret is not read again");

    // A wrong value gets 401s: Unhealthy, and the evidence shows the code, not the credential.
    let mut wrong = secret("wrong");
    wrong["metadata"] = h.server.get("v1", "Secret", Some(NS), "probe-token").unwrap()["metadata"].clone();
    h.server.replace(wrong).unwrap();
    let policy = h.wait_condition("web", "Healthy", "False", None).await;
    assert!(
        policy["status"]["verdict"]["evidence"][0]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 401")
    );

    let status = serde_json::to_string(&policy["status"]).unwrap();
    let events = serde_json::to_string(&h.events("web")).unwrap();
    for text in [&status, &events] {
        assert!(
            !text.contains(TOKEN) && !text.contains("Bearer wrong"),
            "a credential leaked: {text}"
        );
    }
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_certificate_verified_with_a_ca_from_a_configmap_fires() {
    use crate::support::{Answer, AnsweringServer, TestCa};

    let mut h = Harness::new(1).await;
    // An HTTPS app whose certificate, signed by an internal CA, expires in three days.
    let ca = TestCa::new();
    let soon = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date() + jiff::ToSpan::days(3);
    let validity = (
        (2020, 1, 1),
        (i32::from(soon.year()), soon.month() as u8, soon.day() as u8),
    );
    let server = AnsweringServer::tls(Answer::ok("ok"), ca.issue(&["secure.shop.svc"], validity)).await;
    h.server
        .create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "internal-ca", "namespace": NS},
                       "data": {"ca.crt": ca.pem()}}))
        .unwrap();
    let mut deployment = h.deployment();
    deployment["metadata"] = json!({"name": "secure", "namespace": NS});
    deployment["spec"]["selector"] = json!({"matchLabels": {"app": "secure"}});
    deployment["spec"]["template"]["metadata"] = json!({"labels": {"app": "secure"}});
    h.server.create(deployment).unwrap();
    h.add_pod("secure-a", server.addr.ip(), "secure");
    h.create_policy(
        "secure",
        json!({
            "targetRef": {"name": "secure"},
            "probe": {"http": {"port": server.addr.port(), "scheme": "HTTPS",
                               "tls": {"ca": {"configMapKeyRef": {"name": "internal-ca", "key": "ca.crt"}},
                                       "serverName": "secure.shop.svc"}}},
            "triggers": [{"certificateExpiresWithin": {"duration": "168h"}}]
        }),
    );
    h.start_operator(Some(NS));
    let evidence = unhealthy_evidence(&h, "secure").await;
    assert_eq!(evidence["trigger"], "certificateExpiresWithin");
    let message = evidence["message"].as_str().unwrap();
    assert!(
        message.starts_with("secure-a: the certificate expires at "),
        "{message}"
    );
    assert!(message.ends_with("threshold 168h"), "{message}");
    assert!(
        server.handshakes.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the probe verified and completed the handshake"
    );
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_changed_after_the_pods_started_fires_config_changed_and_restarts() {
    let mut h = Harness::new(1).await;
    h.server
        .create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config", "namespace": NS},
                       "data": {"mode": "fast"}}))
        .unwrap();
    let mut pod = h.server.get("v1", "Pod", Some(NS), "web-a").unwrap();
    pod["spec"]["volumes"] = json!([{"name": "config", "configMap": {"name": "web-config"}}]);
    h.server.replace(pod).unwrap();
    h.create_policy("web", json!({"triggers": [{"configChanged": {}}]}));
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;

    // A minute later someone edits the ConfigMap; the pod still runs with the old one.
    h.server.advance_clock(std::time::Duration::from_secs(60));
    let mut cm = h.server.get("v1", "ConfigMap", Some(NS), "web-config").unwrap();
    cm["data"]["mode"] = json!("safe");
    h.server.replace(cm).unwrap();

    let evidence = unhealthy_evidence(&h, "web").await;
    assert_eq!(evidence["trigger"], "configChanged");
    let message = evidence["message"].as_str().unwrap();
    assert!(
        message.starts_with("web-a: ConfigMap web-config changed at "),
        "{message}"
    );
    assert!(message.contains(", after the pod started at "), "{message}");
    let note = h.wait_event("web", "RolloutRestarted").await;
    assert!(note.contains("configChanged"), "{note}");
    h.stop_operator().await;
}
