//! Report: the desired status and Events (pure, in [`status`]), worded in [`text`] with the
//! constants of [`reasons`]; and the writes that apply them: status by server-side apply, only
//! when something changed, and Events.

pub mod reasons;
pub mod status;
pub mod text;

pub use status::{Effect, EventIntent, Observation, Outcome, Readiness, desired_status};

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
    api::{AppHealthPolicy, AppHealthPolicyStatus},
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

/// Writes the whole status with server-side apply, as the operator's field manager; returns the
/// status as the API server stored it.
pub async fn apply_status(
    api: &Api<AppHealthPolicy>,
    name: &str,
    status: &AppHealthPolicyStatus,
) -> Result<AppHealthPolicyStatus> {
    let patch = json!({
        "apiVersion": "apphealth.io/v1alpha1",
        "kind": "AppHealthPolicy",
        "status": serde_json::to_value(status).map_err(|source| Error::Serialize { what: "status", source })?,
    });
    let written = api
        .patch_status(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::Report)?;
    Ok(written.status.unwrap_or_default())
}

/// The field manager of Ready conditions written for policies the operator cannot read: kept apart
/// from [`MANAGER`], whose server-side apply would otherwise drop the rest of the recorded status.
pub const GUARD_MANAGER: &str = "apphealth-operator-guard";

/// Applies just these conditions to a policy's status, as `manager`.
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
        "kind": "AppHealthPolicy",
        "status": {"conditions": conditions},
    });
    api.patch_status(name, &PatchParams::apply(manager).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::Report)?;
    Ok(())
}

/// Publishes an Event about a policy. Failing to publish is logged, never fatal: Events are a
/// courtesy to people, status is the record.
pub async fn publish<K: kube::Resource<DynamicType = ()>>(
    recorder: &Recorder,
    policy: &K,
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
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &policy.object_ref(&())).await {
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
}
