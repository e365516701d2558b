//! RolloutRestart: the pod template annotation `apphealth.io/restartedAt` set to the decision time,
//! as `kubectl rollout restart` does (and distinguishable from it). The annotation is the mark.

use futures::{FutureExt, future::BoxFuture};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

use super::{ActCtx, ActError, Action, Done, MANAGER, Workload, api_error};
use crate::{
    api::{RESTARTED_AT_ANNOTATION, TargetKind},
    plan::Remediation,
};

pub struct RolloutRestart;

/// The pod template annotations of the workload, read from the API.
pub(super) async fn template_annotations(
    ctx: &ActCtx<'_>,
    w: &Workload,
) -> Result<std::collections::BTreeMap<String, String>, ActError> {
    let annotations = match w.kind {
        TargetKind::Deployment => Api::<Deployment>::namespaced(ctx.client.clone(), &w.namespace)
            .get_opt(&w.name)
            .await
            .map_err(api_error("get", "deployments", &w.namespace))?
            .and_then(|d| d.spec)
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations),
        TargetKind::StatefulSet => Api::<StatefulSet>::namespaced(ctx.client.clone(), &w.namespace)
            .get_opt(&w.name)
            .await
            .map_err(api_error("get", "statefulsets", &w.namespace))?
            .and_then(|d| d.spec)
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations),
    };
    Ok(annotations.unwrap_or_default())
}

/// Merge-patches the workload as the operator's field manager.
pub(super) async fn patch_workload(
    ctx: &ActCtx<'_>,
    w: &Workload,
    patch: &serde_json::Value,
) -> Result<(), ActError> {
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    };
    match w.kind {
        TargetKind::Deployment => {
            Api::<Deployment>::namespaced(ctx.client.clone(), &w.namespace)
                .patch(&w.name, &params, &Patch::Merge(patch))
                .await
                .map_err(api_error("patch", "deployments", &w.namespace))?;
        }
        TargetKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(ctx.client.clone(), &w.namespace)
                .patch(&w.name, &params, &Patch::Merge(patch))
                .await
                .map_err(api_error("patch", "statefulsets", &w.namespace))?;
        }
    }
    Ok(())
}

impl Action for RolloutRestart {
    fn reason(&self) -> &'static str {
        "RolloutRestarted"
    }

    fn apply<'a>(&'a self, ctx: &'a ActCtx<'a>, r: &'a Remediation) -> BoxFuture<'a, Result<Done, ActError>> {
        async move {
            let w = ctx.workload;
            let mark = r.at.to_string();
            if r.dry_run {
                return Ok(Done::succeeded(format!(
                    "would set {RESTARTED_AT_ANNOTATION}={mark} on the pod template of {w}, which rolls its pods."
                )));
            }
            let patch = json!({
                "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: mark}}}}
            });
            patch_workload(ctx, w, &patch).await?;
            Ok(Done::succeeded(format!(
                "Set {RESTARTED_AT_ANNOTATION}={mark} on the pod template of {w}, which rolls its pods."
            )))
        }
        .boxed()
    }

    fn applied<'a>(
        &'a self,
        ctx: &'a ActCtx<'a>,
        r: &'a Remediation,
    ) -> BoxFuture<'a, Result<Option<Done>, ActError>> {
        async move {
            let mark = r.at.to_string();
            let annotations = template_annotations(ctx, ctx.workload).await?;
            Ok(
                (annotations.get(RESTARTED_AT_ANNOTATION) == Some(&mark)).then(|| {
                    Done::succeeded(format!(
                        "{RESTARTED_AT_ANNOTATION}={mark} is on the pod template of {}.",
                        ctx.workload
                    ))
                }),
            )
        }
        .boxed()
    }
}
