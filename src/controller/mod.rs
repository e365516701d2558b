//! kube-runtime wiring: watches, the reconcile pipeline, error policy.
//!
//! Watches: AppHealthPolicies (the controller's own watch), and Deployments, StatefulSets and Pods
//! through reflectors whose events are mapped, through [`TargetIndex`], to the policies that target
//! them. Every watched object is cut down to what the operator reads before it is cached
//! ([`slim`]); pods are decoded straight into a compact type of their own,
//! [`CachedPod`](crate::observe::pod::CachedPod). Probe tasks ([`probing`](crate::probing)) nudge the controller when a verdict changes. The reconcile
//! ([`reconcile`]) is wiring over named stages: [`dereference`] → [`seen`] (observe) → plan and act
//! ([`remediate`]) → report, and writes status only when it changed.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::{FutureExt, StreamExt, stream};
use kube::{
    Api, Client, ResourceExt,
    api::ListParams,
    runtime::{
        controller::{self, Action as Requeue},
        events::{Recorder, Reporter},
        reflector::{self, ObjectRef},
        watcher,
    },
};
use tokio::sync::mpsc;

use crate::{
    Error, Result,
    act::{MANAGER, Notifier},
    api::watched::Watched,
    clock::Clock,
    metrics::Metrics,
    observe::{metrics::MetricsApi, prober::HttpProber, reach::Reach},
    server::Readyz,
};

mod book;
mod cluster_scope;
mod dereference;
mod fleet;
mod groups;
mod index;
mod ladders;
mod reconcile;
mod remediate;
mod seen;
pub mod slim;
mod stages;
mod synced;
mod unit;
mod watches;
mod writes;

use crate::probing::{self, ProbeTasks, Probing};
pub use index::TargetIndex;
use reconcile::{reconcile, reconcile_cluster};
use watches::{Watches, scoped, watch};

/// How the operator runs.
#[derive(Clone)]
pub struct Config {
    /// Watch only these namespaces (needs no cluster-wide rights), or all when empty.
    pub namespaces: Vec<String>,
    /// How often a policy is looked at again without any event (costs no writes).
    pub resync: Duration,
    /// Identity of this replica in Events.
    pub instance: Option<String>,
    /// Most ladders acting on their targets at once, operator-wide (None: no cap).
    pub max_concurrent_remediations: Option<u32>,
    /// Most probes in flight at once, operator-wide.
    pub max_concurrent_probes: usize,
    /// Most reconciles running at once, per watch scope.
    pub max_concurrent_reconciles: u16,
    /// A client that does not retry answers 429/503 by itself, for calls whose refusal is the
    /// answer: evictions a PodDisruptionBudget refuses (kube's default client would retry them for
    /// minutes). The main client when None.
    pub direct_client: Option<Client>,
    /// Webhook calls of Notify: timeout per attempt, attempts, first backoff.
    pub notify_timeout: Duration,
    pub notify_attempts: u32,
    pub notify_backoff: Duration,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readyz>,
    /// Lead through a Lease (only the leader probes, acts and writes status); None: always lead.
    pub leader_election: Option<crate::leader::LeaderElection>,
    /// What probes and webhooks may connect to (`--allow-loopback`, the API server's addresses).
    pub reach: Reach,
    /// Share the work across replicas by shard Leases (`--shards N`, N > 1); replaces leader
    /// election.
    pub shards: Option<crate::fleet::keeper::ShardConfig>,
    /// The operator's own pod, when it knows it (POD_NAMESPACE and POD_NAME from the downward API):
    /// a policy whose target runs it may not remediate it.
    pub own_pod: Option<OwnPod>,
}

/// A pod by namespace and name: the operator's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnPod {
    pub namespace: String,
    pub name: String,
}

