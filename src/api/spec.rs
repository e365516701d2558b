//! `AppHealthPolicy.spec`: what a platform team declares. Doc comments here are what
//! `kubectl explain apphealthpolicy.spec` prints, so they are written for the people using it.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AppHealthPolicyStatus, Duration};

/// Declares how an application's health is judged and what the operator may do when it is unhealthy:
/// a target workload, how to probe it, which triggers mean "unhealthy", and an escalation ladder of
/// remediations guarded by a cooldown and a dry-run switch.
// Each printcolumn repeats the same keys by design of the derive.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "apphealth.io",
    version = "v1alpha1",
    kind = "AppHealthPolicy",
    namespaced,
    shortname = "ahp",
    category = "apphealth",
    status = "AppHealthPolicyStatus",
    derive = "PartialEq",
    doc = "AppHealthPolicy declares how an application's health is judged (HTTP probes and triggers) \
           and which remediations the operator may take when it is unhealthy (an escalation ladder \
           guarded by a cooldown and dry run). The operator reports what it saw and did in status \
           conditions and Events.",
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.targetRef.name",
        description = "The workload this policy watches"
    ),
    printcolumn(
        name = "Kind",
        type_ = "string",
        json_path = ".spec.targetRef.kind",
        priority = 1,
        description = "Kind of the target workload"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "The policy is valid, its target found, and it is probing"
    ),
    printcolumn(
        name = "Healthy",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Healthy\")].status",
        description = "The latest verdict on the target"
    ),
    printcolumn(
        name = "Last Action",
        type_ = "string",
        json_path = ".status.lastRemediation.action",
        description = "The most recent remediation"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct AppHealthPolicySpec {
    /// The workload whose health this policy judges and remediates: a Deployment or StatefulSet in
    /// the policy's own namespace.
    pub target_ref: TargetRef,

    /// How the operator probes the target.
    pub probe: Probe,

    /// Conditions that make the target Unhealthy; any one firing is enough. When empty, the target is
    /// Unhealthy after 3 consecutive failed probes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub triggers: Vec<Trigger>,

    /// When an Unhealthy pod counts as recovered.
    #[serde(default)]
    pub recovery: Recovery,

    /// What the operator may do about an Unhealthy target, and the guards that hold it back. When
    /// omitted, the operator observes and reports but never acts.
    #[serde(default)]
    pub remediation: Remediation,

    /// Stops probing and remediation for this policy; status keeps the last remediation and the
    /// `Ready` condition says the policy is suspended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

/// Identifies the workload a policy watches.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// Kind of the workload: Deployment or StatefulSet (API group apps/v1).
    pub kind: TargetKind,
    /// Name of the workload, in the policy's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A workload kind the operator can watch and remediate.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum TargetKind {
    Deployment,
    StatefulSet,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
        }
    }
}

/// How the operator probes the target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.via != 'Service' || has(self.service)")
        .message("probe.service is required when probe.via is Service")
        .field_path(".service"),
    validation = Rule::new(
        "(has(self.http.timeoutSeconds) ? self.http.timeoutSeconds : 1) < (has(self.periodSeconds) ? self.periodSeconds : 10)"
    )
    .message("probe.http.timeoutSeconds must be less than probe.periodSeconds")
    .field_path(".http.timeoutSeconds")
)]
pub struct Probe {
    /// Pods probes each ready pod of the target at its pod IP, so a single bad instance is found.
    /// Service probes through the named Service, as clients see the application.
    #[serde(default)]
    pub via: ProbeVia,

    /// Name of the Service in the policy's namespace to probe through; required when via is Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub service: Option<String>,

    /// An HTTP(S) request the application must answer.
    pub http: HttpProbe,

    /// Seconds between probes of each pod. Probes are spread over the period.
    #[serde(default = "default_period_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: u32,
}

fn default_period_seconds() -> u32 {
    10
}

