//! The reconcile pipeline: validate → dereference the target → resolve what the probe needs and
//! (re)start probing → plan → act → report. Status is written only when it changed.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::{
    Api, ResourceExt,
    runtime::{controller::Action as Requeue, reflector::ObjectRef},
};

use crate::{
    Result,
    act::Workload,
    api::{
        AppHealthPolicy, AppHealthPolicyStatus, Health, Ladder, ProbeVia, RemediationRecord,
        RemediationResult, Verdict, conditions, format_duration, reasons, validate,
    },
    clock,
    evaluate::TargetVerdict,
    observe::{
        endpoints,
        references::{self},
        schedule::ProbeJob,
        signals,
    },
    plan::{self, LadderState, Plan},
    report::{self, CondStatus, set_condition},
};

use super::{Context, PolicyRef};
use crate::api::watched::Watched;

/// What the pipeline decided, to be written to status and Events.
struct Outcome {
    status: AppHealthPolicyStatus,
    requeue: Requeue,
}

#[tracing::instrument(skip_all, fields(policy = %watched.name_any(), namespace = watched.namespace().unwrap_or_default()))]
pub(super) async fn reconcile(watched: Arc<Watched>, ctx: Arc<Context>) -> Result<Requeue> {
    let key = ObjectRef::from_obj(watched.as_ref());
    let namespace = watched.namespace().unwrap_or_default();
    let api: Api<AppHealthPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let policy = match &watched.decoded {
        Ok(policy) => policy,
        Err(problem) => {
            let api: Api<Watched> = Api::namespaced(ctx.client.clone(), &namespace);
            return unreadable(&watched, &key, problem, &api, &ctx).await;
        }
    };
    let old = policy.status.clone().unwrap_or_default();

    let outcome = pipeline(policy, &key, &namespace, &api, &old, &ctx).await?;
    if outcome.status != old {
        report::apply_status(&api, &policy.name_any(), &outcome.status).await?;
    }
    Ok(outcome.requeue)
}

/// A policy this operator version cannot read: stop probing it and say why on its Ready
/// condition. Written with a field manager of its own, so the recorded remediation state (owned by
/// the operator's manager) stays in status for when the policy is readable again.
async fn unreadable(
    watched: &Watched,
    key: &PolicyRef,
    problem: &str,
    api: &Api<Watched>,
    ctx: &Context,
) -> Result<Requeue> {
    ctx.probes.stop(key);
    let message = format!(
        "This operator version cannot read the policy: {problem}. Fix the policy or upgrade the operator; \
         nothing is probed until then."
    );
    let now = clock::whole_seconds(ctx.clock.now());
    let condition = k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        type_: conditions::READY.into(),
        status: "False".into(),
        reason: reasons::UNREADABLE.into(),
        message: message.clone(),
        observed_generation: watched.metadata.generation,
        last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
    };
    if watched
        .ready
        .as_ref()
        .is_some_and(|c| c.reason == reasons::UNREADABLE && c.message == message)
    {
        return Ok(Requeue::await_change());
    }
    report::apply_conditions(api, &watched.name_any(), report::GUARD_MANAGER, &[condition]).await?;
    report::publish(
        &ctx.recorder,
        watched,
        true,
        reasons::UNREADABLE,
        "Decode",
        message,
    )
    .await;
    Ok(Requeue::await_change())
}

