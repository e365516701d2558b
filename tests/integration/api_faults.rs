//! The API server misbehaving while a remediation runs: 500/503 answers, throttling with
//! `Retry-After`, slow answers, 409 conflicts on status writes, watches cut mid-stream, and the
//! API server unreachable for a minute. In each, one pod turns unhealthy and the ladder's one step
//! (RestartPods) must happen exactly once, be recorded once as Succeeded, and the status must say
//! what the operator decided, however the API treated it on the way.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use apphealth_testserver::{Fault, RecordedRequest};
use serde_json::{Value, json};

use crate::{
    flaky::Mode,
    harness::{Harness, NS, PATIENCE},
    support::{wait_on_changes, wait_until},
};

/// Failed attempts are retried with the reconcile's backoff (5 s, 10 s, …): longer than
/// [`PATIENCE`].
const OUTLAST: Duration = Duration::from_secs(90);

/// A harness whose policy `web` restarts the bad pods, with the operator running and the target
/// judged Healthy.
async fn settled() -> Harness {
    settled_with(json!({})).await
}

async fn settled_with(spec: Value) -> Harness {
    let mut h = Harness::new(2).await;
    let mut policy = json!({"remediation": {"steps": [{"action": "RestartPods", "timeout": "1h"}]}});
    crate::harness::merge(&mut policy, spec);
    h.create_policy("web", policy);
    h.start_operator(Some(NS));
    h.wait_condition("web", "Healthy", "True", None).await;
    h
}

/// Makes web-b fail, waits for its restart to be recorded, and checks that it happened exactly
/// once: one successful eviction, one record, Succeeded. Returns the policy.
async fn restarted_once(h: &Harness) -> Value {
    h.pod("web-b").app.set(Mode::Status(503));
    let policy = wait_on_changes("web: history[0] Succeeded", OUTLAST, h.server.changes(), || {
        let p = h.policy("web");
        (p["status"]["history"][0]["result"] == "Succeeded").then_some(p)
    })
    .await;
    assert_once(h, &policy);
    policy
}

fn assert_once(h: &Harness, policy: &Value) {
    let history = policy["status"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "one record: {history:?}");
    assert_eq!(history[0]["action"], "RestartPods");
    assert_eq!(history[0]["pods"], json!(["web-b"]));
    let evicted: Vec<u16> = h
        .server
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/eviction"))
        .filter(|r| (200..300).contains(&r.status))
        .map(|r| r.status)
        .collect();
    assert_eq!(evicted.len(), 1, "one eviction went through");
    assert!(h.server.get("v1", "Pod", Some(NS), "web-b").is_none());
    assert!(h.server.get("v1", "Pod", Some(NS), "web-a").is_some());
}

/// After the restart the target recovers: the ladder is closed, nothing was done twice, and the
/// steady state costs no write.
async fn recovered(h: &Harness) {
    let policy = wait_on_changes(
        "web: Remediating=False Recovered",
        OUTLAST,
        h.server.changes(),
        || {
            let p = h.policy("web");
            let c = crate::harness::condition(&p, "Remediating")?;
            (c["status"] == "False" && c["reason"] == "Recovered").then_some(p)
        },
    )
    .await;
    assert_once(h, &policy);
    assert_eq!(
        crate::harness::condition(&policy, "Healthy").unwrap()["status"],
        "True"
    );
    h.assert_no_writes_over("web-a", 2).await;
}

/// A request: method and path.
type Request = (String, String);

/// A hook that applies `fault` to the first `times` attempts of each distinct request (method and
/// path, watches left alone), and logs when each attempt arrived.
#[derive(Clone, Default)]
struct FirstAttempts {
    seen: Arc<Mutex<HashMap<Request, Vec<Instant>>>>,
}

impl FirstAttempts {
    fn install(
        &self,
        h: &Harness,
        times: usize,
        fault: impl Fn(&RecordedRequest) -> Fault + Send + Sync + 'static,
    ) {
        let seen = self.seen.clone();
        h.server.set_fault_hook(move |r| {
            if r.is_watch() {
                return None;
            }
            let mut seen = seen.lock().unwrap();
            let attempts = seen.entry((r.method.clone(), r.path.clone())).or_default();
            attempts.push(Instant::now());
            (attempts.len() <= times).then(|| fault(r))
        });
    }

    /// The requests that were faulted and then tried again, with the gaps between attempts.
    fn retried(&self, times: usize) -> Vec<(Request, Vec<Duration>)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| at.len() > times)
            .map(|(k, at)| (k.clone(), at.windows(2).map(|w| w[1] - w[0]).collect()))
            .collect()
    }
}

