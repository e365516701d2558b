//! The target workload as actions read and write it: a Deployment or a StatefulSet seen the same
//! way (metadata, pod template, selector), patched and scaled as the operator's field manager.

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::PodTemplateSpec,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use kube::{Api, api::Patch};
use serde_json::json;

use super::{ActCtx, ActError, api_error, as_operator};
use crate::api::TargetKind;

/// What actions read of a Deployment or StatefulSet.
pub(super) struct Object {
    pub metadata: ObjectMeta,
    pub template: PodTemplateSpec,
    pub selector: LabelSelector,
}

impl Object {
    /// An annotation of the workload itself.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata.annotations.as_ref()?.get(key).map(String::as_str)
    }

    /// An annotation of its pod template.
    pub fn template_annotation(&self, key: &str) -> Option<&str> {
        self.template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }
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
    let params = as_operator();
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

/// Its replicas, read through the scale subresource.
pub(super) async fn replicas(ctx: &ActCtx<'_>) -> Result<i32, ActError> {
    let w = ctx.workload;
    let ns = &w.namespace;
    let scale = match w.kind {
        TargetKind::Deployment => Api::<Deployment>::namespaced(ctx.client.clone(), ns)
            .get_scale(&w.name)
            .await
            .map_err(api_error("get", "deployments/scale", ns))?,
        TargetKind::StatefulSet => Api::<StatefulSet>::namespaced(ctx.client.clone(), ns)
            .get_scale(&w.name)
            .await
            .map_err(api_error("get", "statefulsets/scale", ns))?,
    };
    Ok(scale.spec.and_then(|s| s.replicas).unwrap_or(1))
}

/// Sets its replicas through the scale subresource, as the operator's field manager.
pub(super) async fn set_replicas(ctx: &ActCtx<'_>, replicas: i32) -> Result<(), ActError> {
    let w = ctx.workload;
    let ns = &w.namespace;
    let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    match w.kind {
        TargetKind::Deployment => {
            Api::<Deployment>::namespaced(ctx.client.clone(), ns)
                .patch_scale(&w.name, &as_operator(), &patch)
                .await
                .map_err(api_error("patch", "deployments/scale", ns))?;
        }
        TargetKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(ctx.client.clone(), ns)
                .patch_scale(&w.name, &as_operator(), &patch)
                .await
                .map_err(api_error("patch", "statefulsets/scale", ns))?;
        }
    }
    Ok(())
}
