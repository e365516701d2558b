//! The `AppHealthPolicy` custom resource (apphealth.io/v1alpha1): the public contract.

mod duration;
pub mod quantity;
pub mod spec;
pub mod status;
pub mod validate;
pub mod watched;

pub use duration::{DURATION_PATTERN, Duration, format as format_duration};
pub use spec::*;
pub use status::*;

/// Pod template annotation that marks a rollout restart done by this operator; its value is the
/// RFC 3339 time of the decision, recorded in status first, so the action can be read back.
pub const RESTARTED_AT_ANNOTATION: &str = "apphealth.io/restartedAt";

/// Condition types written to status.
pub mod conditions {
    pub const READY: &str = "Ready";
    pub const HEALTHY: &str = "Healthy";
    pub const REMEDIATING: &str = "Remediating";
    pub const REMEDIATION_BLOCKED: &str = "RemediationBlocked";
}

/// Condition and Event reasons: CamelCase constants, never ad-hoc strings.
pub mod reasons {
    // Ready
    pub const PROBING: &str = "Probing";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
    pub const INVALID_REFERENCE: &str = "InvalidReference";
    pub const UNREADABLE: &str = "UnreadablePolicy";
    pub const NO_PODS: &str = "NoProbeTargets";
    pub const SUSPENDED: &str = "Suspended";
    // Healthy
    pub const AWAITING_VERDICT: &str = "AwaitingVerdict";
    pub const PROBES_SUCCEEDING: &str = "ProbesSucceeding";
    pub const TRIGGER_FIRED: &str = "TriggerFired";
    // Remediating
    pub const IDLE: &str = "Idle";
    pub const LADDER_IN_PROGRESS: &str = "LadderInProgress";
    pub const RECOVERED: &str = "Recovered";
    // RemediationBlocked and decision Events
    pub const NOT_BLOCKED: &str = "NotBlocked";
    pub const COOLDOWN: &str = "Cooldown";
    pub const DRY_RUN: &str = "DryRun";
    pub const LADDER_EXHAUSTED: &str = "LadderExhausted";
    pub const NO_REMEDIATION: &str = "NoRemediation";
    // Events for actions
    pub const ROLLOUT_RESTARTED: &str = "RolloutRestarted";
    pub const REMEDIATION_FAILED: &str = "RemediationFailed";
    pub const REMEDIATION_RESUMED: &str = "RemediationResumed";
    pub const BECAME_UNHEALTHY: &str = "BecameUnhealthy";
}
