//! kube-runtime wiring: watches, the reconcile pipeline, error policy.
//!
//! Watches: AppHealthPolicies (the controller's own watch), and Deployments, StatefulSets and Pods
//! through reflectors whose events are mapped, through [`TargetIndex`], to the policies that target
//! them. Probe tasks nudge the controller when a verdict changes. The reconcile is a pipeline:
//! validate → dereference the target → resolve endpoints and (re)start probing → plan → act →
//! report, and writes status only when it changed.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::{StreamExt, stream};
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{ConfigMap, Pod, Secret, Service},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::ListParams,
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action as Requeue},
        events::{Recorder, Reporter},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tokio::sync::mpsc;

use crate::{
    Error, Result,
    act::{Executor, MANAGER, Workload},
    api::{
        AppHealthPolicy, AppHealthPolicyStatus, Health, Ladder, ProbeVia, RemediationRecord,
        RemediationResult, TargetKind, Verdict, conditions, format_duration, reasons, validate,
    },
    clock::{self, Clock},
    evaluate::TargetVerdict,
    observe::{
        endpoints,
        metrics::MetricsApi,
        prober::HttpProber,
        references::{self, ConfigKind},
        schedule::{ProbeJob, ProbeTasks, Probing},
        signals,
    },
    plan::{self, LadderState, Plan},
    report::{self, CondStatus, set_condition},
};

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Watch one namespace only (needs no cluster-wide rights), or all when None.
    pub namespace: Option<String>,
    /// How often a policy is looked at again without any event (costs no writes).
    pub resync: Duration,
    /// Identity of this replica in Events.
    pub instance: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespace: None,
            resync: Duration::from_secs(300),
            instance: None,
        }
    }
}

type PolicyRef = ObjectRef<AppHealthPolicy>;

/// Maps workloads and pods to the policies that target them.
#[derive(Clone)]
pub struct TargetIndex {
    policies: Store<AppHealthPolicy>,
    deployments: Store<Deployment>,
    statefulsets: Store<StatefulSet>,
    pods: Store<Pod>,
    configmaps: Store<PartialObjectMeta<ConfigMap>>,
    secrets: Store<PartialObjectMeta<Secret>>,
}

impl TargetIndex {
    /// Policies in `namespace` whose targetRef names this workload.
    pub fn policies_for_workload(&self, kind: TargetKind, namespace: &str, name: &str) -> Vec<PolicyRef> {
        self.policies
            .state()
            .iter()
            .filter(|p| {
                p.metadata.namespace.as_deref() == Some(namespace)
                    && p.spec.target_ref.kind == kind
                    && p.spec.target_ref.name == name
            })
            .map(|p| ObjectRef::from_obj(p.as_ref()))
            .collect()
    }

    /// Policies whose target workload selects this pod.
    pub fn policies_for_pod(&self, pod: &Pod) -> Vec<PolicyRef> {
        let Some(namespace) = pod.metadata.namespace.as_deref() else {
            return Vec::new();
        };
        self.policies
            .state()
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .filter(|p| {
                self.workload_selector(p.spec.target_ref.kind, namespace, &p.spec.target_ref.name)
                    .is_some_and(|s| endpoints::selects(&s, pod.metadata.labels.as_ref()))
            })
            .map(|p| ObjectRef::from_obj(p.as_ref()))
            .collect()
    }

    /// Policies that use this ConfigMap or Secret: in their probe (headers, CA) or through the
    /// pods of their target.
    pub fn policies_for_config(&self, kind: ConfigKind, namespace: &str, name: &str) -> Vec<PolicyRef> {
        let pods_using: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .filter(|p| {
                references::referenced(p)
                    .iter()
                    .any(|(k, n)| *k == kind && n == name)
            })
            .collect();
        let mut refs: Vec<PolicyRef> = pods_using.iter().flat_map(|p| self.policies_for_pod(p)).collect();
        for policy in self.policies.state() {
            if policy.metadata.namespace.as_deref() == Some(namespace) && probe_uses(&policy, kind, name) {
                refs.push(ObjectRef::from_obj(policy.as_ref()));
            }
        }
        refs.sort_by(|a, b| a.name.cmp(&b.name));
        refs.dedup();
        refs
    }

