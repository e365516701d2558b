//! Whether a workload is mid-rollout, read from its status the way `kubectl rollout status` does.
//! A rollout that exceeded its progress deadline is stuck, not in progress. Pods that stop being
//! available after their rollout completed (a crash loop) are not a rollout either: the Deployment
//! controller keeps its Progressing condition at `NewReplicaSetAvailable` then, and a StatefulSet's
//! current revision is its update revision. Holding restarts for them would hold them exactly when
//! they are needed (seen on a real control plane; `kubectl rollout status` would still wait).

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};

/// Why the Deployment is mid-rollout, or None when it is settled (or stuck).
pub fn deployment(d: &Deployment) -> Option<String> {
    let status = d.status.as_ref()?;
    let generation = d.metadata.generation.unwrap_or(0);
    let observed = status.observed_generation?;
    if observed < generation {
        return Some("its controller has not yet seen the latest spec".into());
    }
    let progressing = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
        .and_then(|c| c.reason.as_deref());
    if progressing == Some("ProgressDeadlineExceeded") {
        return None;
    }
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < wanted {
        Some(format!("{updated} of {wanted} replicas updated"))
    } else if replicas > updated {
        Some(format!("{} old replicas pending termination", replicas - updated))
    } else if available < updated && progressing != Some("NewReplicaSetAvailable") {
        Some(format!("{available} of {updated} updated replicas available"))
    } else {
        None
    }
}

/// Why the StatefulSet is mid-rollout, or None when it is settled.
pub fn statefulset(s: &StatefulSet) -> Option<String> {
    let status = s.status.as_ref()?;
    let generation = s.metadata.generation.unwrap_or(0);
    if status.observed_generation? < generation {
        return Some("its controller has not yet seen the latest spec".into());
    }
    let wanted = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let revisions = status
        .update_revision
        .as_ref()
        .zip(status.current_revision.as_ref());
    if revisions.is_some_and(|(update, current)| update != current) && updated < wanted {
        Some(format!("{updated} of {wanted} pods updated"))
    } else if revisions.is_some_and(|(update, current)| update == current) {
        // Rolled out: pods that are not ready now are failing, not starting.
        None
    } else if ready < wanted {
        Some(format!("{ready} of {wanted} pods ready"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": 3, "selector": {}, "template": {}},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn deployment_rollout_states() {
        let settled = serde_json::json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3});
        let cases = [
            (2, settled.clone(), None),
            (
                3,
                settled,
                Some("its controller has not yet seen the latest spec"),
            ),
            (
                2,
                serde_json::json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 3}),
                Some("1 of 3 replicas updated"),
            ),
            (
                2,
                serde_json::json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}),
                Some("1 old replicas pending termination"),
            ),
            (
                2,
                serde_json::json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}),
                Some("2 of 3 updated replicas available"),
            ),
            (
                2,
                serde_json::json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2,
                 "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
                None,
            ),
            // Rolled out, then a pod stopped being available (a crash loop): not a rollout.
            (
                2,
                serde_json::json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2,
                 "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}),
                None,
            ),
            // New pods of a rollout still starting: the controller says it is updating.
            (
                2,
                serde_json::json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2,
                 "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]}),
                Some("2 of 3 updated replicas available"),
            ),
            // No status at all: nothing is known to be rolling.
            (2, serde_json::Value::Null, None),
        ];
        for (generation, status, expected) in cases {
            assert_eq!(
                deployment(&deploy(generation, status.clone())).as_deref(),
                expected,
                "{status}"
            );
        }
    }

    #[test]
    fn statefulset_rollout_states() {
        let set = |status: serde_json::Value| -> StatefulSet {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "db", "generation": 2},
                "spec": {"replicas": 3, "selector": {}, "serviceName": "db", "template": {}},
                "status": status
            }))
            .unwrap()
        };
        let cases = [
            (
                serde_json::json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 3,
                                   "currentRevision": "db-1", "updateRevision": "db-1"}),
                None,
            ),
            (
                serde_json::json!({"observedGeneration": 1, "replicas": 3, "readyReplicas": 3}),
                Some("its controller has not yet seen the latest spec"),
            ),
            (
                serde_json::json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 1,
                                   "currentRevision": "db-1", "updateRevision": "db-2"}),
                Some("1 of 3 pods updated"),
            ),
            // Rolled out, then a pod crashed: not a rollout.
            (
                serde_json::json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 2, "updatedReplicas": 3,
                                   "currentRevision": "db-2", "updateRevision": "db-2"}),
                None,
            ),
            // Revisions unknown: readiness is all there is to go by.
            (
                serde_json::json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 2}),
                Some("2 of 3 pods ready"),
            ),
        ];
        for (status, expected) in cases {
            assert_eq!(statefulset(&set(status.clone())).as_deref(), expected, "{status}");
        }
    }
}
