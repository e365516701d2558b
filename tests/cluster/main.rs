//! The end-to-end scenarios on the local control plane (`make test-cluster`): the chart installed by
//! helm, the operator binary running with the chart's ServiceAccount identity, and whatever
//! Kubernetes decides (eviction against a PodDisruptionBudget, rollouts and their ReplicaSets, the
//! scale subresource, in-place resize, RBAC, the CRD's schema and CEL rules, leases, `410 Gone`)
//! decided by Kubernetes' own components. Every test is `#[ignore]`d for a plain `cargo test`: it
//! needs the cluster that `make test-cluster` starts (and stops).

mod cluster_policy;
mod env;
mod etcd;
#[path = "../../examples/flaky-app/app.rs"]
#[allow(dead_code)]
mod flaky;
mod guards;
mod hostile;
/// The hostile-input matrix of the test-server scenarios, shared.
#[path = "../integration/hostile/cases.rs"]
mod hostile_cases;
/// What the matrix borrows from the test-server harness.
mod harness {
    pub use crate::scenario::merge;
}
mod leader;
#[path = "../../examples/flaky-app/pods.rs"]
#[allow(dead_code)]
mod pods;
mod rbac;
mod referee;
mod relist;
mod remediation;
mod scenario;
mod selector;
mod shards;
mod signals;
#[path = "../integration/support.rs"]
#[allow(dead_code)]
mod support;