    /// The metadata of a ConfigMap or Secret, from the cache.
    fn config_meta(
        &self,
        kind: ConfigKind,
        namespace: &str,
        name: &str,
    ) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta> {
        match kind {
            ConfigKind::ConfigMap => self
                .configmaps
                .get(&ObjectRef::new(name).within(namespace))
                .map(|m| m.metadata.clone()),
            ConfigKind::Secret => self
                .secrets
                .get(&ObjectRef::new(name).within(namespace))
                .map(|m| m.metadata.clone()),
        }
    }

    fn workload_selector(
        &self,
        kind: TargetKind,
        namespace: &str,
        name: &str,
    ) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector> {
        match kind {
            TargetKind::Deployment => self
                .deployments
                .get(&ObjectRef::new(name).within(namespace))
                .and_then(|d| d.spec.as_ref().map(|s| s.selector.clone())),
            TargetKind::StatefulSet => self
                .statefulsets
                .get(&ObjectRef::new(name).within(namespace))
                .and_then(|d| d.spec.as_ref().map(|s| s.selector.clone())),
        }
    }
}

/// Shared state of the reconcile loop.
pub struct Context {
    client: Client,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
    executor: Executor,
    probes: ProbeTasks<PolicyRef>,
    index: TargetIndex,
    resync: Duration,
    not_found_retries: Mutex<HashMap<PolicyRef, u32>>,
}

/// Checks that the CRD is installed, with a call that works under namespaced RBAC too.
async fn ensure_crd(api: &Api<AppHealthPolicy>) -> Result<()> {
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => {
            Err(Error::CrdMissing(status.message.clone()))
        }
        Err(e) => Err(e.into()),
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the operator until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let ns = config.namespace.as_deref();
    let policies: Api<AppHealthPolicy> = scoped(&client, ns);
    ensure_crd(&policies).await?;

    let (deployments, deployment_events) = reflect::<Deployment>(&client, ns);
    let (statefulsets, statefulset_events) = reflect::<StatefulSet>(&client, ns);
    let (pods, pod_events) = reflect::<Pod>(&client, ns);
    let (configmaps, configmap_events) = reflect_metadata::<ConfigMap>(&client, ns);
    let (secrets, secret_events) = reflect_metadata::<Secret>(&client, ns);

    let controller = Controller::new(policies, watcher::Config::default())
        .with_config(controller::Config::default().debounce(Duration::from_millis(200)));
    let index = TargetIndex {
        policies: controller.store(),
        deployments,
        statefulsets,
        pods,
        configmaps,
        secrets,
    };

    let (nudge_tx, nudge_rx) = mpsc::unbounded_channel();
    let triggers = {
        let (i1, i2, i3, i4, i5) = (
            index.clone(),
            index.clone(),
            index.clone(),
            index.clone(),
            index.clone(),
        );
        let deployment_triggers = deployment_events.flat_map(move |d: Deployment| {
            let ns = d.namespace().unwrap_or_default();
            stream::iter(i1.policies_for_workload(TargetKind::Deployment, &ns, &d.name_any()))
        });
        let statefulset_triggers = statefulset_events.flat_map(move |s: StatefulSet| {
            let ns = s.namespace().unwrap_or_default();
            stream::iter(i2.policies_for_workload(TargetKind::StatefulSet, &ns, &s.name_any()))
        });
        let pod_triggers = pod_events.flat_map(move |p: Pod| stream::iter(i3.policies_for_pod(&p)));
        let configmap_triggers = configmap_events.flat_map(move |c: PartialObjectMeta<ConfigMap>| {
            let ns = c.namespace().unwrap_or_default();
            stream::iter(i4.policies_for_config(ConfigKind::ConfigMap, &ns, &c.name_any()))
        });
        let secret_triggers = secret_events.flat_map(move |c: PartialObjectMeta<Secret>| {
            let ns = c.namespace().unwrap_or_default();
            stream::iter(i5.policies_for_config(ConfigKind::Secret, &ns, &c.name_any()))
        });
        stream::select_all([
            deployment_triggers.boxed(),
            statefulset_triggers.boxed(),
            pod_triggers.boxed(),
            configmap_triggers.boxed(),
            secret_triggers.boxed(),
            stream::unfold(
                nudge_rx,
                |mut rx| async move { rx.recv().await.map(|key| (key, rx)) },
            )
            .boxed(),
        ])
    };

    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: config.instance.clone(),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        executor: Executor::new(client.clone()),
        probes: ProbeTasks::new(Probing {
            prober: HttpProber::new()?,
            clock: clock.clone(),
            usage: Arc::new(MetricsApi::new(client.clone())),
            nudge: nudge_tx,
            alive: {
                let policies = index.policies.clone();
                Arc::new(move |key: &PolicyRef| policies.get(key).is_some())
            },
        }),
        clock,
        index: index.clone(),
        resync: config.resync,
        not_found_retries: Mutex::default(),
        client,
    });

    controller
        .reconcile_on(triggers)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(policy = %obj, "reconciled"),
                Err(controller::Error::ObjectNotFound(obj)) => {
                    tracing::debug!(policy = %obj, "policy is gone")
                }
                Err(e) => tracing::warn!(error = %e, "reconcile failed"),
            }
        })
        .await;
    Ok(())
}

