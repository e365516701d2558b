//! ScaleOut: more replicas through the scale subresource, or, when a HorizontalPodAutoscaler
//! targets the workload, a higher minReplicas (and maxReplicas only if needed) instead of fighting
//! it. The object changed carries the mark (annotations with the decision time and the value found
//! before); what was raised is recorded in status and restored once the target has been healthy
//! for restoreAfter, unless someone changed it in the meantime.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::{
    Api,
    api::{ListParams, Patch},
};
use serde_json::json;

use super::{
    ActCtx, ActError, Action, Decided, Descriptor, Done, Effect, Remediation, StepParams, Workload,
    api_error, as_operator,
    params::{Params, StepField, named, required},
    workload,
};
use crate::{
    api::{
        RemediationStep, format_duration,
        validate::{InvalidSpec, at_least_one, at_most, duration, invalid, optional_at_most},
    },
    rbac::right,
    record::{Raised, ScaledKind},
};

/// What ScaleOut is: see [`Descriptor`].
pub(super) const DESCRIPTOR: Descriptor = Descriptor {
    action: crate::api::Action::ScaleOut,
    reason: "ScaledOut",
    changes_target: true,
    restarts_pods: false,
    replaces_pods: false,
    permission: "scaleOut",
    rights: &[
        right("apps", "deployments", &["patch"]),
        right("apps", "statefulsets", &["patch"]),
        right("apps", "deployments/scale", &["get", "patch"]),
        right("apps", "statefulsets/scale", &["get", "patch"]),
        right(
            "autoscaling",
            "horizontalpodautoscalers",
            &["get", "list", "patch"],
        ),
    ],
    why: "replicas, or an autoscaler's minimum instead of fighting it; marks on what it changed",
};

pub struct ScaleOut;

/// ScaleOut's parameters, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleOutSettings {
    pub by: Option<u32>,
    pub to: Option<u32>,
    pub max_replicas: u32,
    pub restore_after: std::time::Duration,
}

impl ScaleOutSettings {
    /// The replicas wanted from `current`, never beyond maxReplicas.
    pub fn wanted(&self, current: u32) -> u32 {
        let wanted = match (self.by, self.to) {
            (Some(by), _) => current.saturating_add(by),
            (None, Some(to)) => to,
            (None, None) => current,
        };
        wanted.min(self.max_replicas)
    }
}

impl Params for ScaleOut {
    type Settings = ScaleOutSettings;

    fn block(step: &RemediationStep) -> Option<&'static str> {
        named("scaleOut", step.scale_out.as_ref())
    }

    fn limits(f: StepField, step: &RemediationStep) -> Result<(), InvalidSpec> {
        let Some(p) = &step.scale_out else {
            return Ok(());
        };
        optional_at_most(&f.at("scaleOut.by"), p.by, 1000)?;
        optional_at_most(&f.at("scaleOut.to"), p.to, 10_000)?;
        at_most(&f.at("scaleOut.maxReplicas"), p.max_replicas, 10_000)
    }

    fn settings(f: StepField, step: &RemediationStep) -> Result<ScaleOutSettings, InvalidSpec> {
        let p = required(f, "scaleOut", "ScaleOut", step.scale_out.as_deref())?;
        let target = match (p.by, p.to) {
            (Some(by), None) => by,
            (None, Some(to)) => to,
            _ => return Err(invalid(f.at("scaleOut"), "must set exactly one of: by, to")),
        };
        at_least_one(&f.at("scaleOut.maxReplicas"), p.max_replicas)?;
        if p.max_replicas < target {
            let which = if p.by.is_some() { "by" } else { "to" };
            return Err(invalid(
                f.at("scaleOut.maxReplicas"),
                format!(
                    "must be at least scaleOut.{which} ({} < {target})",
                    p.max_replicas
                ),
            ));
        }
        Ok(ScaleOutSettings {
            by: p.by.map(|b| at_least_one(&f.at("scaleOut.by"), b)).transpose()?,
            to: p.to.map(|t| at_least_one(&f.at("scaleOut.to"), t)).transpose()?,
            max_replicas: p.max_replicas,
            restore_after: duration(&f.at("scaleOut.restoreAfter"), &p.restore_after)?,
        })
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
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decision {
    done: bool,
    message: String,
    raised: Raised,
    /// The HPA's name, or None for the workload's replicas.
    hpa: Option<String>,
    /// The value found before, as the mark records it.
    from: String,
}

/// What ScaleOut decides from, as read from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// An autoscaler targets the workload: its replicas bounds now, and the value its mark
    /// recorded ("min/max") if the mark is this decision's.
    Autoscaler {
        name: String,
        min: i32,
        max: i32,
        marked: Option<String>,
    },
    /// No autoscaler: the workload's replicas now, and what its mark recorded.
    Replicas { current: i32, marked: Option<String> },
}

