//! Which policy remediates a workload that several policies cover. The others observe it and say
//! who owns it. The order, strongest first:
//!
//! 1. a namespaced policy naming the workload by `targetRef`;
//! 2. a namespaced policy selecting it by `targetSelector`;
//! 3. a cluster policy selecting it;
//!
//! then, within the same kind of coverage, the higher `spec.priority`, then the policy's name
//! (namespace, then name, in alphabetical order), so every replica reaches the same answer.

use std::cmp::{Ordering, Reverse};

/// How a policy covers a workload, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Coverage {
    /// A namespaced policy's `targetRef` names it.
    Named,
    /// A namespaced policy's `targetSelector` selects it.
    Selected,
    /// A cluster policy selects it.
    ClusterSelected,
}

impl Coverage {
    /// For people: how the policy covers the workload.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Named => "names it by targetRef",
            Self::Selected => "selects it by targetSelector",
            Self::ClusterSelected => "selects it cluster-wide",
        }
    }
}

/// A policy's claim on a workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Claim {
    /// The policy's namespace (None for a cluster policy).
    pub namespace: Option<String>,
    pub name: String,
    pub coverage: Coverage,
    /// `spec.priority`: the higher wins among claims of the same coverage.
    pub priority: i32,
}

impl Claim {
    /// The order of precedence: the smallest claim wins.
    fn rank(&self) -> (Coverage, Reverse<i32>, Option<&str>, &str) {
        (
            self.coverage,
            Reverse(self.priority),
            self.namespace.as_deref(),
            &self.name,
        )
    }

    /// `namespace/name`, or `name` for a cluster policy.
    pub fn policy(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl PartialOrd for Claim {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Claim {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// The claim whose policy remediates the workload (None when no policy covers it).
pub fn owner(claims: &[Claim]) -> Option<&Claim> {
    claims.iter().min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(policy: &str, coverage: Coverage, priority: i32) -> Claim {
        let (namespace, name) = match policy.split_once('/') {
            Some((ns, name)) => (Some(ns.to_owned()), name.to_owned()),
            None => (None, policy.to_owned()),
        };
        Claim {
            namespace,
            name: name.to_owned(),
            coverage,
            priority,
        }
    }

    #[test]
    fn the_order_of_precedence() {
        use Coverage::*;
        let cases: [(&str, Vec<Claim>, Option<&str>); 8] = [
            ("nobody covers it", vec![], None),
            (
                "one claim",
                vec![claim("shop/web", Selected, 0)],
                Some("shop/web"),
            ),
            (
                "targetRef wins over a selector, whatever its priority",
                vec![claim("shop/all", Selected, 100), claim("shop/web", Named, 0)],
                Some("shop/web"),
            ),
            (
                "a namespaced selector wins over a cluster one",
                vec![
                    claim("web-services", ClusterSelected, 100),
                    claim("shop/all", Selected, -5),
                ],
                Some("shop/all"),
            ),
            (
                "then the higher priority",
                vec![claim("shop/a", Selected, 1), claim("shop/b", Selected, 10)],
                Some("shop/b"),
            ),
            (
                "a negative priority loses to the default",
                vec![claim("web", ClusterSelected, -1), claim("zz", ClusterSelected, 0)],
                Some("zz"),
            ),
            (
                "then the name, alphabetically",
                vec![claim("shop/b", Selected, 0), claim("shop/a", Selected, 0)],
                Some("shop/a"),
            ),
            (
                "two targetRefs: the name decides",
                vec![claim("shop/web-2", Named, 0), claim("shop/web-1", Named, 0)],
                Some("shop/web-1"),
            ),
        ];
        for (what, claims, want) in cases {
            assert_eq!(owner(&claims).map(Claim::policy).as_deref(), want, "{what}");
            // The answer does not depend on the order the claims were found in.
            let mut reversed = claims.clone();
            reversed.reverse();
            assert_eq!(owner(&reversed), owner(&claims), "{what}: reversed");
        }
    }
}
