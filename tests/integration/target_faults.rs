//! Targets that misbehave at the socket, beside one that answers well: a pod that never answers,
//! one that trickles its answer a byte at a time, one that answers with bytes that are not HTTP,
//! one that resets, and one that redirects elsewhere (not followed: a 302 outside the success
//! codes). Each is a failed probe with its reason; the healthy pod keeps its probe schedule; probes
//! in flight stay bounded. (A body that never ends is read up to a bound and judged by its status
//! and body checks, as the kubelet does: `prober.rs` tests it.)

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use apphealth_operator::{controller, metrics::Metrics};
use serde_json::json;

use crate::{
    harness::{Harness, NS, PATIENCE, condition},
    support::{BadServer, Behaviour, gauge, wait_on_changes, wait_until},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_pods_fail_their_probes_and_the_healthy_one_keeps_its_schedule() {
    let mut h = Harness::new(1).await;
    let bad = [
        ("web-hang", Behaviour::Hang),
        ("web-trickle", Behaviour::Trickle(Duration::from_millis(100))),
        ("web-garbage", Behaviour::Garbage),
        ("web-reset", Behaviour::Reset),
        (
            "web-redirect",
            Behaviour::Redirect("http://127.0.0.1:9/elsewhere"),
        ),
    ];
    // The misbehaving servers run on a runtime of their own, so that the tasks they keep (a hung
    // connection is held for good) are not counted with the operator's.
    let farm = std::thread::spawn(|| tokio::runtime::Runtime::new().unwrap())
        .join()
        .unwrap();
    let (mut servers, port) = (Vec::new(), h.port);
    for (i, (name, behaviour)) in bad.into_iter().enumerate() {
        let ip = h.address(u8::try_from(i + 2).unwrap());
        let server = farm
            .spawn(async move { BadServer::bind((ip, port).into(), behaviour).await })
            .await
            .unwrap();
        servers.push((name, server));
        h.add_pod(name, ip, "web");
    }
    h.create_policy(
        "web",
        json!({"probe": {"periodSeconds": 1, "http": {"timeoutSeconds": 1, "successCodes": ["200-299"]}},
               "remediation": {"dryRun": true}}),
    );
    let metrics = Arc::new(Metrics::default());
    h.start_operator_with(controller::Config {
        namespaces: vec![NS.to_owned()],
        metrics: metrics.clone(),
        ..h.config()
    });

    // Every misbehaving pod is named as failing.
    let policy = wait_on_changes(
        "every bad pod in the evidence",
        PATIENCE,
        h.server.changes(),
        || {
            let p = h.policy("web");
            let named: Vec<String> = p["status"]["verdict"]["evidence"]
                .as_array()?
                .iter()
                .flat_map(|e| e["pods"].as_array().cloned().unwrap_or_default())
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect();
            servers
                .iter()
                .all(|(name, _)| named.iter().any(|n| n == name))
                .then_some(p)
        },
    )
    .await;
    let healthy = condition(&policy, "Healthy").unwrap();
    assert_eq!(healthy["status"], "False");
    let said = healthy["message"].as_str().unwrap();
    for reason in [
        "timed out after 1s",
        "invalid HTTP",
        "connection reset",
        "HTTP 302",
    ] {
        assert!(said.contains(reason), "{reason:?} in {said}");
    }
    for (name, server) in &servers {
        assert!(server.hits() > 0, "{name} was probed");
    }
    assert!(
        !policy["status"]["verdict"]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["pods"].as_array().unwrap().iter().any(|p| p == "web-a")),
        "the healthy pod is not blamed"
    );

    // The healthy pod's schedule: one probe a second, counted rather than slept for.
    const ROUNDS: u64 = 6;
    let app = &h.pod("web-a").app;
    let tasks = || tokio::runtime::Handle::current().metrics().num_alive_tasks();
    let tasks_before = tasks();
    let start = app.hits();
    let began = Instant::now();
    let in_flight = std::sync::atomic::AtomicI64::new(0);
    wait_until("rounds of web-a", PATIENCE, || async {
        in_flight.fetch_max(
            gauge(&metrics, "apphealth_probes_in_flight"),
            std::sync::atomic::Ordering::SeqCst,
        );
        (app.hits() >= start + ROUNDS).then_some(())
    })
    .await;
    let in_flight = in_flight.into_inner();
    let elapsed = began.elapsed();
    assert!(
        elapsed < Duration::from_secs(ROUNDS * 3),
        "{ROUNDS} rounds at a 1 s period took {elapsed:?}"
    );
    let probes = app.hits() - start;
    assert!(probes <= elapsed.as_secs() + 2, "{probes} probes in {elapsed:?}");
    // Bounded: never more probes in flight than endpoints (hung ones end at their timeout).
    assert!(in_flight <= 6, "{in_flight} probes in flight for 6 endpoints");
    // Bounded: the tasks alive do not grow with the rounds of failed probes (a leak of one task
    // per failed probe would add 30 here).
    let tasks_after = tasks();
    assert!(
        tasks_after <= tasks_before + 5,
        "{tasks_before} tasks alive, then {tasks_after} after {probes} rounds"
    );
    assert!(h.operator_running());
    h.stop_operator().await;
    drop(servers);
    farm.shutdown_background();
}