/// Reads what ScaleOut decides from: the autoscaler that targets the workload, or else its
/// replicas, each with the mark of the decision made at `r.at`.
async fn read(ctx: &ActCtx<'_>, r: &Remediation) -> Result<Seen, ActError> {
    let mark = r.at.to_string();
    if let Some(hpa) = autoscaler(ctx).await? {
        let spec = hpa.spec.clone().unwrap_or_default();
        return Ok(Seen::Autoscaler {
            name: hpa.metadata.name.clone().unwrap_or_default(),
            min: spec.min_replicas.unwrap_or(1),
            max: spec.max_replicas,
            marked: marked_from(hpa.metadata.annotations.as_ref(), &mark),
        });
    }
    let current = workload::replicas(ctx).await?;
    let object = workload::found(ctx).await?;
    Ok(Seen::Replicas {
        current,
        marked: marked_from(object.metadata.annotations.as_ref(), &mark),
    })
}

/// What a scale-out of `w` does from what was `seen`; `earlier` is the restore an earlier
/// ScaleOut of the same episode recorded (its originals are what gets restored). Pure.
fn decide(seen: &Seen, p: &ScaleOutSettings, earlier: Option<&Raised>, w: &Workload) -> Decided<Decision> {
    let restore_after = p.restore_after;
    match seen {
        Seen::Autoscaler {
            name,
            min: now_min,
            max: now_max,
            marked,
        } => {
            // After a restart, start from what the mark recorded, not from what was already raised.
            let from = marked
                .as_deref()
                .and_then(|f| f.split_once('/').map(|(a, b)| (a.parse().ok(), b.parse().ok())))
                .and_then(|(a, b)| Some((a?, b?)));
            let (min, max) = from.unwrap_or((*now_min, *now_max));
            let wanted = to_i32(p.wanted(u32::try_from(min).unwrap_or(0)));
            if wanted <= min {
                return Decided::Nothing(format!(
                    "HorizontalPodAutoscaler {name} already keeps at least {min} replicas of {w} (maxReplicas {})",
                    p.max_replicas
                ));
            }
            let new_max = (wanted > max).then_some(wanted);
            let raise_max =
                new_max.map_or_else(String::new, |m| format!(" and maxReplicas from {max} to {m}"));
            let same = |e: &&Raised| e.kind == ScaledKind::Autoscaler && e.name == *name;
            Decided::Do(Decision {
                done: from.is_some() && *now_min == wanted,
                message: format!(
                    "minReplicas of HorizontalPodAutoscaler {name} (which scales {w}) from {min} to {wanted}{raise_max}"
                ),
                raised: Raised {
                    kind: ScaledKind::Autoscaler,
                    name: name.clone(),
                    original: earlier.filter(same).map_or(min, |e| e.original),
                    original_max: earlier
                        .filter(same)
                        .map_or(new_max.map(|_| max), |e| e.original_max),
                    set: wanted,
                    set_max: new_max,
                    restore_after,
                },
                hpa: Some(name.clone()),
                from: format!("{min}/{max}"),
            })
        }
        Seen::Replicas { current, marked } => {
            let from = marked.as_deref().and_then(|f| f.parse::<i32>().ok());
            let start = from.unwrap_or(*current);
            let wanted = to_i32(p.wanted(u32::try_from(start).unwrap_or(0)));
            if wanted <= start {
                return Decided::Nothing(format!(
                    "{w} already has {start} replicas (maxReplicas {})",
                    p.max_replicas
                ));
            }
            Decided::Do(Decision {
                done: from.is_some() && *current == wanted,
                message: format!("{w} from {start} to {wanted} replicas"),
                raised: Raised {
                    kind: ScaledKind::Workload,
                    name: w.name.clone(),
                    original: earlier
                        .filter(|e| e.kind == ScaledKind::Workload)
                        .map_or(start, |e| e.original),
                    original_max: None,
                    set: wanted,
                    set_max: None,
                    restore_after,
                },
                hpa: None,
                from: start.to_string(),
            })
        }
    }
}

/// Reads and decides the scale-out `r`.
async fn decided(ctx: &ActCtx<'_>, r: &Remediation) -> Result<Decided<Decision>, ActError> {
    let StepParams::ScaleOut(p) = &r.params else {
        return Err(ActError::Refused("ScaleOut without its parameters".into()));
    };
    let seen = read(ctx, r).await?;
    Ok(decide(&seen, p, ctx.recorded.raised.as_ref(), ctx.workload))
}

