//! `AppHealthPolicy.status`: what the operator saw and did. Everything needed to resume after a
//! restart (ladder position, the last action and whether it completed) lives here, never only in memory.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Action, Health, RemediationResult};

/// Observed state of an AppHealthPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppHealthPolicyStatus {
    /// The metadata.generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready (the policy is valid, its target found and probed), Healthy (the latest verdict;
    /// Unknown before the first), Remediating (a ladder is in progress) and RemediationBlocked (a
    /// guard such as Cooldown or DryRun is holding an action back; the reason says which).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// How many pods (or Services) are probed and how many of them are healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<TargetCounts>,

    /// The latest verdict on the target and the evidence behind it. Written when the verdict
    /// changes, not on every probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,

    /// The escalation ladder in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ladder: Option<Ladder>,

    /// The last remediations, newest first (at most 10), dry runs included. The newest is recorded
    /// as Pending before it runs and completed after, so a restarted operator neither repeats nor
    /// loses it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub history: Vec<RemediationRecord>,

    /// Replicas (or HorizontalPodAutoscaler bounds) raised by ScaleOut, to be restored once the
    /// target has been healthy for the step's restoreAfter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_restore: Option<ScaleRestore>,

    /// Diagnostics ConfigMaps captured by CollectDiagnostics, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub diagnostics: Vec<DiagnosticsRef>,

    /// For a targetSelector policy: how many workloads it selects and how they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetCounts>,

    /// For a targetSelector policy: the selected workloads that are not healthy or have a ladder
    /// or a restore pending, worst first, each with its own verdict, ladder and history (what a
    /// restarted operator resumes from). At most 50; fleet.truncated says when more were left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub workloads: Vec<WorkloadStatus>,

    /// With the work shared across replicas (`--shards N`, N > 1): each shard's part of a policy
    /// over many, written by the replica that holds the shard (its own field manager) — the counts
    /// and records of the workloads that hash to it. The replica holding the policy's own shard
    /// sums them into fleet, workloads and the conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["shard"]))]
    pub shards: Vec<ShardPart>,
}

/// One shard's part of a policy over many.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardPart {
    /// The shard (0 to N-1).
    pub shard: u32,
    /// Its workloads: how many, how they are.
    pub fleet: FleetCounts,
    /// Its workloads that are not healthy or have something pending, worst first: at most 50
    /// divided among the shards (at least one each); fleet.truncated says when more were left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub workloads: Vec<WorkloadStatus>,
}

/// Counts over the workloads of a targetSelector policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetCounts {
    /// Workloads selected.
    pub selected: u32,
    /// Of those, Healthy.
    pub healthy: u32,
    /// Unhealthy.
    pub unhealthy: u32,
    /// With a ladder acting.
    pub remediating: u32,
    /// With a ladder held back by a guard.
    pub blocked: u32,
    /// Remediated by another policy that covers them too (they are observed here).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub owned_elsewhere: u32,
    /// More workloads were not healthy than status.workloads lists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One workload of a targetSelector policy: the same record a single-target policy keeps.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// Its namespace, for a ClusterAppHealthPolicy's workload (a namespaced policy's are in its
    /// own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Deployment or StatefulSet.
    pub kind: String,
    /// Its name, in the policy's namespace.
    pub name: String,
    /// The policy that remediates it instead, when another one covers it with precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_by: Option<String>,
    /// Healthy, Remediating and RemediationBlocked, as on a single-target policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// How many of its pods are probed and how many of them are healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<TargetCounts>,
    /// The latest verdict on the workload and the evidence behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Its escalation ladder in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ladder: Option<Ladder>,
    /// Its last remediations, newest first (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub history: Vec<RemediationRecord>,
    /// What ScaleOut raised on it, to be restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_restore: Option<ScaleRestore>,
    /// Its diagnostics ConfigMaps, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub diagnostics: Vec<DiagnosticsRef>,
}