async fn pipeline(
    policy: &AppHealthPolicy,
    key: &PolicyRef,
    namespace: &str,
    api: &Api<AppHealthPolicy>,
    old: &AppHealthPolicyStatus,
    ctx: &Context,
) -> Result<Outcome> {
    // Whole seconds: what status can hold, so marks written there compare equal when read back.
    let now = clock::whole_seconds(ctx.clock.now());
    let generation = policy.metadata.generation;
    let mut status = old.clone();
    status.observed_generation = generation;
    let cond = |status: &mut AppHealthPolicyStatus, t: &str, s: CondStatus, reason: &str, msg: String| {
        set_condition(&mut status.conditions, t, s, reason, msg, generation, now);
    };

    // validate
    let settings = match validate::validate(&policy.spec) {
        Ok(s) => Arc::new(s),
        Err(invalid) => {
            let message =
                format!("The policy is invalid: {invalid}. Fix the spec; nothing is probed until then.");
            let stop = Stop {
                reason: reasons::INVALID_SPEC,
                action: "Validate",
                event: message.clone(),
                message,
            };
            return Ok(stop
                .apply(ctx, policy, key, old, status, now, Requeue::await_change())
                .await);
        }
    };

    if policy.spec.suspend {
        ctx.probes.stop(key);
        let message =
            "spec.suspend is true: probing and remediation are stopped until it is cleared.".to_owned();
        cond(
            &mut status,
            conditions::READY,
            CondStatus::False,
            reasons::SUSPENDED,
            message.clone(),
        );
        not_probing(&mut status, reasons::SUSPENDED, generation, now);
        cond(
            &mut status,
            conditions::REMEDIATION_BLOCKED,
            CondStatus::True,
            reasons::SUSPENDED,
            message,
        );
        return Ok(Outcome {
            status,
            requeue: Requeue::await_change(),
        });
    }

    // dereference the target
    for store_ready in [
        ctx.index.deployments.wait_until_ready().await.is_ok(),
        ctx.index.statefulsets.wait_until_ready().await.is_ok(),
        ctx.index.pods.wait_until_ready().await.is_ok(),
        ctx.index.configmaps.wait_until_ready().await.is_ok(),
        ctx.index.secrets.wait_until_ready().await.is_ok(),
    ] {
        if !store_ready {
            return Ok(Outcome {
                status: old.clone(),
                requeue: Requeue::requeue(Duration::from_secs(5)),
            });
        }
    }
    let target = &policy.spec.target_ref;
    let workload = Workload {
        kind: target.kind,
        namespace: namespace.to_owned(),
        name: target.name.clone(),
    };
    let Some(selector) = ctx.index.workload_selector(target.kind, namespace, &target.name) else {
        let retry = backoff(&ctx.not_found_retries, key);
        let message = format!(
            "{workload} was not found in namespace {namespace}; probing starts when it appears (next check in {}).",
            format_duration(retry)
        );
        // The retry delay is not part of the condition, so repeated checks do not rewrite status.
        let stable =
            format!("{workload} was not found in namespace {namespace}; probing starts when it appears.");
        let stop = Stop {
            reason: reasons::TARGET_NOT_FOUND,
            action: "Dereference",
            event: message,
            message: stable,
        };
        return Ok(stop
            .apply(ctx, policy, key, old, status, now, Requeue::requeue(retry))
            .await);
    };
    ctx.not_found_retries
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(key);

    // resolve what the probe reads from Secrets and ConfigMaps, then the endpoints
    let template = match references::resolve_template(&ctx.client, namespace, &settings.probe).await {
        Ok(t) => t,
        Err(unresolved) => {
            let message = format!("{unresolved}. Probing starts once it can be read.");
            let stop = Stop {
                reason: reasons::INVALID_REFERENCE,
                action: "Resolve",
                event: message.clone(),
                message,
            };
            return Ok(stop
                .apply(
                    ctx,
                    policy,
                    key,
                    old,
                    status,
                    now,
                    Requeue::requeue(Duration::from_secs(60)),
                )
                .await);
        }
    };
    let namespace_pods: Vec<Arc<Pod>> = ctx
        .index
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .collect();
    let target_pods: Vec<&Pod> = namespace_pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| endpoints::selects(&selector, p.metadata.labels.as_ref()))
        .collect();
    let resolved = match settings.probe.via {
        ProbeVia::Pods => endpoints::for_pods(&template, &selector, target_pods.iter().copied()),
        ProbeVia::Service => {
            let name = settings.probe.service.clone().unwrap_or_default();
            let services: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
            match services.get_opt(&name).await? {
                Some(svc) => match endpoints::for_service(&template, &svc) {
                    Ok(requests) => endpoints::Resolved {
                        requests,
                        problems: Vec::new(),
                    },
                    Err(problem) => endpoints::Resolved {
                        requests: Vec::new(),
                        problems: vec![problem],
                    },
                },
                None => endpoints::Resolved {
                    requests: Vec::new(),
                    problems: vec![format!(
                        "Service {name} was not found in namespace {namespace} (spec.probe.service)"
                    )],
                },
            }
        }
    };
    let pod_signals: Vec<signals::PodSignals> = target_pods
        .iter()
        .map(|pod| {
            let mut s = signals::pod_signals(pod);
            if settings
                .triggers
                .iter()
                .any(|t| matches!(t, validate::TriggerSettings::ConfigChanged))
            {
                s.config_changed = references::config_changes(pod, |kind, name| {
                    ctx.index.config_meta(kind, namespace, name)
                });
            }
            s
        })
        .collect();
    let mut probed: Vec<&str> = resolved.requests.iter().map(|r| r.endpoint.as_str()).collect();
    probed.dedup();
    let probed = probed.len();
    ctx.probes.ensure(
        key,
        ProbeJob {
            settings: settings.clone(),
            namespace: namespace.to_owned(),
            requests: resolved.requests,
            signals: pod_signals,
        },
    );

    // the verdict, as published by the probe task (None until its first round)
    let verdict = ctx.probes.verdict(key);
    let health = verdict.as_ref().map_or(Health::Unknown, |v| v.health);
    let mut remarks: Vec<String> = resolved
        .problems
        .iter()
        .map(|p| format!("Not probed: {p}."))
        .collect();
    remarks.extend(settings.notes.iter().map(|n| format!("Note: {n}.")));
    remarks.extend(
        verdict
            .iter()
            .flat_map(|v| v.notes.iter())
            .map(|n| format!("Note: {n}.")),
    );
    let remarks = remarks.iter().map(|r| format!(" {r}")).collect::<String>();
    if probed == 0 {
        let what = match settings.probe.via {
            ProbeVia::Pods => format!("No ready pods of {workload} to probe"),
            ProbeVia::Service => "The Service cannot be probed".to_owned(),
        };
        cond(
            &mut status,
            conditions::READY,
            CondStatus::False,
            reasons::NO_PODS,
            format!("{what}.{remarks}"),
        );
    } else {
        let what = match settings.probe.via {
            ProbeVia::Pods => format!("{probed} ready pods of {workload}"),
            ProbeVia::Service => format!(
                "Service {}",
                settings.probe.service.as_deref().unwrap_or_default()
            ),
        };
        let message = format!(
            "Probing {what} every {}.{remarks}",
            format_duration(settings.probe.period)
        );
        cond(
            &mut status,
            conditions::READY,
            CondStatus::True,
            reasons::PROBING,
            message,
        );
    }
    if let Some(v) = &verdict {
        report_verdict(&mut status, old, v, generation, now);
        if recorded_health(old) != Some(v.health) {
            match v.health {
                Health::Unhealthy => {
                    report::publish(
                        &ctx.recorder,
                        policy,
                        true,
                        reasons::BECAME_UNHEALTHY,
                        "Evaluate",
                        v.summary(),
                    )
                    .await;
                }
                Health::Healthy if recorded_health(old) == Some(Health::Unhealthy) => {
                    report::publish(
                        &ctx.recorder,
                        policy,
                        false,
                        reasons::RECOVERED,
                        "Evaluate",
                        v.summary(),
                    )
                    .await;
                }
                _ => {}
            }
        }
    } else if status.verdict.is_none() {
        cond(
            &mut status,
            conditions::HEALTHY,
            CondStatus::Unknown,
            reasons::AWAITING_VERDICT,
            "No verdict yet: waiting for the first probes.".into(),
        );
    }

    // finish an action whose intent was recorded but whose result was not (operator restarted)
    if let Some(record) = status
        .last_remediation
        .clone()
        .filter(|r| r.result == RemediationResult::Pending)
    {
        let completed = resume(ctx, policy, &workload, record).await?;
        status.last_remediation = Some(completed);
    }

    // plan, act
    let ladder = LadderState {
        step: status.ladder.as_ref().map(|l| l.step),
        last_action_at: status.last_remediation.as_ref().map(|r| r.at.0),
    };
    let decision = plan::plan(&settings, health, &ladder, now);
    let summary = verdict.as_ref().map(TargetVerdict::summary).unwrap_or_default();
    match &decision {
        Plan::Idle => {
            // Keep a False condition as it is: "Recovered" stays readable after the ladder closed.
            let remediating = report::condition(&status, conditions::REMEDIATING);
            if remediating.is_none_or(|c| c.status != "False") {
                cond(
                    &mut status,
                    conditions::REMEDIATING,
                    CondStatus::False,
                    reasons::IDLE,
                    "No remediation is in progress.".into(),
                );
            }
            not_blocked(&mut status, generation, now);
        }
        Plan::Recovered { step } => {
            status.ladder = None;
            let message = format!("The target recovered after remediation step {step}.");
            cond(
                &mut status,
                conditions::REMEDIATING,
                CondStatus::False,
                reasons::RECOVERED,
                message,
            );
            not_blocked(&mut status, generation, now);
        }
        Plan::Wait { step, until } => {
            let action = status
                .last_remediation
                .as_ref()
                .map_or("the last action", |r| r.action.as_str());
            let message = match until {
                Some(until) => format!(
                    "Ran step {step} ({action}); waiting until {until} for the target to recover before escalating."
                ),
                None => format!("Ran step {step} ({action}); waiting for a verdict on the restarted target."),
            };
            cond(
                &mut status,
                conditions::REMEDIATING,
                CondStatus::True,
                reasons::LADDER_IN_PROGRESS,
                message,
            );
            not_blocked(&mut status, generation, now);
        }
        Plan::Blocked { reason, message, .. } => {
            let remediating = status.ladder.is_some();
            let (r, m) = if remediating {
                (
                    reasons::LADDER_IN_PROGRESS,
                    "A remediation ladder is in progress.".to_owned(),
                )
            } else {
                (reasons::IDLE, "No remediation is in progress.".to_owned())
            };
            cond(&mut status, conditions::REMEDIATING, remediating.into(), r, m);
            if blocked_reason(old) != Some(*reason) {
                let warning = *reason != reasons::DRY_RUN;
                let note = format!("{message} {summary}");
                report::publish(&ctx.recorder, policy, warning, reason, "Plan", note).await;
            }
            cond(
                &mut status,
                conditions::REMEDIATION_BLOCKED,
                CondStatus::True,
                reason,
                message.clone(),
            );
        }
        Plan::Act { step, action } => {
            let mark = now.to_string();
            let started_at = match (&status.ladder, step) {
                (Some(l), s) if *s > 1 => l.started_at.clone(),
                _ => k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
            };
            status.ladder = Some(Ladder {
                step: *step,
                started_at,
            });
            status.last_remediation = Some(RemediationRecord {
                action: *action,
                step: *step,
                at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
                result: RemediationResult::Pending,
                message: None,
            });
            let message = format!(
                "Running step {step} of {} ({}) on {workload}.",
                settings.steps.len(),
                action.as_str()
            );
            cond(
                &mut status,
                conditions::REMEDIATING,
                CondStatus::True,
                reasons::LADDER_IN_PROGRESS,
                message,
            );
            not_blocked(&mut status, generation, now);
            // Intent first: if the operator dies after this write, the next reconcile resumes it.
            report::apply_status(api, &policy.name_any(), &status).await?;
            let rung = Rung {
                step: *step,
                of: settings.steps.len(),
                action: *action,
            };
            let record = execute(ctx, policy, &workload, rung, &mark, &summary).await;
            status.last_remediation = Some(record);
        }
    }

    let requeue = match decision.revisit_at() {
        Some(at) => Requeue::requeue(clock::until(now, at) + Duration::from_secs(1)),
        None => Requeue::requeue(ctx.resync),
    };
    Ok(Outcome { status, requeue })
}

