//! Condition and Event reasons: CamelCase constants, never ad-hoc strings.

// Ready
pub const PROBING: &str = "Probing";
/// A targetSelector policy is selecting (and probing) its workloads.
pub const WORKLOADS_SELECTED: &str = "WorkloadsSelected";
/// Guards hold back the ladders of some of a targetSelector policy's workloads.
pub const WORKLOADS_BLOCKED: &str = "WorkloadsBlocked";
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
pub const INVALID_REFERENCE: &str = "InvalidReference";
pub const UNREADABLE: &str = "UnreadablePolicy";
pub const NO_PODS: &str = "NoProbeTargets";
/// Every endpoint's address is one the operator never connects to (link-local, loopback, …).
pub const ADDRESS_REFUSED: &str = "AddressRefused";
pub const SUSPENDED: &str = "Suspended";
/// The target runs the operator itself, and the ladder would change it.
pub const TARGET_IS_OPERATOR: &str = "TargetIsOperator";
// Healthy
pub const AWAITING_VERDICT: &str = "AwaitingVerdict";
pub const PROBES_SUCCEEDING: &str = "ProbesSucceeding";
pub const TRIGGER_FIRED: &str = "TriggerFired";
// Remediating
pub const IDLE: &str = "Idle";
pub const LADDER_IN_PROGRESS: &str = "LadderInProgress";
pub const RECOVERED: &str = "Recovered";
// RemediationBlocked: the guards, and the ladder's own ends
pub const NOT_BLOCKED: &str = "NotBlocked";
pub const COOLDOWN: &str = "Cooldown";
pub const DRY_RUN: &str = "DryRun";
pub const MIN_POD_AGE: &str = "MinPodAge";
pub const CIRCUIT_OPEN: &str = "CircuitOpen";
pub const STORM_GUARD: &str = "StormGuard";
pub const ROLLOUT_IN_PROGRESS: &str = "RolloutInProgress";
pub const DISRUPTION_BUDGET: &str = "DisruptionBudget";
pub const TARGET_BUSY: &str = "TargetBusy";
pub const OWNED_ELSEWHERE: &str = "OwnedElsewhere";
pub const POLICY_LIMIT: &str = "PolicyLimit";
pub const GLOBAL_LIMIT: &str = "GlobalLimit";
pub const LADDER_EXHAUSTED: &str = "LadderExhausted";
pub const NO_REMEDIATION: &str = "NoRemediation";
// Events about remediations (each action names its own success reason in `act`)
pub const REMEDIATION_FAILED: &str = "RemediationFailed";
pub const REMEDIATION_RESUMED: &str = "RemediationResumed";
pub const STEP_SKIPPED: &str = "StepSkipped";
pub const SCALE_RESTORED: &str = "ScaleRestored";
pub const SCALE_RESTORE_SKIPPED: &str = "ScaleRestoreSkipped";
pub const BECAME_UNHEALTHY: &str = "BecameUnhealthy";