/// A reflector for `K` and the stream of objects it sees change.
fn reflect<K>(
    client: &Client,
    namespace: Option<&str>,
) -> (Store<K>, impl futures::Stream<Item = K> + Send + 'static)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let events = reflector::reflector(
        writer,
        watcher(scoped::<K>(client, namespace), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects()
    .filter_map(|r| async move {
        r.map_err(|e| tracing::warn!(error = %e, kind = std::any::type_name::<K>(), "watch error"))
            .ok()
    });
    (store, events)
}

/// A metadata-only reflector for `K` (values of Secrets are never cached) and its change stream.
fn reflect_metadata<K>(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Store<PartialObjectMeta<K>>,
    impl futures::Stream<Item = PartialObjectMeta<K>> + Send + 'static,
)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let api: Api<PartialObjectMeta<K>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let events = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects()
        .filter_map(|r| async move {
            r.map_err(
                |e| tracing::warn!(error = %e, kind = std::any::type_name::<K>(), "metadata watch error"),
            )
            .ok()
        });
    (store, events)
}

/// Whether a policy's probe reads this ConfigMap or Secret (header values, CA bundle).
fn probe_uses(policy: &AppHealthPolicy, kind: ConfigKind, name: &str) -> bool {
    let Some(http) = &policy.spec.probe.http else {
        return false;
    };
    let header = kind == ConfigKind::Secret
        && http.headers.iter().any(|h| {
            h.value_from
                .as_ref()
                .is_some_and(|f| f.secret_key_ref.name == name)
        });
    let ca = http
        .tls
        .as_ref()
        .and_then(|t| t.ca.as_ref())
        .is_some_and(|ca| match kind {
            ConfigKind::Secret => ca.secret_key_ref.as_ref().is_some_and(|k| k.name == name),
            ConfigKind::ConfigMap => ca.config_map_key_ref.as_ref().is_some_and(|k| k.name == name),
        });
    header || ca
}

fn error_policy(policy: Arc<AppHealthPolicy>, error: &Error, _ctx: Arc<Context>) -> Requeue {
    tracing::warn!(policy = %policy.name_any(), error = %error, label = error.metric_label(), "reconcile failed; retrying");
    Requeue::requeue(Duration::from_secs(10))
}