/// One rung of the ladder about to run.
struct Rung {
    step: u32,
    of: usize,
    action: crate::api::Action,
}

async fn execute(
    ctx: &Context,
    policy: &AppHealthPolicy,
    workload: &Workload,
    Rung { step, of, action }: Rung,
    mark: &str,
    summary: &str,
) -> RemediationRecord {
    let at = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        mark.parse().unwrap_or_else(|_| ctx.clock.now()),
    );
    match ctx.executor.run(action, workload, mark).await {
        Ok(done) => {
            let note = format!(
                "Ran {} (step {step} of {of}) on {workload} because the target is unhealthy. {summary} {done}",
                action.as_str(),
            );
            report::publish(
                &ctx.recorder,
                policy,
                false,
                reasons::ROLLOUT_RESTARTED,
                action.as_str(),
                note,
            )
            .await;
            RemediationRecord {
                action,
                step,
                at,
                result: RemediationResult::Succeeded,
                message: Some(done),
            }
        }
        Err(e) => {
            let message = format!("{} on {workload} failed: {e}", action.as_str());
            report::publish(
                &ctx.recorder,
                policy,
                true,
                reasons::REMEDIATION_FAILED,
                action.as_str(),
                message.clone(),
            )
            .await;
            RemediationRecord {
                action,
                step,
                at,
                result: RemediationResult::Failed,
                message: Some(message),
            }
        }
    }
}

