//! The deserialize guard: what the watch delivers for each AppHealthPolicy. A policy this version
//! of the operator cannot read (say, a value a newer CRD allows) becomes an error that names the
//! field, reported on that policy alone, instead of a list the watch cannot decode, which would
//! stall every policy.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::Resource;
use serde::{Deserialize, Deserializer, de::DeserializeOwned};

use super::{AppHealthPolicy, ClusterAppHealthPolicy};

/// A watched policy: decoded, or its metadata and why it could not be read. An AppHealthPolicy,
/// or a [`ClusterAppHealthPolicy`] ([`WatchedCluster`]).
#[derive(Clone, Debug)]
pub struct Watched<K = AppHealthPolicy> {
    pub metadata: ObjectMeta,
    /// The Ready condition as found in status, read on its own so it is known even when the rest
    /// of the object cannot be read.
    pub ready: Option<Condition>,
    /// The policy, or "path: problem" (e.g. "spec.remediation.steps[0].action: unknown variant `Reboot`, …"),
    /// at most [`MAX_PROBLEM_BYTES`](super::validate::MAX_PROBLEM_BYTES) and a "…".
    pub decoded: Result<K, Undecodable>,
}

/// A watched ClusterAppHealthPolicy.
pub type WatchedCluster = Watched<ClusterAppHealthPolicy>;

/// Why a stored policy cannot be read by this operator version: "path: problem", bounded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct Undecodable {
    pub problem: String,
}

impl<K: DeserializeOwned> Watched<K> {
    /// Decodes a policy from JSON, keeping its metadata whatever else is wrong with it.
    pub fn from_value(value: serde_json::Value) -> Result<Self, serde_json::Error> {
        let metadata: ObjectMeta = match value.get("metadata") {
            Some(m) => serde_json::from_value(m.clone())?,
            None => ObjectMeta::default(),
        };
        let ready = value
            .pointer("/status/conditions")
            .and_then(|c| c.as_array())
            .and_then(|c| {
                c.iter()
                    .find(|c| c.get("type").and_then(|t| t.as_str()) == Some(super::conditions::READY))
            })
            .and_then(|c| serde_json::from_value(c.clone()).ok());
        let decoded = serde_path_to_error::deserialize::<_, K>(&value).map_err(|e| {
            let path = e.path().to_string();
            let problem = if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            };
            // The error may quote the value (a megabyte string of the wrong type): kept bounded,
            // in the cache and in the condition that reports it.
            Undecodable {
                problem: super::bounded(&problem, super::validate::MAX_PROBLEM_BYTES),
            }
        });
        Ok(Self {
            metadata,
            ready,
            decoded,
        })
    }
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Watched<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Self::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl<K: Resource<DynamicType = ()>> Resource for Watched<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(action: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "apphealth.io/v1alpha1", "kind": "AppHealthPolicy",
            "metadata": {"name": "web", "namespace": "shop", "generation": 3},
            "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "probe": {"http": {"port": 8080}},
                     "remediation": {"steps": [{"action": action}]}}
        })
    }

    #[test]
    fn a_readable_policy_decodes() {
        let w: Watched = serde_json::from_value(policy("RolloutRestart")).unwrap();
        assert_eq!(w.decoded.unwrap().spec.remediation.steps.len(), 1);
        assert_eq!(w.metadata.generation, Some(3));
    }

    #[test]
    fn an_unreadable_policy_keeps_its_metadata_and_names_the_field() {
        let w: Watched = serde_json::from_value(policy("Reboot")).unwrap();
        assert_eq!(w.metadata.name.as_deref(), Some("web"));
        let err = w.decoded.unwrap_err().problem;
        assert!(
            err.starts_with("spec.remediation.steps[0].action: unknown variant `Reboot`"),
            "{err}"
        );
    }

    #[test]
    fn a_list_with_one_bad_policy_still_decodes() {
        let list = serde_json::json!([policy("RolloutRestart"), policy("Reboot")]);
        let items: Vec<Watched> = serde_json::from_value(list).unwrap();
        assert!(items[0].decoded.is_ok() && items[1].decoded.is_err());
    }
}
