//! The project's own records of what was seen and done, free of Kubernetes types: the vocabulary
//! the core stages (evaluate, plan, act) speak. The CRD's status stores the same facts in
//! Kubernetes' shapes (`metav1.Time`, strings); `report` converts between the two, so nothing
//! between observe and report names a CRD or k8s-openapi type.

use std::time::Duration;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Health of a target or pod.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum Health {
    /// No verdict yet.
    #[default]
    Unknown,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "Unknown",
            Self::Healthy => "Healthy",
            Self::Unhealthy => "Unhealthy",
        }
    }
}

/// Outcome of a remediation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RemediationResult {
    /// Intent recorded; the action has not been confirmed yet.
    Pending,
    /// The action was applied (or, in a dry run, would have been).
    Succeeded,
    /// The action was attempted and failed; the message says why. The ladder goes on.
    Failed,
    /// The step did not apply (a guard such as StormGuard, or nothing to do); the ladder moved on.
    Skipped,
    /// Refused for now (a PodDisruptionBudget); retried at retryAt.
    Held,
}

impl RemediationResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Skipped => "Skipped",
            Self::Held => "Held",
        }
    }
}

/// A remediation the operator can perform.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Action {
    /// Capture the unhealthy pods' recent logs (and those of their crashed instances), container
    /// states, conditions and Events in a ConfigMap owned by the policy, before anything restarts them.
    CollectDiagnostics,
    /// Evict the unhealthy pods through the Eviction API (PodDisruptionBudgets hold); their
    /// controller replaces them.
    RestartPods,
    /// Roll the workload's pods, as `kubectl rollout restart` does.
    RolloutRestart,
    /// Return a Deployment to its previous revision's pod template (what `kubectl rollout undo`
    /// does) when the unhealthy pods all run the newest revision and it rolled out recently.
    Rollback,
    /// Add replicas through the scale subresource, or raise the minReplicas of the
    /// HorizontalPodAutoscaler that targets the workload; restored after the target recovers.
    ScaleOut,
    /// Raise the containers' memory and CPU requests and limits on the pod template (which rolls
    /// the pods), optionally resizing the running pods in place first. Not restored automatically.
    ScaleUp,
    /// POST a JSON summary to a webhook (chat, paging), read from a Secret.
    Notify,
}

impl Action {
    /// Every action, in the CRD's order.
    pub const ALL: [Action; 7] = [
        Self::CollectDiagnostics,
        Self::RestartPods,
        Self::RolloutRestart,
        Self::Rollback,
        Self::ScaleOut,
        Self::ScaleUp,
        Self::Notify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CollectDiagnostics => "CollectDiagnostics",
            Self::RestartPods => "RestartPods",
            Self::RolloutRestart => "RolloutRestart",
            Self::Rollback => "Rollback",
            Self::ScaleUp => "ScaleUp",
            Self::ScaleOut => "ScaleOut",
            Self::Notify => "Notify",
        }
    }
}

/// One fired trigger, with what was observed against its threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The trigger's name in the spec, e.g. consecutiveFailures.
    pub trigger: String,
    /// The observation against the threshold, for people.
    pub message: String,
    /// The pods on which it fired.
    pub pods: Vec<String>,
    /// Since when it has been firing (on the first of those pods), in whole seconds.
    pub since: Option<Timestamp>,
}

/// Where a ladder stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The step that ran most recently, counting from 1.
    pub step: u32,
    /// When the first step of this ladder ran.
    pub started_at: Timestamp,
    /// Every step ran and the target is still unhealthy.
    pub exhausted: bool,
}

/// One remediation, decided, done or held: an entry of the ladder's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub action: Action,
    /// The ladder step it belongs to, counting from 1.
    pub step: u32,
    /// When the operator decided to act; also the mark the action leaves.
    pub at: Timestamp,
    pub result: RemediationResult,
    pub dry_run: bool,
    /// The pods it concerned.
    pub pods: Vec<String>,
    /// What changed (or would have), for people; None for an intent.
    pub message: Option<String>,
    /// For a Held step: when it is tried again.
    pub retry_at: Option<Timestamp>,
    /// For a Failed step: why, as a stable name.
    pub reason: Option<String>,
}

/// What ScaleOut raised on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaledKind {
    /// The target's replicas, through its scale subresource.
    Workload,
    /// The bounds of the HorizontalPodAutoscaler that targets it.
    Autoscaler,
}

impl ScaledKind {
    /// The name status uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workload => "Workload",
            Self::Autoscaler => "HorizontalPodAutoscaler",
        }
    }

    /// From the name status uses (None for a name this operator never writes).
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Workload, Self::Autoscaler]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// What ScaleOut raised, to be put back once the target has been healthy for `restore_after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    pub kind: ScaledKind,
    /// The object changed (the workload or its autoscaler).
    pub name: String,
    /// The replicas (or minReplicas) before the first ScaleOut of this episode.
    pub original: i32,
    /// The maxReplicas before, when an autoscaler's maximum was raised too.
    pub original_max: Option<i32>,
    /// What the operator set.
    pub set: i32,
    /// The maxReplicas the operator set, if it raised it.
    pub set_max: Option<i32>,
    pub restore_after: Duration,
}

/// A diagnostics capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// The ConfigMap holding it, in the policy's namespace.
    pub config_map: String,
    pub at: Timestamp,
    pub pods: Vec<String>,
}

/// What a policy remembers between steps: everything the planner and the actions read of what
/// happened before.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recorded {
    pub ladder: Option<Position>,
    /// Newest first.
    pub history: Vec<Entry>,
    pub raised: Option<Raised>,
    /// Newest first.
    pub captures: Vec<Capture>,
    /// The recorded verdict's health and since when.
    pub verdict: Option<(Health, Timestamp)>,
}