impl OwnPod {
    /// From the downward API's variables; None unless both are set.
    pub fn new(namespace: Option<String>, name: Option<String>) -> Option<Self> {
        match (namespace, name) {
            (Some(namespace), Some(name)) if !namespace.is_empty() && !name.is_empty() => {
                Some(Self { namespace, name })
            }
            _ => None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            resync: Duration::from_secs(300),
            instance: None,
            max_concurrent_remediations: Some(10),
            max_concurrent_probes: probing::DEFAULT_MAX_CONCURRENT_PROBES as usize,
            max_concurrent_reconciles: DEFAULT_MAX_CONCURRENT_RECONCILES,
            direct_client: None,
            notify_timeout: Duration::from_secs(5),
            notify_attempts: 3,
            notify_backoff: Duration::from_secs(1),
            metrics: Arc::default(),
            readiness: Arc::default(),
            leader_election: None,
            shards: None,
            reach: Reach::default(),
            own_pod: None,
        }
    }
}

/// The key of a policy: an AppHealthPolicy's, or a ClusterAppHealthPolicy's (of no namespace).
type PolicyRef = ObjectRef<Watched>;

/// The key of a watched policy of either kind.
fn policy_key<K: kube::Resource<DynamicType = ()>>(policy: &Watched<K>) -> PolicyRef {
    let mut key = PolicyRef::new(&policy.name_any());
    key.namespace = policy.namespace();
    key
}

/// Reconciles running at once unless `--max-concurrent-reconciles` says otherwise: enough to hide
/// API latency, few enough that a burst of events cannot become a burst of API calls.
pub const DEFAULT_MAX_CONCURRENT_RECONCILES: u16 = 16;

/// Shared state of the reconcile loop.
pub struct Context {
    client: Client,
    direct_client: Client,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
    notifier: Notifier,
    probes: ProbeTasks<PolicyRef>,
    index: TargetIndex,
    resync: Duration,
    /// Backoff for policies whose target is missing.
    not_found: Backoff,
    /// Backoff for policies whose reconcile failed.
    failures: Backoff,
    writes: writes::WriteLog,
    /// Keys read from Secrets and ConfigMaps, by resourceVersion.
    reads: crate::observe::references::ReadCache,
    ladders: Arc<ladders::Ladders>,
    metrics: Arc<Metrics>,
    /// What probes may connect to: endpoints it refuses are left out, with the reason in status.
    reach: Reach,
    own_pod: Option<OwnPod>,
    /// The shards this replica acts for (None: every workload).
    sharding: Option<Arc<crate::fleet::keeper::Sharding>>,
    /// What is known of each targetSelector policy's workloads.
    fleets: book::Memory,
}

impl Context {
    /// Drops what is kept in memory about a deleted policy.
    fn forget(&self, key: &PolicyRef) {
        let label = remediate::policy_label(key);
        self.metrics.policy_ready(&label, None);
        self.metrics.health(&label, None);
        self.writes.forget(key);
        self.failures.reset(key);
        self.not_found.reset(key);
        book::release_all(self, key);
    }
}

/// Exponential backoff per policy: 5s, 10s, 20s … capped at 5 minutes.
#[derive(Default)]
struct Backoff(Mutex<HashMap<PolicyRef, u32>>);

impl Backoff {
    fn next(&self, key: &PolicyRef) -> Duration {
        let mut retries = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = retries.entry(key.clone()).or_insert(0);
        let delay = Duration::from_secs(5)
            .saturating_mul(2u32.saturating_pow(*n))
            .min(Duration::from_secs(300));
        *n = n.saturating_add(1);
        delay
    }

    fn reset(&self, key: &PolicyRef) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }
}

/// Client-side limit on Kubernetes API requests: on average `qps` per second, at most `burst`
/// at once, so a storm of events cannot turn into a storm of API calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApiRateLimit {
    pub qps: f64,
    pub burst: u64,
}

impl Default for ApiRateLimit {
    fn default() -> Self {
        Self { qps: 5.0, burst: 10 }
    }
}