/// What the pipeline decided, to be written to status and Events.
struct Outcome {
    status: AppHealthPolicyStatus,
    requeue: Requeue,
}

#[tracing::instrument(skip_all, fields(policy = %policy.name_any(), namespace = policy.namespace().unwrap_or_default()))]
async fn reconcile(policy: Arc<AppHealthPolicy>, ctx: Arc<Context>) -> Result<Requeue> {
    let key = ObjectRef::from_obj(policy.as_ref());
    let namespace = policy.namespace().unwrap_or_default();
    let api: Api<AppHealthPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let old = policy.status.clone().unwrap_or_default();

    let outcome = pipeline(&policy, &key, &namespace, &api, &old, &ctx).await?;
    if outcome.status != old {
        report::apply_status(&api, &policy.name_any(), &outcome.status).await?;
    }
    Ok(outcome.requeue)
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
            ctx.probes.stop(key);
            let message =
                format!("The policy is invalid: {invalid}. Fix the spec; nothing is probed until then.");
            if ready_reason(old) != Some(reasons::INVALID_SPEC) {
                report::publish(
                    &ctx.recorder,
                    policy,
                    true,
                    reasons::INVALID_SPEC,
                    "Validate",
                    message.clone(),
                )
                .await;
            }
            cond(
                &mut status,
                conditions::READY,
                CondStatus::False,
                reasons::INVALID_SPEC,
                message,
            );
            not_probing(&mut status, reasons::INVALID_SPEC, generation, now);
            return Ok(Outcome {
                status,
                requeue: Requeue::await_change(),
            });
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
        ctx.probes.stop(key);
        let retry = backoff(&ctx.not_found_retries, key);
        let message = format!(
            "{workload} was not found in namespace {namespace}; probing starts when it appears (next check in {}).",
            format_duration(retry)
        );
        if ready_reason(old) != Some(reasons::TARGET_NOT_FOUND) {
            report::publish(
                &ctx.recorder,
                policy,
                true,
                reasons::TARGET_NOT_FOUND,
                "Dereference",
                message.clone(),
            )
            .await;
        }
        // The retry delay is not part of the condition, so repeated checks do not rewrite status.
        let stable =
            format!("{workload} was not found in namespace {namespace}; probing starts when it appears.");
        cond(
            &mut status,
            conditions::READY,
            CondStatus::False,
            reasons::TARGET_NOT_FOUND,
            stable,
        );
        not_probing(&mut status, reasons::TARGET_NOT_FOUND, generation, now);
        return Ok(Outcome {
            status,
            requeue: Requeue::requeue(retry),
        });
    };
    ctx.not_found_retries
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(key);

    // resolve what the probe reads from Secrets and ConfigMaps, then the endpoints
    let template = match references::resolve_template(&ctx.client, namespace, &settings.probe).await {
        Ok(t) => t,
        Err(unresolved) => {
            ctx.probes.stop(key);
            let message = format!("{unresolved}. Probing starts once it can be read.");
            if ready_reason(old) != Some(reasons::INVALID_REFERENCE) {
                report::publish(
                    &ctx.recorder,
                    policy,
                    true,
                    reasons::INVALID_REFERENCE,
                    "Resolve",
                    message.clone(),
                )
                .await;
            }
            cond(
                &mut status,
                conditions::READY,
                CondStatus::False,
                reasons::INVALID_REFERENCE,
                message,
            );
            not_probing(&mut status, reasons::INVALID_REFERENCE, generation, now);
            return Ok(Outcome {
                status,
                requeue: Requeue::requeue(Duration::from_secs(60)),
            });
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
        if ready_health(old) != Some(v.health) {
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
                Health::Healthy if ready_health(old) == Some(Health::Unhealthy) => {
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

fn ready_health(status: &AppHealthPolicyStatus) -> Option<Health> {
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
