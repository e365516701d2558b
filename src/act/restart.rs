//! RolloutRestart: the pod template annotation `apphealth.io/restartedAt` set to the decision time,
//! as `kubectl rollout restart` does (and distinguishable from it). The annotation is the mark.

use futures::{FutureExt, future::BoxFuture};
use kube::api::Patch;
use serde_json::json;

use super::{ActCtx, ActError, Action, Done, workload};
use crate::{api::RESTARTED_AT_ANNOTATION, plan::Remediation};

pub struct RolloutRestart;

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
            workload::patch(ctx, &Patch::Merge(patch)).await?;
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
        .boxed()
    }
}
