//! The ladder and its guards as the planner reads them (parsed from `spec.remediation` by
//! `settings`, each step's parameters by its action).

use std::time::Duration;

use crate::{act::StepParams, record::Action};

/// The ladder and its guards.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemediationSettings {
    pub steps: Vec<StepSettings>,
    pub cooldown: Duration,
    pub min_pod_age: Duration,
    /// (count, window) of the circuit breaker.
    pub max_remediations: Option<(u32, Duration)>,
    pub max_unhealthy_percent: Option<u32>,
    pub diagnostics_retention: u32,
    pub dry_run: bool,
    /// Most of a targetSelector policy's workloads with a ladder acting at once.
    pub max_concurrent: Option<u32>,
}

impl RemediationSettings {
    /// Step `step` (counting from 1).
    pub fn step(&self, step: u32) -> Option<&StepSettings> {
        self.steps.get((step as usize).checked_sub(1)?)
    }

    /// Whether the ladder captures diagnostics (then pods are captured before anything restarts them).
    pub fn collects_diagnostics(&self) -> Option<&StepSettings> {
        self.steps
            .iter()
            .find(|s| matches!(s.params, StepParams::CollectDiagnostics(_)))
    }
}

/// One rung of the ladder, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSettings {
    pub timeout: Duration,
    pub params: StepParams,
}

impl StepSettings {
    pub fn action(&self) -> Action {
        self.params.action()
    }
}