fn status(code: u16, reason: &str) -> Fault {
    Fault::Status {
        code,
        reason: reason.into(),
        message: format!("injected {code}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_without_repeating_the_restart() {
    let mut h = settled().await;
    // The first attempt of every request fails: writes with 500, reads with 503.
    let hook = FirstAttempts::default();
    hook.install(&h, 1, |r| {
        if r.is_write() {
            status(500, "InternalError")
        } else {
            status(503, "ServiceUnavailable")
        }
    });
    restarted_once(&h).await;
    let retried = hook.retried(1);
    for want in ["/eviction", "/apphealthpolicies/web/status"] {
        assert!(
            retried.iter().any(|((_, path), _)| path.ends_with(want)),
            "{want} failed once and was tried again: {retried:?}"
        );
    }
    let failed_evictions = h
        .server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/eviction") && r.status == 500)
        .count();
    assert_eq!(failed_evictions, 1);
    h.server.clear_fault_hook();
    recovered(&h).await;
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_waited_out_as_retry_after_says() {
    let mut h = settled().await;
    let hook = FirstAttempts::default();
    hook.install(&h, 1, |_| Fault::Throttle {
        retry_after_seconds: 1,
    });
    restarted_once(&h).await;
    let retried = hook.retried(1);
    assert!(
        retried.iter().any(|((_, path), _)| path.ends_with("/eviction")),
        "the throttled eviction was tried again, not held as a budget's refusal: {retried:?}"
    );
    for (request, gaps) in &retried {
        // A lower bound only: no attempt came back before the server said it may.
        assert!(
            gaps[0] >= Duration::from_secs(1),
            "{request:?} came back after {:?}",
            gaps[0]
        );
    }
    h.server.clear_fault_hook();
    recovered(&h).await;
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_api_server_slows_writes_but_not_probes() {
    let mut h = settled().await;
    h.server
        .set_fault_hook(|r| (!r.is_watch()).then_some(Fault::Delay(Duration::from_secs(2))));
    h.pod("web-b").app.set(Mode::Status(503));
    // While the intent and the eviction crawl, both pods keep their probe schedule.
    wait_until("a status write under way", PATIENCE, || async {
        h.server
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/apphealthpolicies/web/status"))
            .then_some(())
    })
    .await;
    h.wait_rounds("web-a", 3).await;
    let policy = restarted_once(&h).await;
    assert_eq!(policy["status"]["history"][0]["result"], "Succeeded");
    let attempts = h
        .server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/eviction"))
        .count();
    assert_eq!(attempts, 1, "a slow answer is not a reason to ask twice");
    h.server.clear_fault_hook();
    recovered(&h).await;
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_on_status_writes_lose_no_status() {
    let mut h = settled().await;
    // The first three status writes get 409; everything else goes through.
    let conflicts = Arc::new(Mutex::new(0usize));
    let counted = conflicts.clone();
    h.server.set_fault_hook(move |r| {
        let status_write = r.is_write() && r.path.ends_with("/status");
        let mut n = counted.lock().unwrap();
        (status_write && *n < 3).then(|| {
            *n += 1;
            Fault::Status {
                code: 409,
                reason: "Conflict".into(),
                message: "Operation cannot be fulfilled on apphealthpolicies.apphealth.io \"web\": \
                          the object has been modified; please apply your changes to the latest version and try again"
                    .into(),
            }
        })
    });
    restarted_once(&h).await;
    assert_eq!(*conflicts.lock().unwrap(), 3, "three status writes were refused");
    h.server.clear_fault_hook();
    recovered(&h).await;
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_cut_over_and_over_lose_and_repeat_nothing() {
    let mut h = settled().await;
    let server = h.server.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = stop.clone();
    let cutter = tokio::spawn(async move {
        // Bounded: at most two minutes of cuts, one every 300 ms.
        for _ in 0..400 {
            if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            server.end_watches();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    restarted_once(&h).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    cutter.await.unwrap();
    let cut = h.server.requests().iter().filter(|r| r.is_watch()).count();
    assert!(cut > 10, "the watches were started again after each cut ({cut})");
    recovered(&h).await;
    h.stop_operator().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_without_the_api_server_the_verdict_is_kept_and_written_after() {
    // Recovery takes 100 good rounds, so the verdict written stays the Unhealthy one reached
    // during the outage for as long as this test looks.
    let mut h = settled_with(json!({"recovery": {"consecutiveSuccesses": 100}})).await;
    h.server.set_reachable(false);
    let down = jiff::Timestamp::now();
    let served = h.server.requests().len();
    h.pod("web-b").app.set(Mode::Status(503));
    // A minute of probe rounds (2 s period) without the API server: probing goes on.
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(60) {
        h.wait_rounds("web-a", 1).await;
    }
    assert!(
        h.operator_running(),
        "the operator keeps running without its API server"
    );
    assert_eq!(
        h.server.requests().len(),
        served,
        "nothing reached the API server"
    );
    assert!(h.pod("web-b").app.hits() >= 25, "web-b was probed all along");
    let up = jiff::Timestamp::now();
    h.server.set_reachable(true);

    let policy = wait_on_changes("web: history[0] Succeeded", OUTLAST, h.server.changes(), || {
        let p = h.policy("web");
        (p["status"]["history"][0]["result"] == "Succeeded").then_some(p)
    })
    .await;
    assert_once(&h, &policy);
    // The verdict reached while the API was away is the one written: it dates from the outage.
    let since: jiff::Timestamp = policy["status"]["verdict"]["since"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        since.as_second() >= down.as_second() && since < up,
        "Unhealthy since {since}, outage {down}..{up}"
    );
    h.stop_operator().await;
}