/// A client for `config` whose requests pass a rate limit: `burst` requests per window of
/// `burst / qps` seconds (5/s with bursts of 10 by default). With `config.default_retry` off it
/// is the [`Config::direct_client`].
pub fn rate_limited_client(
    config: kube::Config,
    limit: ApiRateLimit,
    metrics: Option<Arc<Metrics>>,
) -> Result<Client> {
    let burst = limit.burst.max(1);
    let qps = if limit.qps.is_finite() && limit.qps > 0.0 {
        limit.qps
    } else {
        ApiRateLimit::default().qps
    };
    let window = Duration::from_secs_f64(burst as f64 / qps);
    let layer = tower::limit::RateLimitLayer::new(burst, window);
    let counted = tower::util::option_layer(metrics.map(crate::metrics::CountRequests));
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&layer)
        .with_layer(&counted)
        .build())
}

/// Checks that the CRD is installed, with a call that works under namespaced RBAC too.
async fn ensure_crd(api: &Api<Watched>) -> Result<()> {
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => {
            Err(Error::CrdMissing(status.message.clone()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs the operator until `shutdown` resolves. With leader election, waits for the lease first,
/// leads until `shutdown` (then releases the lease for a standby) or until the lease is lost (an
/// error: the process should restart as a standby).
pub async fn run(
    client: Client,
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let (readiness, metrics) = (config.readiness.clone(), config.metrics.clone());
    if let Some(shards) = config.shards.clone().filter(|s| s.shards > 1) {
        return run_sharded(client, config, shards, clock, shutdown).await;
    }
    let Some(election) = config.leader_election.clone() else {
        readiness.leading(true);
        metrics.leader.set(1);
        return run_leading(client, config, None, clock, shutdown).await;
    };
    // A standby serves its endpoints and is ready; it does nothing else.
    readiness.caches_synced();
    readiness.leading(false);
    metrics.leader.set(0);
    let shutdown = shutdown.shared();
    let leadership = tokio::select! {
        leadership = election.acquire(client.clone()) => leadership.map_err(Error::Leadership)?,
        _ = shutdown.clone() => return Ok(()),
    };
    readiness.leading(true);
    metrics.leader.set(1);
    let lost = leadership.lost();
    let stop = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = lost => tracing::warn!("the lease was lost; stopping"),
        }
    };
    let result = run_leading(client, config, None, clock, stop).await;
    let lost = !leadership.held();
    leadership.release().await;
    readiness.leading(false);
    metrics.leader.set(0);
    result?;
    if lost {
        return Err(Error::LostLeadership);
    }
    Ok(())
}

/// Runs the operator for the shards this replica holds (every replica watches everything, and
/// probes, acts and writes status only for the workloads of its shards), until `shutdown`; then
/// gives its shards back.
async fn run_sharded(
    client: Client,
    config: Config,
    shards: crate::fleet::keeper::ShardConfig,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let (sharding, keeper) =
        crate::fleet::keeper::keep(client.clone(), shards, clock.clone(), config.metrics.clone());
    let (stop_keeper, keeper_stopped) = tokio::sync::oneshot::channel::<()>();
    let keeping = tokio::spawn(keeper.run(async move {
        let _ = keeper_stopped.await;
    }));
    config.readiness.leading(true);
    let result = run_leading(client, config, Some(sharding), clock, shutdown).await;
    let _ = stop_keeper.send(());
    if let Err(e) = keeping.await {
        tracing::warn!(error = %e, "the shard keeper failed");
    }
    result
}

/// The operator proper: watches, probes, reconciles, until `shutdown` resolves. With a list of
/// namespaces, one pipeline per namespace (each with namespaced calls only, so no cluster-wide
/// right is needed), sharing the operator-wide ladder budget and the metrics.
async fn run_leading(
    client: Client,
    config: Config,
    sharding: Option<Arc<crate::fleet::keeper::Sharding>>,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        tracing::info!(
            namespaces = ?config.namespaces,
            "ClusterAppHealthPolicies are not served: this install watches only these namespaces"
        );
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let shutdown = shutdown.shared();
    let ladders = Arc::new(ladders::Ladders::new(config.max_concurrent_remediations));
    let probe_slots = Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_probes.max(1)));
    let unsynced = Arc::new(AtomicUsize::new(scopes.len()));
    let runs = scopes.into_iter().map(|scope| {
        let scope = Scope {
            namespace: scope,
            ladders: ladders.clone(),
            probe_slots: probe_slots.clone(),
            unsynced: unsynced.clone(),
            sharding: sharding.clone(),
        };
        run_scope(
            client.clone(),
            config.clone(),
            scope,
            clock.clone(),
            shutdown.clone(),
        )
    });
    futures::future::try_join_all(runs).await?;
    Ok(())
}