impl WorkloadStatus {
    /// The record as a single-target policy's status, for the pipeline that reads one.
    pub fn to_policy_status(&self, observed_generation: Option<i64>) -> AppHealthPolicyStatus {
        AppHealthPolicyStatus {
            observed_generation,
            conditions: self.conditions.clone(),
            targets: self.targets.clone(),
            verdict: self.verdict.clone(),
            ladder: self.ladder.clone(),
            history: self.history.clone(),
            scale_restore: self.scale_restore.clone(),
            diagnostics: self.diagnostics.clone(),
            fleet: None,
            workloads: Vec::new(),
            shards: Vec::new(),
        }
    }

    /// The record of workload `kind`/`name` from a single-target status.
    pub fn from_policy_status(kind: &str, name: &str, status: &AppHealthPolicyStatus) -> Self {
        Self {
            namespace: None,
            kind: kind.to_owned(),
            name: name.to_owned(),
            owned_by: None,
            conditions: status.conditions.clone(),
            targets: status.targets.clone(),
            verdict: status.verdict.clone(),
            ladder: status.ladder.clone(),
            history: status.history.clone(),
            scale_restore: status.scale_restore.clone(),
            diagnostics: status.diagnostics.clone(),
        }
    }
}

/// Counts of probed endpoints.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetCounts {
    /// Pods (or the Service) being probed.
    pub probed: u32,
    /// How many of them are currently healthy.
    pub healthy: u32,
}

/// A verdict with its evidence.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// Healthy, Unhealthy or Unknown.
    pub health: Health,
    /// When the target entered this health.
    pub since: Time,
    /// Why the target is Unhealthy: one entry per fired trigger.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
}

/// One fired trigger, with the value observed against its threshold.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// The trigger that fired, e.g. consecutiveFailures.
    pub trigger: String,
    /// The observation against the threshold, e.g. "3 failed probes in a row (last: HTTP 503), threshold 3".
    pub message: String,
    /// The pods on which it fired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    /// Since when it has been firing (on the first of those pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// The escalation ladder in progress.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ladder {
    /// The step that ran most recently, counting from 1.
    pub step: u32,
    /// When the first step of this ladder ran.
    pub started_at: Time,
    /// Every step ran and the target is still unhealthy: the operator waits for a person.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exhausted: bool,
}

/// A remediation the operator performed, is performing, or (dry run) would have performed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemediationRecord {
    /// The action.
    pub action: Action,
    /// The ladder step it belongs to, counting from 1.
    pub step: u32,
    /// When the operator decided to act; also the mark it leaves (e.g. the value of the
    /// apphealth.io/restartedAt annotation), so the action can be read back.
    pub at: Time,
    /// Pending, Succeeded, Failed, Skipped or Held.
    pub result: RemediationResult,
    /// Decided in dry run: nothing was changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The pods it concerned (evicted, captured).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    /// What changed (or would have), for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For a Held step: when it is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Time>,
    /// For a Failed step: why, as a stable name (Forbidden, APIError, APIUnavailable, Refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub reason: Option<String>,
}

/// What ScaleOut raised, to be put back.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleRestore {
    /// Workload (replicas of the target) or HorizontalPodAutoscaler (its bounds).
    pub kind: String,
    /// Name of the object changed.
    pub name: String,
    /// The replicas (or minReplicas) before the first ScaleOut of this episode.
    pub original: i32,
    /// The maxReplicas before, when an autoscaler's maximum was raised too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max: Option<i32>,
    /// What the operator set; if the object holds something else by restore time, someone changed
    /// it and it is left alone.
    pub set: i32,
    /// The maxReplicas the operator set, if it raised it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_max: Option<i32>,
    /// How long the target must stay healthy before the values are restored.
    pub restore_after: String,
}

/// A diagnostics capture.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiagnosticsRef {
    /// The ConfigMap holding it, in the policy's namespace.
    pub config_map: String,
    /// When it was taken.
    pub at: Time,
    /// The pods captured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
}
