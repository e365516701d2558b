//! The status of a policy over many workloads (`targetSelector`): its own conditions, the counts,
//! and the records of the workloads that are not healthy (or have something pending), worst
//! first and bounded, each the same record a single-target policy keeps. Pure.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::{CondStatus, condition, reasons, set_condition};
use crate::{
    api::{AppHealthPolicyStatus, FleetCounts, Health, ShardPart, WorkloadStatus, conditions},
    fleet::summary::{self, Unit},
};

/// Most workload records a policy's status keeps (the CRD's bound on status.workloads).
pub const WORKLOADS_LISTED: usize = 50;

/// A workload of a policy over many: its namespace (a cluster policy's; None for a namespaced
/// policy's, whose workloads are in its own namespace), kind and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitId {
    pub namespace: Option<String>,
    pub kind: String,
    pub name: String,
}

impl UnitId {
    pub fn new(namespace: Option<&str>, kind: &str, name: &str) -> Self {
        Self {
            namespace: namespace.map(str::to_owned),
            kind: kind.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The workload's namespace: its own, or else the policy's.
    pub fn namespace_or<'a>(&'a self, policy: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(policy)
    }
}

impl std::fmt::Display for UnitId {
    /// `Kind/name`, with `namespace/` first when it has one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}/")?;
        }
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// One selected workload as the fleet reconcile knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitRecord {
    /// Its record, shaped as a single-target policy's status.
    pub status: AppHealthPolicyStatus,
    /// The policy that remediates it instead, when another one has precedence.
    pub owned_by: Option<String>,
}

/// Why a selector policy is not probing its workloads.
pub struct Stopped<'a> {
    pub reason: &'a str,
    pub message: &'a str,
}

/// The policy's status from its units, its previous status (whose
/// conditions keep their transition times), and what it selects.
pub fn compose(
    old: &AppHealthPolicyStatus,
    generation: Option<i64>,
    units: &BTreeMap<UnitId, UnitRecord>,
    selects: &str,
    stopped: Option<Stopped<'_>>,
    now: Timestamp,
) -> AppHealthPolicyStatus {
    let (counts, workloads) = listed(&units.iter().collect::<Vec<_>>(), WORKLOADS_LISTED);
    conclude(old, generation, counts, workloads, selects, stopped, now)
}

/// Most records one shard's part lists: [`WORKLOADS_LISTED`] divided among the shards, at least
/// one each, so the parts together stay about the size of one policy's list.
pub fn listed_per_shard(shards: u32) -> usize {
    WORKLOADS_LISTED.div_ceil(shards.max(1) as usize).max(1)
}

/// One shard's part: the counts and records of the units that hash to it (all of `units`).
pub fn shard_part(shard: u32, shards: u32, units: &[(&UnitId, &UnitRecord)]) -> ShardPart {
    let (fleet, workloads) = listed(units, listed_per_shard(shards));
    ShardPart {
        shard,
        fleet,
        workloads,
    }
}

/// The policy's status summed from its shards' parts (those of shards below `shards`; a part
/// left by an earlier, larger shard count is not counted): counts added up, the parts' records
/// merged worst first and bounded.
pub fn merged(
    old: &AppHealthPolicyStatus,
    generation: Option<i64>,
    shards: u32,
    selects: &str,
    stopped: Option<Stopped<'_>>,
    now: Timestamp,
) -> AppHealthPolicyStatus {
    let parts: Vec<&ShardPart> = old.shards.iter().filter(|p| p.shard < shards).collect();
    let records = records_of(parts.iter().flat_map(|p| &p.workloads), generation);
    let (listed_counts, workloads) = listed(&records.iter().collect::<Vec<_>>(), WORKLOADS_LISTED);
    let mut counts = FleetCounts {
        truncated: listed_counts.truncated,
        ..FleetCounts::default()
    };
    for part in parts {
        let f = &part.fleet;
        counts.selected += f.selected;
        counts.healthy += f.healthy;
        counts.unhealthy += f.unhealthy;
        counts.remediating += f.remediating;
        counts.blocked += f.blocked;
        counts.owned_elsewhere += f.owned_elsewhere;
        counts.truncated |= f.truncated;
    }
    conclude(old, generation, counts, workloads, selects, stopped, now)
}

/// The units of listed records (a status's workloads, or a shard part's), keyed as the fleet
/// reconcile keys them.
pub fn records_of<'a>(
    listed: impl IntoIterator<Item = &'a WorkloadStatus>,
    generation: Option<i64>,
) -> BTreeMap<UnitId, UnitRecord> {
    listed
        .into_iter()
        .map(|w| {
            (
                UnitId::new(w.namespace.as_deref(), &w.kind, &w.name),
                UnitRecord {
                    status: w.to_policy_status(generation),
                    owned_by: w.owned_by.clone(),
                },
            )
        })
        .collect()
}

