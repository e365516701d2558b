//! `AppHealthPolicy.spec`: what a platform team declares. Doc comments here are what
//! `kubectl explain apphealthpolicy.spec` prints, so they are written for the people using it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AppHealthPolicyStatus, Duration, RemediationSpec};

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
        name = "Targets",
        type_ = "integer",
        json_path = ".status.fleet.selected",
        description = "Workloads a targetSelector policy selects"
    ),
    printcolumn(
        name = "Unhealthy",
        type_ = "integer",
        json_path = ".status.fleet.unhealthy",
        description = "How many of them are Unhealthy"
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
        name = "Step",
        type_ = "integer",
        json_path = ".status.ladder.step",
        description = "The ladder step that ran last, while a ladder is in progress"
    ),
    printcolumn(
        name = "Last Action",
        type_ = "string",
        json_path = ".status.history[0].action",
        description = "The most recent remediation"
    ),
    printcolumn(
        name = "Probed",
        type_ = "integer",
        json_path = ".status.targets.probed",
        priority = 1,
        description = "Pods (or the Service) probed"
    ),
    printcolumn(
        name = "Healthy Pods",
        type_ = "integer",
        json_path = ".status.targets.healthy",
        priority = 1,
        description = "How many of them are healthy"
    ),
    printcolumn(
        name = "Blocked By",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"RemediationBlocked\")].reason",
        priority = 1,
        description = "The guard holding a remediation back (NotBlocked when none)"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.targetRef) != has(self.targetSelector)")
        .message("exactly one of spec.targetRef and spec.targetSelector must be set")
)]
pub struct AppHealthPolicySpec {
    /// The workload whose health this policy judges and remediates: a Deployment or StatefulSet in
    /// the policy's own namespace. Exactly one of targetRef and targetSelector is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,

    /// The workloads this policy judges and remediates, each on its own (its own verdict, ladder,
    /// history, cooldown and circuit breaker, as if it had a policy of its own): those of the
    /// given kinds in the policy's namespace whose labels the selector matches. Workloads that
    /// start or stop matching are picked up or released within a probe period. Exactly one of
    /// targetRef and targetSelector is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_selector: Option<TargetSelector>,

    /// Among policies that cover the same workload the same way (two selectors, say), the one with
    /// the higher priority remediates it and the others observe; on a tie, the policy whose name
    /// sorts first. A policy naming the workload by targetRef always wins over selectors.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,

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
    pub remediation: RemediationSpec,

    /// Stops probing and remediation for this policy; status keeps the last remediation and the
    /// `Ready` condition says the policy is suspended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

/// Identifies the workload a policy watches.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// API group and version of the workload: apps/v1, the only one supported today (Deployment
    /// and StatefulSet), and what a policy that leaves it out means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", extend("enum" = [APPS_V1]))]
    pub api_version: Option<String>,
    /// Kind of the workload: Deployment or StatefulSet (API group apps/v1).
    pub kind: TargetKind,
    /// Name of the workload, in the policy's namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

impl AppHealthPolicySpec {
    /// For people: the workload named, or what the selector selects.
    pub fn describe_target(&self) -> String {
        match (&self.target_ref, &self.target_selector) {
            (Some(t), _) => format!("{} {}", t.kind.as_str(), t.name),
            (None, Some(s)) => {
                let kinds: Vec<&str> = s.kinds.iter().map(|k| k.as_str()).collect();
                let selector = s.describe();
                if selector.is_empty() {
                    format!("every {}", kinds.join(" and "))
                } else {
                    format!("every {} selected by {selector}", kinds.join(" and "))
                }
            }
            (None, None) => "no workload".to_owned(),
        }
    }
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Selects the workloads of a policy over many: by kind and labels, in the policy's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetSelector {
    /// The workload kinds selected (apps/v1): Deployment, StatefulSet, or both (the default).
    #[serde(default = "all_kinds")]
    #[schemars(length(min = 1, max = 2))]
    #[x_kube(validation = Rule::new("self.all(k, self.exists_one(j, j == k))").message("kinds must not repeat"))]
    pub kinds: Vec<TargetKind>,
    /// The labels the workloads must have. With neither matchLabels nor matchExpressions, every
    /// workload of the kinds is selected.
    #[serde(flatten)]
    pub labels: LabelMatch,
}

/// A label selector (Kubernetes' `matchLabels` and `matchExpressions`), bounded.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LabelMatch {
    /// Those whose labels hold every one of these pairs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub match_labels: BTreeMap<String, String>,
    /// Those whose labels meet every one of these requirements (operators In, NotIn, Exists,
    /// DoesNotExist), as in a Deployment's selector. With neither matchLabels nor
    /// matchExpressions, everything is selected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

fn all_kinds() -> Vec<TargetKind> {
    vec![TargetKind::Deployment, TargetKind::StatefulSet]
}

impl TargetSelector {
    /// Whether it selects a workload of `kind` labelled `labels`.
    pub fn selects(&self, kind: TargetKind, labels: &BTreeMap<String, String>) -> bool {
        self.kinds.contains(&kind) && self.labels.matches(labels)
    }

