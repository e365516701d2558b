//! The core's records ([`crate::record`]) to and from the CRD's status shapes: the one place where
//! `metav1.Time` and status strings meet the plain data the stages work on.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    api::{self, AppHealthPolicyStatus, DiagnosticsRef, Evidence, Ladder, RemediationRecord, ScaleRestore},
    record::{Capture, Entry, Finding, Position, Raised, Recorded, ScaledKind},
};

/// What the planner and the actions read of a policy's status.
pub fn recorded(status: &AppHealthPolicyStatus) -> Recorded {
    Recorded {
        ladder: status.ladder.as_ref().map(position),
        history: status.history.iter().map(entry).collect(),
        raised: status.scale_restore.as_ref().and_then(raised),
        captures: status.diagnostics.iter().map(capture).collect(),
        verdict: status.verdict.as_ref().map(|v| (v.health, v.since.0)),
    }
}

pub fn position(l: &Ladder) -> Position {
    Position {
        step: l.step,
        started_at: l.started_at.0,
        exhausted: l.exhausted,
    }
}

pub fn ladder(p: &Position) -> Ladder {
    Ladder {
        step: p.step,
        started_at: Time(p.started_at),
        exhausted: p.exhausted,
    }
}

pub fn entry(r: &RemediationRecord) -> Entry {
    Entry {
        action: r.action,
        step: r.step,
        at: r.at.0,
        result: r.result,
        dry_run: r.dry_run,
        pods: r.pods.clone(),
        message: r.message.clone(),
        retry_at: r.retry_at.as_ref().map(|t| t.0),
        reason: r.reason.clone(),
    }
}

pub fn record(e: &Entry) -> RemediationRecord {
    RemediationRecord {
        action: e.action,
        step: e.step,
        at: Time(e.at),
        result: e.result,
        dry_run: e.dry_run,
        pods: e.pods.clone(),
        message: e.message.clone(),
        retry_at: e.retry_at.map(Time),
        reason: e.reason.clone(),
    }
}

/// None for a record this operator never writes (an unknown kind): nothing is restored from it.
/// An unreadable restoreAfter restores at once, as a zero wait.
pub fn raised(s: &ScaleRestore) -> Option<Raised> {
    Some(Raised {
        kind: ScaledKind::parse(&s.kind)?,
        name: s.name.clone(),
        original: s.original,
        original_max: s.original_max,
        set: s.set,
        set_max: s.set_max,
        restore_after: api::Duration::from(s.restore_after.as_str())
            .parse()
            .unwrap_or_default(),
    })
}

pub fn scale_restore(r: &Raised) -> ScaleRestore {
    ScaleRestore {
        kind: r.kind.as_str().to_owned(),
        name: r.name.clone(),
        original: r.original,
        original_max: r.original_max,
        set: r.set,
        set_max: r.set_max,
        restore_after: api::format_duration(r.restore_after),
    }
}

pub fn capture(d: &DiagnosticsRef) -> Capture {
    Capture {
        config_map: d.config_map.clone(),
        at: d.at.0,
        pods: d.pods.clone(),
    }
}

pub fn diagnostics_ref(c: &Capture) -> DiagnosticsRef {
    DiagnosticsRef {
        config_map: c.config_map.clone(),
        at: Time(c.at),
        pods: c.pods.clone(),
    }
}

pub fn finding(e: &Evidence) -> Finding {
    Finding {
        trigger: e.trigger.clone(),
        message: e.message.clone(),
        pods: e.pods.clone(),
        since: e.since.as_ref().map(|t| t.0),
    }
}

pub fn evidence(f: &Finding) -> Evidence {
    Evidence {
        trigger: f.trigger.clone(),
        message: f.message.clone(),
        pods: f.pods.clone(),
        since: f.since.map(Time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::{Action, Health, RemediationResult, Verdict},
        fixtures::at,
    };

    #[test]
    fn status_survives_the_round_trip_through_the_records() {
        let status = AppHealthPolicyStatus {
            verdict: Some(Verdict {
                health: Health::Unhealthy,
                since: Time(at("2026-01-01T00:00:00Z")),
                evidence: vec![Evidence {
                    trigger: "consecutiveFailures".into(),
                    message: "web-1: 3 failed probes".into(),
                    pods: vec!["web-1".into()],
                    since: Some(Time(at("2026-01-01T00:00:00Z"))),
                }],
            }),
            ladder: Some(Ladder {
                step: 2,
                started_at: Time(at("2026-01-01T00:01:00Z")),
                exhausted: false,
            }),
            history: vec![RemediationRecord {
                reason: Some("Forbidden".into()),
                action: Action::RestartPods,
                step: 2,
                at: Time(at("2026-01-01T00:02:00Z")),
                result: RemediationResult::Held,
                dry_run: false,
                pods: vec!["web-1".into()],
                message: Some("held".into()),
                retry_at: Some(Time(at("2026-01-01T00:03:00Z"))),
            }],
            scale_restore: Some(ScaleRestore {
                kind: "HorizontalPodAutoscaler".into(),
                name: "web".into(),
                original: 2,
                original_max: Some(4),
                set: 3,
                set_max: Some(5),
                restore_after: "30m".into(),
            }),
            diagnostics: vec![DiagnosticsRef {
                config_map: "web-diag".into(),
                at: Time(at("2026-01-01T00:01:00Z")),
                pods: vec!["web-1".into()],
            }],
            ..Default::default()
        };
        let r = recorded(&status);
        assert_eq!(r.verdict, Some((Health::Unhealthy, at("2026-01-01T00:00:00Z"))));
        assert_eq!(r.raised.as_ref().map(|r| r.restore_after.as_secs()), Some(1800));
        assert_eq!(r.ladder.as_ref().map(ladder), status.ladder);
        assert_eq!(r.history.iter().map(record).collect::<Vec<_>>(), status.history);
        assert_eq!(r.raised.as_ref().map(scale_restore), status.scale_restore);
        assert_eq!(
            r.captures.iter().map(diagnostics_ref).collect::<Vec<_>>(),
            status.diagnostics
        );
        let evidence = &status
            .verdict
            .as_ref()
            .map(|v| v.evidence.clone())
            .unwrap_or_default();
        let back: Vec<Evidence> = evidence
            .iter()
            .map(finding)
            .map(|f| super::evidence(&f))
            .collect();
        assert_eq!(&back, evidence);
    }

    #[test]
    fn a_scale_record_of_an_unknown_kind_restores_nothing() {
        let odd = ScaleRestore {
            kind: "Something".into(),
            name: "web".into(),
            original: 1,
            original_max: None,
            set: 2,
            set_max: None,
            restore_after: "nonsense".into(),
        };
        assert_eq!(raised(&odd), None);
        let zero = raised(&ScaleRestore {
            kind: "Workload".into(),
            ..odd
        });
        assert_eq!(zero.map(|r| r.restore_after), Some(std::time::Duration::ZERO));
    }
}