/// Completes a remediation recorded as Pending: if its mark is on the workload it ran; otherwise
/// run it now with the same mark (the action is idempotent).
async fn resume(
    ctx: &Context,
    policy: &AppHealthPolicy,
    workload: &Workload,
    mut record: RemediationRecord,
) -> Result<RemediationRecord> {
    let mark = record.at.0.to_string();
    if ctx.executor.is_applied(record.action, workload, &mark).await? {
        record.result = RemediationResult::Succeeded;
        record.message = Some(format!(
            "{} on {workload} was found applied after an operator restart; not repeated.",
            record.action.as_str()
        ));
    } else {
        match ctx.executor.run(record.action, workload, &mark).await {
            Ok(done) => {
                record.result = RemediationResult::Succeeded;
                record.message = Some(format!("Completed after an operator restart. {done}"));
            }
            Err(e) => {
                record.result = RemediationResult::Failed;
                record.message = Some(format!("{} on {workload} failed: {e}", record.action.as_str()));
            }
        }
    }
    let note = record.message.clone().unwrap_or_default();
    report::publish(
        &ctx.recorder,
        policy,
        false,
        reasons::REMEDIATION_RESUMED,
        record.action.as_str(),
        note,
    )
    .await;
    Ok(record)
}

fn report_verdict(
    status: &mut AppHealthPolicyStatus,
    old: &AppHealthPolicyStatus,
    v: &TargetVerdict,
    generation: Option<i64>,
    now: jiff::Timestamp,
) {
    // Keep the recorded `since` while the health is unchanged: a restarted operator's fresh
    // evaluator must not rewrite it.
    let since = match &old.verdict {
        Some(prev) if prev.health == v.health => prev.since.clone(),
        _ => k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(v.since),
    };
    status.verdict = Some(Verdict {
        health: v.health,
        since,
        evidence: v.evidence.clone(),
    });
    status.targets = Some(crate::api::TargetCounts {
        probed: v.probed,
        healthy: v.healthy,
    });
    let (s, reason) = match v.health {
        Health::Healthy => (CondStatus::True, reasons::PROBES_SUCCEEDING),
        Health::Unhealthy => (CondStatus::False, reasons::TRIGGER_FIRED),
        Health::Unknown => (CondStatus::Unknown, reasons::AWAITING_VERDICT),
    };
    set_condition(
        &mut status.conditions,
        conditions::HEALTHY,
        s,
        reason,
        v.summary(),
        generation,
        now,
    );
}

