//! RestartPods: evicts the unhealthy pods through the Eviction API, so PodDisruptionBudgets hold;
//! their controller replaces them. An eviction a budget refuses (HTTP 429) is a hold, tried again
//! later; a 429 that throttles (with `Retry-After`) is a transient failure, resumed under the mark.
//! The mark: each pod named in the record is gone, terminating, or was created after the decision
//! (a replacement).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, api::EvictParams};

use super::{
    ActCtx, ActError, Action, Descriptor, Done, Remediation, api_error,
    params::{Params, StepField, named},
};
use crate::{
    api::{
        RemediationResult, RemediationStep,
        validate::{InvalidSpec, at_least_one, at_most},
    },
    clock,
    rbac::right,
};

/// What RestartPods is: see [`Descriptor`].
pub(super) const DESCRIPTOR: Descriptor = Descriptor {
    action: crate::api::Action::RestartPods,
    reason: "PodsRestarted",
    changes_target: true,
    restarts_pods: true,
    replaces_pods: true,
    permission: "restartPods",
    rights: &[right("", "pods/eviction", &["create"])],
    why: "evictions honour PodDisruptionBudgets; the operator never deletes a pod",
};

pub struct RestartPods;

/// RestartPods' parameters, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPodsSettings {
    /// How many unhealthy pods one run evicts at most.
    pub max_unavailable: u32,
}

impl Params for RestartPods {
    type Settings = RestartPodsSettings;

    fn block(step: &RemediationStep) -> Option<&'static str> {
        named("restartPods", step.restart_pods.as_ref())
    }

    fn limits(f: StepField, step: &RemediationStep) -> Result<(), InvalidSpec> {
        step.restart_pods.as_ref().map_or(Ok(()), |p| {
            at_most(&f.at("restartPods.maxUnavailable"), p.max_unavailable, 100)
        })
    }

    fn settings(f: StepField, step: &RemediationStep) -> Result<RestartPodsSettings, InvalidSpec> {
        Ok(RestartPodsSettings {
            max_unavailable: at_least_one(
                &f.at("restartPods.maxUnavailable"),
                step.restart_pods.as_ref().map_or(1, |p| p.max_unavailable),
            )?,
        })
    }
}

/// How long after a refused eviction it is tried again.
const RETRY: Duration = Duration::from_secs(30);

/// Whether a 429 is the API server throttling the request (it says when to try again), rather than
/// the eviction being refused (a disruption budget, or a pod still being processed): the first is
/// a transient failure like a 503, the second a hold.
fn throttled(s: &kube::core::Status) -> bool {
    s.details.as_ref().is_some_and(|d| {
        d.retry_after_seconds > 0 && !d.causes.iter().any(|c| c.reason == "DisruptionBudget")
    })
}

/// Throttled evictions are tried again after the wait the API server asks for (at most this
/// long), this many times, before the failure counts as transient.
const THROTTLED_WAIT_MAX: Duration = Duration::from_secs(60);
const THROTTLED_TRIES: u32 = 3;

/// Evicts `name`, waiting out throttling (429 with `Retry-After`) as kube's client does for its
/// other requests; a budget's refusal is returned at once.
async fn evict(evictions: &Api<Pod>, name: &str) -> kube::Result<()> {
    let mut tries = 1;
    loop {
        match evictions.evict(name, &EvictParams::default()).await {
            Err(kube::Error::Api(s)) if s.code == 429 && throttled(&s) && tries < THROTTLED_TRIES => {
                let asked = s.details.as_ref().map_or(1, |d| d.retry_after_seconds);
                tokio::time::sleep(Duration::from_secs(u64::from(asked)).min(THROTTLED_WAIT_MAX)).await;
                tries += 1;
            }
            result => return result.map(|_| ()),
        }
    }
}

/// Whether `pod` (by name) has been restarted since `r` was decided.
async fn restarted(pods: &Api<Pod>, name: &str, r: &Remediation, ns: &str) -> Result<bool, ActError> {
    let pod = pods.get_opt(name).await.map_err(api_error("get", "pods", ns))?;
    Ok(match pod {
        None => true,
        Some(p) => {
            p.metadata.deletion_timestamp.is_some()
                || p.metadata.creation_timestamp.is_some_and(|c| c.0 > r.at)
        }
    })
}

impl Action for RestartPods {
    async fn apply(&self, ctx: &ActCtx<'_>, r: &Remediation) -> Result<Done, ActError> {
        let ns = &ctx.workload.namespace;
        if r.pods.is_empty() {
            return Ok(Done::skipped(
                "no unhealthy pod is known (a probe through a Service judges the Service, not its pods)",
            ));
        }
        let names = r.pods.join(", ");
        if r.dry_run {
            return Ok(Done::succeeded(format!(
                "would evict pod {names} of {}.",
                ctx.workload
            )));
        }
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        // A budget's refusal (429) is the answer, not a reason to retry for minutes.
        let evictions: Api<Pod> = Api::namespaced(ctx.direct_client.clone(), ns);
        let mut evicted = Vec::new();
        for name in &r.pods {
            if restarted(&pods, name, r, ns).await? {
                evicted.push(name.clone());
                continue;
            }
            match evict(&evictions, name).await {
                Ok(_) => evicted.push(name.clone()),
                Err(kube::Error::Api(s)) if s.code == 404 => evicted.push(name.clone()),
                Err(kube::Error::Api(s)) if s.code == 429 && !throttled(&s) => {
                    let done = if evicted.is_empty() {
                        String::new()
                    } else {
                        format!("Evicted {}; ", evicted.join(", "))
                    };
                    return Ok(Done {
                        result: RemediationResult::Held,
                        message: format!("{done}evicting pod {name} was refused: {}", s.message),
                        retry_at: Some(clock::after(ctx.now, RETRY)),
                        effects: Vec::new(),
                    });
                }
                Err(e) => return Err(api_error("create", "pods/eviction", ns)(e)),
            }
        }
        Ok(Done::succeeded(format!(
            "Evicted pod {} of {}; its controller replaces it.",
            evicted.join(", "),
            ctx.workload
        )))
    }

    async fn applied(&self, ctx: &ActCtx<'_>, r: &Remediation) -> Result<Option<Done>, ActError> {
        let ns = &ctx.workload.namespace;
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        for name in &r.pods {
            if !restarted(&pods, name, r, ns).await? {
                return Ok(None);
            }
        }
        Ok(Some(Done::succeeded(format!(
            "Pod {} of {} is gone or replaced.",
            r.pods.join(", "),
            ctx.workload
        ))))
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;
    use serde_json::json;

    use super::throttled;

    fn status(details: serde_json::Value) -> Status {
        serde_json::from_value(
            json!({"status": "Failure", "reason": "TooManyRequests", "code": 429, "details": details}),
        )
        .unwrap()
    }

    #[test]
    fn a_budget_refuses_and_priority_and_fairness_throttles() {
        let budget = json!([{"reason": "DisruptionBudget", "message": "needs 2 healthy pods"}]);
        assert!(
            throttled(&status(json!({"retryAfterSeconds": 1}))),
            "Retry-After, no budget"
        );
        assert!(
            !throttled(&status(json!({"causes": budget}))),
            "a budget's refusal"
        );
        assert!(
            !throttled(&status(json!({"retryAfterSeconds": 5, "causes": budget}))),
            "a budget's refusal with a hint"
        );
        assert!(!throttled(&status(json!({}))), "still being processed");
        assert!(
            !throttled(&Status::failure("x", "TooManyRequests").with_code(429)),
            "no details"
        );
    }
}
