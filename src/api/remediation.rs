//! `AppHealthPolicy.spec.remediation`: the escalation ladder, each action's parameters, and the
//! guards. Doc comments here are what `kubectl explain apphealthpolicy.spec.remediation` prints.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Action, Duration, KeyRef};

fn default_zero() -> Duration {
    Duration::from("0s")
}

/// The escalation ladder and its guards.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemediationSpec {
    /// Remediations tried in order while the target stays Unhealthy: the first runs when the target
    /// becomes Unhealthy, each next one when the previous step's timeout passes without recovery.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub steps: Vec<RemediationStep>,

    /// Minimum time between two remediations that change the target (every action but
    /// CollectDiagnostics and Notify), across ladders: a target that fails again soon after an action
    /// is reported (RemediationBlocked, reason Cooldown) instead of acted on.
    #[serde(default = "default_cooldown")]
    pub cooldown: Duration,

    /// Never restart a pod younger than this (RestartPods skips such pods; RolloutRestart waits until
    /// the unhealthy pods are this old), so a pod that is still warming up is not judged too early.
    #[serde(default = "default_zero")]
    pub min_pod_age: Duration,

    /// Circuit breaker: at most `count` remediations that change the target within `window`; beyond
    /// that the ladder holds (RemediationBlocked, reason CircuitOpen) until the oldest leaves the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_remediations: Option<MaxRemediations>,

    /// Storm guard: when more than this percentage of the target's pods is unhealthy, the cause is
    /// not one bad pod, so restarting steps (RestartPods, RolloutRestart) are skipped while the other
    /// steps still run. Targets with a single pod are never held by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_unhealthy_percent: Option<u32>,

    /// Diagnostics ConfigMaps kept per policy; older ones are deleted.
    #[serde(default = "default_diagnostics_retention")]
    #[schemars(range(min = 1, max = 20))]
    pub diagnostics_retention: u32,

    /// Decide and report (Events, status, history) but change nothing: every step is recorded as
    /// what it would have done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,

    /// For a targetSelector policy: at most this many of its workloads may have a ladder acting at
    /// once; the others wait (RemediationBlocked, reason PolicyLimit), so a fleet-wide incident
    /// does not restart every service at the same moment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_concurrent: Option<u32>,
}

fn default_cooldown() -> Duration {
    Duration::from("5m")
}

fn default_diagnostics_retention() -> u32 {
    5
}

impl Default for RemediationSpec {
    fn default() -> Self {
        Self {
            steps: Vec::new(),
            cooldown: default_cooldown(),
            min_pod_age: default_zero(),
            max_remediations: None,
            max_unhealthy_percent: None,
            diagnostics_retention: default_diagnostics_retention(),
            dry_run: false,
            max_concurrent: None,
        }
    }
}

/// The circuit breaker's limit.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.window) <= duration('168h')").message("window must be at most 168h").field_path(".window"))]
pub struct MaxRemediations {
    /// Remediations allowed within the window, 1-10.
    #[schemars(range(min = 1, max = 10))]
    pub count: u32,
    /// The sliding window, e.g. 1h; at most 168h.
    pub window: Duration,
}

/// One rung of the escalation ladder: an action and, in a block named after it, its parameters.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.collectDiagnostics) || self.action == 'CollectDiagnostics'")
        .message("collectDiagnostics may only be set when action is CollectDiagnostics")
        .field_path(".collectDiagnostics"),
    validation = Rule::new("!has(self.restartPods) || self.action == 'RestartPods'")
        .message("restartPods may only be set when action is RestartPods")
        .field_path(".restartPods"),
    validation = Rule::new("!has(self.scaleOut) || self.action == 'ScaleOut'")
        .message("scaleOut may only be set when action is ScaleOut")
        .field_path(".scaleOut"),
    validation = Rule::new("self.action != 'ScaleOut' || has(self.scaleOut)")
        .message("action ScaleOut needs a scaleOut block with maxReplicas"),
    validation = Rule::new("!has(self.scaleUp) || self.action == 'ScaleUp'")
        .message("scaleUp may only be set when action is ScaleUp")
        .field_path(".scaleUp"),
    validation = Rule::new("self.action != 'ScaleUp' || has(self.scaleUp)")
        .message("action ScaleUp needs a scaleUp block with its percentages and maxima"),
    validation = Rule::new("!has(self.rollback) || self.action == 'Rollback'")
        .message("rollback may only be set when action is Rollback")
        .field_path(".rollback"),
    validation = Rule::new("!has(self.notify) || self.action == 'Notify'")
        .message("notify may only be set when action is Notify")
        .field_path(".notify"),
    validation = Rule::new("self.action != 'Notify' || has(self.notify)")
        .message("action Notify needs a notify block with urlSecretRef")
)]
pub struct RemediationStep {
    /// What to do: CollectDiagnostics stores logs, states and Events of the unhealthy pods in a
    /// ConfigMap; RestartPods evicts only the unhealthy pods; RolloutRestart restarts all pods the
    /// way `kubectl rollout restart` does; Rollback returns a Deployment to its previous revision
    /// after a bad rollout; ScaleOut adds replicas; ScaleUp raises requests and limits; Notify
    /// posts to a webhook.
    pub action: Action,

