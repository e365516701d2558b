//! ScaleUp: the containers' memory and CPU requests and limits raised by a share, never beyond the
//! maxima, on the pod template (which rolls the pods: the counterpart of moving an App Service to
//! a bigger plan). With `inPlace`, the running pods are resized first through `pods/resize`
//! (Kubernetes 1.33+) so they get the room at once; when the cluster refuses, only the template
//! changes. Not restored: a person should look at why the app needs more. The mark: the template
//! annotation `apphealth.io/scaledUpAt`.

use k8s_openapi::api::core::v1::{Container, Pod, PodTemplateSpec};
use kube::{
    Api,
    api::{ListParams, Patch},
};
use serde_json::json;

use super::{
    ActCtx, ActError, Action, Descriptor, Done, Remediation, StepParams, as_operator,
    params::{Params, StepField, named, required},
    workload,
};
use crate::{
    api::{
        RemediationStep, quantity,
        validate::{InvalidSpec, invalid, optional_at_most, optional_chars},
    },
    rbac::right,
};

/// What ScaleUp is: see [`Descriptor`].
pub(super) const DESCRIPTOR: Descriptor = Descriptor {
    action: crate::api::Action::ScaleUp,
    reason: "ScaledUp",
    changes_target: true,
    restarts_pods: false,
    replaces_pods: true,
    permission: "scaleUp",
    rights: &[
        right("apps", "deployments", &["patch"]),
        right("apps", "statefulsets", &["patch"]),
        right("", "pods/resize", &["patch"]),
    ],
    why: "resources on the pod template; running pods resized in place with `inPlace`",
};

pub struct ScaleUp;

/// ScaleUp's parameters, parsed: percentages (0 for a resource left alone) and the maxima, in
/// bytes and millicores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleUpSettings {
    pub memory_percent: u32,
    pub cpu_percent: u32,
    pub max_memory: u64,
    pub max_millicores: u64,
    pub in_place: bool,
}

impl Params for ScaleUp {
    type Settings = ScaleUpSettings;

    fn block(step: &RemediationStep) -> Option<&'static str> {
        named("scaleUp", step.scale_up.as_ref())
    }

    fn limits(f: StepField, step: &RemediationStep) -> Result<(), InvalidSpec> {
        let Some(p) = &step.scale_up else {
            return Ok(());
        };
        optional_at_most(&f.at("scaleUp.memoryPercent"), p.memory_percent, 1000)?;
        optional_at_most(&f.at("scaleUp.cpuPercent"), p.cpu_percent, 1000)?;
        optional_chars(&f.at("scaleUp.maxMemory"), p.max_memory.as_ref(), 32)?;
        optional_chars(&f.at("scaleUp.maxCpu"), p.max_cpu.as_ref(), 32)
    }

    fn settings(f: StepField, step: &RemediationStep) -> Result<ScaleUpSettings, InvalidSpec> {
        let p = required(f, "scaleUp", "ScaleUp", step.scale_up.as_deref())?;
        if p.memory_percent.is_none() && p.cpu_percent.is_none() {
            return Err(invalid(f.at("scaleUp"), "must set memoryPercent or cpuPercent"));
        }
        let max_memory = match (p.memory_percent, &p.max_memory) {
            (None, _) => 0,
            (Some(_), None) => {
                return Err(invalid(
                    f.at("scaleUp.maxMemory"),
                    "is required with memoryPercent",
                ));
            }
            (Some(_), Some(m)) => quantity::bytes(m).filter(|b| *b > 0).ok_or_else(|| {
                invalid(
                    f.at("scaleUp.maxMemory"),
                    format!("{m:?} is not a size such as 2Gi"),
                )
            })?,
        };
        let max_millicores = match (p.cpu_percent, &p.max_cpu) {
            (None, _) => 0,
            (Some(_), None) => return Err(invalid(f.at("scaleUp.maxCpu"), "is required with cpuPercent")),
            (Some(_), Some(c)) => quantity::millicores(c).filter(|m| *m > 0).ok_or_else(|| {
                invalid(
                    f.at("scaleUp.maxCpu"),
                    format!("{c:?} is not a CPU amount such as 2 or 500m"),
                )
            })?,
        };
        Ok(ScaleUpSettings {
            memory_percent: p.memory_percent.unwrap_or(0),
            cpu_percent: p.cpu_percent.unwrap_or(0),
            max_memory,
            max_millicores,
            in_place: p.in_place,
        })
    }
}