/// An early exit of the pipeline: the policy cannot be probed. Probing stops, Ready turns False
/// with `message`, and an Event carries `event` when the reason is new.
struct Stop {
    reason: &'static str,
    action: &'static str,
    message: String,
    event: String,
}

impl Stop {
    #[allow(clippy::too_many_arguments)]
    async fn apply(
        self,
        ctx: &Context,
        policy: &AppHealthPolicy,
        key: &PolicyRef,
        old: &AppHealthPolicyStatus,
        mut status: AppHealthPolicyStatus,
        now: jiff::Timestamp,
        requeue: Requeue,
    ) -> Outcome {
        ctx.probes.stop(key);
        if ready_reason(old) != Some(self.reason) {
            report::publish(&ctx.recorder, policy, true, self.reason, self.action, self.event).await;
        }
        let generation = policy.metadata.generation;
        set_condition(
            &mut status.conditions,
            conditions::READY,
            CondStatus::False,
            self.reason,
            self.message,
            generation,
            now,
        );
        not_probing(&mut status, self.reason, generation, now);
        Outcome { status, requeue }
    }
}

/// Healthy=Unknown and Remediating kept as recorded, for a policy that is not probing.
fn not_probing(
    status: &mut AppHealthPolicyStatus,
    reason: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) {
    status.verdict = None;
    status.targets = None;
    set_condition(
        &mut status.conditions,
        conditions::HEALTHY,
        CondStatus::Unknown,
        reason,
        "Not probing, so there is no verdict; see the Ready condition.",
        generation,
        now,
    );
    if status
        .conditions
        .iter()
        .all(|c| c.type_ != conditions::REMEDIATING)
    {
        set_condition(
            &mut status.conditions,
            conditions::REMEDIATING,
            false,
            reasons::IDLE,
            "No remediation is in progress.",
            generation,
            now,
        );
    }
    if reason != reasons::SUSPENDED {
        not_blocked(status, generation, now);
    }
}

