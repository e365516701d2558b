//! Every Kubernetes permission the operator uses, in one list: what the controller always needs,
//! and what each action adds. The Helm chart's RBAC is checked against this list.

use crate::api::Action;

/// Who needs a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The controller itself: watching, probing, status, Events.
    Always,
    /// Only policies that use this action.
    Action(Action),
}

/// One RBAC rule: verbs on a resource of an API group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    pub need: Need,
}

const fn rule(
    group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
    need: Need,
) -> Rule {
    Rule {
        group,
        resource,
        verbs,
        need,
    }
}

const WATCH: &[&str] = &["get", "list", "watch"];

pub const RULES: &[Rule] = &[
    rule("apphealth.io", "apphealthpolicies", WATCH, Need::Always),
    rule(
        "apphealth.io",
        "apphealthpolicies/status",
        &["patch"],
        Need::Always,
    ),
    rule("apps", "deployments", WATCH, Need::Always),
    rule("apps", "statefulsets", WATCH, Need::Always),
    rule("", "pods", WATCH, Need::Always),
    rule("", "configmaps", WATCH, Need::Always),
    rule("", "secrets", WATCH, Need::Always),
    rule("", "services", &["get"], Need::Always),
    rule("metrics.k8s.io", "pods", &["list"], Need::Always),
    rule("events.k8s.io", "events", &["create", "patch"], Need::Always),
    rule("", "pods/log", &["get"], Need::Action(Action::CollectDiagnostics)),
    rule("", "events", &["list"], Need::Action(Action::CollectDiagnostics)),
    rule(
        "",
        "configmaps",
        &["create", "delete"],
        Need::Action(Action::CollectDiagnostics),
    ),
    // Only when collectDiagnostics.exec is set; WebSocket exec checks get (before 1.31) or create.
    rule(
        "",
        "pods/exec",
        &["get", "create"],
        Need::Action(Action::CollectDiagnostics),
    ),
    rule("apps", "replicasets", &["list"], Need::Action(Action::Rollback)),
    rule("apps", "deployments", &["update"], Need::Action(Action::Rollback)),
    rule("apps", "deployments", &["patch"], Need::Action(Action::ScaleUp)),
    rule("apps", "statefulsets", &["patch"], Need::Action(Action::ScaleUp)),
    rule("", "pods/resize", &["patch"], Need::Action(Action::ScaleUp)),
    rule(
        "",
        "pods/eviction",
        &["create"],
        Need::Action(Action::RestartPods),
    ),
    rule(
        "apps",
        "deployments",
        &["patch"],
        Need::Action(Action::RolloutRestart),
    ),
    rule(
        "apps",
        "statefulsets",
        &["patch"],
        Need::Action(Action::RolloutRestart),
    ),
    rule("apps", "deployments", &["patch"], Need::Action(Action::ScaleOut)),
    rule("apps", "statefulsets", &["patch"], Need::Action(Action::ScaleOut)),
    rule(
        "apps",
        "deployments/scale",
        &["get", "patch"],
        Need::Action(Action::ScaleOut),
    ),
    rule(
        "apps",
        "statefulsets/scale",
        &["get", "patch"],
        Need::Action(Action::ScaleOut),
    ),
    rule(
        "autoscaling",
        "horizontalpodautoscalers",
        &["list", "get", "patch"],
        Need::Action(Action::ScaleOut),
    ),
];

/// Leader election's rights, in the operator's own namespace only: the Lease is created once, then
/// read and renewed by its name.
pub const LEASE_RULES: &[Rule] = &[
    rule("coordination.k8s.io", "leases", &["create"], Need::Always),
    rule("coordination.k8s.io", "leases", &["get", "patch"], Need::Always),
];

/// The rules a set of actions needs, the controller's own included.
pub fn rules_for(actions: &[Action]) -> Vec<Rule> {
    RULES
        .iter()
        .filter(|r| match r.need {
            Need::Always => true,
            Need::Action(a) => actions.contains(&a),
        })
        .copied()
        .collect()
}
