//! Report: the desired status and Events (pure, in [`status`]), worded in [`text`] with the
//! constants of [`reasons`]; and the writes that apply them: status by server-side apply, only
//! when something changed, and Events.

pub mod convert;
pub mod fleet;
pub mod reasons;
pub mod status;
pub mod text;

pub use status::{EventIntent, LadderShape, Observation, Readiness, desired_status};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{
    Api,
    api::{Patch, PatchParams},
    runtime::events::{Event, EventType, Recorder},
};
use serde_json::json;

use crate::{
    Error, Result,
    act::MANAGER,
    api::{AppHealthPolicyStatus, ShardPart},
};

/// Status of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CondStatus {
    True,
    False,
    Unknown,
}

impl CondStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for CondStatus {
    fn from(b: bool) -> Self {
        if b { Self::True } else { Self::False }
    }
}

/// Sets a condition, keeping its `lastTransitionTime` unless its status really flips.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: impl Into<CondStatus>,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: jiff::Timestamp,
) {
    let status = status.into().as_str();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Time(now);
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: generation,
            last_transition_time: Time(now),
        }),
    }
}

/// A condition by type.
pub fn condition<'a>(status: &'a AppHealthPolicyStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// A kind whose status is an [`AppHealthPolicyStatus`]: an AppHealthPolicy or a
/// ClusterAppHealthPolicy.
pub trait PolicyKind:
    kube::Resource<DynamicType = ()>
    + kube::core::object::HasStatus<Status = AppHealthPolicyStatus>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> PolicyKind for K where
    K: kube::Resource<DynamicType = ()>
        + kube::core::object::HasStatus<Status = AppHealthPolicyStatus>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
{
}

/// Writes the whole status with server-side apply, as the operator's field manager; returns the
/// status as the API server stored it.
pub async fn apply_status<K: PolicyKind>(
    api: &Api<K>,
    name: &str,
    status: &AppHealthPolicyStatus,
) -> Result<AppHealthPolicyStatus> {
    let status = serde_json::to_value(status).map_err(|source| Error::Serialize {
        what: "status",
        source,
    })?;
    apply_as(api, name, MANAGER, status).await
}

/// Writes one shard's part of a policy over many (`status.shards[shard]`) with server-side apply,
/// as that shard's own field manager (`apphealth-operator-shard-<n>`): whichever replica holds the
/// shard owns its part and nothing else, so parts written by several replicas never clash, and
/// the replica that takes a shard over takes its part with it. With no part, the shard's manager
/// applies none, and the API server removes the part it owned (a shard that no longer exists, or
/// parts left once the work is no longer shared). Returns the status as stored.
pub async fn apply_shard_part<K: PolicyKind>(
    api: &Api<K>,
    name: &str,
    shard: u32,
    part: Option<&ShardPart>,
) -> Result<AppHealthPolicyStatus> {
    let parts = match part {
        Some(part) => vec![serde_json::to_value(part).map_err(|source| Error::Serialize {
            what: "status",
            source,
        })?],
        None => Vec::new(),
    };
    apply_as(api, name, &shard_manager(shard), json!({"shards": parts})).await
}

/// Applies `status` to the status subresource as `manager` (forcing ownership: each manager is
/// the only writer of its fields); returns the status as stored.
async fn apply_as<K: PolicyKind>(
    api: &Api<K>,
    name: &str,
    manager: &str,
    status: serde_json::Value,
) -> Result<AppHealthPolicyStatus> {
    let patch = json!({
        "apiVersion": "apphealth.io/v1alpha1",
        "kind": K::kind(&()),
        "status": status,
    });
    let written = api
        .patch_status(name, &PatchParams::apply(manager).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::Report)?;
    Ok(written.status().cloned().unwrap_or_default())
}

/// The field manager of a shard's part of a policy's status.
pub fn shard_manager(shard: u32) -> String {
    format!("{MANAGER}-shard-{shard}")
}

/// The field manager of Ready conditions written for policies the operator cannot read: kept apart
/// from [`MANAGER`], whose server-side apply would otherwise drop the rest of the recorded status.
pub const GUARD_MANAGER: &str = "apphealth-operator-guard";

/// Applies just these conditions to a policy's status, as `manager`. A policy whose stored spec
/// does not match the CRD's schema (stored before the schema, by an older CRD, or restored from a
/// backup) cannot be applied to: the API server's field manager cannot type the object and answers
/// 500. Then the conditions are merged into the stored list by a JSON merge patch, which the API
/// server accepts (resetting the object's managedFields), under the resourceVersion read.
pub async fn apply_conditions<K>(
    api: &Api<K>,
    name: &str,
    manager: &str,
    conditions: &[Condition],
) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({
        "apiVersion": "apphealth.io/v1alpha1",
        "kind": K::kind(&()),
        "status": {"conditions": conditions},
    });
    match api
        .patch_status(name, &PatchParams::apply(manager).force(), &Patch::Apply(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if untyped(&e) => merge_conditions(api, name, manager, conditions).await,
        Err(e) => Err(Error::Report(e)),
    }
}

/// Whether server-side apply failed because the stored object does not match its schema.
fn untyped(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 500
        && s.message.contains("failed to create manager for existing fields"))
}

