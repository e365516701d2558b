//! Two operator instances and one Lease: only the leader probes, acts and writes; when it stops it
//! releases the lease, the standby takes over, and nothing is done twice.

use std::{
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use apphealth_operator::{controller, leader::LeaderElection};
use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::{
    flaky::Mode,
    harness::{Harness, NS, PATIENCE, Running},
    support::wait_until,
};

const LEASE_NS: &str = "apphealth-system";

/// Records the writes (method, path) a client sends.
#[derive(Clone, Default)]
struct Writes(Arc<Mutex<Vec<(String, String)>>>);

impl<S> tower::Layer<S> for Writes {
    type Service = Recorded<S>;
    fn layer(&self, inner: S) -> Recorded<S> {
        Recorded {
            inner,
            writes: self.clone(),
        }
    }
}

#[derive(Clone)]
struct Recorded<S> {
    inner: S,
    writes: Writes,
}

impl<S, B> tower::Service<http::Request<B>> for Recorded<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.method() != http::Method::GET {
            self.writes
                .0
                .lock()
                .unwrap()
                .push((req.method().to_string(), req.uri().path().to_owned()));
        }
        Box::pin(self.inner.call(req))
    }
}

struct Instance {
    running: Running,
    writes: Writes,
}

impl Instance {
    fn start(h: &Harness, identity: &str) -> Self {
        let writes = Writes::default();
        let config = kube::Config::new(h.server.url().parse().unwrap());
        let client = kube::client::ClientBuilder::try_from(config)
            .unwrap()
            .with_layer(&writes)
            .build();
        let config = controller::Config {
            namespaces: vec![NS.into()],
            instance: Some(identity.into()),
            leader_election: Some(LeaderElection {
                duration: Duration::from_secs(4),
                grace: Duration::from_secs(1),
                ..LeaderElection::new(LEASE_NS, identity)
            }),
            ..h.config()
        };
        Self {
            running: Running::spawn(h, client, config),
            writes,
        }
    }

    /// Writes other than to the Lease.
    fn writes_beyond_the_lease(&self) -> Vec<(String, String)> {
        self.writes
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, path)| !path.contains("/leases"))
            .cloned()
            .collect()
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}

fn holder(h: &Harness) -> Option<String> {
    let lease: Value = h.server.get(
        "coordination.k8s.io/v1",
        "Lease",
        Some(LEASE_NS),
        "apphealth-operator",
    )?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_acts_and_the_standby_takes_over_without_repeating_anything() {
    let h = Harness::new(1).await;
    h.create_policy("web", json!({}));
    let a = Instance::start(&h, "op-a");
    wait_until("op-a to lead", PATIENCE, || async {
        (holder(&h).as_deref() == Some("op-a")).then_some(())
    })
    .await;
    let b = Instance::start(&h, "op-b");
    h.wait_condition("web", "Healthy", "True", None).await;

    h.set_all(Mode::Status(503));
    h.wait_remediation_result("web", "Succeeded").await;
    h.wait_rounds("web-a", 2).await;
    assert_eq!(h.writes_to("/deployments/web"), 1);
    assert_eq!(holder(&h).as_deref(), Some("op-a"));
    assert!(
        b.writes_beyond_the_lease().is_empty(),
        "the standby wrote: {:?}",
        b.writes_beyond_the_lease()
    );
    assert!(
        a.writes_beyond_the_lease()
            .iter()
            .any(|(_, p)| p.ends_with("/status")),
        "the leader wrote status"
    );

    // The leader stops (SIGTERM in a cluster): it finishes, releases the lease, the standby leads.
    a.stop().await;
    wait_until("op-b to lead", PATIENCE, || async {
        (holder(&h).as_deref() == Some("op-b")).then_some(())
    })
    .await;
    // It picks the ladder up from status: the restart is within its timeout, not repeated.
    wait_until("op-b to probe", PATIENCE, || async {
        (!b.writes_beyond_the_lease().is_empty() || h.pod("web-a").app.hits() > 0).then_some(())
    })
    .await;
    h.wait_rounds("web-a", 3).await;
    assert_eq!(h.writes_to("/deployments/web"), 1, "no action happened twice");
    assert!(
        !h.events("web").iter().any(|(r, _)| r == "RemediationResumed"),
        "{:?}",
        h.events("web")
    );
    b.stop().await;
}