/// The counts over `units` and the records of at most `limit` of them, worst first.
fn listed(units: &[(&UnitId, &UnitRecord)], limit: usize) -> (FleetCounts, Vec<WorkloadStatus>) {
    let summed: Vec<Unit> = units.iter().map(|(id, record)| unit(id, record)).collect();
    let by_name: std::collections::HashMap<String, (&UnitId, &UnitRecord)> =
        units.iter().map(|(id, r)| (id.to_string(), (*id, *r))).collect();
    let summary = summary::summarize(&summed, limit);
    let owned_elsewhere = units.iter().filter(|(_, r)| r.owned_by.is_some()).count();
    let counts = FleetCounts {
        selected: summary.selected,
        healthy: summary.healthy,
        unhealthy: summary.unhealthy,
        remediating: summary.remediating,
        blocked: summary.blocked,
        owned_elsewhere: u32::try_from(owned_elsewhere).unwrap_or(u32::MAX),
        truncated: summary.cut,
    };
    let workloads = summary
        .worst
        .iter()
        .filter_map(|u| {
            let (id, record) = by_name.get(&u.workload)?;
            let mut listed = WorkloadStatus::from_policy_status(&id.kind, &id.name, &record.status);
            listed.namespace = id.namespace.clone();
            listed.owned_by = record.owned_by.clone();
            Some(listed)
        })
        .collect();
    (counts, workloads)
}

/// The policy's own status from its counts and listed records: the conditions they mean.
fn conclude(
    old: &AppHealthPolicyStatus,
    generation: Option<i64>,
    counts: FleetCounts,
    workloads: Vec<WorkloadStatus>,
    selects: &str,
    stopped: Option<Stopped<'_>>,
    now: Timestamp,
) -> AppHealthPolicyStatus {
    let mut status = AppHealthPolicyStatus {
        observed_generation: generation,
        conditions: old.conditions.clone(),
        fleet: Some(counts),
        workloads,
        ..AppHealthPolicyStatus::default()
    };
    let cond = |status: &mut AppHealthPolicyStatus, t: &str, s: CondStatus, reason: &str, m: String| {
        set_condition(&mut status.conditions, t, s, reason, m, generation, now);
    };
    if let Some(stopped) = stopped {
        cond(
            &mut status,
            conditions::READY,
            CondStatus::False,
            stopped.reason,
            stopped.message.to_owned(),
        );
        cond(
            &mut status,
            conditions::HEALTHY,
            CondStatus::Unknown,
            stopped.reason,
            super::text::NOT_PROBING.into(),
        );
        return status;
    }
    let counts = status.fleet.clone().unwrap_or_default();
    cond(
        &mut status,
        conditions::READY,
        CondStatus::True,
        reasons::WORKLOADS_SELECTED,
        super::text::workloads_match(counts.selected, selects),
    );
    let (health, reason) = if counts.unhealthy > 0 {
        (CondStatus::False, reasons::TRIGGER_FIRED)
    } else if counts.selected > 0 && counts.healthy == counts.selected {
        (CondStatus::True, reasons::PROBES_SUCCEEDING)
    } else {
        (CondStatus::Unknown, reasons::AWAITING_VERDICT)
    };
    cond(
        &mut status,
        conditions::HEALTHY,
        health,
        reason,
        super::text::fleet_health(&counts),
    );
    let remediating = counts.remediating > 0;
    cond(
        &mut status,
        conditions::REMEDIATING,
        CondStatus::from(remediating),
        if remediating {
            reasons::LADDER_IN_PROGRESS
        } else {
            reasons::IDLE
        },
        super::text::fleet_remediating(counts.remediating),
    );
    let blocked = counts.blocked > 0;
    cond(
        &mut status,
        conditions::REMEDIATION_BLOCKED,
        CondStatus::from(blocked),
        if blocked {
            reasons::WORKLOADS_BLOCKED
        } else {
            reasons::NOT_BLOCKED
        },
        super::text::fleet_blocked(counts.blocked),
    );
    status
}