    /// The label selector as kubectl writes one (`tier=web,team in (a,b)`); empty when it selects
    /// every workload of its kinds.
    pub fn describe(&self) -> String {
        self.labels.describe()
    }
}

impl LabelMatch {
    /// Whether labels `labels` meet it.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        use kube::core::SelectorExt;
        kube::core::Selector::try_from(self.label_selector()).is_ok_and(|s| s.matches(labels))
    }

    /// As kubectl writes a selector (`tier=web,team in (a,b)`); empty when it selects everything.
    pub fn describe(&self) -> String {
        kube::core::Selector::try_from(self.label_selector())
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    /// The selector as Kubernetes spells it.
    pub fn label_selector(&self) -> LabelSelector {
        LabelSelector {
            match_labels: (!self.match_labels.is_empty()).then(|| self.match_labels.clone()),
            match_expressions: (!self.match_expressions.is_empty()).then(|| {
                self.match_expressions
                    .iter()
                    .map(
                        |r| k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                            key: r.key.clone(),
                            operator: r.operator.as_str().to_owned(),
                            values: (!r.values.is_empty()).then(|| r.values.clone()),
                        },
                    )
                    .collect()
            }),
        }
    }
}

/// One requirement on a workload's labels.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(self.operator == 'In' || self.operator == 'NotIn') == (has(self.values) && size(self.values) > 0)")
        .message("values must be non-empty for In and NotIn, and absent for Exists and DoesNotExist")
)]
pub struct LabelSelectorRequirement {
    /// The label key.
    #[schemars(length(min = 1, max = 317))]
    pub key: String,
    /// In, NotIn, Exists or DoesNotExist.
    pub operator: SelectorOperator,
    /// The values, for In and NotIn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub values: Vec<String>,
}

/// How a label requirement compares.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl SelectorOperator {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "In",
            Self::NotIn => "NotIn",
            Self::Exists => "Exists",
            Self::DoesNotExist => "DoesNotExist",
        }
    }
}

/// The API version of the workload kinds the operator supports.
pub const APPS_V1: &str = "apps/v1";

/// A workload kind the operator can watch and remediate.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum TargetKind {
    Deployment,
    StatefulSet,
}

impl TargetKind {
    /// The kind named `s`, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Deployment" => Some(Self::Deployment),
            "StatefulSet" => Some(Self::StatefulSet),
            _ => None,
        }
    }

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
    validation = Rule::new("has(self.http) != has(self.tcp)")
        .message("probe must set exactly one of: http, tcp"),
    validation = Rule::new(
        "(has(self.http) && has(self.http.timeoutSeconds) ? self.http.timeoutSeconds : has(self.tcp) && has(self.tcp.timeoutSeconds) ? self.tcp.timeoutSeconds : 1) <= (has(self.periodSeconds) ? self.periodSeconds : 10)"
    )
    .message("the probe's timeoutSeconds must be at most probe.periodSeconds")
)]
pub struct Probe {
    /// Pods probes each ready pod of the target at its pod IP, so a single bad instance is found.
    /// Service probes through the named Service, as clients see the application.
    #[serde(default)]
    pub via: ProbeVia,

    /// Name of the Service in the policy's namespace to probe through; required when via is Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub service: Option<String>,

    /// An HTTP(S) request the application must answer. Set http or tcp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,

    /// A TCP connection the application must accept. Set http or tcp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,

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

    /// Request path (and query), starting with a slash; no spaces, control characters or '#'.
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^/[^\s#\x00-\x1f\x7f]*$"))]
    pub path: String,

    /// HTTP or HTTPS.
    #[serde(default)]
    pub scheme: Scheme,

    /// Request method.
    #[serde(default)]
    pub method: Method,

    /// Extra request headers. Values come from the policy or from a Secret; values from Secrets are
    /// never logged, written to status or put in Events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers: Vec<Header>,

    /// Request body, sent as is (for POST and PUT probes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub body: Option<String>,

    /// Seconds to wait for the response; at most periodSeconds.
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

    /// Conditions on the response body, checked on responses with a success code. The first 64 KiB
    /// of the body are examined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseCheck>,

    /// TLS settings for HTTPS probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
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

/// A TCP connect probe: the application is up when it accepts a connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcpProbe {
    /// Port to connect to: a number, or the name of a container port (via Pods) or Service port (via Service).
    pub port: IntOrString,

    /// Seconds to wait for the connection; at most periodSeconds.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: u32,
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

/// A request header sent with each probe. Set value or valueFrom.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)")
    .message("a header must set exactly one of: value, valueFrom"))]
