//! Evaluate: samples and cluster signals → per-pod and per-target verdicts with evidence. Pure:
//! plain data and the time passed in; no client, no clock of its own.
//!
//! Each endpoint (a pod, or the Service) keeps a bounded ring of recent probe samples; triggers
//! look at sliding windows over it ending at `now`. A pod turns Unhealthy when any trigger fires
//! and Healthy again only after `recovery.consecutiveSuccesses` good probes and `healthyDelay`
//! without any trigger firing, so a target does not flap.

mod triggers;

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use jiff::Timestamp;

use crate::{
    api::{
        Health,
        validate::{RecoverySettings, TriggerSettings},
    },
    observation::{PodSignals, Sample, Usage},
    record::Finding,
    settings::Settings,
};

/// Restart times kept per pod, whatever the window.
const MAX_RESTARTS_KEPT: usize = 256;

/// What an endpoint's triggers look at.
#[derive(Debug, Clone, Default, PartialEq)]
struct EndpointState {
    health: Health,
    /// Recent samples, oldest first, at most `capacity`.
    samples: VecDeque<Kept>,
    consecutive_failures: u32,
    consecutive_successes: u32,
    last_failure: Option<String>,
    last_restart_count: Option<u32>,
    restarts: VecDeque<Timestamp>,
    crash_looping: Vec<String>,
    oom_killed: Vec<(String, Timestamp)>,
    config_changed: Vec<String>,
    memory: Pressure,
    cpu: Pressure,
    certificate_not_after: Option<Timestamp>,
    /// Since when no trigger has fired (None while one fires).
    quiet_since: Option<Timestamp>,
    /// What fired when the endpoint became Unhealthy; replaced only when the set of triggers
    /// changes, so evidence (and therefore status) does not change on every probe.
    fired: Vec<Fired>,
}

/// What the ring keeps of a probe sample: only what triggers read (the endpoint is the ring's
/// key, the path is shared, a failure's detail lives in `last_failure`), in 40 bytes.
#[derive(Debug, Clone, PartialEq)]
struct Kept {
    at: Timestamp,
    path: Arc<str>,
    /// Microseconds, saturating at about 71 minutes.
    latency_us: u32,
    /// 0 when no response arrived.
    code: u16,
    ok: bool,
    timed_out: bool,
}

impl Kept {
    fn latency(&self) -> Duration {
        Duration::from_micros(u64::from(self.latency_us))
    }

    fn code(&self) -> Option<u16> {
        (self.code != 0).then_some(self.code)
    }
}

/// Resource use above a trigger's threshold, tracked for its `for` duration.
#[derive(Debug, Clone, Default, PartialEq)]
struct Pressure {
    since: Option<Timestamp>,
    /// The worst container's use, for evidence.
    observation: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fired {
    trigger: &'static str,
    observation: String,
    since: Timestamp,
}

/// The verdict on a target: what the controller reports and plans from.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetVerdict {
    pub health: Health,
    /// When the target entered `health`.
    pub since: Timestamp,
    pub evidence: Vec<Finding>,
    pub probed: u32,
    pub healthy: u32,
    /// Endpoints judged Unhealthy, by name.
    pub unhealthy: Vec<String>,
    /// Endpoints not (yet) judged Unhealthy whose latest probe failed: with per-endpoint
    /// judging, the pods of an outage cross their threshold one by one, and the storm guard and
    /// diagnostics need to see the ones about to.
    pub failing: Vec<String>,
    /// Sentences about triggers that cannot work right now (e.g. no metrics API).
    pub notes: Vec<String>,
}

impl TargetVerdict {
    /// Whether two verdicts differ in anything worth reporting (health, evidence, counts, notes).
    pub fn differs_from(&self, other: &Self) -> bool {
        self.health != other.health
            || self.evidence != other.evidence
            || self.probed != other.probed
            || self.healthy != other.healthy
            || self.notes != other.notes
    }

