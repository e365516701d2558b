//! `ClusterAppHealthPolicy` (apphealth.io/v1alpha1, cluster-scoped): one policy over the
//! workloads of many namespaces. Its spec is an AppHealthPolicy's over a `targetSelector`, and a
//! `namespaceSelector` that says which namespaces it looks in; each workload it selects is judged
//! and remediated on its own, exactly as a namespaced selector policy's. Namespaced policies covering
//! the same workload win over it (see [`crate::fleet::precedence`]).

use kube::{CustomResource, KubeSchema, ResourceExt};
use serde::{Deserialize, Serialize};

use super::{AppHealthPolicy, AppHealthPolicySpec, AppHealthPolicyStatus, LabelMatch};

/// Declares, once for the whole cluster, how the health of many workloads is judged and what the
/// operator may do when one of them is unhealthy: the workloads a targetSelector selects in the
/// namespaces a namespaceSelector selects, each judged and remediated on its own.
// Each printcolumn repeats the same keys by design of the derive.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "apphealth.io",
    version = "v1alpha1",
    kind = "ClusterAppHealthPolicy",
    shortname = "cahp",
    category = "apphealth",
    status = "AppHealthPolicyStatus",
    derive = "PartialEq",
    doc = "ClusterAppHealthPolicy is an AppHealthPolicy over the workloads of many namespaces: \
           those its targetSelector selects in the namespaces its namespaceSelector selects, each \
           judged (HTTP probes and triggers) and remediated (an escalation ladder) on its own. A \
           namespaced AppHealthPolicy covering the same workload wins over it.",
    printcolumn(
        name = "Targets",
        type_ = "integer",
        json_path = ".status.fleet.selected",
        description = "Workloads selected, in every namespace selected"
    ),
    printcolumn(
        name = "Unhealthy",
        type_ = "integer",
        json_path = ".status.fleet.unhealthy",
        description = "How many of them are Unhealthy"
    ),
    printcolumn(
        name = "Remediating",
        type_ = "integer",
        json_path = ".status.fleet.remediating",
        description = "How many of them have a ladder in progress"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "The policy is valid and probing what it selects"
    ),
    printcolumn(
        name = "Owned Elsewhere",
        type_ = "integer",
        json_path = ".status.fleet.ownedElsewhere",
        priority = 1,
        description = "Selected workloads a namespaced policy remediates instead"
    ),
    printcolumn(
        name = "Blocked",
        type_ = "integer",
        json_path = ".status.fleet.blocked",
        priority = 1,
        description = "Selected workloads whose remediation a guard holds back"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAppHealthPolicySpec {
    /// The namespaces whose workloads this policy covers: those whose labels this selector
    /// matches (`kubernetes.io/metadata.name` names one). Every namespace when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelMatch>,

    /// What an AppHealthPolicy over a targetSelector holds: the workloads selected in each
    /// namespace, the probe, the triggers, recovery and the remediation ladder. Secrets and
    /// ConfigMaps the probe names are read in each workload's own namespace.
    #[serde(flatten)]
    pub policy: AppHealthPolicySpec,
}

impl ClusterAppHealthPolicy {
    /// The policy as the fleet reconcile runs it: an AppHealthPolicy of no namespace with this
    /// one's metadata (its name and uid) and spec; each workload's stages then run on it as it
    /// would read in the workload's namespace.
    pub fn as_policy(&self) -> AppHealthPolicy {
        let mut policy = AppHealthPolicy::new(&self.name_any(), self.spec.policy.clone());
        policy.metadata = self.metadata.clone();
        policy.metadata.namespace = None;
        policy.status = self.status.clone();
        policy
    }
}