/// [`apply_conditions`] for an object server-side apply cannot type: read the stored conditions,
/// replace those of the same types, and write the list back by a merge patch.
async fn merge_conditions<K>(api: &Api<K>, name: &str, manager: &str, conditions: &[Condition]) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let resource = kube::api::ApiResource::erase::<K>(&());
    let raw: Api<kube::api::DynamicObject> = match api.namespace() {
        Some(ns) => Api::namespaced_with(api.clone().into_client(), ns, &resource),
        None => Api::all_with(api.clone().into_client(), &resource),
    };
    let stored = raw.get(name).await.map_err(Error::Report)?;
    let merged = merged_conditions(&stored.data, conditions);
    let patch = json!({
        "metadata": {"resourceVersion": stored.metadata.resource_version},
        "status": {"conditions": merged},
    });
    let params = PatchParams {
        field_manager: Some(manager.into()),
        ..PatchParams::default()
    };
    raw.patch_status(name, &params, &Patch::Merge(&patch))
        .await
        .map_err(Error::Report)?;
    Ok(())
}

/// The stored conditions (`object.status.conditions`, whatever else the object holds) with those
/// of the same types as `conditions` replaced by them, and the others added.
fn merged_conditions(object: &serde_json::Value, conditions: &[Condition]) -> Vec<serde_json::Value> {
    let mut merged: Vec<serde_json::Value> = object
        .pointer("/status/conditions")
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    for c in conditions {
        let value = serde_json::to_value(c).unwrap_or_default();
        match merged.iter_mut().find(|m| m["type"] == c.type_.as_str()) {
            Some(m) => *m = value,
            None => merged.push(value),
        }
    }
    merged
}

/// Publishes an Event about a policy. Failing to publish is logged, never fatal: Events are a
/// courtesy to people, status is the record.
pub async fn publish<K: kube::Resource<DynamicType = ()>>(
    recorder: &Recorder,
    policy: &K,
    intent: EventIntent,
) {
    publish_about(recorder, &policy.object_ref(&()), None, intent).await;
}

/// Publishes an Event regarding `regarding` (a workload), with `related` (the policy) beside it.
pub async fn publish_about(
    recorder: &Recorder,
    regarding: &k8s_openapi::api::core::v1::ObjectReference,
    related: Option<k8s_openapi::api::core::v1::ObjectReference>,
    intent: EventIntent,
) {
    let event = Event {
        type_: if intent.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: intent.reason.into(),
        note: Some(truncate(intent.note, 1000)),
        action: intent.action.into(),
        secondary: related,
    };
    if let Err(e) = recorder.publish(&event, regarding).await {
        tracing::warn!(error = %e, reason = intent.reason, "could not publish event");
    }
}

fn truncate(s: String, max: usize) -> String {
    if s.len() > max {
        crate::api::bounded(&s, max)
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            "Healthy",
            true,
            "ProbesSucceeding",
            "ok",
            Some(1),
            at("2026-01-01T00:00:00Z"),
        );
        set_condition(
            &mut conditions,
            "Healthy",
            true,
            "ProbesSucceeding",
            "still ok",
            Some(2),
            at("2026-01-01T00:05:00Z"),
        );
        assert_eq!(
            conditions[0].last_transition_time,
            Time(at("2026-01-01T00:00:00Z"))
        );
        assert_eq!(conditions[0].message, "still ok");
        set_condition(
            &mut conditions,
            "Healthy",
            false,
            "TriggerFired",
            "bad",
            Some(2),
            at("2026-01-01T00:06:00Z"),
        );
        assert_eq!(
            conditions[0].last_transition_time,
            Time(at("2026-01-01T00:06:00Z"))
        );
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn long_notes_are_cut_on_a_char_boundary() {
        let s = truncate("é".repeat(600), 1000);
        assert!(s.len() <= 1000 + '…'.len_utf8());
        assert!(s.ends_with('…'));
    }

    #[test]
    fn merged_conditions_replace_by_type_and_keep_the_rest() {
        let ready = |reason: &str| Condition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: reason.into(),
            message: "m".into(),
            observed_generation: Some(1),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
        };
        let cases = [
            (json!({"spec": 42}), vec!["Ready/UnreadablePolicy"]),
            (
                json!({"spec": 42, "status": {"conditions": [
                    {"type": "Healthy", "status": "True", "reason": "ProbesSucceeding"},
                    {"type": "Ready", "status": "True", "reason": "Probing"}]}}),
                vec!["Healthy/ProbesSucceeding", "Ready/UnreadablePolicy"],
            ),
            (
                json!({"status": {"conditions": "garbage"}}),
                vec!["Ready/UnreadablePolicy"],
            ),
        ];
        for (object, expected) in cases {
            let merged: Vec<String> = merged_conditions(&object, &[ready("UnreadablePolicy")])
                .iter()
                .map(|c| {
                    format!(
                        "{}/{}",
                        c["type"].as_str().unwrap(),
                        c["reason"].as_str().unwrap()
                    )
                })
                .collect();
            assert_eq!(merged, expected, "{object}");
        }
    }

    #[test]
    fn only_the_field_managers_typing_failure_is_untyped() {
        let status = |code: u16, message: &str| {
            kube::Error::Api(Box::new(kube::core::Status::failure(message, "").with_code(code)))
        };
        assert!(untyped(&status(
            500,
            "failed to create manager for existing fields: failed to convert new object (ns/p; apphealth.io/v1alpha1, Kind=AppHealthPolicy) to smd typed: .spec: expected map, got &{42}"
        )));
        assert!(!untyped(&status(500, "etcdserver: request timed out")));
        assert!(!untyped(&status(
            409,
            "failed to create manager for existing fields"
        )));
    }
}
