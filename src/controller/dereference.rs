//! Stage one: dereference. From the policy to everything it names: its settings (validated), the
//! workload and its pods (from the caches), what its probe reads from Secrets and ConfigMaps, and
//! the endpoints to probe. Or why it cannot be probed.

use std::{sync::Arc, time::Duration};

use k8s_openapi::{api::core::v1::Service, apimachinery::pkg::apis::meta::v1::LabelSelector};
use kube::{Api, runtime::controller::Action as Requeue};

use super::{Context, OwnPod, PolicyRef};
use crate::{
    Error, Result,
    act::Workload,
    api::{AppHealthPolicy, ProbeVia, TargetKind},
    observe::{endpoints, pod::CachedPod, references, request::RequestTemplate, rollout},
    plan::RemediationSettings,
    report::{Readiness, reasons, text},
    settings::{self, Settings},
};

/// What the policy names, found.
pub(super) struct Target {
    pub settings: Arc<Settings>,
    pub workload: Workload,
    pub pods: Vec<Arc<CachedPod>>,
    pub resolved: endpoints::Resolved,
    /// Why the workload is mid-rollout, if it is.
    pub rollout: Option<String>,
    /// The policy that remediates the workload instead of this one, by precedence.
    pub owned_by: Option<String>,
    /// For a workload of a policy over many: that policy (the stages run on the policy as it would
    /// read had it named the workload, under a name of the workload's own).
    pub selected_by: Option<k8s_openapi::api::core::v1::ObjectReference>,
}

/// Why a policy is not probed now.
pub(super) struct Stopped {
    pub readiness: Readiness,
    pub requeue: Requeue,
    /// The settings of a valid policy that is suspended: the planner still holds its ladder, with
    /// the Suspended guard (None: the spec is invalid).
    pub suspended: Option<Arc<Settings>>,
}

pub(super) enum Dereferenced {
    Found(Box<Target>),
    Stopped(Stopped),
    /// The caches are still filling: try again shortly, change nothing.
    NotSynced,
}

/// Stopped for an invalid spec, saying which field is wrong.
pub(super) fn invalid(invalid: &crate::api::validate::InvalidSpec) -> Dereferenced {
    let message = text::invalid_spec(invalid);
    stopped(
        reasons::INVALID_SPEC,
        message.clone(),
        message,
        Requeue::await_change(),
    )
}

fn stopped(reason: &'static str, message: String, event: String, requeue: Requeue) -> Dereferenced {
    Dereferenced::Stopped(Stopped {
        readiness: Readiness::Stopped {
            reason,
            message,
            event,
        },
        requeue,
        suspended: None,
    })
}

pub(super) async fn dereference(
    policy: &AppHealthPolicy,
    key: &PolicyRef,
    validated: Option<Arc<Settings>>,
    ctx: &Context,
) -> Result<Dereferenced> {
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    // A targetSelector policy's workloads share the settings it validated once.
    let settings = match validated.map_or_else(|| settings(policy), Ok) {
        Ok(settings) => settings,
        Err(stopped) => return Ok(stopped),
    };
    if !ctx.index.synced().await {
        return Ok(Dereferenced::NotSynced);
    }

    let Some(target) = policy.spec.target_ref.as_ref() else {
        // Validation refuses a policy without one; a selector policy's workloads come here each
        // with a targetRef of its own.
        let message = text::invalid_spec(&"spec.targetRef: is required");
        return Ok(stopped(
            reasons::INVALID_SPEC,
            message.clone(),
            message,
            Requeue::await_change(),
        ));
    };
    let workload = Workload {
        kind: target.kind,
        namespace: namespace.clone(),
        name: target.name.clone(),
    };
    let Some(selector) = ctx.index.workload_selector(target.kind, &namespace, &target.name) else {
        let retry = ctx.not_found.next(key);
        // The retry delay is not part of the condition, so repeated checks do not rewrite status.
        let stable = text::target_not_found(&workload.to_string(), &namespace, None);
        let event = text::target_not_found(&workload.to_string(), &namespace, Some(retry));
        return Ok(stopped(
            reasons::TARGET_NOT_FOUND,
            stable,
            event,
            Requeue::requeue(retry),
        ));
    };
    ctx.not_found.reset(key);

    let version = |kind, name: &str| {
        ctx.index
            .config_meta(kind, &namespace, name)
            .and_then(|m| m.resource_version)
    };
    let reads = references::Reads {
        client: &ctx.client,
        namespace: &namespace,
        cache: &ctx.reads,
        version: &version,
    };
    let template = match references::resolve_template(&reads, &settings.probe).await {
        Ok(t) => t,
        Err(unresolved) => {
            let message = text::unresolved(&unresolved);
            return Ok(stopped(
                reasons::INVALID_REFERENCE,
                message.clone(),
                message,
                Requeue::requeue(Duration::from_secs(60)),
            ));
        }
    };
    let pods: Vec<Arc<CachedPod>> = ctx.index.pods_selected(&namespace, &selector);
    if let Some(message) = remediates_operator(
        &settings.remediation,
        &workload,
        pods.iter()
            .map(|p| p.metadata.name.as_deref().unwrap_or_default()),
        &namespace,
        ctx.own_pod.as_ref(),
    ) {
        return Ok(stopped(
            reasons::TARGET_IS_OPERATOR,
            message.clone(),
            message,
            Requeue::requeue(Duration::from_secs(300)),
        ));
    }
    let resolved = resolve(ctx, &settings, &template, &selector, &pods, &namespace).await?;
    let rollout = rollout_of(ctx, target.kind, &namespace, &target.name);
    Ok(Dereferenced::Found(Box::new(Target {
        settings,
        workload,
        pods,
        resolved,
        rollout,
        owned_by: None,
        selected_by: None,
    })))
}