pub struct Header {
    /// Header name.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"))]
    pub name: String,
    /// Header value, written in the policy: printable ASCII, spaces and tabs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096), regex(pattern = r"^[\t\x20-\x7e]*$"))]
    pub value: Option<String>,
    /// Header value read from a key of a Secret in the policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<HeaderValueFrom>,
}

/// Where a header value comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderValueFrom {
    /// A key of a Secret in the policy's namespace.
    pub secret_key_ref: KeyRef,
}

/// A key of a Secret or ConfigMap in the policy's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub struct KeyRef {
    /// Name of the object, in the policy's namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key within its data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Conditions a successful response's body must meet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseCheck {
    /// A regular expression the body must match (Rust regex syntax), e.g. `"status":\s*"UP"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub body_matches: Option<String>,
    /// A regular expression the body must not match, e.g. `(?i)maintenance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub body_not_matches: Option<String>,
    /// Fields of a JSON body that must have given values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub json: Vec<JsonFieldCheck>,
}

/// A field of a JSON body, addressed by a JSON pointer, that must equal a value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct JsonFieldCheck {
    /// JSON pointer (RFC 6901) to the field, e.g. `/status` or `/checks/0/state`.
    #[schemars(length(max = 512), regex(pattern = r"^(/.*)?$"))]
    pub pointer: String,
    /// The value the field must have: compared with a string field's text, or with the JSON text of
    /// a number, boolean or null (`"true"`, `"3"`).
    #[schemars(length(max = 1024))]
    pub equals: String,
}

/// TLS settings of an HTTPS probe.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.insecureSkipVerify) && self.insecureSkipVerify && has(self.ca))")
    .message("tls.ca and tls.insecureSkipVerify exclude each other"))]
pub struct TlsConfig {
    /// PEM CA certificates that sign the application's certificate, from a Secret or ConfigMap in
    /// the policy's namespace. The system roots are used when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaSource>,
    /// The name the certificate must be valid for, when it differs from the address probed (pod IPs
    /// rarely appear in certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub server_name: Option<String>,
    /// Accept any certificate. Only for applications whose certificate cannot be verified; the
    /// certificate's expiry is still recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// Where CA certificates come from. Set one field.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretKeyRef) != has(self.configMapKeyRef)")
    .message("tls.ca must set exactly one of: secretKeyRef, configMapKeyRef"))]
pub struct CaSource {
    /// A key of a Secret holding PEM certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
    /// A key of a ConfigMap holding PEM certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
}

/// One condition that makes a pod Unhealthy. Set exactly one field.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.consecutiveFailures), has(self.statusCodes), has(self.slowResponses), has(self.errorRate), has(self.memory), has(self.cpu), has(self.restarts), has(self.oomKilled), has(self.certificateExpiresWithin), has(self.configChanged)].filter(x, x).size() == 1"
).message("each trigger must set exactly one of: consecutiveFailures, statusCodes, slowResponses, errorRate, memory, cpu, restarts, oomKilled, certificateExpiresWithin, configChanged"))]
pub struct Trigger {
    // Each kind's parameters are boxed: a trigger sets one kind of ten, and every cached policy
    // would otherwise hold all ten inline (a Trigger was 352 bytes, now 80).
    /// Fires when this many probes in a row fail (wrong status code, failed body check, timeout,
    /// connection error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<Box<ConsecutiveFailures>>,
    /// Fires on a burst of given status codes, e.g. 502/503, within a sliding window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_codes: Option<Box<StatusCodes>>,
    /// Fires when enough probes take longer than a threshold within a sliding window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_responses: Option<Box<SlowResponses>>,
    /// Fires when the share of failed probes in a sliding window reaches a percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<Box<ErrorRate>>,
    /// Fires when a container's memory use stays near its limit (or above a size); needs the
    /// metrics.k8s.io API (metrics-server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Box<MemoryTrigger>>,
    /// Fires when a container's CPU use stays near its limit; needs the metrics.k8s.io API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Box<CpuTrigger>>,
    /// Fires on container restarts within a sliding window, or a container in CrashLoopBackOff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<Box<Restarts>>,
    /// Fires when a container was recently killed for running out of memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_killed: Option<Box<OomKilled>>,
    /// Fires when the HTTPS certificate the application serves expires within a duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expires_within: Option<Box<CertificateExpiresWithin>>,
    /// Fires when a ConfigMap or Secret the pod template references changed after the pod started,
    /// so the pod still runs the old configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_changed: Option<ConfigChanged>,
}

/// Fires after `threshold` failed probes in a row.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ConsecutiveFailures {
    /// Failed probes in a row that make a pod Unhealthy.
    #[schemars(range(min = 1, max = 100))]
    pub threshold: u32,
}

