//! What observe hands to evaluate: probe samples and what the cluster says about the pods. Plain
//! data, so the stages that produce and judge it need not know each other.

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;

/// One probe result for one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The pod (or Service) probed.
    pub endpoint: String,
    /// The HTTP path probed ("" for TCP).
    pub path: String,
    pub at: Timestamp,
    /// The response met the policy's success conditions.
    pub ok: bool,
    /// HTTP status code, when a response arrived.
    pub code: Option<u16>,
    pub latency: Duration,
    /// For people: "HTTP 503", "timed out after 2s", "connection refused".
    pub detail: String,
    /// Why the probe failed, as a stable name for the metric label ("Timeout", "HTTPStatus",
    /// "ConnectFailed", …); empty when it succeeded.
    pub reason: &'static str,
    /// No answer within the timeout.
    pub timed_out: bool,
    /// When the certificate served over HTTPS expires.
    pub certificate_not_after: Option<Timestamp>,
}

impl Sample {
    /// Records a failure: its text for people, its stable name for metrics.
    pub fn failed(&mut self, why: &impl std::fmt::Display, reason: &'static str) {
        self.detail = why.to_string();
        self.reason = reason;
    }
}

/// What the pod objects say about one pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodSignals {
    pub pod: String,
    /// Restarts of all its containers, as counted by the kubelet.
    pub restart_count: u32,
    /// Containers waiting in CrashLoopBackOff.
    pub crash_looping: Vec<String>,
    /// Containers whose last termination was an OOM kill, with when it happened.
    pub oom_killed: Vec<(String, Timestamp)>,
    /// Sentences naming ConfigMaps or Secrets that changed after the pod started.
    pub config_changed: Vec<String>,
    /// Resource limits per container.
    pub limits: Vec<ContainerLimits>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerLimits {
    pub container: String,
    pub memory_bytes: Option<u64>,
    pub cpu_millis: Option<u64>,
}

/// Resource use of one container, from metrics.k8s.io.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUsage {
    pub container: String,
    pub memory_bytes: u64,
    pub cpu_millis: u64,
}

/// Resource use of the target's pods, or why it is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Usage {
    /// The metrics API is not there (no metrics-server) or refused: memory and cpu triggers are inactive.
    Unavailable(String),
    /// Usage per pod name.
    Available(BTreeMap<String, Vec<ContainerUsage>>),
}
