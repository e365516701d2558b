//! Observe: probes the target's endpoints on their own schedule and turns responses into samples.

pub mod endpoints;
pub mod error;
pub mod http;
pub mod metrics;
pub mod pod;
pub mod prober;
pub mod reach;
pub mod references;
pub mod request;
pub mod rollout;
pub mod signals;
pub mod tls;
