//! The shard keeper: each round (a fifth of the lease duration, itself bounded by a round) it
//! renews this replica's member Lease, reads the shard Leases, and carries out [`moves`]:
//! renewals, acquisitions and, after draining, releases. It publishes the shards this replica may
//! act for; a shard whose renewal has not succeeded for the lease duration minus two rounds is
//! dropped from that set first (the checks are at most two rounds apart), so a replica cut off
//! from the API server stops acting before anyone else may take over.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use tokio::sync::watch;

use super::{
    leases::{LeaseView, Move, moves},
    shard::shard_of,
};
use crate::{clock::Clock, metrics::Metrics};

/// The label on member Leases, so that one list finds them all.
pub const MEMBER_LABEL: &str = "apphealth.io/shard-member";

/// Where the shard Leases live and who this replica is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardConfig {
    pub shards: u32,
    pub namespace: String,
    /// Shard Leases are `<prefix>-shard-<n>`, member Leases `<prefix>-member-<identity>`.
    pub prefix: String,
    pub identity: String,
    pub duration: Duration,
}

/// The shards this replica may act for, and the work in flight in each.
pub struct Sharding {
    pub shards: u32,
    /// The shards held, each with the time until which this replica may act for it (its last
    /// renewal plus the lease duration less two rounds): checked by the clock at every start of
    /// work, whatever the keeper's own timing.
    held: watch::Receiver<BTreeMap<u32, Timestamp>>,
    in_flight: Vec<AtomicUsize>,
    /// When each shard was last taken over from a replica that held it before (one that died or
    /// gave it back), so its workloads' probing catches up rather than waiting a period more.
    taken_over: std::sync::Mutex<BTreeMap<u32, Timestamp>>,
    /// How long after a takeover new probe tasks catch up: the lease duration.
    catch_up_for: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Sharding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sharding")
            .field("shards", &self.shards)
            .field("held", &*self.held.borrow())
            .finish_non_exhaustive()
    }
}

/// A piece of work for one shard: counted while it lives, so the shard is not given back under it.
pub struct Working<'a> {
    counter: &'a AtomicUsize,
}

impl Drop for Working<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Sharding {
    /// The shard of a workload.
    pub fn shard(&self, namespace: &str, kind: &str, name: &str) -> u32 {
        shard_of(namespace, kind, name, self.shards)
    }

    /// Starts work for the workload if this replica holds its shard (None: leave it alone).
    pub fn work(&self, namespace: &str, kind: &str, name: &str) -> Option<Working<'_>> {
        let shard = self.shard(namespace, kind, name);
        let counter = self.in_flight.get(shard as usize)?;
        counter.fetch_add(1, Ordering::SeqCst);
        let working = Working { counter };
        // Checked after counting, so a release that drains sees this work or it sees no shard.
        let until = self.held.borrow().get(&shard).copied();
        until
            .is_some_and(|until| self.clock.now() < until)
            .then_some(working)
    }

    /// Whether the workload's shard was taken over from another replica within the lease duration:
    /// its probing then catches up (see [`crate::probing::ProbeTasks::ensure`]).
    pub fn catching_up(&self, namespace: &str, kind: &str, name: &str) -> bool {
        let shard = self.shard(namespace, kind, name);
        let taken = self
            .taken_over
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&shard)
            .copied();
        let now = self.clock.now();
        taken.is_some_and(|at| now < crate::clock::after(at, self.catch_up_for))
    }

    /// The held shards, to wait on changes of the set (not of their renewals).
    pub fn subscribe(&self) -> watch::Receiver<BTreeMap<u32, Timestamp>> {
        self.held.clone()
    }

    /// The shards held now.
    pub fn held(&self) -> BTreeSet<u32> {
        self.held.borrow().keys().copied().collect()
    }
}