/// A workload's record summed up.
fn unit(id: &UnitId, record: &UnitRecord) -> Unit {
    let status = &record.status;
    let health = status.verdict.as_ref().map_or(Health::Unknown, |v| v.health);
    let step = status.ladder.as_ref().filter(|l| !l.exhausted).map(|l| l.step);
    let blocked = condition(status, conditions::REMEDIATION_BLOCKED).is_some_and(|c| c.status == "True");
    let pending = status.scale_restore.is_some()
        || status
            .history
            .first()
            .is_some_and(|h| h.result == crate::api::RemediationResult::Pending);
    Unit {
        workload: id.to_string(),
        // A workload another policy remediates is observed here: listed only while it is unhealthy.
        health,
        step: step.filter(|_| record.owned_by.is_none()),
        blocked: blocked && record.owned_by.is_none(),
        pending: pending && record.owned_by.is_none(),
        last: status.history.first().map(|h| (h.action, h.result)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Ladder, Verdict};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn record(health: Health, step: Option<u32>) -> UnitRecord {
        UnitRecord {
            status: AppHealthPolicyStatus {
                verdict: Some(Verdict {
                    health,
                    since: Time(at("2026-01-01T00:00:00Z")),
                    evidence: Vec::new(),
                }),
                ladder: step.map(|step| Ladder {
                    step,
                    started_at: Time(at("2026-01-01T00:00:00Z")),
                    exhausted: false,
                }),
                ..AppHealthPolicyStatus::default()
            },
            owned_by: None,
        }
    }

    fn units(list: &[(&str, UnitRecord)]) -> BTreeMap<UnitId, UnitRecord> {
        list.iter()
            .map(|(name, r)| (UnitId::new(None, "Deployment", name), r.clone()))
            .collect()
    }

    #[test]
    fn counts_and_the_troubled_worst_first() {
        let all = units(&[
            ("a", record(Health::Healthy, None)),
            ("b", record(Health::Unhealthy, None)),
            ("c", record(Health::Unhealthy, Some(2))),
            ("d", record(Health::Healthy, None)),
        ]);
        let status = compose(
            &AppHealthPolicyStatus::default(),
            Some(3),
            &all,
            "tier=web",
            None,
            at("2026-01-01T00:01:00Z"),
        );
        let fleet = status.fleet.clone().unwrap();
        assert_eq!(
            (fleet.selected, fleet.healthy, fleet.unhealthy, fleet.remediating),
            (4, 2, 2, 1)
        );
        let listed: Vec<&str> = status.workloads.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(
            listed,
            ["c", "b"],
            "healthy ones are not listed; the one mid-ladder first"
        );
        let ready = condition(&status, conditions::READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.message.as_str()),
            ("True", "4 workloads match tier=web")
        );
        assert_eq!(condition(&status, conditions::HEALTHY).unwrap().status, "False");
        assert_eq!(
            condition(&status, conditions::REMEDIATING).unwrap().status,
            "True"
        );
        assert_eq!(status.observed_generation, Some(3));
    }

    #[test]
    fn a_cluster_policys_workloads_are_listed_with_their_namespace() {
        let all: BTreeMap<UnitId, UnitRecord> = [
            (
                UnitId::new(Some("shop"), "Deployment", "api"),
                record(Health::Unhealthy, Some(1)),
            ),
            (
                UnitId::new(Some("bank"), "Deployment", "api"),
                record(Health::Unhealthy, None),
            ),
            (
                UnitId::new(Some("bank"), "Deployment", "ledger"),
                record(Health::Healthy, None),
            ),
        ]
        .into_iter()
        .collect();
        let status = compose(
            &AppHealthPolicyStatus::default(),
            None,
            &all,
            "tier=web in namespaces env=prod",
            None,
            at("2026-01-01T00:01:00Z"),
        );
        let listed: Vec<(Option<&str>, &str)> = status
            .workloads
            .iter()
            .map(|w| (w.namespace.as_deref(), w.name.as_str()))
            .collect();
        assert_eq!(
            listed,
            [(Some("shop"), "api"), (Some("bank"), "api")],
            "two workloads of one name in two namespaces are two records"
        );
        assert_eq!(status.fleet.unwrap().selected, 3);
    }

    #[test]
    fn nothing_selected_is_ready_and_says_so() {
        let status = compose(
            &AppHealthPolicyStatus::default(),
            None,
            &BTreeMap::new(),
            "tier=web",
            None,
            at("2026-01-01T00:01:00Z"),
        );
        let ready = condition(&status, conditions::READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.message.as_str()),
            ("True", "0 workloads match tier=web")
        );
        assert_eq!(condition(&status, conditions::HEALTHY).unwrap().status, "Unknown");
        assert!(status.workloads.is_empty());
    }

    #[test]
    fn the_list_is_bounded_and_says_it_was_cut() {
        let many: Vec<(String, UnitRecord)> = (0..WORKLOADS_LISTED + 5)
            .map(|i| (format!("w{i:03}"), record(Health::Unhealthy, None)))
            .collect();
        let all: BTreeMap<UnitId, UnitRecord> = many
            .into_iter()
            .map(|(n, r)| (UnitId::new(None, "Deployment", &n), r))
            .collect();
        let status = compose(
            &AppHealthPolicyStatus::default(),
            None,
            &all,
            "",
            None,
            at("2026-01-01T00:01:00Z"),
        );
        assert_eq!(status.workloads.len(), WORKLOADS_LISTED);
        assert!(status.fleet.unwrap().truncated);
    }

    #[test]
    fn a_workload_owned_elsewhere_is_counted_not_remediated_here() {
        let mut owned = record(Health::Unhealthy, Some(1));
        owned.owned_by = Some("shop/web-pinned".into());
        let all = units(&[("a", owned)]);
        let status = compose(
            &AppHealthPolicyStatus::default(),
            None,
            &all,
            "",
            None,
            at("2026-01-01T00:01:00Z"),
        );
        let fleet = status.fleet.unwrap();
        assert_eq!(
            (fleet.remediating, fleet.owned_elsewhere, fleet.unhealthy),
            (0, 1, 1)
        );
        assert_eq!(status.workloads[0].owned_by.as_deref(), Some("shop/web-pinned"));
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let all = units(&[("a", record(Health::Healthy, None))]);
        let first = compose(
            &AppHealthPolicyStatus::default(),
            None,
            &all,
            "",
            None,
            at("2026-01-01T00:01:00Z"),
        );
        let again = compose(&first, None, &all, "", None, at("2026-01-01T00:09:00Z"));
        assert_eq!(first, again, "a steady fleet writes nothing");
    }

    #[test]
    fn a_shards_part_lists_its_share_of_the_bound() {
        for (shards, each) in [(1, 50), (2, 25), (3, 17), (50, 1), (1024, 1)] {
            assert_eq!(listed_per_shard(shards), each, "{shards} shards");
        }
        let troubled: Vec<(String, UnitRecord)> = (0..20)
            .map(|i| (format!("w{i:02}"), record(Health::Unhealthy, None)))
            .collect();
        let all = units(
            &troubled
                .iter()
                .map(|(n, r)| (n.as_str(), r.clone()))
                .collect::<Vec<_>>(),
        );
        let part = shard_part(2, 3, &all.iter().collect::<Vec<_>>());
        assert_eq!(part.shard, 2);
        assert_eq!((part.fleet.selected, part.fleet.unhealthy), (20, 20));
        assert_eq!(part.workloads.len(), 17);
        assert!(part.fleet.truncated, "cut, and it says so");
        assert!(
            part.workloads.iter().all(|w| w.verdict.is_some()),
            "records as listed"
        );
    }

    #[test]
    fn the_parts_are_summed_worst_first_and_stale_shards_left_out() {
        let now = at("2026-01-01T00:01:00Z");
        let part = |shard: u32, list: &[(&str, UnitRecord)], healthy: usize| {
            let mut all = units(list);
            for i in 0..healthy {
                all.insert(
                    UnitId::new(None, "Deployment", &format!("ok-{shard}-{i}")),
                    record(Health::Healthy, None),
                );
            }
            shard_part(shard, 3, &all.iter().collect::<Vec<_>>())
        };
        let old = AppHealthPolicyStatus {
            shards: vec![
                part(0, &[("a", record(Health::Unhealthy, None))], 3),
                part(1, &[("b", record(Health::Unhealthy, Some(1)))], 1),
                part(2, &[], 2),
                // Left by an earlier run with four shards: not counted.
                part(3, &[("z", record(Health::Unhealthy, Some(1)))], 9),
            ],
            ..AppHealthPolicyStatus::default()
        };
        let status = merged(&old, Some(2), 3, "tier=web", None, now);
        let fleet = status.fleet.clone().unwrap();
        assert_eq!(
            (fleet.selected, fleet.healthy, fleet.unhealthy, fleet.remediating),
            (8, 6, 2, 1)
        );
        let listed: Vec<&str> = status.workloads.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(
            listed,
            ["b", "a"],
            "merged worst first, the stale part's left out"
        );
        assert!(status.shards.is_empty(), "the sum does not write the parts");
        assert_eq!(
            condition(&status, conditions::READY).unwrap().message,
            "8 workloads match tier=web"
        );
        assert_eq!(condition(&status, conditions::HEALTHY).unwrap().status, "False");
        // A part that was cut makes the sum say so.
        let mut cut = old.clone();
        cut.shards[2].fleet.truncated = true;
        assert!(
            merged(&cut, Some(2), 3, "tier=web", None, now)
                .fleet
                .unwrap()
                .truncated
        );
        // Without parts (none written yet): nothing selected, and it says so.
        let none = merged(
            &AppHealthPolicyStatus::default(),
            Some(2),
            3,
            "tier=web",
            None,
            now,
        );
        assert_eq!(none.fleet.unwrap().selected, 0);
    }
}
