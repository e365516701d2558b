//! Rollback: when the unhealthy pods all belong to the Deployment's newest ReplicaSet and that
//! rollout began less than `within` ago, put the previous revision's pod template back (what
//! `kubectl rollout undo` does). Otherwise the step is skipped, saying why: restarting a bad
//! version only restarts the outage, and rolling back a good one helps nobody. The mark: the
//! Deployment's annotation `apphealth.io/rolledBackAt`.

use futures::{FutureExt, future::BoxFuture};
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::Pod,
};
use kube::{
    Api,
    api::{ListParams, PostParams},
};

use super::{ActCtx, ActError, Action, Done, MANAGER, api_error, workload};
use crate::{
    api::{TargetKind, format_duration, validate::StepParams},
    clock,
    plan::Remediation,
};

pub struct Rollback;

pub const ROLLED_BACK_AT: &str = "apphealth.io/rolledBackAt";
pub const ROLLED_BACK_TO: &str = "apphealth.io/rolledBackTo";
const REVISION: &str = "deployment.kubernetes.io/revision";

fn revision(rs: &ReplicaSet) -> Option<u64> {
    rs.metadata.annotations.as_ref()?.get(REVISION)?.parse().ok()
}

/// What a rollback would do, or why it does not apply.
struct Undo {
    deployment: Deployment,
    newest: u64,
    previous: ReplicaSet,
    previous_revision: u64,
}

async fn plan_undo(ctx: &ActCtx<'_>, r: &Remediation) -> Result<Result<Undo, String>, ActError> {
    let w = ctx.workload;
    let ns = &w.namespace;
    if w.kind != TargetKind::Deployment {
        return Ok(Err(format!(
            "Rollback works on Deployments; {w} keeps its revisions in ControllerRevisions, which the operator does not roll back"
        )));
    }
    let within = match &r.params {
        StepParams::Rollback { within } => *within,
        _ => return Err(ActError::Refused("Rollback without its parameters".into())),
    };
    let Some(deployment) = Api::<Deployment>::namespaced(ctx.client.clone(), ns)
        .get_opt(&w.name)
        .await
        .map_err(api_error("get", "deployments", ns))?
    else {
        return Ok(Err(format!("{w} is gone")));
    };
    let uid = deployment.metadata.uid.clone().unwrap_or_default();
    let mut sets: Vec<(u64, ReplicaSet)> = Api::<ReplicaSet>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(api_error("list", "replicasets", ns))?
        .items
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .filter_map(|rs| Some((revision(&rs)?, rs)))
        .collect();
    sets.sort_by_key(|(rev, _)| std::cmp::Reverse(*rev));
    let (Some((newest, newest_rs)), Some((previous_revision, previous))) = (sets.first(), sets.get(1)) else {
        return Ok(Err(format!("{w} has no earlier revision to roll back to")));
    };
    if r.pods.is_empty() {
        return Ok(Err(
            "no unhealthy pod is known, so there is no telling which revision fails".into(),
        ));
    }
    let newest_name = newest_rs.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    for name in &r.pods {
        let owner = pods
            .get_opt(name)
            .await
            .map_err(api_error("get", "pods", ns))?
            .and_then(|p| p.metadata.owner_references)
            .and_then(|o| o.into_iter().find(|o| o.kind == "ReplicaSet"))
            .map(|o| o.name);
        if owner.as_deref() != Some(newest_name.as_str()) {
            return Ok(Err(format!(
                "the failing pod {name} is not on the newest revision ({newest}): the old revision fails too, so rolling back would not help"
            )));
        }
    }
    let began = newest_rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if began.is_some_and(|b| clock::after(b, within) < ctx.now) {
        return Ok(Err(format!(
            "revision {newest} rolled out more than {} ago (rollback.within): the failure is likely not the deploy",
            format_duration(within)
        )));
    }
    Ok(Ok(Undo {
        deployment,
        newest: *newest,
        previous: previous.clone(),
        previous_revision: *previous_revision,
    }))
}

impl Action for Rollback {
    fn reason(&self) -> &'static str {
        "RolledBack"
    }

    fn apply<'a>(&'a self, ctx: &'a ActCtx<'a>, r: &'a Remediation) -> BoxFuture<'a, Result<Done, ActError>> {
        async move {
            let undo = match plan_undo(ctx, r).await? {
                Ok(undo) => undo,
                Err(why) => return Ok(Done::skipped(why)),
            };
            let w = ctx.workload;
            let what = format!(
                "{w} from revision {} back to revision {}",
                undo.newest, undo.previous_revision
            );
            if r.dry_run {
                return Ok(Done::succeeded(format!("would roll {what}.")));
            }
            let Some(mut template) = undo.previous.spec.and_then(|s| s.template) else {
                return Ok(Done::skipped(format!("revision {} has no pod template", undo.previous_revision)));
            };
            // The ReplicaSet's own label is not part of the Deployment's template.
            if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
                labels.remove("pod-template-hash");
            }
            let ns = &w.namespace;
            let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
            // One write replaces the whole template (a merge would keep fields the old one lacks)
            // and leaves the mark; it carries the resourceVersion read, so a concurrent change
            // makes it fail rather than be overwritten.
            let mut deployment = undo.deployment;
            if let Some(spec) = deployment.spec.as_mut() {
                spec.template = template;
            }
            let annotations = deployment.metadata.annotations.get_or_insert_with(Default::default);
            annotations.insert(ROLLED_BACK_AT.into(), r.at.to_string());
            annotations.insert(ROLLED_BACK_TO.into(), format!("revision {}", undo.previous_revision));
            deployment.metadata.managed_fields = None;
            let params = PostParams {
                field_manager: Some(MANAGER.into()),
                ..PostParams::default()
            };
            api.replace(&w.name, &params, &deployment)
                .await
                .map_err(api_error("update", "deployments", ns))?;
            Ok(Done::succeeded(format!(
                "Rolled {what}. A GitOps tool that owns the pod template will roll forward again unless the change is reverted in Git."
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
            let object = workload::found(ctx).await?;
            let mark = r.at.to_string();
            Ok(
                (object.annotation(ROLLED_BACK_AT) == Some(mark.as_str())).then(|| {
                    Done::succeeded(format!(
                        "{} was rolled back to {}.",
                        ctx.workload,
                        object.annotation(ROLLED_BACK_TO).unwrap_or_default()
                    ))
                }),
            )
        }
        .boxed()
    }
}