fn not_blocked(status: &mut AppHealthPolicyStatus, generation: Option<i64>, now: jiff::Timestamp) {
    set_condition(
        &mut status.conditions,
        conditions::REMEDIATION_BLOCKED,
        false,
        reasons::NOT_BLOCKED,
        "No guard is holding a remediation back.",
        generation,
        now,
    );
}

fn ready_reason(status: &AppHealthPolicyStatus) -> Option<&str> {
    report::condition(status, conditions::READY).map(|c| c.reason.as_str())
}

fn blocked_reason(status: &AppHealthPolicyStatus) -> Option<&str> {
    report::condition(status, conditions::REMEDIATION_BLOCKED)
        .filter(|c| c.status == "True")
        .map(|c| c.reason.as_str())
}

fn recorded_health(status: &AppHealthPolicyStatus) -> Option<Health> {
    status.verdict.as_ref().map(|v| v.health)
}

/// Exponential backoff per policy for a missing target: 5s, 10s, 20s … capped at 5 minutes.
fn backoff(retries: &Mutex<HashMap<PolicyRef, u32>>, key: &PolicyRef) -> Duration {
    let mut retries = retries.lock().unwrap_or_else(PoisonError::into_inner);
    let n = retries.entry(key.clone()).or_insert(0);
    let delay = Duration::from_secs(5)
        .saturating_mul(2u32.saturating_pow(*n))
        .min(Duration::from_secs(300));
    *n = n.saturating_add(1);
    delay
}
