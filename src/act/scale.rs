//! ScaleOut: more replicas through the scale subresource, or, when a HorizontalPodAutoscaler
//! targets the workload, a higher minReplicas (and maxReplicas only if needed) instead of fighting
//! it. What it raised is recorded in status (the mark) and restored once the target has been
//! healthy for restoreAfter, unless someone changed it in the meantime.

use futures::{FutureExt, future::BoxFuture};
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    autoscaling::v2::HorizontalPodAutoscaler,
};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;

use super::{ActCtx, ActError, Action, Done, MANAGER, api_error};
use crate::{
    api::{ScaleRestore, TargetKind, format_duration, validate::StepParams},
    plan::Remediation,
    report::Effect,
};

pub struct ScaleOut;

const WORKLOAD: &str = "Workload";
const HPA: &str = "HorizontalPodAutoscaler";

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    }
}

/// The autoscaler that targets the workload, if any.
async fn autoscaler(ctx: &ActCtx<'_>) -> Result<Option<HorizontalPodAutoscaler>, ActError> {
    let w = ctx.workload;
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), &w.namespace);
    let list = api.list(&ListParams::default()).await.map_err(api_error(
        "list",
        "horizontalpodautoscalers",
        &w.namespace,
    ))?;
    Ok(list.items.into_iter().find(|h| {
        h.spec
            .as_ref()
            .is_some_and(|s| s.scale_target_ref.kind == w.kind.as_str() && s.scale_target_ref.name == w.name)
    }))
}

async fn replicas(ctx: &ActCtx<'_>) -> Result<i32, ActError> {
    let w = ctx.workload;
    let scale = match w.kind {
        TargetKind::Deployment => Api::<Deployment>::namespaced(ctx.client.clone(), &w.namespace)
            .get_scale(&w.name)
            .await
            .map_err(api_error("get", "deployments/scale", &w.namespace))?,
        TargetKind::StatefulSet => Api::<StatefulSet>::namespaced(ctx.client.clone(), &w.namespace)
            .get_scale(&w.name)
            .await
            .map_err(api_error("get", "statefulsets/scale", &w.namespace))?,
    };
    Ok(scale.spec.and_then(|s| s.replicas).unwrap_or(1))
}

async fn set_replicas(ctx: &ActCtx<'_>, replicas: i32) -> Result<(), ActError> {
    let w = ctx.workload;
    let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    match w.kind {
        TargetKind::Deployment => {
            Api::<Deployment>::namespaced(ctx.client.clone(), &w.namespace)
                .patch_scale(&w.name, &params(), &patch)
                .await
                .map_err(api_error("patch", "deployments/scale", &w.namespace))?;
        }
        TargetKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(ctx.client.clone(), &w.namespace)
                .patch_scale(&w.name, &params(), &patch)
                .await
                .map_err(api_error("patch", "statefulsets/scale", &w.namespace))?;
        }
    }
    Ok(())
}

