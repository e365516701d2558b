//! Ladders acting across the operator, for the TargetBusy and GlobalLimit guards. A ladder acts
//! from its first remediation that changes the target until it closes or runs out of steps. What
//! other policies' statuses say (so a restarted operator knows at once) is joined with the claims
//! this process made since (so two policies deciding at the same moment cannot both act): deciding
//! and claiming happen under one lock.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use super::PolicyRef;
use crate::{
    act::Workload,
    api::{AppHealthPolicyStatus, RemediationResult},
    plan::{Budget, Plan},
    step::Step,
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
                && crate::act::descriptor(h.action).changes_target
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

    /// Runs `plan_with` with the budget as it stands and, if the plan acts on the target, claims the
    /// target for `key`, atomically. The budget only matters to a plan that would change the
    /// target, so the other ladders are looked up only then (not on every healthy reconcile).
    pub(super) fn within_budget(
        &self,
        key: &PolicyRef,
        workload: &Workload,
        own: &AppHealthPolicyStatus,
        policy_max: Option<u32>,
        index: &super::TargetIndex,
        plan_with: impl Fn(Budget) -> Step,
    ) -> Step {
        let changes =
            |step: &Step| matches!(&step.plan, Plan::Act(r) if !r.dry_run && r.descriptor().changes_target);
        let unlimited = plan_with(Budget::default());
        if !changes(&unlimited) {
            return unlimited;
        }
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        // Claims of policies that are gone no longer count.
        claims.retain(|k, _| index.policy_exists(&super::unit::policy(k)) || k == key);
        let recorded = index.recorded_ladders();
        let others = elsewhere(key, recorded, &claims);
        let budget = budget(key, workload, &others, acting(own), self.max, policy_max);
        let step = plan_with(budget);
        if changes(&step) {
            claims.insert(key.clone(), workload.clone());
        }
        step
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

/// The ladders acting for policies other than `key`: those whose recorded status says so, and
/// those this process claimed since (a status not yet seen).
fn elsewhere(
    key: &PolicyRef,
    recorded: impl IntoIterator<Item = (PolicyRef, Workload, bool)>,
    claims: &HashMap<PolicyRef, Workload>,
) -> HashMap<PolicyRef, Workload> {
    let mut others: HashMap<PolicyRef, Workload> = recorded
        .into_iter()
        .filter(|(other, _, acting)| *acting && other != key)
        .map(|(other, workload, _)| (other, workload))
        .collect();
    for (k, w) in claims {
        if k != key {
            others.insert(k.clone(), w.clone());
        }
    }
    others
}

/// The budget of a ladder over `workload`, given the other ladders acting: whether one of them
/// acts on the same workload (TargetBusy), and how many act at all against the operator-wide cap
/// (GlobalLimit). A ladder already acting keeps its place under the cap.
fn budget(
    key: &PolicyRef,
    workload: &Workload,
    others: &HashMap<PolicyRef, Workload>,
    own_acting: bool,
    max: Option<u32>,
    policy_max: Option<u32>,
) -> Budget {
    // The other workloads of the same targetSelector policy (a single-target policy has none).
    let policy = super::unit::policy(key);
    let siblings = others
        .keys()
        .filter(|k| *k != &policy && super::unit::policy(k) == policy)
        .count();
    let mut busy: Vec<&str> = others
        .iter()
        .filter(|(_, w)| *w == workload)
        .map(|(k, _)| k.name.as_str())
        .collect();
    // The same name whatever the map's order.
    busy.sort_unstable();
    Budget {
        busy_with: busy.first().map(|name| (*name).to_owned()),
        active_elsewhere: u32::try_from(others.len()).unwrap_or(u32::MAX),
        max: if own_acting { None } else { max },
        siblings_acting: u32::try_from(siblings).unwrap_or(u32::MAX),
        policy_max: if own_acting { None } else { policy_max },
        owned_by: None,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::{
        api::{Action, Ladder, RemediationRecord, TargetKind},
        fixtures::at,
    };

    fn key(name: &str) -> PolicyRef {
        kube::runtime::reflector::ObjectRef::new(name).within("shop")
    }

    fn deployment(name: &str) -> Workload {
        Workload {
            kind: TargetKind::Deployment,
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    fn record(action: Action, at_secs: i64, result: RemediationResult, dry_run: bool) -> RemediationRecord {
        RemediationRecord {
            reason: None,
            action,
            step: 1,
            at: Time(at("2026-01-01T00:00:00Z") + jiff::SignedDuration::from_secs(at_secs)),
            result,
            dry_run,
            pods: Vec::new(),
            message: None,
            retry_at: None,
        }
    }

    fn status(exhausted: bool, history: Vec<RemediationRecord>) -> AppHealthPolicyStatus {
        AppHealthPolicyStatus {
            ladder: Some(Ladder {
                step: 1,
                started_at: Time(at("2026-01-01T00:00:10Z")),
                exhausted,
            }),
            history,
            ..AppHealthPolicyStatus::default()
        }
    }

    #[test]
    fn a_ladder_acts_from_its_first_change_to_the_target_until_it_closes() {
        use RemediationResult::*;
        let cases: [(&str, AppHealthPolicyStatus, bool); 8] = [
            ("no ladder", AppHealthPolicyStatus::default(), false),
            ("a ladder with no step yet", status(false, vec![]), false),
            (
                "a restart",
                status(false, vec![record(Action::RolloutRestart, 20, Succeeded, false)]),
                true,
            ),
            (
                "a restart still pending",
                status(false, vec![record(Action::RestartPods, 20, Pending, false)]),
                true,
            ),
            (
                "diagnostics change nothing",
                status(
                    false,
                    vec![record(Action::CollectDiagnostics, 20, Succeeded, false)],
                ),
                false,
            ),
            (
                "a dry run changes nothing",
                status(false, vec![record(Action::RolloutRestart, 20, Succeeded, true)]),
                false,
            ),
            (
                "held and skipped steps changed nothing",
                status(
                    false,
                    vec![
                        record(Action::RestartPods, 30, Held, false),
                        record(Action::ScaleOut, 20, Skipped, false),
                    ],
                ),
                false,
            ),
            (
                "an exhausted ladder no longer acts",
                status(true, vec![record(Action::RolloutRestart, 20, Succeeded, false)]),
                false,
            ),
        ];
        for (what, status, want) in cases {
            assert_eq!(acting(&status), want, "{what}");
        }
        let before = status(false, vec![record(Action::RolloutRestart, 5, Succeeded, false)]);
        assert!(!acting(&before), "a change made before this ladder started");
    }

    #[test]
    fn the_budget_counts_other_ladders_and_names_one_on_the_same_workload() {
        let web = deployment("web");
        let recorded = |items: &[(&str, &str, bool)]| -> Vec<(PolicyRef, Workload, bool)> {
            items
                .iter()
                .map(|(k, w, acting)| (key(k), deployment(w), *acting))
                .collect()
        };
        let no_claims = HashMap::new();
        struct Case {
            what: &'static str,
            recorded: Vec<(PolicyRef, Workload, bool)>,
            claims: HashMap<PolicyRef, Workload>,
            own_acting: bool,
            max: Option<u32>,
            want: Budget,
        }
        let cases = [
            Case {
                what: "nothing else acts",
                recorded: recorded(&[("a", "web", false), ("b", "api", false)]),
                claims: no_claims.clone(),
                own_acting: false,
                max: Some(2),
                want: Budget {
                    busy_with: None,
                    active_elsewhere: 0,
                    max: Some(2),
                    ..Budget::default()
                },
            },
            Case {
                what: "another policy's ladder acts on the same workload",
                recorded: recorded(&[("b", "web", true), ("c", "api", true)]),
                claims: no_claims.clone(),
                own_acting: false,
                max: None,
                want: Budget {
                    busy_with: Some("b".into()),
                    active_elsewhere: 2,
                    max: None,
                    ..Budget::default()
                },
            },
            Case {
                what: "its own record does not count against it",
                recorded: recorded(&[("own", "web", true)]),
                claims: no_claims.clone(),
                own_acting: true,
                max: Some(1),
                want: Budget {
                    busy_with: None,
                    active_elsewhere: 0,
                    max: None,
                    ..Budget::default()
                },
            },
            Case {
                what: "a claim made in this process counts before its status is seen",
                recorded: recorded(&[("b", "web", false)]),
                claims: HashMap::from([(key("b"), web.clone()), (key("own"), web.clone())]),
                own_acting: false,
                max: Some(1),
                want: Budget {
                    busy_with: Some("b".into()),
                    active_elsewhere: 1,
                    max: Some(1),
                    ..Budget::default()
                },
            },
            Case {
                what: "two on the same workload: the first by name",
                recorded: recorded(&[("z", "web", true), ("m", "web", true)]),
                claims: no_claims.clone(),
                own_acting: false,
                max: Some(5),
                want: Budget {
                    busy_with: Some("m".into()),
                    active_elsewhere: 2,
                    max: Some(5),
                    ..Budget::default()
                },
            },
        ];
        for case in cases {
            let others = elsewhere(&key("own"), case.recorded, &case.claims);
            assert_eq!(
                budget(&key("own"), &web, &others, case.own_acting, case.max, None),
                case.want,
                "{}",
                case.what
            );
        }
    }

    #[test]
    fn a_selector_policys_other_workloads_count_against_its_max_concurrent() {
        let policy = key("fleet");
        let unit = |name: &str| {
            crate::controller::unit::key(
                &policy,
                &crate::report::fleet::UnitId::new(None, TargetKind::Deployment.as_str(), name),
            )
        };
        let recorded = vec![
            (unit("api"), deployment("api"), true),
            (unit("cart"), deployment("cart"), true),
            (unit("idle"), deployment("idle"), false),
            (key("other"), deployment("db"), true),
        ];
        let own = unit("web");
        let others = elsewhere(&own, recorded, &HashMap::new());
        let got = budget(&own, &deployment("web"), &others, false, None, Some(2));
        assert_eq!(
            (got.siblings_acting, got.policy_max, got.active_elsewhere),
            (2, Some(2), 3)
        );
        let acting = budget(&own, &deployment("web"), &others, true, None, Some(2));
        assert_eq!(acting.policy_max, None, "a ladder already acting keeps its place");
        let single = budget(&key("other"), &deployment("db"), &others, false, None, None);
        assert_eq!(
            single.siblings_acting, 0,
            "a single-target policy has no siblings"
        );
    }
}