    /// How long to wait for the target to recover after this step before escalating to the next
    /// one. Default 5m, and 0s for CollectDiagnostics and Notify, which change nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,

    // Each action's parameters are boxed: a step sets those of its own action at most, and every
    // cached policy would otherwise hold all six inline (a step was 312 bytes, now 80).
    /// Parameters of CollectDiagnostics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collect_diagnostics: Option<Box<CollectDiagnosticsParams>>,

    /// Parameters of RestartPods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_pods: Option<Box<RestartPodsParams>>,

    /// Parameters of ScaleOut (required for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_out: Option<Box<ScaleOutParams>>,

    /// Parameters of ScaleUp (required for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<Box<ScaleUpParams>>,

    /// Parameters of Rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Box<RollbackParams>>,

    /// Parameters of Notify (required for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Box<NotifyParams>>,
}

/// Parameters of CollectDiagnostics.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollectDiagnosticsParams {
    /// Log lines kept from the end of each container's log.
    #[serde(default = "default_log_lines")]
    #[schemars(range(min = 1, max = 10000))]
    pub log_lines: u32,
    /// Also keep the log of each container's previous (crashed) instance, when there is one.
    #[serde(default = "default_true")]
    pub previous: bool,
    /// A command to run in each unhealthy pod (a thread or heap dump), its output kept bounded.
    /// Needs the right to create pods/exec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecParams>,
}

/// A command run in a container for diagnostics.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecParams {
    /// The container; the pod's first container when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub container: Option<String>,
    /// The command and its arguments, e.g. ["jcmd", "1", "Thread.print"]; run without a shell.
    #[schemars(length(min = 1, max = 32), inner(length(max = 1024)))]
    pub command: Vec<String>,
    /// How long the command may run before it is abandoned.
    #[serde(default = "default_exec_timeout")]
    pub timeout: Duration,
}

fn default_exec_timeout() -> Duration {
    Duration::from("30s")
}

fn default_log_lines() -> u32 {
    200
}

fn default_true() -> bool {
    true
}

impl Default for CollectDiagnosticsParams {
    fn default() -> Self {
        Self {
            log_lines: default_log_lines(),
            previous: true,
            exec: None,
        }
    }
}

/// Parameters of RestartPods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartPodsParams {
    /// How many unhealthy pods one run evicts at most (default 1: one at a time).
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 1, max = 100))]
    pub max_unavailable: u32,
}

fn default_max_unavailable() -> u32 {
    1
}

/// Parameters of ScaleOut: set `by` or `to`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.by) != has(self.to)").message("scaleOut must set exactly one of: by, to"),
    validation = Rule::new("!has(self.by) || self.maxReplicas >= self.by")
        .message("scaleOut.maxReplicas must be at least scaleOut.by")
        .field_path(".maxReplicas"),
    validation = Rule::new("!has(self.to) || self.maxReplicas >= self.to")
        .message("scaleOut.maxReplicas must be at least scaleOut.to")
        .field_path(".maxReplicas")
)]
pub struct ScaleOutParams {
    /// Replicas to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub by: Option<u32>,
    /// Replicas to scale to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub to: Option<u32>,
    /// Never more replicas than this.
    #[schemars(range(min = 1, max = 10000))]
    pub max_replicas: u32,
    /// Restore the original replicas (or HorizontalPodAutoscaler bounds) once the target has been
    /// healthy this long, unless someone changed them in the meantime.
    #[serde(default = "default_restore_after")]
    pub restore_after: Duration,
}

fn default_restore_after() -> Duration {
    Duration::from("30m")
}

/// Parameters of ScaleUp: raise by percentages, never beyond the maxima.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.memoryPercent) || has(self.cpuPercent)")
        .message("scaleUp must set memoryPercent or cpuPercent"),
    validation = Rule::new("!has(self.memoryPercent) || has(self.maxMemory)")
        .message("scaleUp.memoryPercent needs scaleUp.maxMemory")
        .field_path(".maxMemory"),
    validation = Rule::new("!has(self.cpuPercent) || has(self.maxCpu)")
        .message("scaleUp.cpuPercent needs scaleUp.maxCpu")
        .field_path(".maxCpu")
)]
pub struct ScaleUpParams {
    /// Raise memory requests and limits by this percentage, e.g. 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub memory_percent: Option<u32>,
    /// Raise CPU requests and limits by this percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub cpu_percent: Option<u32>,
    /// Never more memory than this per container, e.g. 2Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 32),
        regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
    )]
    pub max_memory: Option<String>,
    /// Never more CPU than this per container, e.g. "2" or 1500m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub max_cpu: Option<String>,
    /// Resize the running pods in place (pods/resize, Kubernetes 1.33+) before changing the template;
    /// when the cluster refuses, only the template changes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_place: bool,
}

/// Parameters of Rollback.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackParams {
    /// Only roll back a rollout that began less than this long ago; older ones are not the cause.
    #[serde(default = "default_rollback_within")]
    pub within: Duration,
}

fn default_rollback_within() -> Duration {
    Duration::from("1h")
}

/// Parameters of Notify.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifyParams {
    /// The key of a Secret in the policy's namespace that holds the webhook URL (http or https).
    pub url_secret_ref: KeyRef,
}
