//! Rollback: when the unhealthy pods all belong to the Deployment's newest ReplicaSet and that
//! rollout began less than `within` ago, put the previous revision's pod template back (what
//! `kubectl rollout undo` does). Otherwise the step is skipped, saying why: restarting a bad
//! version only restarts the outage, and rolling back a good one helps nobody. The mark: the
//! Deployment's annotation `apphealth.io/rolledBackAt`.

use jiff::Timestamp;
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::Pod,
};
use kube::{
    Api,
    api::{ListParams, PostParams},
};

use super::{
    ActCtx, ActError, Action, Decided, Descriptor, Done, MANAGER, Remediation, Workload, api_error, workload,
};
use super::{
    StepParams,
    params::{Params, StepField, named},
};
use crate::{
    api::{
        RemediationStep, TargetKind, format_duration,
        validate::{InvalidSpec, positive_duration},
    },
    clock,
    rbac::right,
};

/// What Rollback is: see [`Descriptor`].
pub(super) const DESCRIPTOR: Descriptor = Descriptor {
    action: crate::api::Action::Rollback,
    reason: "RolledBack",
    changes_target: true,
    restarts_pods: false,
    replaces_pods: true,
    permission: "rollback",
    rights: &[
        right("apps", "replicasets", &["list"]),
        right("apps", "deployments", &["update"]),
    ],
    why: "find the previous revision and put its template back in one write",
};

pub struct Rollback;

/// Rollback's parameters, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackSettings {
    /// Only a rollout that began less than this long ago is rolled back.
    pub within: std::time::Duration,
}

impl Params for Rollback {
    type Settings = RollbackSettings;

    fn block(step: &RemediationStep) -> Option<&'static str> {
        named("rollback", step.rollback.as_ref())
    }

    fn settings(f: StepField, step: &RemediationStep) -> Result<RollbackSettings, InvalidSpec> {
        let within = step
            .rollback
            .as_ref()
            .map_or_else(|| crate::api::Duration::from("1h"), |r| r.within.clone());
        Ok(RollbackSettings {
            within: positive_duration(&f.at("rollback.within"), &within)?,
        })
    }
}

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

/// What Rollback decides from, as read from the API (nothing, for a workload that is not a
/// Deployment: its kind decides).
#[derive(Default)]
struct Seen {
    deployment: Option<Deployment>,
    /// The ReplicaSets of the namespace (those the Deployment controls are picked out).
    replica_sets: Vec<ReplicaSet>,
    /// Each failing pod and the ReplicaSet that owns it (None: the pod is gone or unowned).
    owners: Vec<(String, Option<String>)>,
}

/// Reads the Deployment, the ReplicaSets and the failing pods' owners.
async fn read(ctx: &ActCtx<'_>, r: &Remediation) -> Result<Seen, ActError> {
    let w = ctx.workload;
    let ns = &w.namespace;
    let deployment = Api::<Deployment>::namespaced(ctx.client.clone(), ns)
        .get_opt(&w.name)
        .await
        .map_err(api_error("get", "deployments", ns))?;
    let replica_sets = match &deployment {
        Some(_) => {
            Api::<ReplicaSet>::namespaced(ctx.client.clone(), ns)
                .list(&ListParams::default())
                .await
                .map_err(api_error("list", "replicasets", ns))?
                .items
        }
        None => Vec::new(),
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let mut owners = Vec::with_capacity(r.pods.len());
    for name in &r.pods {
        let owner = pods
            .get_opt(name)
            .await
            .map_err(api_error("get", "pods", ns))?
            .and_then(|p| p.metadata.owner_references)
            .and_then(|o| o.into_iter().find(|o| o.kind == "ReplicaSet"))
            .map(|o| o.name);
        owners.push((name.clone(), owner));
    }
    Ok(Seen {
        deployment,
        replica_sets,
        owners,
    })
}

/// Whether rolling `w` back helps, from what was `seen` (pure): only a Deployment whose failing
/// pods all run its newest revision, rolled out less than `within` before `now`.
fn decide(seen: Seen, w: &Workload, within: std::time::Duration, now: Timestamp) -> Decided<Undo> {
    if w.kind != TargetKind::Deployment {
        return Decided::Nothing(format!(
            "Rollback works on Deployments; {w} keeps its revisions in ControllerRevisions, which the operator does not roll back"
        ));
    }
    let Some(deployment) = seen.deployment else {
        return Decided::Nothing(format!("{w} is gone"));
    };
    let uid = deployment.metadata.uid.clone().unwrap_or_default();
    let mut sets: Vec<(u64, ReplicaSet)> = seen
        .replica_sets
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
        return Decided::Nothing(format!("{w} has no earlier revision to roll back to"));
    };
    if seen.owners.is_empty() {
        return Decided::Nothing(
            "no unhealthy pod is known, so there is no telling which revision fails".into(),
        );
    }
    let newest_name = newest_rs.metadata.name.clone().unwrap_or_default();
    if let Some((name, _)) = seen
        .owners
        .iter()
        .find(|(_, owner)| owner.as_deref() != Some(newest_name.as_str()))
    {
        return Decided::Nothing(format!(
            "the failing pod {name} is not on the newest revision ({newest}): the old revision fails too, so rolling back would not help"
        ));
    }
    let began = newest_rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if began.is_some_and(|b| clock::after(b, within) < now) {
        return Decided::Nothing(format!(
            "revision {newest} rolled out more than {} ago (rollback.within): the failure is likely not the deploy",
            format_duration(within)
        ));
    }
    Decided::Do(Undo {
        newest: *newest,
        previous: previous.clone(),
        previous_revision: *previous_revision,
        deployment,
    })
}

