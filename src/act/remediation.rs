//! What a remediation is, and what each action says about itself ([`Descriptor`], declared in the
//! action's own file): everything the planner, the RBAC, the chart and the README need to know.

use std::time::Duration;

use jiff::Timestamp;

use super::StepParams;
use crate::{api, rbac::Right};

/// One remediation, fully described: what the act stage runs and what status records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remediation {
    /// Its ladder step, counting from 1, and how many steps there are.
    pub step: u32,
    pub of: u32,
    pub params: StepParams,
    /// How long the ladder waits for recovery after it before escalating.
    pub timeout: Duration,
    /// The unhealthy pods it concerns (evicted, captured).
    pub pods: Vec<String>,
    /// Pods whose diagnostics must be captured before this remediation restarts them.
    pub capture_first: Vec<String>,
    /// When it was decided: the mark it leaves, recorded in status first.
    pub at: Timestamp,
    /// Decide and describe, change nothing.
    pub dry_run: bool,
}

impl Remediation {
    pub fn action(&self) -> api::Action {
        self.params.action()
    }

    /// What its action says about itself.
    pub fn descriptor(&self) -> &'static Descriptor {
        super::descriptor(self.action())
    }
}

/// What an action is, beyond what it does: declared once, in its file.
#[derive(Debug)]
pub struct Descriptor {
    pub action: api::Action,
    /// The Event reason when it succeeds, e.g. `RolloutRestarted`.
    pub reason: &'static str,
    /// It changes the target: counted by the cooldown and circuit breaker, held by TargetBusy
    /// and GlobalLimit. (CollectDiagnostics and Notify only read and tell.)
    pub changes_target: bool,
    /// It restarts pods: held by the storm guard, minPodAge and a rollout in progress.
    pub restarts_pods: bool,
    /// It replaces running pods, at once or by rolling them: their diagnostics are captured first
    /// when the ladder collects them.
    pub replaces_pods: bool,
    /// The chart's `permissions.*` value that grants its rights.
    pub permission: &'static str,
    /// The Kubernetes rights it needs beyond the controller's own.
    pub rights: &'static [Right],
    /// Why it needs them, for the README's table.
    pub why: &'static str,
}