    /// One sentence for Events and the Healthy condition.
    pub fn summary(&self) -> String {
        match self.health {
            Health::Unknown => "No verdict yet: waiting for the first probes.".into(),
            Health::Healthy => format!(
                "{} of {} probed endpoints are healthy.",
                self.healthy, self.probed
            ),
            Health::Unhealthy => {
                let causes: Vec<String> = self
                    .evidence
                    .iter()
                    .map(|e| format!("{}: {}", e.trigger, e.message))
                    .collect();
                format!(
                    "{} of {} endpoints are unhealthy ({}). {}",
                    self.unhealthy.len(),
                    self.probed
                        .max(u32::try_from(self.unhealthy.len()).unwrap_or(u32::MAX)),
                    self.unhealthy.join(", "),
                    causes.join("; ")
                )
            }
        }
    }
}

/// Judges endpoints from their samples and signals against a policy's triggers.
#[derive(Debug, Clone)]
pub struct Evaluator {
    triggers: Vec<TriggerSettings>,
    recovery: RecoverySettings,
    primary_path: String,
    capacity: usize,
    /// Paths probed, shared by every sample kept.
    paths: Vec<Arc<str>>,
    /// Boxed: a map's node has room for 11 entries however few are used, and most policies have
    /// one or a few endpoints (inline, a lone endpoint's node took 4 KiB).
    endpoints: BTreeMap<String, Box<EndpointState>>,
    target: Option<(Health, Timestamp)>,
    metrics_note: Option<String>,
}

impl Evaluator {
    pub fn new(settings: &Settings) -> Self {
        let mut e = Self {
            triggers: Vec::new(),
            recovery: settings.recovery.clone(),
            primary_path: String::new(),
            capacity: 1,
            paths: Vec::new(),
            endpoints: BTreeMap::new(),
            target: None,
            metrics_note: None,
        };
        e.reconfigure(settings);
        e
    }

    /// Adopts new settings while keeping what was observed so far (trimmed to the new bound).
    pub fn reconfigure(&mut self, settings: &Settings) {
        self.triggers = settings.triggers.clone();
        self.recovery = settings.recovery.clone();
        self.primary_path = settings.probe.primary_path().to_owned();
        self.capacity = settings.sample_capacity.max(1);
        for state in self.endpoints.values_mut() {
            while state.samples.len() > self.capacity {
                state.samples.pop_front();
            }
        }
    }

    /// Starts from a verdict recorded before (by an operator that restarted): the endpoints its
    /// evidence names are Unhealthy, with what fired and since when, until they recover as any
    /// Unhealthy endpoint does (`recovery`) or their triggers say otherwise.
    pub fn resume(&mut self, evidence: &[Finding], now: Timestamp) {
        for e in evidence {
            // Evidence names triggers by their spec name; a trigger the policy no longer has is dropped.
            let Some(trigger) = self
                .triggers
                .iter()
                .map(TriggerSettings::name)
                .find(|n| *n == e.trigger)
            else {
                continue;
            };
            for pod in &e.pods {
                let prefix = format!("{pod}: ");
                let observation = e
                    .message
                    .split("; ")
                    .find_map(|m| m.strip_prefix(&prefix))
                    .unwrap_or(&e.message)
                    .to_owned();
                let state = self.endpoints.entry(pod.clone()).or_default();
                state.health = Health::Unhealthy;
                state.fired.push(Fired {
                    trigger,
                    observation,
                    since: e.since.unwrap_or(now),
                });
            }
        }
    }

    /// Whether any trigger needs the metrics API.
    pub fn needs_metrics(&self) -> bool {
        self.triggers.iter().any(TriggerSettings::needs_metrics)
    }