/// Fires when `count` responses with one of `codes` arrive within `window`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.window) <= duration('1h')").message("window must be at most 1h").field_path(".window"))]
pub struct StatusCodes {
    /// Status codes or inclusive ranges that count, e.g. ["502", "503"] or ["500-599"].
    #[schemars(
        length(min = 1, max = 16),
        inner(length(max = 7), regex(pattern = r"^[1-5][0-9]{2}(-[1-5][0-9]{2})?$"))
    )]
    pub codes: Vec<String>,
    /// How many such responses within the window make a pod Unhealthy.
    #[schemars(range(min = 1, max = 1000))]
    pub count: u32,
    /// The sliding window, at most 1h.
    pub window: Duration,
    /// Probe this path for this trigger instead of probe.http.path (it is probed every period, too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^/[^\s#\x00-\x1f\x7f]*$"))]
    pub path: Option<String>,
}

/// Fires when `count` probes slower than `threshold` complete within `window`; timeouts count as slow.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.window) <= duration('1h')").message("window must be at most 1h").field_path(".window"))]
pub struct SlowResponses {
    /// A probe slower than this counts, e.g. 2s or 500ms.
    pub threshold: Duration,
    /// How many slow probes within the window make a pod Unhealthy.
    #[schemars(range(min = 1, max = 1000))]
    pub count: u32,
    /// The sliding window, at most 1h.
    pub window: Duration,
}

/// Fires when at least `percent` of the probes within `window` failed, once there are `minSamples`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.window) <= duration('1h')").message("window must be at most 1h").field_path(".window"))]
pub struct ErrorRate {
    /// Percentage of failed probes, 1-100.
    #[schemars(range(min = 1, max = 100))]
    pub percent: u32,
    /// The sliding window, at most 1h.
    pub window: Duration,
    /// Probes the window must hold before the rate is judged.
    #[serde(default = "default_min_samples")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_samples: u32,
}

fn default_min_samples() -> u32 {
    5
}

/// Fires when a container's memory use stays at or above a share of its limit (or a size) for a duration.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.percentOfLimit) != has(self.bytes)")
    .message("memory must set exactly one of: percentOfLimit, bytes"))]
pub struct MemoryTrigger {
    /// Percentage of the container's memory limit, 1-100. Containers without a limit are skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub percent_of_limit: Option<u32>,
    /// A size such as 512Mi or 1G.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 32),
        regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
    )]
    pub bytes: Option<String>,
    /// How long usage must stay above the threshold.
    #[serde(default = "default_zero", rename = "for")]
    pub for_: Duration,
}

/// Fires when a container's CPU use stays at or above a share of its limit for a duration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CpuTrigger {
    /// Percentage of the container's CPU limit, 1-100. Containers without a limit are skipped.
    #[schemars(range(min = 1, max = 100))]
    pub percent_of_limit: u32,
    /// How long usage must stay above the threshold.
    #[serde(default = "default_zero", rename = "for")]
    pub for_: Duration,
}

fn default_zero() -> Duration {
    Duration::from("0s")
}

/// Fires on `count` container restarts within `window`, or a container in CrashLoopBackOff.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.window) <= duration('24h')").message("window must be at most 24h").field_path(".window"))]
pub struct Restarts {
    /// Restarts (of all containers of a pod) within the window that make it Unhealthy.
    #[schemars(range(min = 1, max = 1000))]
    pub count: u32,
    /// The sliding window, at most 24h.
    pub window: Duration,
}

/// Fires when a container's last termination was OOMKilled within `within`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OomKilled {
    /// How recent the OOM kill must be; older ones are history.
    #[serde(default = "default_oom_within")]
    pub within: Duration,
}

fn default_oom_within() -> Duration {
    Duration::from("10m")
}

/// Fires when the served certificate expires within `duration`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct CertificateExpiresWithin {
    /// E.g. 168h for a week.
    pub duration: Duration,
}

/// Fires when a referenced ConfigMap or Secret changed after the pod started.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
pub struct ConfigChanged {}

/// When an Unhealthy pod counts as recovered.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recovery {
    /// Successful probes in a row before an Unhealthy pod is Healthy again.
    #[serde(default = "default_consecutive_successes")]
    #[schemars(range(min = 1, max = 100))]
    pub consecutive_successes: u32,
    /// How long no trigger may fire before an Unhealthy pod is Healthy again, on top of the
    /// successful probes, so a target does not flap.
    #[serde(default = "default_zero")]
    pub healthy_delay: Duration,
}

fn default_consecutive_successes() -> u32 {
    2
}

impl Default for Recovery {
    fn default() -> Self {
        Self {
            consecutive_successes: default_consecutive_successes(),
            healthy_delay: default_zero(),
        }
    }
}
