//! Builders for tests: a valid policy with sensible defaults, adjusted with `with_*` calls.

use jiff::Timestamp;

use crate::{
    api::{AppHealthPolicy, AppHealthPolicySpec},
    observation::Sample,
    settings::Settings,
};

/// A policy for Deployment `web` in namespace `shop`, probing `/healthz` on port `http`, with one
/// RolloutRestart step.
pub fn policy() -> AppHealthPolicy {
    let spec: AppHealthPolicySpec = serde_json::from_value(serde_json::json!({
        "targetRef": {"kind": "Deployment", "name": "web"},
        "probe": {"http": {"port": "http", "path": "/healthz"}, "periodSeconds": 10},
        "triggers": [{"consecutiveFailures": {"threshold": 3}}],
        "recovery": {"consecutiveSuccesses": 2},
        "remediation": {"steps": [{"action": "RolloutRestart", "timeout": "2m"}], "cooldown": "5m"}
    }))
    .expect("fixture policy deserializes");
    let mut p = AppHealthPolicy::new("web", spec);
    p.metadata.namespace = Some("shop".into());
    p.metadata.generation = Some(1);
    p
}

pub trait PolicyExt {
    fn with_spec(self, patch: serde_json::Value) -> Self;
    fn settings(&self) -> Settings;
}

impl PolicyExt for AppHealthPolicy {
    /// Merges a JSON merge patch into the spec.
    fn with_spec(mut self, patch: serde_json::Value) -> Self {
        let mut spec = serde_json::to_value(&self.spec).expect("spec serializes");
        merge(&mut spec, patch);
        self.spec = serde_json::from_value(spec).expect("patched spec deserializes");
        self
    }

    fn settings(&self) -> Settings {
        crate::settings::validate(&self.spec).expect("fixture policy is valid")
    }
}

pub fn merge(target: &mut serde_json::Value, patch: serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}

pub fn at(s: &str) -> Timestamp {
    s.parse().expect("fixture timestamp parses")
}

/// A probe result for `endpoint` at `t`: ok with HTTP 200, or failed with `detail`.
pub fn sample(endpoint: &str, t: Timestamp, ok: bool) -> Sample {
    Sample {
        endpoint: endpoint.into(),
        path: "/healthz".into(),
        timed_out: false,
        certificate_not_after: None,
        at: t,
        ok,
        code: Some(if ok { 200 } else { 503 }),
        latency: std::time::Duration::from_millis(5),
        detail: if ok { "HTTP 200".into() } else { "HTTP 503".into() },
        reason: if ok { "" } else { "HTTPStatus" },
    }
}
