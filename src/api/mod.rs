//! The `AppHealthPolicy` custom resource (apphealth.io/v1alpha1): the public contract.

pub mod cluster;
pub mod crd;
mod duration;
pub mod quantity;
pub mod remediation;
pub mod spec;
pub mod status;
pub mod validate;
pub mod watched;

pub use cluster::{ClusterAppHealthPolicy, ClusterAppHealthPolicySpec};
pub use crd::{cluster_crd, crd};
pub use duration::{DURATION_PATTERN, Duration, MAX as MAX_DURATION, format as format_duration};
pub use remediation::*;
pub use spec::*;
pub use status::*;

pub use crate::record::{Action, Health, RemediationResult};

/// Pod template annotation that marks a rollout restart done by this operator; its value is the
/// RFC 3339 time of the decision, recorded in status first, so the action can be read back.
pub const RESTARTED_AT_ANNOTATION: &str = "apphealth.io/restartedAt";

/// Most remediation records kept in status.history.
pub const HISTORY_LIMIT: usize = 10;

/// Condition types written to status.
pub mod conditions {
    pub const READY: &str = "Ready";
    pub const HEALTHY: &str = "Healthy";
    pub const REMEDIATING: &str = "Remediating";
    pub const REMEDIATION_BLOCKED: &str = "RemediationBlocked";
}

/// `s` cut to at most `max` bytes and a closing "…", at a character boundary: text a policy supplies
/// (a megabyte name, say) that a message quotes must not make the message, and so the status or
/// the Event that carries it, unbounded.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut cut = max.saturating_sub(1);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}