/// One watch scope: a namespace, or the whole cluster.
struct Scope {
    namespace: Option<String>,
    ladders: Arc<ladders::Ladders>,
    /// Slots for probes in flight, shared by every scope.
    probe_slots: Arc<tokio::sync::Semaphore>,
    /// Scopes whose caches are not filled yet: ready when none is left.
    unsynced: Arc<AtomicUsize>,
    sharding: Option<Arc<crate::fleet::keeper::Sharding>>,
}

/// The reconcile's shared state for one scope.
fn context(
    client: Client,
    config: &Config,
    scope: &Scope,
    clock: Arc<dyn Clock>,
    index: &TargetIndex,
    nudge: mpsc::UnboundedSender<PolicyRef>,
) -> Result<Context> {
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: config.instance.clone(),
    };
    Ok(Context {
        recorder: Recorder::new(client.clone(), reporter),
        notifier: Notifier::new(
            config.reach.clone(),
            config.notify_timeout,
            config.notify_attempts,
            config.notify_backoff,
        )?,
        probes: ProbeTasks::new(Probing {
            prober: Arc::new(HttpProber::new(config.reach.clone())?),
            slots: scope.probe_slots.clone(),
            clock: clock.clone(),
            usage: Arc::new(MetricsApi::new(client.clone())),
            nudge,
            alive: {
                let index = index.clone();
                Arc::new(move |key: &PolicyRef| index.policy_exists(&unit::policy(key)))
            },
            metrics: config.metrics.clone(),
        }),
        clock,
        index: index.clone(),
        resync: config.resync,
        not_found: Backoff::default(),
        failures: Backoff::default(),
        writes: writes::WriteLog::default(),
        reads: Default::default(),
        ladders: scope.ladders.clone(),
        direct_client: config.direct_client.clone().unwrap_or_else(|| client.clone()),
        metrics: config.metrics.clone(),
        reach: config.reach.clone(),
        own_pod: config.own_pod.clone(),
        sharding: scope.sharding.clone(),
        fleets: book::Memory::default(),
        client,
    })
}

