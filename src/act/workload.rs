//! The target workload as actions read and write it: a Deployment or a StatefulSet seen the same
//! way (metadata, pod template, selector), and patches as the operator's field manager.

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::PodTemplateSpec,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use kube::{
    Api,
    api::{Patch, PatchParams},
};

use super::{ActCtx, ActError, MANAGER, api_error};
use crate::api::TargetKind;

/// What actions read of a Deployment or StatefulSet.
pub(super) struct Object {
    pub metadata: ObjectMeta,
    pub template: PodTemplateSpec,
    pub selector: LabelSelector,
}

/// The workload, read from the API (never a cache: actions decide on it).
pub(super) async fn get(ctx: &ActCtx<'_>) -> Result<Option<Object>, ActError> {
    let w = ctx.workload;
    let ns = &w.namespace;
    Ok(match w.kind {
        TargetKind::Deployment => Api::<Deployment>::namespaced(ctx.client.clone(), ns)
            .get_opt(&w.name)
            .await
            .map_err(api_error("get", "deployments", ns))?
            .map(|d| {
                let spec = d.spec.unwrap_or_default();
                Object {
                    metadata: d.metadata,
                    template: spec.template,
                    selector: spec.selector,
                }
            }),
        TargetKind::StatefulSet => Api::<StatefulSet>::namespaced(ctx.client.clone(), ns)
            .get_opt(&w.name)
            .await
            .map_err(api_error("get", "statefulsets", ns))?
            .map(|s| {
                let spec = s.spec.unwrap_or_default();
                Object {
                    metadata: s.metadata,
                    template: spec.template,
                    selector: spec.selector,
                }
            }),
    })
}

/// The workload, or an error saying it is gone.
pub(super) async fn found(ctx: &ActCtx<'_>) -> Result<Object, ActError> {
    get(ctx)
        .await?
        .ok_or_else(|| ActError::Refused(format!("{} is gone", ctx.workload)))
}

/// Patches the workload as the operator's field manager.
pub(super) async fn patch(ctx: &ActCtx<'_>, patch: &Patch<serde_json::Value>) -> Result<(), ActError> {
    let w = ctx.workload;
    let ns = &w.namespace;
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    };
    match w.kind {
        TargetKind::Deployment => {
            Api::<Deployment>::namespaced(ctx.client.clone(), ns)
                .patch(&w.name, &params, patch)
                .await
                .map_err(api_error("patch", "deployments", ns))?;
        }
        TargetKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(ctx.client.clone(), ns)
                .patch(&w.name, &params, patch)
                .await
                .map_err(api_error("patch", "statefulsets", ns))?;
        }
    }
    Ok(())
}
