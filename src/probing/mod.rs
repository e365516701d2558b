//! Probing on its own schedule, outside the reconcile loop: the wiring of observe → evaluate. One
//! task per policy, started, updated and stopped by the reconcile as policies appear, change and
//! disappear.
//!
//! Each endpoint is probed once per period at its own phase ([`schedule`]), each probe a future
//! of its own that the policy's task polls alongside the others, so a slow or hanging endpoint
//! never delays another. How many probes run at once is
//! bounded operator-wide (`--max-concurrent-probes`): a probe due while every slot is taken waits
//! for one, which is counted (`apphealth_probes_delayed_total`, `apphealth_probe_lag_seconds`);
//! when probes start later than a tenth of the period, the policy's Ready condition says the
//! operator is not keeping up, rather than the period silently stretching. Samples are folded into the policy's
//! evaluator as they arrive, so a pod that starts failing is judged after `threshold` of its own
//! probes. Once per period the task also reads the pods' signals and resource use and judges every
//! endpoint. When the verdict changes it is published and the controller nudged for that policy.

mod schedule;

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use tokio::{
    sync::{Semaphore, mpsc, watch},
    time::Instant,
};

use crate::{
    clock::Clock,
    evaluate::{Evaluator, TargetVerdict},
    metrics::Metrics,
    observation::{PodSignals, Sample, Usage},
    observe::{prober::HttpProber, request::ProbeRequest, signals::UsageSource},
    record::Finding,
    settings::Settings,
};
pub use schedule::Schedule;
use schedule::{Due, ProbeKey};

/// The Ready note while the operator cannot keep a policy's probe schedule.
pub const BEHIND: &str = "the operator is not keeping up: probes started more than a tenth of the period late, waiting for a free slot (--max-concurrent-probes), or missed a period; raise --max-concurrent-probes, lengthen periodSeconds or shard policies over more replicas";

/// Probes in flight at once, operator-wide, unless `--max-concurrent-probes` says otherwise.
pub const DEFAULT_MAX_CONCURRENT_PROBES: u32 = 1024;

/// Sends one probe and judges the answer; never fails (a failed probe is a sample too). The
/// HTTP prober in production, a scripted one in tests.
pub trait SendProbe: Send + Sync + 'static {
    fn send<'a>(&'a self, req: &'a ProbeRequest, clock: &'a dyn Clock) -> BoxFuture<'a, Sample>;
}

impl SendProbe for HttpProber {
    fn send<'a>(&'a self, req: &'a ProbeRequest, clock: &'a dyn Clock) -> BoxFuture<'a, Sample> {
        Box::pin(self.probe(req, clock))
    }
}

/// What a probe task needs: the policy's settings, the requests to send, and the target's pods'
/// cluster signals (refreshed by the controller whenever a pod changes).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeJob {
    pub settings: Arc<Settings>,
    pub namespace: String,
    pub requests: Vec<ProbeRequest>,
    pub signals: Vec<PodSignals>,
}

/// Tells a probe task whether its policy still exists; checked before every round, so a deleted
/// policy stops being probed at its next tick.
pub type Alive<K> = Arc<dyn Fn(&K) -> bool + Send + Sync>;

/// What every probe task shares.
pub struct Probing<K> {
    pub prober: Arc<dyn SendProbe>,
    /// Slots for probes in flight, shared by every policy.
    pub slots: Arc<Semaphore>,
    pub clock: Arc<dyn Clock>,
    pub usage: Arc<dyn UsageSource>,
    /// Receives a policy's key whenever its verdict changes.
    pub nudge: mpsc::UnboundedSender<K>,
    pub alive: Alive<K>,
    pub metrics: Arc<Metrics>,
}