/// Starts keeping the shards: returns the handle the controller asks, and the task to run.
pub fn keep(
    client: Client,
    config: ShardConfig,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> (Arc<Sharding>, Keeper) {
    let (tx, rx) = watch::channel(BTreeMap::new());
    let sharding = Arc::new(Sharding {
        shards: config.shards.max(1),
        held: rx,
        in_flight: (0..config.shards.max(1)).map(|_| AtomicUsize::new(0)).collect(),
        taken_over: std::sync::Mutex::default(),
        catch_up_for: config.duration,
        clock: clock.clone(),
    });
    let keeper = Keeper {
        api: Api::namespaced(client, &config.namespace),
        config,
        clock,
        metrics,
        sharding: sharding.clone(),
        held: tx,
        renewed: Vec::new(),
    };
    (sharding, keeper)
}

/// Keeps the shard Leases until stopped; see [`Keeper::run`].
pub struct Keeper {
    api: Api<Lease>,
    config: ShardConfig,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    sharding: Arc<Sharding>,
    held: watch::Sender<BTreeMap<u32, Timestamp>>,
    /// When each held shard was last renewed by this replica.
    renewed: Vec<(u32, Timestamp)>,
}

impl Keeper {
    fn round(&self) -> Duration {
        (self.config.duration / 5).max(Duration::from_millis(100))
    }

    /// Keeps the shards round after round until `stop` resolves; then gives back every shard
    /// it holds (its work has ended by then), so that the other replicas take them at once.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()> + Send) {
        let mut stop = std::pin::pin!(stop);
        loop {
            // An API server that does not answer must not hold the fence back.
            match tokio::time::timeout(self.round(), self.once()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not keep the shard leases this round"),
                Err(_) => tracing::warn!("the shard leases' round timed out"),
            }
            self.fence();
            tokio::select! {
                () = tokio::time::sleep(self.round()) => {}
                () = &mut stop => break,
            }
        }
        let held: Vec<u32> = self.renewed.iter().map(|(s, _)| *s).collect();
        for s in held {
            let lease = self.api.get_opt(&self.shard_name(s)).await.ok().flatten();
            let mine = lease
                .as_ref()
                .and_then(|l| l.spec.as_ref())
                .and_then(|s| s.holder_identity.as_deref())
                == Some(self.config.identity.as_str());
            if mine && let Err(e) = self.release(s, lease).await {
                tracing::warn!(shard = s, error = %e, "could not give the shard back; it is taken over when its lease expires");
            }
        }
    }

    fn shard_name(&self, shard: u32) -> String {
        format!("{}-shard-{shard}", self.config.prefix)
    }

    async fn once(&mut self) -> kube::Result<()> {
        let now = self.clock.now();
        self.renew_member(now).await?;
        // One list a round: the member Leases by their label, the shard Leases by their names.
        let all = self.api.list(&ListParams::default()).await?.items;
        let members: Vec<LeaseView> = all
            .iter()
            .filter(|l| {
                l.metadata
                    .labels
                    .as_ref()
                    .and_then(|labels| labels.get(MEMBER_LABEL))
                    == Some(&self.config.prefix)
            })
            .map(view)
            .collect();
        let leases: Vec<Option<Lease>> = (0..self.sharding.shards)
            .map(|shard| {
                let name = self.shard_name(shard);
                all.iter()
                    .find(|l| l.metadata.name.as_deref() == Some(name.as_str()))
                    .cloned()
            })
            .collect();
        let views: Vec<LeaseView> = leases
            .iter()
            .map(|l| l.as_ref().map_or_else(free, view))
            .collect();
        for m in moves(&views, &members, &self.config.identity, now) {
            match m {
                Move::Renew(s) | Move::Acquire(s) => {
                    let lease = leases[s as usize].clone();
                    let acquiring = matches!(m, Move::Acquire(_));
                    if self.hold(s, lease, acquiring, now).await? {
                        self.renewed.retain(|(shard, _)| *shard != s);
                        self.renewed.push((s, now));
                    }
                }
                Move::Release(s) => self.release(s, leases[s as usize].clone()).await?,
            }
        }
        Ok(())
    }

    /// Renews (or creates) this replica's member Lease.
    async fn renew_member(&self, now: Timestamp) -> kube::Result<()> {
        let name = format!("{}-member-{}", self.config.prefix, self.config.identity);
        let existing = self.api.get_opt(&name).await?;
        let mut lease = existing.unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(MEMBER_LABEL.to_owned(), self.config.prefix.clone())].into()),
                ..ObjectMeta::default()
            },
            spec: None,
        });
        lease.spec = Some(self.spec(now, now, 0));
        if lease.metadata.resource_version.is_some() {
            self.api.replace(&name, &PostParams::default(), &lease).await?;
        } else {
            self.api.create(&PostParams::default(), &lease).await?;
        }
        Ok(())
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.config.duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Renews or takes shard `s`; false when another replica got there first.
    async fn hold(
        &self,
        s: u32,
        lease: Option<Lease>,
        acquiring: bool,
        now: Timestamp,
    ) -> kube::Result<bool> {
        let name = self.shard_name(s);
        // A Lease renewed before was held by a replica that died or gave it back.
        let held_before = lease
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .is_some_and(|spec| spec.renew_time.is_some());
        let result = match lease {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(now, now, 0)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                let old = lease.spec.clone().unwrap_or_default();
                let (acquired, transitions) = if acquiring {
                    (now, old.lease_transitions.unwrap_or(0).saturating_add(1))
                } else {
                    (
                        old.acquire_time.map_or(now, |t| t.0),
                        old.lease_transitions.unwrap_or(0),
                    )
                };
                lease.spec = Some(self.spec(acquired, now, transitions));
                // The resourceVersion read is the precondition: a replica that took it meanwhile wins.
                self.api.replace(&name, &PostParams::default(), &lease).await
            }
        };
        match result {
            Ok(_) => {
                if acquiring {
                    tracing::info!(shard = s, taken_over = held_before, "shard taken");
                }
                if acquiring && held_before {
                    self.sharding
                        .taken_over
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(s, now);
                }
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives shard `s` back: stops starting work for it, waits for the work in flight, then
    /// clears the holder so another replica takes it at once.
    async fn release(&mut self, s: u32, lease: Option<Lease>) -> kube::Result<()> {
        self.renewed.retain(|(shard, _)| *shard != s);
        self.publish();
        // Half a round at most, so the round ends in time; work still running then is waited for
        // again next round (the shard is no longer renewed, nor acted for meanwhile).
        let counter = &self.sharding.in_flight[s as usize];
        let deadline = tokio::time::Instant::now() + self.round() / 2;
        while counter.load(Ordering::SeqCst) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let Some(mut lease) = lease else { return Ok(()) };
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
        }
        match self
            .api
            .replace(&self.shard_name(s), &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                tracing::info!(shard = s, "shard given back");
                Ok(())
            }
            // Taken by another replica meanwhile: given back all the same.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// How long after a renewal this replica may act for the shard.
    fn safe(&self) -> Duration {
        self.config.duration.saturating_sub(self.round() * 2)
    }

    /// Drops shards whose renewal is too old to act on safely, and publishes the set.
    fn fence(&mut self) {
        let now = self.clock.now();
        let safe = self.safe();
        self.renewed
            .retain(|(_, at)| now < crate::clock::after(*at, safe));
        self.publish();
    }

    /// Publishes the held shards with their deadlines; those waiting hear of a change of the set
    /// only.
    fn publish(&self) {
        let safe = self.safe();
        let held: BTreeMap<u32, Timestamp> = self
            .renewed
            .iter()
            .map(|(s, at)| (*s, crate::clock::after(*at, safe)))
            .collect();
        for shard in 0..self.sharding.shards {
            self.metrics.shard_held(shard, held.contains_key(&shard));
        }
        self.held.send_if_modified(|current| {
            let changed = !current.keys().eq(held.keys());
            *current = held;
            changed
        });
    }
}

fn view(lease: &Lease) -> LeaseView {
    let spec = lease.spec.clone().unwrap_or_default();
    LeaseView {
        holder: spec.holder_identity,
        renewed: spec.renew_time.map(|t| t.0),
        duration: Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0)),
    }
}