async fn patch_hpa(ctx: &ActCtx<'_>, name: &str, min: i32, max: Option<i32>) -> Result<(), ActError> {
    let ns = &ctx.workload.namespace;
    let mut spec = json!({"minReplicas": min});
    if let Some(max) = max {
        spec["maxReplicas"] = json!(max);
    }
    Api::<HorizontalPodAutoscaler>::namespaced(ctx.client.clone(), ns)
        .patch(name, &params(), &Patch::Merge(json!({ "spec": spec })))
        .await
        .map_err(api_error("patch", "horizontalpodautoscalers", ns))?;
    Ok(())
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Action for ScaleOut {
    fn reason(&self) -> &'static str {
        "ScaledOut"
    }

    fn apply<'a>(&'a self, ctx: &'a ActCtx<'a>, r: &'a Remediation) -> BoxFuture<'a, Result<Done, ActError>> {
        async move {
            let StepParams::ScaleOut(p) = &r.params else {
                return Err(ActError::Refused("ScaleOut without its parameters".into()));
            };
            let w = ctx.workload;
            // An earlier ScaleOut of this episode keeps its originals: they are what gets restored.
            let earlier = ctx.status.scale_restore.as_ref();
            let restore_after = format_duration(p.restore_after);
            if let Some(hpa) = autoscaler(ctx).await? {
                let name = hpa.metadata.name.clone().unwrap_or_default();
                let spec = hpa.spec.unwrap_or_default();
                let min = spec.min_replicas.unwrap_or(1);
                let wanted = to_i32(p.wanted(u32::try_from(min).unwrap_or(0)));
                if wanted <= min {
                    return Ok(Done::skipped(format!(
                        "HorizontalPodAutoscaler {name} already keeps at least {min} replicas of {w} (maxReplicas {})",
                        p.max_replicas
                    )));
                }
                let new_max = (wanted > spec.max_replicas).then_some(wanted);
                let raise_max = new_max.map_or_else(String::new, |m| format!(" and maxReplicas from {} to {m}", spec.max_replicas));
                if r.dry_run {
                    return Ok(Done::succeeded(format!(
                        "would raise minReplicas of HorizontalPodAutoscaler {name} from {min} to {wanted}{raise_max}."
                    )));
                }
                patch_hpa(ctx, &name, wanted, new_max).await?;
                let raised = ScaleRestore {
                    kind: HPA.into(),
                    name: name.clone(),
                    original: earlier.filter(|e| e.kind == HPA && e.name == name).map_or(min, |e| e.original),
                    original_max: earlier
                        .filter(|e| e.kind == HPA && e.name == name)
                        .map_or(new_max.map(|_| spec.max_replicas), |e| e.original_max),
                    set: wanted,
                    set_max: new_max,
                    restore_after: restore_after.clone(),
                };
                return Ok(Done::succeeded(format!(
                    "Raised minReplicas of HorizontalPodAutoscaler {name} (which scales {w}) from {min} to {wanted}{raise_max}; restored after {restore_after} healthy."
                ))
                .with(Effect::ScaleRecorded(raised)));
            }
            let current = replicas(ctx).await?;
            let wanted = to_i32(p.wanted(u32::try_from(current).unwrap_or(0)));
            if wanted <= current {
                return Ok(Done::skipped(format!(
                    "{w} already has {current} replicas (maxReplicas {})",
                    p.max_replicas
                )));
            }
            if r.dry_run {
                return Ok(Done::succeeded(format!("would scale {w} from {current} to {wanted} replicas.")));
            }
            set_replicas(ctx, wanted).await?;
            let raised = ScaleRestore {
                kind: WORKLOAD.into(),
                name: w.name.clone(),
                original: earlier.filter(|e| e.kind == WORKLOAD).map_or(current, |e| e.original),
                original_max: None,
                set: wanted,
                set_max: None,
                restore_after: restore_after.clone(),
            };
            Ok(Done::succeeded(format!(
                "Scaled {w} from {current} to {wanted} replicas; restored after {restore_after} healthy."
            ))
            .with(Effect::ScaleRecorded(raised)))
        }
        .boxed()
    }

    fn applied<'a>(
        &'a self,
        ctx: &'a ActCtx<'a>,
        r: &'a Remediation,
    ) -> BoxFuture<'a, Result<Option<Done>, ActError>> {
        // The mark is the raised value recorded in status with the intent: reading the workload
        // cannot tell a scale-out from anyone else's, so the action is idempotent instead: it
        // computes the target from the recorded original and sets it again (a no-op if it ran).
        let _ = (ctx, r);
        async move { Ok(None) }.boxed()
    }
}

/// Puts the raised values back if they are still what the operator set; returns whether it did
/// and a sentence for people.
pub(super) async fn restore(ctx: &ActCtx<'_>, raised: &ScaleRestore) -> Result<(bool, String), ActError> {
    let w = ctx.workload;
    if raised.kind == HPA {
        let api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), &w.namespace);
        let Some(hpa) = api.get_opt(&raised.name).await.map_err(api_error(
            "get",
            "horizontalpodautoscalers",
            &w.namespace,
        ))?
        else {
            return Ok((
                false,
                format!(
                    "HorizontalPodAutoscaler {} is gone; nothing to restore.",
                    raised.name
                ),
            ));
        };
        let spec = hpa.spec.unwrap_or_default();
        let max_ok = raised.set_max.is_none_or(|m| m == spec.max_replicas);
        if spec.min_replicas != Some(raised.set) || !max_ok {
            return Ok((
                false,
                format!(
                    "HorizontalPodAutoscaler {} was changed since ScaleOut raised it (minReplicas is {}, not {}); left as it is.",
                    raised.name,
                    spec.min_replicas.unwrap_or(1),
                    raised.set
                ),
            ));
        }
        patch_hpa(ctx, &raised.name, raised.original, raised.original_max).await?;
        return Ok((
            true,
            format!(
                "The target stayed healthy for {}: minReplicas of HorizontalPodAutoscaler {} is back to {}.",
                raised.restore_after, raised.name, raised.original
            ),
        ));
    }
    let current = replicas(ctx).await?;
    if current != raised.set {
        return Ok((
            false,
            format!(
                "{w} has {current} replicas, not the {} ScaleOut set: someone changed it, so it is left as it is.",
                raised.set
            ),
        ));
    }
    set_replicas(ctx, raised.original).await?;
    Ok((
        true,
        format!(
            "The target stayed healthy for {}: {w} is back to {} replicas.",
            raised.restore_after, raised.original
        ),
    ))
}