struct Task {
    /// Shared with the task: it keeps the same job, not a copy.
    job: watch::Sender<Arc<ProbeJob>>,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for Task {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// The set of running probe tasks, keyed by policy.
pub struct ProbeTasks<K> {
    tasks: Mutex<HashMap<K, Task>>,
    verdicts: Arc<Mutex<HashMap<K, TargetVerdict>>>,
    shared: Arc<Probing<K>>,
}

impl<K> ProbeTasks<K>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    pub fn new(shared: Probing<K>) -> Self {
        Self {
            tasks: Mutex::default(),
            verdicts: Arc::default(),
            shared: Arc::new(shared),
        }
    }

    /// Starts probing for `key`, or hands the running task its new job. A task that starts takes
    /// `resume` (the evidence recorded in status) as its starting point, so pods that were
    /// Unhealthy before an operator restart must recover again rather than look healthy. With
    /// `catch_up` (asked only when a task starts: endpoints another replica was probing until it
    /// died or let go), its first round is spread over the lag the operator tolerates instead of
    /// the whole period, so no endpoint waits up to a period more than the takeover already made
    /// it wait.
    pub fn ensure(&self, key: &K, job: ProbeJob, resume: &[Finding], catch_up: impl FnOnce() -> bool) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        // Tasks of deleted policies ended on their own; forget them.
        tasks.retain(|_, t| !t.handle.is_finished());
        if let Some(task) = tasks.get(key) {
            task.job.send_if_modified(|current| {
                let changed = **current != job;
                if changed {
                    *current = Arc::new(job);
                }
                changed
            });
            return;
        }
        let (tx, rx) = watch::channel(Arc::new(job));
        let handle = tokio::spawn(run(
            key.clone(),
            rx,
            (resume.to_vec(), catch_up()),
            self.shared.clone(),
            self.verdicts.clone(),
        ));
        tasks.insert(key.clone(), Task { job: tx, handle });
    }

    /// Stops probing for `key` and forgets its verdict.
    pub fn stop(&self, key: &K) {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        self.verdicts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// The latest verdict for `key`, if its task has produced one.
    pub fn verdict(&self, key: &K) -> Option<TargetVerdict> {
        self.verdicts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }
}

/// Verdict changes and triggers that began to fire, for the metrics.
fn count(metrics: &Metrics, old: Option<&TargetVerdict>, new: &TargetVerdict) {
    if old.is_none_or(|o| o.health != new.health) {
        metrics.verdict_changed(new.health.as_str());
    }
    for e in &new.evidence {
        let before = old
            .iter()
            .flat_map(|o| o.evidence.iter())
            .find(|o| o.trigger == e.trigger)
            .map_or(0, |o| o.pods.len());
        for _ in before..e.pods.len() {
            metrics.trigger_fired(&e.trigger);
        }
    }
}

fn random_offset(period: Duration) -> Duration {
    let max_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rand::random_range(0..max_ms))
}

