//! What a policy over many workloads says in its status: counts, and the workloads that are not
//! healthy, worst first, at most a bounded number of them (saying when the list is cut), so that
//! a policy over a thousand workloads keeps a small status. Pure.

use std::cmp::Reverse;

use crate::record::{Action, Health, RemediationResult};

/// One selected workload, as the policy's status sums it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// `Kind/name` (and `namespace/` first for a cluster policy).
    pub workload: String,
    pub health: Health,
    /// The ladder step it is on, if a ladder is in progress.
    pub step: Option<u32>,
    /// A guard is holding its ladder back.
    pub blocked: bool,
    /// Something is left to finish while it is healthy (a scale-out to restore): its record is
    /// kept in status.
    pub pending: bool,
    /// The last remediation and how it ended.
    pub last: Option<(Action, RemediationResult)>,
}

/// The counts and the bounded list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    pub selected: u32,
    pub healthy: u32,
    pub unhealthy: u32,
    pub remediating: u32,
    pub blocked: u32,
    /// The workloads that are not healthy, worst first.
    pub worst: Vec<Unit>,
    /// More were not healthy than `worst` lists.
    pub cut: bool,
}

/// How bad a unit is, the worst first: a ladder in progress (the further along, the worse), then
/// a held one, then unhealthy, then not known yet; then by name.
fn badness(u: &Unit) -> (u8, Reverse<u32>, &str) {
    let rank = match (u.step, u.blocked, u.health) {
        (Some(_), false, _) => 0,
        (_, true, _) => 1,
        (None, false, Health::Unhealthy) => 2,
        (None, false, Health::Unknown) => 3,
        (None, false, Health::Healthy) => 4,
    };
    (rank, Reverse(u.step.unwrap_or(0)), &u.workload)
}

fn count(units: &[Unit], keep: impl Fn(&Unit) -> bool) -> u32 {
    u32::try_from(units.iter().filter(|u| keep(u)).count()).unwrap_or(u32::MAX)
}

/// Sums up `units`, listing at most `limit` of those not healthy.
pub fn summarize(units: &[Unit], limit: usize) -> Summary {
    let mut troubled: Vec<&Unit> = units
        .iter()
        .filter(|u| u.health != Health::Healthy || u.step.is_some() || u.blocked || u.pending)
        .collect();
    troubled.sort_by(|a, b| badness(a).cmp(&badness(b)));
    Summary {
        selected: count(units, |_| true),
        healthy: count(units, |u| u.health == Health::Healthy),
        unhealthy: count(units, |u| u.health == Health::Unhealthy),
        remediating: count(units, |u| u.step.is_some() && !u.blocked),
        blocked: count(units, |u| u.blocked),
        cut: troubled.len() > limit,
        worst: troubled.into_iter().take(limit).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(workload: &str, health: Health, step: Option<u32>, blocked: Option<&'static str>) -> Unit {
        Unit {
            workload: workload.into(),
            health,
            step,
            blocked: blocked.is_some(),
            pending: false,
            last: step.map(|_| (Action::RestartPods, RemediationResult::Succeeded)),
        }
    }

    fn names(s: &Summary) -> Vec<&str> {
        s.worst.iter().map(|u| u.workload.as_str()).collect()
    }

    #[test]
    fn counts_and_the_worst_first() {
        use Health::*;
        let units = [
            unit("Deployment/a", Healthy, None, None),
            unit("Deployment/b", Unhealthy, None, None),
            unit("Deployment/c", Unhealthy, Some(1), None),
            unit("Deployment/d", Unhealthy, Some(3), None),
            unit("Deployment/e", Unhealthy, Some(1), Some("Cooldown")),
            unit("Deployment/f", Unknown, None, None),
            unit("Deployment/g", Healthy, None, None),
        ];
        let s = summarize(&units, 10);
        assert_eq!(
            (s.selected, s.healthy, s.unhealthy, s.remediating, s.blocked),
            (7, 2, 4, 2, 1)
        );
        assert_eq!(
            names(&s),
            [
                "Deployment/d",
                "Deployment/c",
                "Deployment/e",
                "Deployment/b",
                "Deployment/f"
            ],
            "a ladder further along first, then held, unhealthy, not known; healthy ones not listed"
        );
        assert!(!s.cut);
    }

    #[test]
    fn a_long_list_is_cut_and_says_so() {
        let units: Vec<Unit> = (0..1000)
            .map(|i| unit(&format!("Deployment/w-{i:04}"), Health::Unhealthy, None, None))
            .collect();
        let s = summarize(&units, 20);
        assert_eq!(s.worst.len(), 20);
        assert!(s.cut);
        assert_eq!(s.unhealthy, 1000, "the counts are whole");
        assert_eq!(s.worst[0].workload, "Deployment/w-0000");
        let none = summarize(&[], 20);
        assert_eq!((none.selected, none.worst.len(), none.cut), (0, 0, false));
    }

    #[test]
    fn a_ladder_that_recovered_but_is_still_open_is_listed() {
        let s = summarize(&[unit("Deployment/a", Health::Healthy, Some(1), None)], 5);
        assert_eq!(names(&s), ["Deployment/a"]);
        assert_eq!((s.healthy, s.remediating), (1, 1));
    }
}