/// Where probes are sent.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ProbeVia {
    /// Each ready pod of the target, at its pod IP.
    #[default]
    Pods,
    /// The Service named in probe.service, at its cluster IP.
    Service,
}

/// An HTTP(S) probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpProbe {
    /// Port to probe: a number, or the name of a container port (via Pods) or Service port (via Service).
    pub port: IntOrString,

    /// Request path, starting with a slash.
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^/"))]
    pub path: String,

    /// HTTP or HTTPS.
    #[serde(default)]
    pub scheme: Scheme,

    /// Request method.
    #[serde(default)]
    pub method: Method,

    /// Extra request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers: Vec<Header>,

    /// Seconds to wait for the response; must be less than periodSeconds.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: u32,

    /// Status codes that count as success: single codes ("204") or inclusive ranges ("200-399").
    #[serde(default = "default_success_codes")]
    #[schemars(
        length(min = 1, max = 16),
        inner(length(max = 7), regex(pattern = r"^[1-5][0-9]{2}(-[1-5][0-9]{2})?$"))
    )]
    pub success_codes: Vec<String>,
}

fn default_path() -> String {
    "/".into()
}

fn default_timeout_seconds() -> u32 {
    1
}

fn default_success_codes() -> Vec<String> {
    vec!["200-399".into()]
}

/// URL scheme of an HTTP probe.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// HTTP method of a probe.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Options,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Options => "OPTIONS",
        }
    }
}

/// A request header sent with each probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct Header {
    /// Header name.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"))]
    pub name: String,
    /// Header value.
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// One condition that makes a pod Unhealthy. Set exactly one field.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.consecutiveFailures)")
    .message("each trigger must set exactly one of: consecutiveFailures"))]
pub struct Trigger {
    /// Fires when this many probes in a row fail (wrong status code, timeout, connection error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<ConsecutiveFailures>,
}

/// Fires after `threshold` failed probes in a row.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ConsecutiveFailures {
    /// Failed probes in a row that make a pod Unhealthy.
    #[schemars(range(min = 1, max = 100))]
    pub threshold: u32,
}

/// When an Unhealthy pod counts as recovered.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recovery {
    /// Successful probes in a row before an Unhealthy pod is Healthy again.
    #[serde(default = "default_consecutive_successes")]
    #[schemars(range(min = 1, max = 100))]
    pub consecutive_successes: u32,
}

fn default_consecutive_successes() -> u32 {
    2
}

impl Default for Recovery {
    fn default() -> Self {
        Self {
            consecutive_successes: default_consecutive_successes(),
        }
    }
}

/// The escalation ladder and its guards.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Remediation {
    /// Remediations tried in order while the target stays Unhealthy: the first runs when the target
    /// becomes Unhealthy, each next one when the previous step's timeout passes without recovery.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub steps: Vec<RemediationStep>,

    /// Minimum time between two remediations of the target, across ladders: a target that fails again
    /// soon after an action is reported (RemediationBlocked, reason Cooldown) instead of acted on.
    #[serde(default = "default_cooldown")]
    pub cooldown: Duration,

    /// Decide and report (Events, status) but change nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

fn default_cooldown() -> Duration {
    Duration::from("5m")
}

impl Default for Remediation {
    fn default() -> Self {
        Self {
            steps: Vec::new(),
            cooldown: default_cooldown(),
            dry_run: false,
        }
    }
}

/// One rung of the escalation ladder.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemediationStep {
    /// What to do. RolloutRestart restarts the workload's pods the way `kubectl rollout restart`
    /// does, marked with the pod template annotation apphealth.io/restartedAt.
    pub action: Action,

    /// How long to wait for the target to recover after this step before escalating to the next one.
    #[serde(default = "default_step_timeout")]
    pub timeout: Duration,
}

fn default_step_timeout() -> Duration {
    Duration::from("5m")
}

/// A remediation the operator can perform.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Action {
    /// Roll the workload's pods, as `kubectl rollout restart` does.
    RolloutRestart,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RolloutRestart => "RolloutRestart",
        }
    }
}