impl Action for ScaleOut {
    async fn apply(&self, ctx: &ActCtx<'_>, r: &Remediation) -> Result<Done, ActError> {
        let d = match decided(ctx, r).await? {
            Decided::Do(d) => d,
            Decided::Nothing(why) => return Ok(Done::skipped(why)),
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
            d.message,
            format_duration(d.raised.restore_after)
        ))
        .with(Effect::ScaleRecorded(d.raised)))
    }

    async fn applied(&self, ctx: &ActCtx<'_>, r: &Remediation) -> Result<Option<Done>, ActError> {
        Ok(match decided(ctx, r).await? {
            Decided::Do(d) if d.done => {
                Some(Done::succeeded(format!("Scaled {}.", d.message)).with(Effect::ScaleRecorded(d.raised)))
            }
            _ => None,
        })
    }
}

/// Puts the raised values back if they are still what the operator set; returns whether it did
/// and a sentence for people.
pub(super) async fn restore(ctx: &ActCtx<'_>, raised: &Raised) -> Result<(bool, String), ActError> {
    let w = ctx.workload;
    if raised.kind == ScaledKind::Autoscaler {
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
                format_duration(raised.restore_after),
                raised.name,
                raised.original
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
            format_duration(raised.restore_after),
            raised.original
        ),
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::TargetKind;

    fn web() -> Workload {
        Workload {
            kind: TargetKind::Deployment,
            namespace: "shop".into(),
            name: "web".into(),
        }
    }

    fn by(n: u32, max: u32) -> ScaleOutSettings {
        ScaleOutSettings {
            by: Some(n),
            to: None,
            max_replicas: max,
            restore_after: Duration::from_secs(1800),
        }
    }

    fn replicas(current: i32, marked: Option<&str>) -> Seen {
        Seen::Replicas {
            current,
            marked: marked.map(Into::into),
        }
    }

    fn hpa(min: i32, max: i32, marked: Option<&str>) -> Seen {
        Seen::Autoscaler {
            name: "web".into(),
            min,
            max,
            marked: marked.map(Into::into),
        }
    }

    /// (what, seen, settings, earlier restore) → Nothing, or (done, message, original, set, set_max, from).
    type Want = Option<(bool, &'static str, i32, i32, Option<i32>, &'static str)>;

    #[test]
    fn scale_out_decides_from_what_it_read() {
        let earlier_workload = Raised {
            kind: ScaledKind::Workload,
            name: "web".into(),
            original: 2,
            original_max: None,
            set: 3,
            set_max: None,
            restore_after: Duration::from_secs(1800),
        };
        let cases: [(&str, Seen, ScaleOutSettings, Option<&Raised>, Want); 8] = [
            (
                "replicas raised by 2",
                replicas(2, None),
                by(2, 10),
                None,
                Some((false, "Deployment web from 2 to 4 replicas", 2, 4, None, "2")),
            ),
            (
                "never beyond maxReplicas",
                replicas(4, None),
                by(5, 6),
                None,
                Some((false, "Deployment web from 4 to 6 replicas", 4, 6, None, "4")),
            ),
            ("already at maxReplicas", replicas(6, None), by(2, 6), None, None),
            (
                "after a restart the mark says where it started, and that it landed",
                replicas(4, Some("2")),
                by(2, 10),
                None,
                Some((true, "Deployment web from 2 to 4 replicas", 2, 4, None, "2")),
            ),
            (
                "an earlier scale-out of the episode keeps its original",
                replicas(3, None),
                by(2, 10),
                Some(&earlier_workload),
                Some((false, "Deployment web from 3 to 5 replicas", 2, 5, None, "3")),
            ),
            (
                "an autoscaler's minimum is raised, its maximum only when needed",
                hpa(2, 10, None),
                by(3, 20),
                None,
                Some((
                    false,
                    "minReplicas of HorizontalPodAutoscaler web (which scales Deployment web) from 2 to 5",
                    2,
                    5,
                    None,
                    "2/10",
                )),
            ),
            (
                "an autoscaler's maximum is raised when the minimum passes it",
                hpa(4, 5, None),
                by(3, 20),
                None,
                Some((
                    false,
                    "minReplicas of HorizontalPodAutoscaler web (which scales Deployment web) from 4 to 7 and maxReplicas from 5 to 7",
                    4,
                    7,
                    Some(7),
                    "4/5",
                )),
            ),
            (
                "an autoscaler already at the ceiling",
                hpa(6, 10, None),
                by(2, 6),
                None,
                None,
            ),
        ];
        for (what, seen, settings, earlier, want) in cases {
            let got = match decide(&seen, &settings, earlier, &web()) {
                Decided::Nothing(why) => {
                    assert!(why.contains("already"), "{what}: {why}");
                    None
                }
                Decided::Do(d) => Some((
                    d.done,
                    d.message.clone(),
                    d.raised.original,
                    d.raised.set,
                    d.raised.set_max,
                    d.from.clone(),
                )),
            };
            let want = want.map(|(done, message, original, set, set_max, from)| {
                (done, message.to_owned(), original, set, set_max, from.to_owned())
            });
            assert_eq!(got, want, "{what}");
        }
    }
}
