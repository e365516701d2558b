//! Probing on its own schedule, outside the reconcile loop: the wiring of observe → evaluate. One
//! task per policy, started, updated and stopped by the reconcile as policies appear, change and
//! disappear. A task probes its endpoints every period (starting at a
//! random offset so policies do not probe in lockstep, and spreading its probes over the first half
//! of the period), reads resource use when a trigger needs it, folds everything into its evaluator,
//! and when the verdict changes publishes it and nudges the controller for that one policy.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::{StreamExt, stream};
use tokio::sync::{mpsc, watch};

use crate::{
    api::{Evidence, validate::Settings},
    clock::Clock,
    evaluate::{Evaluator, TargetVerdict},
    metrics::Metrics,
    observation::{PodSignals, Usage},
    observe::{prober::HttpProber, request::ProbeRequest, signals::UsageSource},
};

/// Probes in flight at once for one policy.
const MAX_CONCURRENT_PROBES: usize = 16;

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
    pub prober: HttpProber,
    pub clock: Arc<dyn Clock>,
    pub usage: Arc<dyn UsageSource>,
    /// Receives a policy's key whenever its verdict changes.
    pub nudge: mpsc::UnboundedSender<K>,
    pub alive: Alive<K>,
    pub metrics: Arc<Metrics>,
}

struct Task {
    job: watch::Sender<ProbeJob>,
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
    /// Unhealthy before an operator restart must recover again rather than look healthy.
    pub fn ensure(&self, key: &K, job: ProbeJob, resume: &[Evidence]) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        // Tasks of deleted policies ended on their own; forget them.
        tasks.retain(|_, t| !t.handle.is_finished());
        if let Some(task) = tasks.get(key) {
            task.job.send_if_modified(|current| {
                let changed = *current != job;
                if changed {
                    *current = job;
                }
                changed
            });
            return;
        }
        let (tx, rx) = watch::channel(job);
        let handle = tokio::spawn(run(
            key.clone(),
            rx,
            resume.to_vec(),
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

fn schedule(period: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + random_offset(period), period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

/// Sends one round of probes, the i-th of n starting i/n of the way into the first half of the period.
async fn probe_round(
    prober: &HttpProber,
    clock: &Arc<dyn Clock>,
    requests: &[ProbeRequest],
    period: Duration,
) -> Vec<crate::observation::Sample> {
    let n = u32::try_from(requests.len()).unwrap_or(u32::MAX).max(1);
    let spread = period / 2;
    stream::iter(requests.iter().cloned().enumerate())
        .map(|(i, req)| {
            let (prober, clock) = (prober.clone(), clock.clone());
            let offset = spread * u32::try_from(i).unwrap_or(u32::MAX) / n;
            async move {
                tokio::time::sleep(offset).await;
                prober.probe(&req, clock.as_ref()).await
            }
        })
        .buffer_unordered(MAX_CONCURRENT_PROBES)
        .collect()
        .await
}

async fn run<K: Clone + Eq + Hash + Send + Sync + 'static>(
    key: K,
    mut jobs: watch::Receiver<ProbeJob>,
    resume: Vec<Evidence>,
    shared: Arc<Probing<K>>,
    verdicts: Arc<Mutex<HashMap<K, TargetVerdict>>>,
) {
    let mut job = jobs.borrow_and_update().clone();
    let mut evaluator = Evaluator::new(&job.settings);
    evaluator.resume(&resume, shared.clock.now());
    let mut period = job.settings.probe.period;
    let mut ticks = schedule(period);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            changed = jobs.changed() => {
                if changed.is_err() {
                    return;
                }
                job = jobs.borrow_and_update().clone();
                evaluator.reconfigure(&job.settings);
                if job.settings.probe.period != period {
                    period = job.settings.probe.period;
                    ticks = schedule(period);
                }
                continue;
            }
        }
        if !(shared.alive)(&key) {
            verdicts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
            return;
        }
        let samples = probe_round(&shared.prober, &shared.clock, &job.requests, period).await;
        for sample in &samples {
            tracing::trace!(endpoint = %sample.endpoint, path = %sample.path, ok = sample.ok, detail = %sample.detail, "probe");
            evaluator.observe(sample);
            shared.metrics.probe(sample.ok, sample.latency);
        }
        let usage = if evaluator.needs_metrics() {
            shared.usage.pod_usage(&job.namespace).await
        } else {
            Usage::Available(Default::default())
        };
        let now = shared.clock.now();
        evaluator.observe_signals(now, &job.signals, &usage);
        let mut names: Vec<String> = job.requests.iter().map(|r| r.endpoint.clone()).collect();
        names.extend(job.signals.iter().map(|s| s.pod.clone()));
        evaluator.retain(&names);
        let verdict = evaluator.verdict(now);
        let changed = {
            let mut board = verdicts.lock().unwrap_or_else(PoisonError::into_inner);
            let old = board.get(&key);
            count(&shared.metrics, old, &verdict);
            let changed = old.is_none_or(|old| verdict.differs_from(old));
            board.insert(key.clone(), verdict);
            changed
        };
        if changed && shared.nudge.send(key.clone()).is_err() {
            return;
        }
    }
}
