//! Evaluate: samples → per-pod and per-target verdicts with evidence. Pure: plain data and the
//! timestamps carried by the samples; no client, no clock of its own.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::{
    api::{
        Evidence, Health,
        validate::{Settings, TriggerSettings},
    },
    observe::Sample,
};

/// Health bookkeeping for one probed endpoint (a pod, or the Service).
#[derive(Debug, Clone, PartialEq)]
struct EndpointState {
    health: Health,
    consecutive_failures: u32,
    consecutive_successes: u32,
    last_failure: Option<String>,
    /// What fired when the endpoint became Unhealthy; kept stable until it recovers, so evidence
    /// (and therefore status) does not change on every probe.
    fired: Vec<Fired>,
}

impl Default for EndpointState {
    fn default() -> Self {
        Self {
            health: Health::Unknown,
            consecutive_failures: 0,
            consecutive_successes: 0,
            last_failure: None,
            fired: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fired {
    trigger: &'static str,
    observation: String,
}

/// The verdict on a target: what the controller reports and plans from.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetVerdict {
    pub health: Health,
    /// When the target entered `health`.
    pub since: Timestamp,
    pub evidence: Vec<Evidence>,
    pub probed: u32,
    pub healthy: u32,
    /// Endpoints judged Unhealthy, by name.
    pub unhealthy: Vec<String>,
}

impl TargetVerdict {
    pub fn unknown(since: Timestamp) -> Self {
        Self {
            health: Health::Unknown,
            since,
            evidence: Vec::new(),
            probed: 0,
            healthy: 0,
            unhealthy: Vec::new(),
        }
    }

    /// Whether two verdicts differ in anything worth reporting (health, evidence, counts).
    pub fn differs_from(&self, other: &Self) -> bool {
        self.health != other.health
            || self.evidence != other.evidence
            || self.probed != other.probed
            || self.healthy != other.healthy
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
                    "{} of {} probed endpoints are unhealthy ({}). {}",
                    self.unhealthy.len(),
                    self.probed,
                    self.unhealthy.join(", "),
                    causes.join("; ")
                )
            }
        }
    }
}

/// Judges endpoints from their samples against a policy's triggers, with hysteresis on recovery.
#[derive(Debug, Clone)]
pub struct Evaluator {
    triggers: Vec<TriggerSettings>,
    recovery_successes: u32,
    endpoints: BTreeMap<String, EndpointState>,
    target: Option<(Health, Timestamp)>,
}

impl Evaluator {
    pub fn new(settings: &Settings) -> Self {
        Self {
            triggers: settings.triggers.clone(),
            recovery_successes: settings.recovery_successes,
            endpoints: BTreeMap::new(),
            target: None,
        }
    }

    /// Adopts new trigger settings while keeping what was observed so far.
    pub fn reconfigure(&mut self, settings: &Settings) {
        self.triggers = settings.triggers.clone();
        self.recovery_successes = settings.recovery_successes;
    }

    /// Forgets endpoints that are no longer probed (pods that went away).
    pub fn retain(&mut self, endpoints: &[String]) {
        self.endpoints
            .retain(|name, _| endpoints.iter().any(|e| e == name));
    }

    /// Folds one probe result into the endpoint's state.
    pub fn observe(&mut self, sample: &Sample) {
        let state = self.endpoints.entry(sample.endpoint.clone()).or_default();
        if sample.ok {
            state.consecutive_successes = state.consecutive_successes.saturating_add(1);
            state.consecutive_failures = 0;
        } else {
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
            state.consecutive_successes = 0;
            state.last_failure = Some(sample.detail.clone());
        }

        let fired = fired_triggers(&self.triggers, state);
        match state.health {
            _ if !fired.is_empty() && state.health != Health::Unhealthy => {
                state.health = Health::Unhealthy;
                state.fired = fired;
            }
            Health::Unhealthy if state.consecutive_successes >= self.recovery_successes => {
                state.health = Health::Healthy;
                state.fired.clear();
            }
            Health::Unknown if sample.ok => state.health = Health::Healthy,
            _ => {}
        }
    }

    /// The target's verdict as of `now`: Unhealthy if any endpoint is, Healthy if at least one is
    /// healthy and none unhealthy, Unknown otherwise.
    pub fn verdict(&mut self, now: Timestamp) -> TargetVerdict {
        let probed = u32::try_from(self.endpoints.len()).unwrap_or(u32::MAX);
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
        let mut by_trigger: BTreeMap<&'static str, (Vec<String>, Vec<String>)> = BTreeMap::new();
        for (name, state) in self
            .endpoints
            .iter()
            .filter(|(_, s)| s.health == Health::Unhealthy)
        {
            for fired in &state.fired {
                let entry = by_trigger.entry(fired.trigger).or_default();
                entry.0.push(name.clone());
                entry.1.push(format!("{name}: {}", fired.observation));
            }
        }
        let evidence = by_trigger
            .into_iter()
            .map(|(trigger, (pods, observations))| Evidence {
                trigger: trigger.to_owned(),
                message: observations.join("; "),
                pods,
            })
            .collect();
        TargetVerdict {
            health,
            since,
            evidence,
            probed,
            healthy,
            unhealthy,
        }
    }
}

fn fired_triggers(triggers: &[TriggerSettings], state: &EndpointState) -> Vec<Fired> {
    triggers
        .iter()
        .filter_map(|t| match *t {
            TriggerSettings::ConsecutiveFailures { threshold } if state.consecutive_failures >= threshold => {
                Some(Fired {
                    trigger: "consecutiveFailures",
                    observation: format!(
                        "{} failed probes in a row (last: {}), threshold {threshold}",
                        state.consecutive_failures,
                        state.last_failure.as_deref().unwrap_or("unknown")
                    ),
                })
            }
            TriggerSettings::ConsecutiveFailures { .. } => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
