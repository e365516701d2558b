//! ScaleOut: more replicas through the scale subresource, or, when a HorizontalPodAutoscaler
//! targets the workload, a higher minReplicas (and maxReplicas only if needed) instead of fighting
//! it. The object changed carries the mark (annotations with the decision time and the value found
//! before); what was raised is recorded in status and restored once the target has been healthy
//! for restoreAfter, unless someone changed it in the meantime.

use futures::{FutureExt, future::BoxFuture};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::{
    Api,
    api::{ListParams, Patch},
};
use serde_json::json;

use super::{ActCtx, ActError, Action, Done, api_error, as_operator, workload};
use crate::{
    api::{ScaleRestore, format_duration, validate::StepParams},
    plan::Remediation,
    report::Effect,
};

pub struct ScaleOut;

const WORKLOAD: &str = "Workload";
const HPA: &str = "HorizontalPodAutoscaler";

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

async fn patch_hpa(ctx: &ActCtx<'_>, name: &str, patch: &serde_json::Value) -> Result<(), ActError> {
    let ns = &ctx.workload.namespace;
    Api::<HorizontalPodAutoscaler>::namespaced(ctx.client.clone(), ns)
        .patch(name, &as_operator(), &Patch::Merge(patch))
        .await
        .map_err(api_error("patch", "horizontalpodautoscalers", ns))?;
    Ok(())
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Annotations that mark a scale-out on the object changed: the decision time and the value found
/// before it ("replicas", or "min/max" of an autoscaler). With them a restarted operator can tell
/// whether its scale-out landed, and from what it started.
pub const SCALED_OUT_AT: &str = "apphealth.io/scaledOutAt";
pub const SCALED_OUT_FROM: &str = "apphealth.io/scaledOutFrom";

fn marked_from(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    mark: &str,
) -> Option<String> {
    let a = annotations?;
    (a.get(SCALED_OUT_AT).map(String::as_str) == Some(mark))
        .then(|| a.get(SCALED_OUT_FROM).cloned())
        .flatten()
}

fn mark_patch(mark: &str, from: &str) -> serde_json::Value {
    json!({"metadata": {"annotations": {SCALED_OUT_AT: mark, SCALED_OUT_FROM: from}}})
}

/// What a scale-out decided at `r.at` does, and whether it already happened.
struct Decision {
    done: bool,
    message: String,
    raised: ScaleRestore,
    /// The HPA's name, or None for the workload's replicas.
    hpa: Option<String>,
    /// The value found before, as the mark records it.
    from: String,
}

async fn decide(ctx: &ActCtx<'_>, r: &Remediation) -> Result<Result<Decision, String>, ActError> {
    let StepParams::ScaleOut(p) = &r.params else {
        return Err(ActError::Refused("ScaleOut without its parameters".into()));
    };
    let w = ctx.workload;
    let mark = r.at.to_string();
    // An earlier ScaleOut of this episode keeps its originals: they are what gets restored.
    let earlier = ctx.status.scale_restore.as_ref();
    let restore_after = format_duration(p.restore_after);
    if let Some(hpa) = autoscaler(ctx).await? {
        let name = hpa.metadata.name.clone().unwrap_or_default();
        let spec = hpa.spec.unwrap_or_default();
        let (now_min, now_max) = (spec.min_replicas.unwrap_or(1), spec.max_replicas);
        // After a restart, start from what the mark recorded, not from what was already raised.
        let from = marked_from(hpa.metadata.annotations.as_ref(), &mark)
            .and_then(|f| f.split_once('/').map(|(a, b)| (a.parse().ok(), b.parse().ok())))
            .and_then(|(a, b)| Some((a?, b?)));
        let (min, max) = from.unwrap_or((now_min, now_max));
        let wanted = to_i32(p.wanted(u32::try_from(min).unwrap_or(0)));
        if wanted <= min {
            return Ok(Err(format!(
                "HorizontalPodAutoscaler {name} already keeps at least {min} replicas of {w} (maxReplicas {})",
                p.max_replicas
            )));
        }
        let new_max = (wanted > max).then_some(wanted);
        let raise_max = new_max.map_or_else(String::new, |m| format!(" and maxReplicas from {max} to {m}"));
        let same = |e: &&ScaleRestore| e.kind == HPA && e.name == name;
        return Ok(Ok(Decision {
            done: from.is_some() && now_min == wanted,
            message: format!(
                "minReplicas of HorizontalPodAutoscaler {name} (which scales {w}) from {min} to {wanted}{raise_max}"
            ),
            raised: ScaleRestore {
                kind: HPA.into(),
                name: name.clone(),
                original: earlier.filter(same).map_or(min, |e| e.original),
                original_max: earlier
                    .filter(same)
                    .map_or(new_max.map(|_| max), |e| e.original_max),
                set: wanted,
                set_max: new_max,
                restore_after,
            },
            hpa: Some(name),
            from: format!("{min}/{max}"),
        }));
    }
    let current = workload::replicas(ctx).await?;
    let from = marked_from(workload::found(ctx).await?.metadata.annotations.as_ref(), &mark)
        .and_then(|f| f.parse::<i32>().ok());
    let start = from.unwrap_or(current);
    let wanted = to_i32(p.wanted(u32::try_from(start).unwrap_or(0)));
    if wanted <= start {
        return Ok(Err(format!(
            "{w} already has {start} replicas (maxReplicas {})",
            p.max_replicas
        )));
    }
    Ok(Ok(Decision {
        done: from.is_some() && current == wanted,
        message: format!("{w} from {start} to {wanted} replicas"),
        raised: ScaleRestore {
            kind: WORKLOAD.into(),
            name: w.name.clone(),
            original: earlier
                .filter(|e| e.kind == WORKLOAD)
                .map_or(start, |e| e.original),
            original_max: None,
            set: wanted,
            set_max: None,
            restore_after,
        },
        hpa: None,
        from: start.to_string(),
    }))
}

impl Action for ScaleOut {
    fn reason(&self) -> &'static str {
        "ScaledOut"
    }

    fn apply<'a>(&'a self, ctx: &'a ActCtx<'a>, r: &'a Remediation) -> BoxFuture<'a, Result<Done, ActError>> {
        async move {
            let d = match decide(ctx, r).await? {
                Ok(d) => d,
                Err(nothing_to_do) => return Ok(Done::skipped(nothing_to_do)),
            };
            if r.dry_run {
                let verb = if d.hpa.is_some() { "raise" } else { "scale" };
                return Ok(Done::succeeded(format!("would {verb} {}.", d.message)));
            }
            let mark = r.at.to_string();
            match &d.hpa {
                Some(name) => {
                    // One write carries the change and its mark.
                    let mut patch = mark_patch(&mark, &d.from);
                    patch["spec"] = json!({"minReplicas": d.raised.set});
                    if let Some(max) = d.raised.set_max {
                        patch["spec"]["maxReplicas"] = json!(max);
                    }
                    patch_hpa(ctx, name, &patch).await?;
                }
                None => {
                    // The mark first (metadata only: no rollout), then the scale subresource.
                    workload::patch(ctx, &Patch::Merge(mark_patch(&mark, &d.from))).await?;
                    workload::set_replicas(ctx, d.raised.set).await?;
                }
            }
            let verb = if d.hpa.is_some() { "Raised" } else { "Scaled" };
            Ok(Done::succeeded(format!(
                "{verb} {}; restored after {} healthy.",
                d.message, d.raised.restore_after
            ))
            .with(Effect::ScaleRecorded(d.raised)))
        }
        .boxed()
    }

    fn applied<'a>(
        &'a self,
        ctx: &'a ActCtx<'a>,
        r: &'a Remediation,
    ) -> BoxFuture<'a, Result<Option<Done>, ActError>> {
        async move {
            Ok(match decide(ctx, r).await? {
                Ok(d) if d.done => Some(
                    Done::succeeded(format!("Scaled {}.", d.message)).with(Effect::ScaleRecorded(d.raised)),
                ),
                _ => None,
            })
        }
        .boxed()
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
        let mut spec = json!({"minReplicas": raised.original});
        if let Some(max) = raised.original_max {
            spec["maxReplicas"] = json!(max);
        }
        patch_hpa(ctx, &raised.name, &json!({ "spec": spec })).await?;
        return Ok((
            true,
            format!(
                "The target stayed healthy for {}: minReplicas of HorizontalPodAutoscaler {} is back to {}.",
                raised.restore_after, raised.name, raised.original
            ),
        ));
    }
    let current = workload::replicas(ctx).await?;
    if current != raised.set {
        return Ok((
            false,
            format!(
                "{w} has {current} replicas, not the {} ScaleOut set: someone changed it, so it is left as it is.",
                raised.set
            ),
        ));
    }
    workload::set_replicas(ctx, raised.original).await?;
    Ok((
        true,
        format!(
            "The target stayed healthy for {}: {w} is back to {} replicas.",
            raised.restore_after, raised.original
        ),
    ))
}