/// Reads and decides the rollback `r`.
async fn plan_undo(ctx: &ActCtx<'_>, r: &Remediation) -> Result<Decided<Undo>, ActError> {
    let within = match &r.params {
        StepParams::Rollback(p) => p.within,
        _ => return Err(ActError::Refused("Rollback without its parameters".into())),
    };
    let seen = match ctx.workload.kind {
        TargetKind::Deployment => read(ctx, r).await?,
        TargetKind::StatefulSet => Seen::default(),
    };
    Ok(decide(seen, ctx.workload, within, ctx.now))
}

impl Action for Rollback {
    async fn apply(&self, ctx: &ActCtx<'_>, r: &Remediation) -> Result<Done, ActError> {
        let undo = match plan_undo(ctx, r).await? {
            Decided::Do(undo) => undo,
            Decided::Nothing(why) => return Ok(Done::skipped(why)),
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
            return Ok(Done::skipped(format!(
                "revision {} has no pod template",
                undo.previous_revision
            )));
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
        let annotations = deployment
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        annotations.insert(ROLLED_BACK_AT.into(), r.at.to_string());
        annotations.insert(
            ROLLED_BACK_TO.into(),
            format!("revision {}", undo.previous_revision),
        );
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

    async fn applied(&self, ctx: &ActCtx<'_>, r: &Remediation) -> Result<Option<Done>, ActError> {
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

    use super::*;
    use crate::fixtures::at;

    fn workload(kind: TargetKind) -> Workload {
        Workload {
            kind,
            namespace: "shop".into(),
            name: "web".into(),
        }
    }

    fn deployment() -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                uid: Some("uid-web".into()),
                ..ObjectMeta::default()
            },
            ..Deployment::default()
        }
    }

    /// ReplicaSet `web-<revision>` of revision `revision`, made at second `made`, owned by `owner`.
    fn rs(revision: u64, made: i64, owner: &str) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("web-{revision}")),
                annotations: Some([(REVISION.to_owned(), revision.to_string())].into()),
                creation_timestamp: Some(Time(
                    at("2026-01-01T00:00:00Z") + jiff::SignedDuration::from_secs(made),
                )),
                owner_references: Some(vec![OwnerReference {
                    uid: owner.into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            ..ReplicaSet::default()
        }
    }

    fn seen(sets: Vec<ReplicaSet>, owners: &[(&str, Option<&str>)]) -> Seen {
        Seen {
            deployment: Some(deployment()),
            replica_sets: sets,
            owners: owners
                .iter()
                .map(|(pod, owner)| ((*pod).to_owned(), owner.map(Into::into)))
                .collect(),
        }
    }

    /// What, the workload's kind, what was read, and (newest, previous) or part of why not.
    type Case = (&'static str, TargetKind, Seen, Result<(u64, u64), &'static str>);

    #[test]
    fn rollback_decides_from_what_it_read() {
        // Ten minutes after revision 3 rolled out (at 600 s); `within` is an hour.
        let now = at("2026-01-01T00:20:00Z");
        let sets = || vec![rs(2, 0, "uid-web"), rs(3, 600, "uid-web"), rs(1, 0, "uid-other")];
        let on_newest = [("web-3-a", Some("web-3")), ("web-3-b", Some("web-3"))];
        let cases: [Case; 7] = [
            (
                "undone to the previous revision",
                TargetKind::Deployment,
                seen(sets(), &on_newest),
                Ok((3, 2)),
            ),
            (
                "a StatefulSet is not rolled back",
                TargetKind::StatefulSet,
                seen(sets(), &on_newest),
                Err("Rollback works on Deployments"),
            ),
            (
                "the Deployment is gone",
                TargetKind::Deployment,
                Seen {
                    deployment: None,
                    ..seen(sets(), &on_newest)
                },
                Err("is gone"),
            ),
            (
                "only its own ReplicaSets count",
                TargetKind::Deployment,
                seen(vec![rs(3, 600, "uid-web"), rs(2, 0, "uid-other")], &on_newest),
                Err("no earlier revision"),
            ),
            (
                "no failing pod is known",
                TargetKind::Deployment,
                seen(sets(), &[]),
                Err("no unhealthy pod is known"),
            ),
            (
                "a failing pod of the old revision: the old one fails too",
                TargetKind::Deployment,
                seen(sets(), &[("web-3-a", Some("web-3")), ("web-2-a", Some("web-2"))]),
                Err("the failing pod web-2-a is not on the newest revision (3)"),
            ),
            (
                "the newest revision rolled out too long ago",
                TargetKind::Deployment,
                seen(vec![rs(2, 0, "uid-web"), rs(3, -3600, "uid-web")], &on_newest),
                Err("rolled out more than 1h ago"),
            ),
        ];
        for (what, kind, seen, want) in cases {
            let got = match decide(seen, &workload(kind), Duration::from_secs(3600), now) {
                Decided::Do(undo) => Ok((undo.newest, undo.previous_revision)),
                Decided::Nothing(why) => Err(why),
            };
            match (&got, want) {
                (Ok(got), Ok(want)) => assert_eq!(*got, want, "{what}"),
                (Err(why), Err(part)) => assert!(why.contains(part), "{what}: {why}"),
                _ => panic!("{what}: {got:?} vs {want:?}"),
            }
        }
    }
}
