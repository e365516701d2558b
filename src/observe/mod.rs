//! Observe: probes the target's endpoints on their own schedule and turns responses into samples.

pub mod endpoints;
pub mod metrics;
pub mod prober;
pub mod references;
pub mod request;
pub mod schedule;
pub mod signals;
pub mod tls;

use std::time::Duration;

use jiff::Timestamp;

/// One probe result for one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The pod (or Service) probed.
    pub endpoint: String,
    /// The HTTP path probed ("" for TCP).
    pub path: String,
    pub at: Timestamp,
    /// The response met the policy's success conditions.
    pub ok: bool,
    /// HTTP status code, when a response arrived.
    pub code: Option<u16>,
    pub latency: Duration,
    /// For people: "HTTP 503", "timed out after 2s", "connection refused".
    pub detail: String,
    /// No answer within the timeout.
    pub timed_out: bool,
    /// When the certificate served over HTTPS expires.
    pub certificate_not_after: Option<Timestamp>,
}
