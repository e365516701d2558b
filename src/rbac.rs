//! The Kubernetes rights the operator uses. The controller's own are listed here; each action
//! declares its own in its file (`rights` of its [`Descriptor`](crate::act::Descriptor)), and
//! [`crate::act::rules`] joins them. The chart's rule table (`templates/_rules.tpl`) and the
//! README's table are generated from these lists (`make generate`); tests fail when they drift.

use crate::api::Action;

/// Verbs on a resource of an API group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Right {
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    /// A second chart value that must be true too (`pods/exec`: `diagnosticsExec`).
    pub also: Option<&'static str>,
}

pub const fn right(group: &'static str, resource: &'static str, verbs: &'static [&'static str]) -> Right {
    Right {
        group,
        resource,
        verbs,
        also: None,
    }
}

/// Chart values that a right needs besides its action's own (`Right::also`), off by default, and
/// what they grant.
pub const EXTRA_TOGGLES: &[(&str, &str)] = &[(
    "diagnosticsExec",
    "CollectDiagnostics with exec (a thread dump): pods/exec. Only used with collectDiagnostics.",
)];

/// Who needs a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The controller itself: watching, probing, status, Events.
    Always,
    /// Only policies that use this action.
    Action(Action),
}

/// One right and who needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    pub need: Need,
    pub also: Option<&'static str>,
}

impl Rule {
    pub fn new(right: &Right, need: Need) -> Self {
        Self {
            group: right.group,
            resource: right.resource,
            verbs: right.verbs,
            need,
            also: right.also,
        }
    }
}

/// Rights granted together, who needs them and why (a row of the README's table).
#[derive(Debug)]
pub struct Rights {
    pub needed_by: &'static str,
    pub why: &'static str,
    pub rights: &'static [Right],
}

const WATCH: &[&str] = &["get", "list", "watch"];

/// The controller's own rights, always granted.
pub const CONTROLLER: &[Rights] = &[
    Rights {
        needed_by: "always",
        why: "to find each target, its pods and Service, and the values its probe references \
              (ConfigMaps and Secrets are watched as metadata only; a value is read by name when a \
              policy names it)",
        rights: &[
            right("apphealth.io", "apphealthpolicies", WATCH),
            right("apps", "deployments", WATCH),
            right("apps", "statefulsets", WATCH),
            right("", "pods", WATCH),
            right("", "configmaps", WATCH),
            right("", "secrets", WATCH),
            right("", "services", &["get"]),
            right("metrics.k8s.io", "pods", &["list"]),
        ],
    },
    Rights {
        needed_by: "always",
        why: "to report",
        rights: &[
            right("apphealth.io", "apphealthpolicies/status", &["patch"]),
            right("events.k8s.io", "events", &["create", "patch"]),
        ],
    },
];

/// ClusterAppHealthPolicies' rights: granted to a cluster-wide install only (one that watches
/// every namespace); a namespaced install does not serve cluster policies.
pub const CLUSTER_POLICIES: Rights = Rights {
    needed_by: "cluster-wide installs (`watchNamespaces` empty)",
    why: "ClusterAppHealthPolicies, and the namespaces' labels their namespaceSelector reads",
    rights: &[
        right("apphealth.io", "clusterapphealthpolicies", WATCH),
        right("", "namespaces", &["list", "watch"]),
        right("apphealth.io", "clusterapphealthpolicies/status", &["patch"]),
    ],
};

/// Leader election's rights, in the operator's own namespace only: the Lease is created once, then
/// read and renewed by its name.
pub const LEASE: Rights = Rights {
    needed_by: "leader election",
    why: "one replica acts at a time",
    rights: &[
        right("coordination.k8s.io", "leases", &["create"]),
        right("coordination.k8s.io", "leases", &["get", "patch"]),
    ],
};

/// Sharding's rights (`--shards N`), in the operator's own namespace only: the shard and member
/// Leases are many and named after the replicas, so they are read, listed and updated by type.
pub const SHARD_LEASES: Rights = Rights {
    needed_by: "sharding",
    why: "replicas share the work by shard Leases",
    rights: &[
        right("coordination.k8s.io", "leases", &["create"]),
        right("coordination.k8s.io", "leases", &["get", "list", "update"]),
    ],
};

/// [`SHARD_LEASES`] as rules.
pub fn shard_lease_rules() -> Vec<Rule> {
    SHARD_LEASES
        .rights
        .iter()
        .map(|r| Rule::new(r, Need::Always))
        .collect()
}

/// [`LEASE`] as rules.
pub fn lease_rules() -> Vec<Rule> {
    LEASE.rights.iter().map(|r| Rule::new(r, Need::Always)).collect()
}

/// Rights as the README writes them: "`get/list/watch` deployments, pods; `list`
/// pods.metrics.k8s.io" (resources of the core, apps and apphealth.io groups by name, others
/// qualified by their group, as kubectl does).
pub fn describe(rights: &[Right]) -> String {
    let mut parts: Vec<(String, Vec<String>)> = Vec::new();
    for r in rights {
        let verbs = format!("`{}`", r.verbs.join("/"));
        let resource = match r.group {
            "" | "apps" | "apphealth.io" => r.resource.to_owned(),
            group => format!("{}.{group}", r.resource),
        };
        match parts.last_mut() {
            Some((v, resources)) if *v == verbs => resources.push(resource),
            _ => parts.push((verbs, vec![resource])),
        }
    }
    parts
        .into_iter()
        .map(|(verbs, resources)| format!("{verbs} {}", resources.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_are_described_as_the_readme_writes_them() {
        let rights = [
            right("", "pods", WATCH),
            right("apps", "deployments", WATCH),
            right("", "services", &["get"]),
            right("metrics.k8s.io", "pods", &["list"]),
            right("autoscaling", "horizontalpodautoscalers", &["list"]),
        ];
        assert_eq!(
            describe(&rights),
            "`get/list/watch` pods, deployments; `get` services; `list` pods.metrics.k8s.io, \
             horizontalpodautoscalers.autoscaling"
        );
        assert_eq!(describe(&[]), "");
    }
}