/// The spec's settings, or why the policy stops here: its spec is invalid, or it is suspended.
pub(super) fn settings(policy: &AppHealthPolicy) -> std::result::Result<Arc<Settings>, Dereferenced> {
    let settings = settings::validate(&policy.spec).map_err(|e| invalid(&e))?;
    if policy.spec.suspend {
        let message = text::SUSPENDED.to_owned();
        return Err(Dereferenced::Stopped(Stopped {
            readiness: Readiness::Stopped {
                reason: reasons::SUSPENDED,
                message: message.clone(),
                event: message,
            },
            requeue: Requeue::await_change(),
            suspended: Some(Arc::new(settings)),
        }));
    }
    Ok(Arc::new(settings))
}

/// The endpoints to probe: the selected pods, or the Service the probe goes through.
async fn resolve(
    ctx: &Context,
    settings: &Settings,
    template: &RequestTemplate,
    selector: &LabelSelector,
    pods: &[Arc<CachedPod>],
    namespace: &str,
) -> Result<endpoints::Resolved> {
    let reach = &ctx.reach;
    Ok(match settings.probe.via {
        ProbeVia::Pods => endpoints::for_pods(template, selector, pods.iter().map(|p| p.as_ref()), reach),
        ProbeVia::Service => {
            let name = settings.probe.service.clone().unwrap_or_default();
            let services: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
            match services.get_opt(&name).await.map_err(Error::Dereference)? {
                Some(svc) => endpoints::for_service(template, &svc, reach),
                None => endpoints::Resolved {
                    problems: vec![text::service_not_found(&name, namespace)],
                    ..endpoints::Resolved::default()
                },
            }
        }
    })
}

/// Why the workload is mid-rollout, from the cached Deployment or StatefulSet.
fn rollout_of(ctx: &Context, kind: TargetKind, namespace: &str, name: &str) -> Option<String> {
    match kind {
        TargetKind::Deployment => ctx
            .index
            .deployment(namespace, name)
            .and_then(|d| rollout::deployment(&d)),
        TargetKind::StatefulSet => ctx
            .index
            .statefulset(namespace, name)
            .and_then(|s| rollout::statefulset(&s)),
    }
}

/// Why a policy may not act on its target, when the target runs the operator itself: restarting,
/// rolling back or resizing the operator from its own ladder would cut the ladder short halfway
/// (and a crash loop of the operator would feed itself). Observing it, collecting diagnostics and
/// notifying are fine, and so is a dry run. Pure: the operator's pod among the target's pods.
pub(super) fn remediates_operator<'a>(
    remediation: &RemediationSettings,
    workload: &crate::act::Workload,
    mut pods: impl Iterator<Item = &'a str>,
    namespace: &str,
    own: Option<&OwnPod>,
) -> Option<String> {
    let own = own.filter(|o| o.namespace == namespace)?;
    if remediation.dry_run || !pods.any(|p| p == own.name) {
        return None;
    }
    let changing: Vec<&str> = remediation
        .steps
        .iter()
        .map(|s| s.action())
        .filter(|a| crate::act::descriptor(*a).changes_target)
        .map(|a| a.as_str())
        .collect();
    (!changing.is_empty()).then(|| text::remediates_operator(&workload.to_string(), &own.name, &changing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        act::{StepParams, Workload},
        plan::StepSettings,
    };

    #[test]
    fn a_ladder_may_not_change_the_operator_itself() {
        let own = OwnPod {
            namespace: "ops".into(),
            name: "apphealth-operator-7d9-x2".into(),
        };
        let workload = Workload {
            kind: TargetKind::Deployment,
            namespace: "ops".into(),
            name: "apphealth-operator".into(),
        };
        let step = |params| StepSettings {
            timeout: Duration::ZERO,
            params,
        };
        let restart = RemediationSettings {
            steps: vec![step(StepParams::RolloutRestart(
                crate::act::RolloutRestartSettings,
            ))],
            ..RemediationSettings::default()
        };
        let notify_only = RemediationSettings {
            steps: vec![step(StepParams::CollectDiagnostics(Default::default()))],
            ..RemediationSettings::default()
        };
        let dry_run = RemediationSettings {
            dry_run: true,
            ..restart.clone()
        };
        let pods = ["apphealth-operator-7d9-x2", "apphealth-operator-7d9-y3"];
        // (ladder, the target's pods, the policy's namespace, the operator's pod, refused)
        type Case<'a> = (
            &'a RemediationSettings,
            &'a [&'a str],
            &'a str,
            Option<&'a OwnPod>,
            bool,
        );
        let cases: [Case; 7] = [
            (&restart, &pods, "ops", Some(&own), true),
            (&notify_only, &pods, "ops", Some(&own), false),
            (&dry_run, &pods, "ops", Some(&own), false),
            (&restart, &pods[1..], "ops", Some(&own), false),
            (&restart, &pods, "shop", Some(&own), false),
            (&restart, &pods, "ops", None, false),
            (&RemediationSettings::default(), &pods, "ops", Some(&own), false),
        ];
        for (i, (r, pods, namespace, own, refused)) in cases.into_iter().enumerate() {
            let message = remediates_operator(r, &workload, pods.iter().copied(), namespace, own);
            assert_eq!(message.is_some(), refused, "case {i}: {message:?}");
        }
        assert_eq!(
            remediates_operator(&restart, &workload, pods.iter().copied(), "ops", Some(&own)).unwrap(),
            "Deployment apphealth-operator runs this operator (pod apphealth-operator-7d9-x2), and \
             spec.remediation.steps would change it (RolloutRestart); a policy may only observe, collect \
             diagnostics or notify about the operator itself, or set spec.remediation.dryRun."
        );
    }
}
