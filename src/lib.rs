//! apphealth-operator: probes the workloads named by `AppHealthPolicy` objects, judges their health
//! from triggers, and remediates them with guardrails.
//!
//! The data path reads in one direction, one module per stage:
//! [`observe`] (probes → samples) → [`evaluate`] (triggers → verdict) → [`plan`] (ladder + guards →
//! plan) → [`act`] (Kubernetes API calls) → [`report`] (status and Events). [`controller`] wires the
//! stages to kube-runtime.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]

pub mod act;
pub mod api;
#[cfg(test)]
mod architecture;
pub mod check;
pub mod clock;
pub mod controller;
pub mod evaluate;
#[cfg(test)]
mod fixtures;
pub mod fleet;
pub mod leader;
pub mod lint;
pub mod metrics;
pub mod observation;
pub mod observe;
pub mod plan;
pub mod probing;
pub mod rbac;
pub mod record;
pub mod report;
pub mod server;
pub mod settings;
pub mod step;
pub mod telemetry;

/// Everything that can go wrong in the operator; each reconcile stage has its own variant (a failed
/// action is not an error: it is recorded in status and the ladder goes on). Variant names double
/// as metric labels.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Starting up: the client, the CRD check.
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),

    /// Reading the target, its pods or what the probe references.
    #[error("could not read the target: {0}")]
    Dereference(#[source] kube::Error),

    /// Recording an intent, or writing the status.
    #[error("could not write the policy's status: {0}")]
    Report(#[source] kube::Error),

    /// Carrying out a remediation, when the API failed transiently: its intent stays Pending.
    #[error("could not finish a remediation: {0}")]
    Act(#[from] act::ActError),

    #[error("could not serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("could not read policy file {path}: {source}")]
    PolicyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not an AppHealthPolicy: {message}")]
    PolicyParse { path: String, message: String },

    #[error("the policy is invalid: {0}")]
    InvalidSpec(#[from] api::validate::InvalidSpec),

    #[error("the AppHealthPolicy CRD is not installed ({0}); install it with: kubectl apply -f crds/")]
    CrdMissing(String),

    #[error("could not build the HTTP client for probes: {0}")]
    HttpClient(String),

    #[error(transparent)]
    Leadership(#[from] leader::LeaseError),

    #[error("this replica lost the lease to another; it stops so that it restarts as a standby")]
    LostLeadership,

    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Why, more precisely than the stage: an action's failure says what kind it was
    /// (`Forbidden`, `APIUnavailable`, …); other errors say their stage.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Act(e) => e.reason(),
            other => other.metric_label(),
        }
    }

    /// A short, stable label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Dereference(_) => "dereference",
            Self::Report(_) => "report",
            Self::Act(_) => "act",
            Self::Serialize { .. } => "serialize",
            Self::PolicyFile { .. } => "policy_file",
            Self::PolicyParse { .. } => "policy_parse",
            Self::InvalidSpec(_) => "invalid_spec",
            Self::CrdMissing(_) => "crd_missing",
            Self::HttpClient(_) => "http_client",
            Self::Leadership(_) => "leadership",
            Self::LostLeadership => "lost_leadership",
            Self::Usage(_) => "usage",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