fn free() -> LeaseView {
    LeaseView {
        holder: None,
        renewed: None,
        duration: Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{OffsetClock, SystemClock};

    /// Three shards on `clock`, none held yet, a lease of 15 s; and the sender of the held set.
    fn sharding(clock: &OffsetClock<SystemClock>) -> (watch::Sender<BTreeMap<u32, Timestamp>>, Sharding) {
        let (tx, rx) = watch::channel(BTreeMap::new());
        let sharding = Sharding {
            shards: 3,
            held: rx,
            in_flight: (0..3).map(|_| AtomicUsize::new(0)).collect(),
            taken_over: std::sync::Mutex::default(),
            catch_up_for: Duration::from_secs(15),
            clock: Arc::new(clock.clone()),
        };
        (tx, sharding)
    }

    #[test]
    fn work_starts_only_for_a_held_shard_and_only_until_its_deadline() {
        let clock = OffsetClock::new(SystemClock);
        let now = clock.now();
        let (tx, sharding) = sharding(&clock);
        let shard = sharding.shard("shop", "Deployment", "web");
        let other = (shard + 1) % 3;
        tx.send_replace([(shard, crate::clock::after(now, Duration::from_secs(10)))].into());
        {
            let working = sharding.work("shop", "Deployment", "web");
            assert!(working.is_some(), "its shard is held");
            assert_eq!(
                sharding.in_flight[shard as usize].load(Ordering::SeqCst),
                1,
                "counted while it lasts"
            );
        }
        assert_eq!(
            sharding.in_flight[shard as usize].load(Ordering::SeqCst),
            0,
            "and no longer"
        );
        let elsewhere = (0..)
            .map(|i| format!("svc-{i}"))
            .find(|n| sharding.shard("shop", "Deployment", n) == other)
            .expect("a workload of another shard");
        assert!(
            sharding.work("shop", "Deployment", &elsewhere).is_none(),
            "not its shard"
        );
        assert_eq!(sharding.in_flight[other as usize].load(Ordering::SeqCst), 0);
        // Past the deadline no work starts, though the keeper has not dropped the shard yet.
        clock.jump(Duration::from_secs(11));
        assert!(
            sharding.work("shop", "Deployment", "web").is_none(),
            "fenced by the clock"
        );
        assert_eq!(sharding.held(), [shard].into());
    }

    #[test]
    fn a_shard_taken_over_catches_up_for_the_lease_duration() {
        let clock = OffsetClock::new(SystemClock);
        let (_tx, sharding) = sharding(&clock);
        assert!(
            !sharding.catching_up("shop", "Deployment", "web"),
            "nothing taken over"
        );
        let shard = sharding.shard("shop", "Deployment", "web");
        sharding.taken_over.lock().unwrap().insert(shard, clock.now());
        assert!(sharding.catching_up("shop", "Deployment", "web"));
        let other = (0..)
            .map(|i| format!("svc-{i}"))
            .find(|n| sharding.shard("shop", "Deployment", n) != shard)
            .expect("a workload of another shard");
        assert!(
            !sharding.catching_up("shop", "Deployment", &other),
            "only its shard"
        );
        clock.jump(Duration::from_secs(16));
        assert!(
            !sharding.catching_up("shop", "Deployment", "web"),
            "a lease duration on, no more"
        );
    }
}
