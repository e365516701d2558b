//! Stage one: dereference. From the policy to everything it names: its settings (validated), the
//! workload and its pods (from the caches), what its probe reads from Secrets and ConfigMaps, and
//! the endpoints to probe. Or why it cannot be probed.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Service;
use kube::{Api, runtime::controller::Action as Requeue};

use super::{Context, PolicyRef};
use crate::{
    Error, Result,
    act::Workload,
    api::{AppHealthPolicy, ProbeVia, TargetKind, format_duration, validate},
    observe::{endpoints, pod::CachedPod, references, rollout},
    report::{Readiness, reasons},
};

/// What the policy names, found.
pub(super) struct Target {
    pub settings: Arc<validate::Settings>,
    pub workload: Workload,
    pub pods: Vec<Arc<CachedPod>>,
    pub resolved: endpoints::Resolved,
    /// Why the workload is mid-rollout, if it is.
    pub rollout: Option<String>,
}

/// Why a policy is not probed now.
pub(super) struct Stopped {
    pub readiness: Readiness,
    pub requeue: Requeue,
    /// Settings, when the spec is valid (a suspended policy still reports its guards).
    pub suspended: bool,
}

pub(super) enum Dereferenced {
    Found(Box<Target>),
    Stopped(Stopped),
    /// The caches are still filling: try again shortly, change nothing.
    NotSynced,
}

fn stopped(reason: &'static str, message: String, event: String, requeue: Requeue) -> Dereferenced {
    Dereferenced::Stopped(Stopped {
        readiness: Readiness::Stopped {
            reason,
            message,
            event,
        },
        requeue,
        suspended: reason == reasons::SUSPENDED,
    })
}

pub(super) async fn dereference(
    policy: &AppHealthPolicy,
    key: &PolicyRef,
    ctx: &Context,
) -> Result<Dereferenced> {
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    let settings = match validate::validate(&policy.spec) {
        Ok(s) => Arc::new(s),
        Err(invalid) => {
            let message =
                format!("The policy is invalid: {invalid}. Fix the spec; nothing is probed until then.");
            return Ok(stopped(
                reasons::INVALID_SPEC,
                message.clone(),
                message,
                Requeue::await_change(),
            ));
        }
    };
    if policy.spec.suspend {
        let message =
            "spec.suspend is true: probing and remediation are stopped until it is cleared.".to_owned();
        return Ok(stopped(
            reasons::SUSPENDED,
            message.clone(),
            message,
            Requeue::await_change(),
        ));
    }
    if !ctx.index.synced().await {
        return Ok(Dereferenced::NotSynced);
    }

    let target = &policy.spec.target_ref;
    let workload = Workload {
        kind: target.kind,
        namespace: namespace.clone(),
        name: target.name.clone(),
    };
    let Some(selector) = ctx.index.workload_selector(target.kind, &namespace, &target.name) else {
        let retry = ctx.not_found.next(key);
        // The retry delay is not part of the condition, so repeated checks do not rewrite status.
        let stable =
            format!("{workload} was not found in namespace {namespace}; probing starts when it appears.");
        let event = format!(
            "{workload} was not found in namespace {namespace}; probing starts when it appears (next check in {}).",
            format_duration(retry)
        );
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
            let message = format!("{unresolved}. Probing starts once it can be read.");
            return Ok(stopped(
                reasons::INVALID_REFERENCE,
                message.clone(),
                message,
                Requeue::requeue(Duration::from_secs(60)),
            ));
        }
    };
    let pods: Vec<Arc<CachedPod>> = ctx.index.pods_selected(&namespace, &selector);
    let reach = &ctx.reach;
    let resolved = match settings.probe.via {
        ProbeVia::Pods => endpoints::for_pods(&template, &selector, pods.iter().map(|p| p.as_ref()), reach),
        ProbeVia::Service => {
            let name = settings.probe.service.clone().unwrap_or_default();
            let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
            match services.get_opt(&name).await.map_err(Error::Dereference)? {
                Some(svc) => endpoints::for_service(&template, &svc, reach),
                None => endpoints::Resolved {
                    problems: vec![format!(
                        "Service {name} was not found in namespace {namespace} (spec.probe.service)"
                    )],
                    ..endpoints::Resolved::default()
                },
            }
        }
    };
    let rollout = match target.kind {
        TargetKind::Deployment => ctx
            .index
            .deployment(&namespace, &target.name)
            .and_then(|d| rollout::deployment(&d)),
        TargetKind::StatefulSet => ctx
            .index
            .statefulset(&namespace, &target.name)
            .and_then(|s| rollout::statefulset(&s)),
    };
    Ok(Dereferenced::Found(Box::new(Target {
        settings,
        workload,
        pods,
        resolved,
        rollout,
    })))
}
