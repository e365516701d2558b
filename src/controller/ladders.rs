//! Ladders acting across the operator, for the TargetBusy and GlobalLimit guards. A ladder acts
//! from its first remediation that changes the target until it closes or runs out of steps. What
//! other policies' statuses say (so a restarted operator knows at once) is joined with the claims
//! this process made since (so two policies deciding at the same moment cannot both act): deciding
//! and claiming happen under one lock.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use kube::runtime::reflector::{ObjectRef, Store};

use super::PolicyRef;
use crate::{
    act::Workload,
    api::{AppHealthPolicyStatus, RemediationResult, watched::Watched},
    plan::{Budget, Plan},
};

/// Whether a policy's recorded ladder is acting on its target.
pub(super) fn acting(status: &AppHealthPolicyStatus) -> bool {
    let Some(ladder) = &status.ladder else {
        return false;
    };
    !ladder.exhausted
        && status.history.iter().any(|h| {
            h.at.0 >= ladder.started_at.0
                && !h.dry_run
                && h.action.changes_target()
                && !matches!(h.result, RemediationResult::Skipped | RemediationResult::Held)
        })
}

pub(super) struct Ladders {
    max: Option<u32>,
    claims: Mutex<HashMap<PolicyRef, Workload>>,
}

impl Ladders {
    pub(super) fn new(max: Option<u32>) -> Self {
        Self {
            max,
            claims: Mutex::default(),
        }
    }

    /// Runs `decide` with the budget as it stands and, if the plan acts on the target, claims the
    /// target for `key`, atomically. The budget only matters to a plan that would change the
    /// target, so the other ladders are looked up only then (not on every healthy reconcile).
    pub(super) fn decide(
        &self,
        key: &PolicyRef,
        workload: &Workload,
        own: &AppHealthPolicyStatus,
        policies: &Store<Watched>,
        decide: impl Fn(Budget) -> Plan,
    ) -> Plan {
        let changes = |plan: &Plan| matches!(plan, Plan::Act(r) if !r.dry_run && r.action().changes_target());
        let unlimited = decide(Budget::default());
        if !changes(&unlimited) {
            return unlimited;
        }
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        let mut others: HashMap<PolicyRef, Workload> = HashMap::new();
        for w in policies.state() {
            let other = ObjectRef::from_obj(w.as_ref());
            if other == *key {
                continue;
            }
            let Ok(p) = &w.decoded else { continue };
            if p.status.as_ref().is_some_and(acting) {
                others.insert(
                    other,
                    Workload {
                        kind: p.spec.target_ref.kind,
                        namespace: p.metadata.namespace.clone().unwrap_or_default(),
                        name: p.spec.target_ref.name.clone(),
                    },
                );
            }
        }
        // Claims of policies that are gone no longer count.
        claims.retain(|k, _| policies.get(k).is_some() || k == key);
        for (k, w) in claims.iter() {
            if k != key {
                others.insert(k.clone(), w.clone());
            }
        }
        let budget = Budget {
            busy_with: others
                .iter()
                .find(|(_, w)| *w == workload)
                .map(|(k, _)| k.name.clone()),
            active_elsewhere: u32::try_from(others.len()).unwrap_or(u32::MAX),
            // A ladder already acting keeps its place.
            max: if acting(own) { None } else { self.max },
        };
        let plan = decide(budget);
        if changes(&plan) {
            claims.insert(key.clone(), workload.clone());
        }
        plan
    }

    /// Keeps the claim in step with the status written: released once the ladder stops acting.
    pub(super) fn settle(&self, key: &PolicyRef, status: &AppHealthPolicyStatus) {
        if !acting(status) {
            self.claims
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(key);
        }
    }
}
