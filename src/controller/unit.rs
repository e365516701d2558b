//! The keys of a targetSelector policy's workloads. Each selected workload is judged and
//! remediated on its own, as if it had a policy of its own: its probe task, its ladder claim and
//! what this process wrote for it are kept under a key of its own, `<policy>/<Kind>/<name>` in the
//! policy's namespace (no object can have that name: `/` is not allowed in one), from which the
//! policy is found again.

use super::PolicyRef;
use crate::api::TargetKind;

/// The key of workload `kind`/`name` of `policy`.
pub(super) fn key(policy: &PolicyRef, kind: TargetKind, name: &str) -> PolicyRef {
    let mut key = PolicyRef::new(&format!("{}/{}/{name}", policy.name, kind.as_str()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workloads_key_leads_back_to_its_policy() {
        let policy = PolicyRef::new("web-fleet").within("shop");
        let unit = key(&policy, TargetKind::StatefulSet, "db.primary");
        assert_eq!(unit.name, "web-fleet/StatefulSet/db.primary");
        assert_eq!(unit.namespace.as_deref(), Some("shop"));
        assert_eq!(super::policy(&unit), policy);
        assert_eq!(super::policy(&policy), policy, "a policy's own key is its own");
        assert_ne!(unit, key(&policy, TargetKind::Deployment, "db.primary"));
    }
}
