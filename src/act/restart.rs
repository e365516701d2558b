//! RolloutRestart: the pod template annotation `apphealth.io/restartedAt` set to the decision time,
//! as `kubectl rollout restart` does (and distinguishable from it). The annotation is the mark.

use kube::api::Patch;
use serde_json::json;

use super::{
    ActCtx, ActError, Action, Descriptor, Done, Remediation,
    params::{Params, StepField},
    workload,
};
use crate::{
    api::{RESTARTED_AT_ANNOTATION, RemediationStep, validate::InvalidSpec},
    rbac::right,
};

/// What RolloutRestart is: see [`Descriptor`].
pub(super) const DESCRIPTOR: Descriptor = Descriptor {
    action: crate::api::Action::RolloutRestart,
    reason: "RolloutRestarted",
    changes_target: true,
    restarts_pods: true,
    replaces_pods: true,
    permission: "rolloutRestart",
    rights: &[
        right("apps", "deployments", &["patch"]),
        right("apps", "statefulsets", &["patch"]),
    ],
    why: "an annotation on the pod template",
};

pub struct RolloutRestart;

/// RolloutRestart has no parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRestartSettings;

impl Params for RolloutRestart {
    type Settings = RolloutRestartSettings;

    fn block(_step: &RemediationStep) -> Option<&'static str> {
        None
    }

    fn settings(_f: StepField, _step: &RemediationStep) -> Result<RolloutRestartSettings, InvalidSpec> {
        Ok(RolloutRestartSettings)
    }
}

impl Action for RolloutRestart {
    async fn apply(&self, ctx: &ActCtx<'_>, r: &Remediation) -> Result<Done, ActError> {
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
        workload::patch(ctx, &Patch::Merge(patch)).await?;
        Ok(Done::succeeded(format!(
            "Set {RESTARTED_AT_ANNOTATION}={mark} on the pod template of {w}, which rolls its pods."
        )))
    }

    async fn applied(&self, ctx: &ActCtx<'_>, r: &Remediation) -> Result<Option<Done>, ActError> {
        let mark = r.at.to_string();
        let object = workload::found(ctx).await?;
        Ok(
            (object.template_annotation(RESTARTED_AT_ANNOTATION) == Some(mark.as_str())).then(|| {
                Done::succeeded(format!(
                    "{RESTARTED_AT_ANNOTATION}={mark} is on the pod template of {}.",
                    ctx.workload
                ))
            }),
        )
    }
}