pub const SCALED_UP_AT: &str = "apphealth.io/scaledUpAt";

/// `value` raised by `percent`, rounded up, capped at `max`; None when it cannot grow.
pub fn raised(value: u64, percent: u32, max: u64) -> Option<u64> {
    let grown = value
        .saturating_mul(100 + u64::from(percent))
        .div_ceil(100)
        .min(max);
    (grown > value).then_some(grown)
}

/// Memory as people write it: Mi or Gi when exact, bytes otherwise.
pub fn format_memory(bytes: u64) -> String {
    const MI: u64 = 1 << 20;
    if bytes % (1 << 30) == 0 {
        format!("{}Gi", bytes >> 30)
    } else if bytes % MI == 0 {
        format!("{}Mi", bytes / MI)
    } else {
        bytes.to_string()
    }
}

/// The new requests and limits of one container, and sentences saying what changed.
fn container_change(c: &Container, s: &ScaleUpSettings) -> Option<(serde_json::Value, Vec<String>)> {
    let resources = c.resources.clone().unwrap_or_default();
    let mut patch = json!({"name": c.name});
    let mut said = Vec::new();
    for (kind, values) in [("requests", resources.requests), ("limits", resources.limits)] {
        for (resource, q) in values.into_iter().flatten() {
            let new = match resource.as_str() {
                "memory" if s.memory_percent > 0 => quantity::bytes(&q.0)
                    .and_then(|v| raised(v, s.memory_percent, s.max_memory))
                    .map(format_memory),
                "cpu" if s.cpu_percent > 0 => quantity::millicores(&q.0)
                    .and_then(|v| raised(v, s.cpu_percent, s.max_millicores))
                    .map(|m| format!("{m}m")),
                _ => None,
            };
            if let Some(new) = new {
                said.push(format!("{} {resource} {kind} {} → {new}", c.name, q.0));
                patch["resources"][kind][resource.as_str()] = json!(new);
            }
        }
    }
    (!said.is_empty()).then_some((patch, said))
}

/// The selector of the workload's pods ("k=v,…"), None when it selects by expressions only.
fn selector(o: &workload::Object) -> Option<String> {
    let labels: Vec<String> = o
        .selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    (!labels.is_empty()).then(|| labels.join(","))
}

fn containers(t: &PodTemplateSpec) -> &[Container] {
    t.spec.as_ref().map_or(&[], |s| s.containers.as_slice())
}

/// Why the cluster did not resize the pods in place (the template is raised anyway).
#[derive(Debug, thiserror::Error)]
enum InPlaceRefused {
    #[error("could not list the pods: {0}")]
    List(kube::Error),
    /// The API server's answer to `pods/resize` (404 where it has no such subresource, 403, 422).
    #[error("HTTP {code}: {message}")]
    Answered { code: u16, message: String },
    #[error("{0}")]
    Failed(kube::Error),
}

/// Resizes the running pods in place; Err with why when the cluster refuses.
async fn resize_pods(
    ctx: &ActCtx<'_>,
    selector: &str,
    containers: &[serde_json::Value],
) -> Result<Vec<String>, InPlaceRefused> {
    let ns = &ctx.workload.namespace;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(InPlaceRefused::List)?;
    let params = as_operator();
    let patch = Patch::Strategic(json!({"spec": {"containers": containers}}));
    let mut resized = Vec::new();
    for pod in list.items {
        let name = pod.metadata.name.unwrap_or_default();
        match pods.patch_subresource("resize", &name, &params, &patch).await {
            Ok(_) => resized.push(name),
            Err(kube::Error::Api(s)) => {
                return Err(InPlaceRefused::Answered {
                    code: s.code,
                    message: s.message,
                });
            }
            Err(e) => return Err(InPlaceRefused::Failed(e)),
        }
    }
    Ok(resized)
}

