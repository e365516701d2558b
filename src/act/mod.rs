//! Act: the remediation executor. Every action is idempotent and leaves a mark that can be read
//! back, so an operator that restarts between recording intent and acting neither repeats nor
//! loses the action.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;

use crate::api::{Action, RESTARTED_AT_ANNOTATION, TargetKind};

/// The field manager the operator writes with.
pub const MANAGER: &str = "apphealth-operator";

/// The workload a remediation acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub kind: TargetKind,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.name)
    }
}

/// Performs remediations through the Kubernetes API.
#[derive(Clone)]
pub struct Executor {
    client: Client,
}

impl Executor {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Runs `action` on `workload`, marking it with `mark` (the RFC 3339 time of the decision).
    /// Returns a sentence saying what changed.
    pub async fn run(&self, action: Action, workload: &Workload, mark: &str) -> Result<String, kube::Error> {
        match action {
            Action::RolloutRestart => {
                let patch = json!({
                    "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: mark}}}}
                });
                let params = PatchParams {
                    field_manager: Some(MANAGER.into()),
                    ..PatchParams::default()
                };
                match workload.kind {
                    TargetKind::Deployment => {
                        self.deployments(workload)
                            .patch(&workload.name, &params, &Patch::Merge(&patch))
                            .await?;
                    }
                    TargetKind::StatefulSet => {
                        self.statefulsets(workload)
                            .patch(&workload.name, &params, &Patch::Merge(&patch))
                            .await?;
                    }
                }
                Ok(format!(
                    "Set {RESTARTED_AT_ANNOTATION}={mark} on the pod template of {workload}, which rolls its pods."
                ))
            }
        }
    }

    /// Whether the mark of `action` with value `mark` is already on the workload (read from the API,
    /// not a cache, because this decides whether to act again).
    pub async fn is_applied(
        &self,
        action: Action,
        workload: &Workload,
        mark: &str,
    ) -> Result<bool, kube::Error> {
        match action {
            Action::RolloutRestart => {
                let template_annotations = match workload.kind {
                    TargetKind::Deployment => self
                        .deployments(workload)
                        .get_opt(&workload.name)
                        .await?
                        .and_then(|d| d.spec)
                        .and_then(|s| s.template.metadata)
                        .and_then(|m| m.annotations),
                    TargetKind::StatefulSet => self
                        .statefulsets(workload)
                        .get_opt(&workload.name)
                        .await?
                        .and_then(|d| d.spec)
                        .and_then(|s| s.template.metadata)
                        .and_then(|m| m.annotations),
                };
                Ok(template_annotations
                    .and_then(|a| a.get(RESTARTED_AT_ANNOTATION).cloned())
                    .is_some_and(|v| v == mark))
            }
        }
    }

    fn deployments(&self, w: &Workload) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &w.namespace)
    }

    fn statefulsets(&self, w: &Workload) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), &w.namespace)
    }
}