/// Once per period, the first a period on (when every endpoint has been probed once), each at a
/// small random offset so policies that start together do not judge in lockstep.
fn judge_ticks(period: Duration) -> tokio::time::Interval {
    let first = Instant::now() + period + random_offset(period / 10);
    let mut ticks = tokio::time::interval_at(first, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

fn seed<K: Hash>(key: &K) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// The probes of a policy in flight, each polled on its own (a hanging one holds up no other);
/// futures of the policy's task rather than tasks of their own, so that starting one wakes no
/// other worker thread. A probe that panicked yields its endpoint, to be freed.
type InFlight = FuturesUnordered<BoxFuture<'static, Result<Finished, ProbeKey>>>;

/// A probe that finished.
struct Finished {
    key: ProbeKey,
    sample: Sample,
    /// How late it started.
    lag: Duration,
}

/// The run of judged periods that were late (positive) or on time (negative), after one more.
fn streak(streak: i32, late: bool) -> i32 {
    match (late, streak > 0) {
        (true, true) => streak.saturating_add(1),
        (true, false) => 1,
        (false, true) => -1,
        (false, false) => streak.saturating_sub(1),
    }
}

/// Whether the operator says it is not keeping up: after two late periods in a row, until two
/// on-time periods in a row. One late period (a host that stalled, a burst of work) is not
/// "behind", and a note that came and went with it would cost two status writes.
fn says_behind(said: bool, streak: i32) -> bool {
    if said { streak > -2 } else { streak >= 2 }
}

/// How late a probe may start before the operator counts as not keeping up: a tenth of the period.
fn tolerated_lag(period: Duration) -> Duration {
    period / 10
}

/// Waits for a slot (counting the wait), sends the probe, frees the slot.
async fn probe<K>(shared: Arc<Probing<K>>, due: Due, epoch: Instant) -> Finished {
    let (permit, waited) = match shared.slots.clone().try_acquire_owned() {
        Ok(permit) => (Some(permit), false),
        // The semaphore is never closed; were it, the probe would go ahead unbounded.
        Err(_) => (shared.slots.clone().acquire_owned().await.ok(), true),
    };
    let lag = Instant::now().saturating_duration_since(epoch + due.at);
    shared.metrics.probe_started(lag, waited);
    shared.metrics.probes_in_flight.inc();
    let sample = shared.prober.send(&due.request, shared.clock.as_ref()).await;
    shared.metrics.probes_in_flight.dec();
    drop(permit);
    Finished {
        key: due.key,
        sample,
        lag,
    }
}

/// What a policy's probe task keeps between events.
struct PolicyProbes<K> {
    key: K,
    job: Arc<ProbeJob>,
    evaluator: Evaluator,
    schedule: Schedule,
    epoch: Instant,
    in_flight: InFlight,
    /// Probes delayed or skipped since the last judging, and the note they led to.
    behind: u32,
    /// Judged periods in a row with late probes (positive) or without (negative).
    streak: i32,
    behind_note: Option<String>,
    /// The first judging happened.
    judged: bool,
    shared: Arc<Probing<K>>,
    verdicts: Arc<Mutex<HashMap<K, TargetVerdict>>>,
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> PolicyProbes<K> {
    fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.epoch)
    }

    fn next_due(&self) -> Option<Instant> {
        self.schedule.next_due().map(|d| self.epoch + d)
    }

    /// Starts every probe that fell due.
    fn start_due(&mut self) {
        let round = self.schedule.take_due(self.elapsed());
        let skipped = round.busy.saturating_add(round.late);
        if skipped > 0 {
            self.shared.metrics.probes_skipped.inc_by(u64::from(skipped));
        }
        self.behind = self.behind.saturating_add(round.late);
        for due in round.start {
            let key = due.key.clone();
            let probe = AssertUnwindSafe(probe(self.shared.clone(), due, self.epoch))
                .catch_unwind()
                .map(move |done| done.map_err(|_| key));
            self.in_flight.push(probe.boxed());
        }
    }

    /// Folds a finished probe in; true when the verdict may have changed.
    fn finished(&mut self, done: Result<Finished, ProbeKey>) -> bool {
        let done = match done {
            Ok(done) => done,
            Err(key) => {
                // A probe that panicked: free its endpoint for the next round.
                self.schedule.done(&key);
                return false;
            }
        };
        self.schedule.done(&done.key);
        if done.lag > tolerated_lag(self.job.settings.probe.period) {
            self.behind = self.behind.saturating_add(1);
        }
        let sample = done.sample;
        tracing::trace!(endpoint = %sample.endpoint, path = %sample.path, ok = sample.ok, detail = %sample.detail, "probe");
        self.shared
            .metrics
            .probe(sample.ok, sample.latency, sample.reason);
        self.evaluator.fold(&sample, self.shared.clock.now())
    }

    /// Once per period: the pods' signals and resource use, every endpoint judged, and whether
    /// probing kept its schedule.
    async fn judge(&mut self) -> TargetVerdict {
        let usage = if self.evaluator.needs_metrics() {
            self.shared.usage.pod_usage(&self.job.namespace).await
        } else {
            Usage::Available(Default::default())
        };
        let now = self.shared.clock.now();
        self.evaluator.observe_signals(now, &self.job.signals, &usage);
        let names = self.job.requests.iter().map(|r| r.endpoint.as_str());
        self.evaluator
            .retain(names.chain(self.job.signals.iter().map(|s| s.pod.as_str())));
        self.streak = streak(self.streak, self.behind > 0);
        self.behind_note = says_behind(self.behind_note.is_some(), self.streak).then(|| BEHIND.to_owned());
        self.behind = 0;
        let verdict = self.evaluator.verdict(now);
        self.noted(verdict)
    }

    fn noted(&self, mut verdict: TargetVerdict) -> TargetVerdict {
        verdict.notes.extend(self.behind_note.iter().cloned());
        verdict
    }

    /// Publishes the verdict; false when the controller is gone.
    fn publish(&self, verdict: TargetVerdict) -> bool {
        let changed = {
            let mut board = self.verdicts.lock().unwrap_or_else(PoisonError::into_inner);
            let old = board.get(&self.key);
            count(&self.shared.metrics, old, &verdict);
            let changed = old.is_none_or(|old| verdict.differs_from(old));
            board.insert(self.key.clone(), verdict);
            changed
        };
        !changed || self.shared.nudge.send(self.key.clone()).is_ok()
    }

    fn adopt(&mut self, job: Arc<ProbeJob>) {
        let now = self.elapsed();
        self.evaluator.reconfigure(&job.settings);
        if job.settings.probe.period != self.job.settings.probe.period {
            self.schedule.set_period(job.settings.probe.period, now);
        }
        self.schedule.set(&job.requests, now);
        self.job = job;
    }
}

async fn run<K: Clone + Eq + Hash + Send + Sync + 'static>(
    key: K,
    mut jobs: watch::Receiver<Arc<ProbeJob>>,
    (resume, catch_up): (Vec<Finding>, bool),
    shared: Arc<Probing<K>>,
    verdicts: Arc<Mutex<HashMap<K, TargetVerdict>>>,
) {
    let job = jobs.borrow_and_update().clone();
    let mut evaluator = Evaluator::new(&job.settings);
    evaluator.resume(&resume, shared.clock.now());
    let period = job.settings.probe.period;
    let mut p = PolicyProbes {
        schedule: Schedule::new(period, seed(&key)),
        epoch: Instant::now(),
        key,
        job,
        evaluator,
        in_flight: InFlight::new(),
        behind: 0,
        streak: 0,
        behind_note: None,
        judged: false,
        shared,
        verdicts,
    };
    let job = p.job.clone();
    p.schedule.set(&job.requests, Duration::ZERO);
    if catch_up {
        p.schedule.compress_first_round(tolerated_lag(period));
    }
    let mut ticks = judge_ticks(period);
    // One timer, moved to each next due time: a new one per wait, held inline, would make every
    // idle task larger by a timer entry and its alignment.
    let mut due = Box::pin(tokio::time::sleep_until(Instant::now()));
    loop {
        let next = p.next_due();
        if let Some(at) = next
            && due.deadline() != at
        {
            due.as_mut().reset(at);
        }
        tokio::select! {
            () = &mut due, if next.is_some() => p.start_due(),
            Some(done) = p.in_flight.next() => {
                let mut changed = p.finished(done);
                // Fold whatever else finished meanwhile before summing up once.
                while let Some(Some(done)) = p.in_flight.next().now_or_never() {
                    changed |= p.finished(done);
                }
                // Verdicts are published from the first judging on, when every endpoint has
                // been probed once: the first verdict covers them all.
                if changed && p.judged {
                    let verdict = p.evaluator.summarize(p.shared.clock.now());
                    if !p.publish(p.noted(verdict)) {
                        return;
                    }
                }
            }
            _ = ticks.tick() => {
                if !(p.shared.alive)(&p.key) {
                    p.verdicts.lock().unwrap_or_else(PoisonError::into_inner).remove(&p.key);
                    return;
                }
                // Boxed: held inline, its state would make every idle task that much larger.
                let verdict = Box::pin(p.judge()).await;
                p.judged = true;
                if !p.publish(verdict) {
                    return;
                }
            }
            changed = jobs.changed() => {
                if changed.is_err() {
                    return;
                }
                let job = jobs.borrow_and_update().clone();
                let period = p.job.settings.probe.period;
                p.adopt(job);
                if p.job.settings.probe.period != period {
                    ticks = judge_ticks(p.job.settings.probe.period);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