impl Action for ScaleUp {
    async fn apply(&self, ctx: &ActCtx<'_>, r: &Remediation) -> Result<Done, ActError> {
        let StepParams::ScaleUp(s) = &r.params else {
            return Err(ActError::Refused("ScaleUp without its parameters".into()));
        };
        let w = ctx.workload;
        let object = workload::found(ctx).await?;
        let selector = selector(&object);
        let changes: Vec<(serde_json::Value, Vec<String>)> = containers(&object.template)
            .iter()
            .filter_map(|c| container_change(c, s))
            .collect();
        if changes.is_empty() {
            return Ok(Done::skipped(format!(
                "no container of {w} sets a memory or CPU request or limit below the maxima"
            )));
        }
        let said = changes
            .iter()
            .flat_map(|(_, said)| said.clone())
            .collect::<Vec<_>>()
            .join(", ");
        if r.dry_run {
            return Ok(Done::succeeded(format!(
                "would raise {said} on the pod template of {w}."
            )));
        }
        let patches: Vec<serde_json::Value> = changes.into_iter().map(|(p, _)| p).collect();
        let in_place = match (s.in_place, &selector) {
            (false, _) => String::new(),
            (true, None) => {
                " The pods were not resized in place: the workload selects them by expressions only.".into()
            }
            (true, Some(selector)) => match resize_pods(ctx, selector, &patches).await {
                Ok(pods) => format!(" Resized pod {} in place first.", pods.join(", ")),
                Err(why) => format!(
                    " In-place resize was refused ({why}); only the template changed, which rolls the pods."
                ),
            },
        };
        let patch = json!({"spec": {"template": {
            "metadata": {"annotations": {SCALED_UP_AT: r.at.to_string()}},
            "spec": {"containers": patches}
        }}});
        workload::patch(ctx, &Patch::Strategic(patch)).await?;
        Ok(Done::succeeded(format!(
            "Raised {said} on the pod template of {w}.{in_place} This is not undone automatically: a person should look at why the app needs more."
        )))
    }

    async fn applied(&self, ctx: &ActCtx<'_>, r: &Remediation) -> Result<Option<Done>, ActError> {
        let object = workload::found(ctx).await?;
        let mark = r.at.to_string();
        Ok(
            (object.template_annotation(SCALED_UP_AT) == Some(mark.as_str())).then(|| {
                Done::succeeded(format!(
                    "{SCALED_UP_AT}={mark} is on the pod template of {}.",
                    ctx.workload
                ))
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_rounds_up_and_stops_at_the_maximum() {
        assert_eq!(raised(256 << 20, 50, 1 << 30), Some(384 << 20));
        assert_eq!(raised(900 << 20, 50, 1 << 30), Some(1 << 30), "capped");
        assert_eq!(raised(1 << 30, 50, 1 << 30), None, "already at the maximum");
        assert_eq!(raised(250, 10, 2000), Some(275));
        assert_eq!(raised(3, 10, 2000), Some(4), "rounded up");
        assert_eq!(format_memory(384 << 20), "384Mi");
        assert_eq!(format_memory(2 << 30), "2Gi");
        assert_eq!(format_memory(1000), "1000");
    }

    #[test]
    fn only_set_resources_below_the_maximum_change() {
        let c: Container = serde_json::from_value(json!({
            "name": "app",
            "resources": {"requests": {"memory": "256Mi", "cpu": "250m"}, "limits": {"memory": "1Gi"}}
        }))
        .unwrap();
        let s = ScaleUpSettings {
            memory_percent: 50,
            cpu_percent: 0,
            max_memory: 1 << 30,
            max_millicores: 0,
            in_place: false,
        };
        let (patch, said) = container_change(&c, &s).unwrap();
        assert_eq!(
            patch,
            json!({"name": "app", "resources": {"requests": {"memory": "384Mi"}}})
        );
        assert_eq!(said, ["app memory requests 256Mi → 384Mi"]);
    }
}