    /// Forgets endpoints that are no longer probed or watched (pods that went away).
    pub fn retain<'a>(&mut self, endpoints: impl IntoIterator<Item = &'a str>) {
        let keep: std::collections::HashSet<&str> = endpoints.into_iter().collect();
        self.endpoints.retain(|name, _| keep.contains(name.as_str()));
    }

    /// Samples kept for `endpoint` (for bounds checks).
    pub fn samples_kept(&self, endpoint: &str) -> usize {
        self.endpoints.get(endpoint).map_or(0, |s| s.samples.len())
    }

    /// Folds one probe result into the endpoint's state.
    pub fn observe(&mut self, sample: &Sample) {
        let state = self.endpoints.entry(sample.endpoint.clone()).or_default();
        if sample.path == self.primary_path {
            if sample.ok {
                state.consecutive_successes = state.consecutive_successes.saturating_add(1);
                state.consecutive_failures = 0;
            } else {
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                state.consecutive_successes = 0;
                state.last_failure = Some(sample.detail.clone());
            }
        }
        if sample.certificate_not_after.is_some() {
            state.certificate_not_after = sample.certificate_not_after;
        }
        let path = match self.paths.iter().find(|p| p[..] == sample.path[..]) {
            Some(p) => p.clone(),
            None => {
                let p: Arc<str> = Arc::from(sample.path.as_str());
                self.paths.push(p.clone());
                p
            }
        };
        state.samples.push_back(Kept {
            at: sample.at,
            path,
            latency_us: u32::try_from(sample.latency.as_micros()).unwrap_or(u32::MAX),
            code: sample.code.unwrap_or(0),
            ok: sample.ok,
            timed_out: sample.timed_out,
        });
        while state.samples.len() > self.capacity {
            state.samples.pop_front();
        }
    }

    /// Folds the pods' cluster signals and resource use, observed at `now`, into their state.
    pub fn observe_signals(&mut self, now: Timestamp, signals: &[PodSignals], usage: &Usage) {
        self.metrics_note = match usage {
            Usage::Unavailable(why) if self.needs_metrics() => {
                Some(format!("the memory and cpu triggers are inactive: {why}"))
            }
            _ => None,
        };
        for pod in signals {
            let state = self.endpoints.entry(pod.pod.clone()).or_default();
            // Restarts are counted from the first sighting on: earlier ones have no time.
            match state.last_restart_count {
                Some(before) if pod.restart_count > before => {
                    for _ in 0..(pod.restart_count - before).min(MAX_RESTARTS_KEPT as u32) {
                        state.restarts.push_back(now);
                    }
                    while state.restarts.len() > MAX_RESTARTS_KEPT {
                        state.restarts.pop_front();
                    }
                }
                _ => {}
            }
            state.last_restart_count = Some(pod.restart_count);
            state.crash_looping = pod.crash_looping.clone();
            state.oom_killed = pod.oom_killed.clone();
            state.config_changed = pod.config_changed.clone();

            let used = match usage {
                Usage::Available(by_pod) => by_pod.get(&pod.pod),
                Usage::Unavailable(_) => None,
            };
            for trigger in &self.triggers {
                match trigger {
                    TriggerSettings::Memory { threshold, .. } => {
                        let over = used.and_then(|u| triggers::memory_over(*threshold, &pod.limits, u));
                        track(&mut state.memory, over, now);
                    }
                    TriggerSettings::Cpu { percent_of_limit, .. } => {
                        let over = used.and_then(|u| triggers::cpu_over(*percent_of_limit, &pod.limits, u));
                        track(&mut state.cpu, over, now);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Folds one probe result in as it arrives and judges that endpoint alone at `now`: its
    /// verdict depends on its own probes, not on a round of its siblings. True when what the
    /// target's verdict is made of changed (the endpoint's health or what fired, or its first
    /// sample), so the caller knows when [`Evaluator::summarize`] is worth calling.
    pub fn fold(&mut self, sample: &Sample, now: Timestamp) -> bool {
        let first = self.samples_kept(&sample.endpoint) == 0;
        self.observe(sample);
        let Some(state) = self.endpoints.get_mut(&sample.endpoint) else {
            return false;
        };
        let before = (state.health, fired_triggers(&state.fired));
        let fired = triggers::fired(&self.triggers, state, now, &self.primary_path);
        judge(state, fired, &self.recovery, now);
        first || before != (state.health, fired_triggers(&state.fired))
    }

    /// Judges every endpoint at `now` and returns the target's verdict: Unhealthy if any endpoint
    /// is, Healthy if at least one is healthy and none unhealthy, Unknown otherwise.
    pub fn verdict(&mut self, now: Timestamp) -> TargetVerdict {
        for state in self.endpoints.values_mut() {
            let fired = triggers::fired(&self.triggers, state, now, &self.primary_path);
            judge(state, fired, &self.recovery, now);
        }
        self.summarize(now)
    }

    /// The target's verdict from the endpoints as last judged (by [`Evaluator::fold`] or
    /// [`Evaluator::verdict`]), without judging them again.
    pub fn summarize(&mut self, now: Timestamp) -> TargetVerdict {
        let probed = u32::try_from(self.endpoints.values().filter(|s| !s.samples.is_empty()).count())
            .unwrap_or(u32::MAX);
        let healthy = u32::try_from(
            self.endpoints
                .values()
                .filter(|s| s.health == Health::Healthy)
                .count(),
        )
        .unwrap_or(u32::MAX);
        let unhealthy: Vec<String> = self
            .endpoints
            .iter()
            .filter(|(_, s)| s.health == Health::Unhealthy)
            .map(|(name, _)| name.clone())
            .collect();
        let failing: Vec<String> = self
            .endpoints
            .iter()
            .filter(|(_, s)| s.health != Health::Unhealthy && s.consecutive_failures > 0)
            .map(|(name, _)| name.clone())
            .collect();
        let health = if !unhealthy.is_empty() {
            Health::Unhealthy
        } else if healthy > 0 {
            Health::Healthy
        } else {
            Health::Unknown
        };
        let since = match self.target {
            Some((h, since)) if h == health => since,
            _ => now,
        };
        self.target = Some((health, since));

        // Group what fired by trigger; observations are per endpoint so people see which pod said what.
        type Group = (Vec<String>, Vec<String>, Option<Timestamp>);
        let mut by_trigger: BTreeMap<&'static str, Group> = BTreeMap::new();
        for (name, state) in self
            .endpoints
            .iter()
            .filter(|(_, s)| s.health == Health::Unhealthy)
        {
            for fired in &state.fired {
                let entry = by_trigger.entry(fired.trigger).or_default();
                entry.0.push(name.clone());
                entry.1.push(format!("{name}: {}", fired.observation));
                entry.2 = Some(entry.2.map_or(fired.since, |s| s.min(fired.since)));
            }
        }
        let evidence = by_trigger
            .into_iter()
            .map(|(trigger, (pods, observations, since))| Finding {
                trigger: trigger.to_owned(),
                message: observations.join("; "),
                pods,
                since: since.map(crate::clock::whole_seconds),
            })
            .collect();
        TargetVerdict {
            health,
            since,
            evidence,
            probed,
            healthy,
            unhealthy,
            failing,
            notes: self.metrics_note.iter().cloned().collect(),
        }
    }
}

fn fired_triggers(fired: &[Fired]) -> Vec<&'static str> {
    fired.iter().map(|f| f.trigger).collect()
}

fn track(pressure: &mut Pressure, over: Option<String>, now: Timestamp) {
    match over {
        Some(observation) => {
            pressure.since.get_or_insert(now);
            pressure.observation = observation;
        }
        None => *pressure = Pressure::default(),
    }
}

/// One endpoint's state machine: Unknown → Healthy on a good probe; anything → Unhealthy when a
/// trigger fires; Unhealthy → Healthy after enough good probes and a quiet spell.
fn judge(state: &mut EndpointState, fired: Vec<Fired>, recovery: &RecoverySettings, now: Timestamp) {
    if !fired.is_empty() {
        state.quiet_since = None;
        let same_triggers = state.health == Health::Unhealthy
            && state
                .fired
                .iter()
                .map(|f| f.trigger)
                .eq(fired.iter().map(|f| f.trigger));
        if !same_triggers {
            // Triggers that kept firing keep their start; new ones start now.
            let previous = std::mem::take(&mut state.fired);
            state.fired = fired
                .into_iter()
                .map(|mut f| {
                    if let Some(p) = previous.iter().find(|p| p.trigger == f.trigger) {
                        f.since = p.since;
                    }
                    f
                })
                .collect();
        }
        state.health = Health::Unhealthy;
        return;
    }
    let quiet_since = *state.quiet_since.get_or_insert(now);
    match state.health {
        Health::Unhealthy
            if state.consecutive_successes >= recovery.consecutive_successes
                && crate::clock::until(quiet_since, now) >= recovery.healthy_delay =>
        {
            state.health = Health::Healthy;
            state.fired.clear();
        }
        Health::Unknown if state.consecutive_successes > 0 => state.health = Health::Healthy,
        _ => {}
    }
}

#[cfg(test)]
mod tests;
