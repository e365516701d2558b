//! Stage two: what the reconcile sees. Hands the probe task its job (endpoints and the pods' cluster
//! signals), and reads back what it judged: the verdict, and per pod the facts the planner needs.

use kube::ResourceExt;

use super::{Context, PolicyRef, dereference::Target};
use crate::{
    api::{AppHealthPolicy, AppHealthPolicyStatus, Health, ProbeVia, validate::TriggerSettings},
    evaluate::TargetVerdict,
    observe::{references, signals},
    plan::PodFacts,
    probing::ProbeJob,
    record::Finding,
    report::{Observation, Readiness, convert, reasons, text},
};

pub(super) fn seen(
    policy: &AppHealthPolicy,
    key: &PolicyRef,
    target: &Target,
    old: &AppHealthPolicyStatus,
    ctx: &Context,
) -> (Observation, Vec<PodFacts>) {
    // With shards, a workload of a shard just taken over from a replica that died or let it go:
    // its first round is not left to wait up to a period more than the takeover took.
    let workload = &target.workload;
    let catch_up = || {
        ctx.sharding
            .as_ref()
            .is_some_and(|s| s.catching_up(&workload.namespace, workload.kind.as_str(), &workload.name))
    };
    ctx.probes
        .ensure(key, probe_job(policy, target, ctx), &resume_from(old), catch_up);
    // The verdict, as published by the probe task (None until its first round).
    let verdict = ctx.probes.verdict(key);
    let readiness = readiness(target, verdict.as_ref());
    let pods = pod_facts(target, verdict.as_ref());
    let observation = Observation::new(
        policy.metadata.generation,
        target.workload.to_string(),
        readiness,
        verdict,
        (&target.settings.remediation).into(),
    );
    (observation, pods)
}

/// What was Unhealthy when the operator last wrote status, for a probe task that starts now.
fn resume_from(old: &AppHealthPolicyStatus) -> Vec<Finding> {
    old.verdict
        .iter()
        .filter(|v| v.health == Health::Unhealthy)
        .flat_map(|v| v.evidence.iter().map(convert::finding))
        .collect()
}

/// The probe task's job: the requests to send and the pods' cluster signals.
fn probe_job(policy: &AppHealthPolicy, target: &Target, ctx: &Context) -> ProbeJob {
    let settings = &target.settings;
    let namespace = policy.namespace().unwrap_or_default();
    let watches_config = settings
        .triggers
        .iter()
        .any(|t| matches!(t, TriggerSettings::ConfigChanged));
    let signals = target
        .pods
        .iter()
        .map(|pod| {
            let mut s = signals::pod_signals(pod);
            if watches_config {
                s.config_changed = references::config_changes(pod, |kind, name| {
                    ctx.index.config_meta(kind, &namespace, name)
                });
            }
            s
        })
        .collect();
    ProbeJob {
        settings: settings.clone(),
        namespace,
        requests: target.resolved.requests.clone(),
        signals,
    }
}

/// Ready: probing what, every how often, with what remarks; or nothing to probe, and why. An
/// endpoint the deny-list refuses is named with the reason; when every one is refused, Ready is
/// False with reason `AddressRefused` (a configuration problem: probing cannot start, so nothing
/// is judged and nothing remediated).
fn readiness(target: &Target, verdict: Option<&TargetVerdict>) -> Readiness {
    let settings = &target.settings;
    let resolved = &target.resolved;
    let mut probed: Vec<&str> = resolved.requests.iter().map(|r| r.endpoint.as_str()).collect();
    probed.dedup();
    let probed = probed.len();
    let remarks: String = resolved
        .refused
        .iter()
        .chain(&resolved.problems)
        .map(|p| text::not_probed(p))
        .chain(settings.notes.iter().map(|n| text::note(n)))
        .chain(verdict.iter().flat_map(|v| v.notes.iter()).map(|n| text::note(n)))
        .collect();
    let workload = target.workload.to_string();
    let via_service = settings.probe.via == ProbeVia::Service;
    if probed == 0 {
        let refused = !resolved.refused.is_empty();
        return Readiness::NoTargets {
            reason: if refused {
                reasons::ADDRESS_REFUSED
            } else {
                reasons::NO_PODS
            },
            message: text::nothing_to_probe(via_service, refused, &workload, &remarks),
        };
    }
    let what = if via_service {
        text::probed_service(settings.probe.service.as_deref().unwrap_or_default())
    } else {
        text::probed_pods(probed, &workload)
    };
    Readiness::Probing {
        message: text::probing(&what, settings.probe.period, &remarks),
    }
}

/// Per pod, what the planner needs: age, readiness, and the verdict on it.
pub(super) fn pod_facts(target: &Target, verdict: Option<&TargetVerdict>) -> Vec<PodFacts> {
    let unhealthy: std::collections::HashSet<&String> =
        verdict.iter().flat_map(|v| v.unhealthy.iter()).collect();
    let failing: std::collections::HashSet<&String> = verdict.iter().flat_map(|v| v.failing.iter()).collect();
    target
        .pods
        .iter()
        .map(|p| {
            let name = p.name_any();
            PodFacts {
                unhealthy: unhealthy.contains(&&name),
                failing: failing.contains(&&name),
                created: p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                ready: p.ready,
                name,
            }
        })
        .collect()
}
