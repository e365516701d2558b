//! The keys of the workloads of a policy over many. Each selected workload is judged and
//! remediated on its own, as if it had a policy of its own: its probe task, its ladder claim and
//! what this process wrote for it are kept under a key of its own, from which the policy is found
//! again (no object can have such a name: `/` is not allowed in one):
//!
//! - a namespaced policy's: `<policy>/<Kind>/<name>` in the policy's namespace;
//! - a ClusterAppHealthPolicy's (whose own key has no namespace): `<policy>/<namespace>/<Kind>/<name>`,
//!   of no namespace either.

use super::PolicyRef;
use crate::report::fleet::UnitId;

/// The key of workload `id` of `policy`.
pub(super) fn key(policy: &PolicyRef, id: &UnitId) -> PolicyRef {
    let name = match (&policy.namespace, &id.namespace) {
        (None, Some(ns)) => format!("{}/{ns}/{}/{}", policy.name, id.kind, id.name),
        _ => format!("{}/{}/{}", policy.name, id.kind, id.name),
    };
    let mut key = PolicyRef::new(&name);
    key.namespace = policy.namespace.clone();
    key
}

/// The policy a key belongs to: itself for a policy's own key.
pub(super) fn policy(key: &PolicyRef) -> PolicyRef {
    match key.name.split_once('/') {
        Some((name, _)) => {
            let mut parent = PolicyRef::new(name);
            parent.namespace = key.namespace.clone();
            parent
        }
        None => key.clone(),
    }
}

/// Whether a policy's key is a ClusterAppHealthPolicy's (it has no namespace).
pub(super) fn is_cluster(policy: &PolicyRef) -> bool {
    policy.namespace.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workloads_key_leads_back_to_its_policy() {
        let policy = PolicyRef::new("web-fleet").within("shop");
        let unit = key(&policy, &UnitId::new(None, "StatefulSet", "db.primary"));
        assert_eq!(unit.name, "web-fleet/StatefulSet/db.primary");
        assert_eq!(unit.namespace.as_deref(), Some("shop"));
        assert_eq!(super::policy(&unit), policy);
        assert_eq!(super::policy(&policy), policy, "a policy's own key is its own");
        assert_ne!(unit, key(&policy, &UnitId::new(None, "Deployment", "db.primary")));
        assert!(!is_cluster(&super::policy(&unit)));
    }

    #[test]
    fn a_cluster_policys_workload_keys_carry_the_namespace_and_lead_back() {
        let policy = PolicyRef::new("web-everywhere");
        let shop = key(&policy, &UnitId::new(Some("shop"), "Deployment", "api"));
        let bank = key(&policy, &UnitId::new(Some("bank"), "Deployment", "api"));
        assert_eq!(shop.name, "web-everywhere/shop/Deployment/api");
        assert_eq!(shop.namespace, None);
        assert_ne!(shop, bank, "the same name in two namespaces is two workloads");
        assert_eq!(super::policy(&shop), policy);
        assert!(is_cluster(&super::policy(&shop)));
        // A namespaced policy of the same name in `shop` has keys of its own.
        let namespaced = PolicyRef::new("web-everywhere").within("shop");
        assert_ne!(key(&namespaced, &UnitId::new(None, "Deployment", "api")), shop);
    }
}
