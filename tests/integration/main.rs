//! The one integration-test binary: every scenario lives in a module here so the suite links once.

mod api_faults;
mod argocd;
mod binary;
mod chart;
mod check;
mod cluster_policy;
mod controller;
mod crash;
mod crash_points;
mod crd;
#[path = "../../examples/flaky-app/app.rs"]
#[allow(dead_code)]
mod flaky;
mod guards;
mod harness;
mod hostile;
mod kubectl;
mod kubectl_fidelity;
mod kubectl_pods;
mod ladder;
mod leader;
mod prober;
mod prober_tls;
mod reach;
mod relist;
mod rollback;
mod scaling;
mod selector;
mod shards;
mod signals;
mod status_writes;
mod support;
mod target_faults;