async fn run_scope(
    client: Client,
    config: Config,
    scope: Scope,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let ns = scope.namespace.as_deref();
    let policies: Api<Watched> = scoped(&client, ns);
    ensure_crd(&policies).await?;

    let cluster_wide = ns.is_none() && cluster_scope::serves_cluster_policies(&client).await;
    let Watches {
        controller,
        index,
        triggers: changes,
        cluster,
    } = watch(
        &client,
        ns,
        cluster_wide,
        policies,
        config.max_concurrent_reconciles,
    );
    let (nudge_tx, nudge_rx) = mpsc::unbounded_channel();
    // A workload of a policy over many nudges its policy: a namespaced one, or a cluster one.
    let (nudges, cluster_nudges) = cluster_scope::route_nudges(nudge_rx);
    let triggers = stream::select(changes, nudges);

    let ctx = Arc::new(context(client, &config, &scope, clock, &index, nudge_tx.clone())?);
    // A shard taken or given back: every policy is looked at again (those of other shards return
    // at once).
    if let Some(sharding) = scope.sharding.as_ref() {
        let (index, mut held) = (index.clone(), sharding.subscribe());
        held.mark_changed();
        tokio::spawn(async move {
            while held.changed().await.is_ok() {
                let namespaced = index
                    .policies
                    .state()
                    .into_iter()
                    .map(|p| reflector::ObjectRef::from_obj(p.as_ref()));
                let cluster = index
                    .cluster_policies
                    .state()
                    .into_iter()
                    .map(|p| PolicyRef::new(&p.name_any()));
                for key in namespaced.chain(cluster) {
                    if nudge_tx.send(key).is_err() {
                        return;
                    }
                }
            }
        });
    }

    // Ready once every cache has been filled (the leader also once it probes: the probe tasks
    // start with the first reconciles).
    {
        let (index, readiness, unsynced) = (index.clone(), config.readiness.clone(), scope.unsynced);
        tokio::spawn(async move {
            if index.synced().await && unsynced.fetch_sub(1, Ordering::SeqCst) == 1 {
                readiness.caches_synced();
                readiness.probing_started();
            }
        });
    }
    let forget = ctx.clone();
    let shutdown = shutdown.shared();
    // kube-runtime holds the first reconcile until the policy cache is filled, and its graceful
    // shutdown stops reading the watch that would fill it: a stop asked for before then would wait
    // for good. Nothing has been reconciled yet, so such a stop ends at once.
    let early_stop = {
        let (shutdown, index) = (shutdown.clone(), index.clone());
        async move {
            shutdown.await;
            if index.is_synced() {
                std::future::pending::<()>().await;
            }
            tracing::info!("stopping before the caches were filled");
        }
    };
    let run = controller
        .reconcile_on(triggers)
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| settled(result, forget.clone()));
    // The cluster policies' controller, in a cluster-wide scope, over the same caches and ladders.
    let cluster_run = async move {
        let Some(cluster) = cluster else {
            return;
        };
        let forget = ctx.clone();
        cluster
            .controller
            .reconcile_on(stream::select(cluster.triggers, cluster_nudges))
            .graceful_shutdown_on(shutdown)
            .run(reconcile_cluster, error_policy, ctx)
            .for_each(|result| settled(result, forget.clone()))
            .await;
    };
    tokio::select! {
        ((), ()) = futures::future::join(run, cluster_run) => {}
        () = early_stop => {}
    }
    Ok(())
}

/// What a reconcile ended with, logged; a policy that is gone is forgotten.
async fn settled<K, E>(
    result: std::result::Result<(reflector::ObjectRef<K>, Requeue), controller::Error<E, watcher::Error>>,
    ctx: Arc<Context>,
) where
    K: kube::Resource<DynamicType = ()>,
    E: std::error::Error + 'static,
{
    match result {
        Ok((obj, _)) => tracing::debug!(policy = %obj, "reconciled"),
        Err(controller::Error::ObjectNotFound(obj)) => {
            tracing::debug!(policy = %obj, "policy is gone");
            let mut key = PolicyRef::new(&obj.name);
            key.namespace = obj.namespace.clone();
            ctx.forget(&key);
        }
        Err(e) => tracing::warn!(error = %e, "reconcile failed"),
    }
}

/// A failed reconcile is retried with a backoff of its own policy's (5s doubling to 5m): one
/// policy failing does not slow the others, nor hammer the API server. An AppHealthPolicy or a
/// ClusterAppHealthPolicy.
fn error_policy<K>(policy: Arc<Watched<K>>, error: &Error, ctx: Arc<Context>) -> Requeue
where
    K: kube::Resource<DynamicType = ()>,
{
    let key = policy_key(policy.as_ref());
    let delay = ctx.failures.next(&key);
    ctx.metrics.reconcile_failed(error.metric_label(), error.reason());
    // The status this process wrote may not have landed: start again from what the API says.
    ctx.writes.forget(&key);
    tracing::warn!(policy = %policy.name_any(), error = %error, stage = error.metric_label(), reason = error.reason(), retry_in = ?delay, "reconcile failed; retrying");
    Requeue::requeue(delay)
}
