//! Prometheus metrics, in one registry. Labels are bounded: results, triggers, actions, guards,
//! stages, verbs and codes, reasons, and the policy (`namespace/name`: as many as there are
//! policies; a deleted policy's health gauge goes with it) — never pod names.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabel {
    pub trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealthLabel {
    pub health: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabel {
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RemediationLabels {
    pub policy: String,
    pub action: String,
    pub result: String,
    pub dry_run: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GuardLabels {
    pub policy: String,
    pub guard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionReasonLabels {
    pub action: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub verb: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    pub shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    pub probes: Family<ResultLabel, Counter>,
    /// The `probes` counters of each result, taken once: a probe costs no label lookup.
    probes_ok: Counter,
    probes_fail: Counter,
    pub probe_failures: Family<ReasonLabel, Counter>,
    pub probe_latency: Histogram,
    pub probe_lag: Histogram,
    pub probes_delayed: Counter,
    pub probes_skipped: Counter,
    pub probes_in_flight: Gauge,
    pub trigger_firings: Family<TriggerLabel, Counter>,
    pub verdict_changes: Family<HealthLabel, Counter>,
    pub remediations: Family<RemediationLabels, Counter>,
    pub remediation_failures: Family<ActionReasonLabels, Counter>,
    pub holds: Family<GuardLabels, Counter>,
    pub policy_health: Family<PolicyLabel, Gauge>,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Family<StageLabel, Counter>,
    pub api_requests: Family<ApiLabels, Counter>,
    pub leader: Gauge,
    pub shards: Family<ShardLabel, Gauge>,
    pub policies: Family<ReasonLabel, Gauge>,
    /// The Ready reason last reported per policy, to keep `policies` exact.
    ready: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("apphealth");
        let probes = Family::<ResultLabel, Counter>::default();
        registry.register("probes", "Probes sent, by result (ok, fail)", probes.clone());
        let probe_failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "probe_failures",
            "Probes that failed, by a stable name of why (Timeout, HTTPStatus, ConnectFailed, BodyNotMatched, …)",
            probe_failures.clone(),
        );
        let probe_latency = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "probe_latency_seconds",
            "How long probes took to answer (or time out)",
            probe_latency.clone(),
        );
        let probe_lag = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "probe_lag_seconds",
            "How late probes started after their due time",
            probe_lag.clone(),
        );
        let probes_delayed = Counter::default();
        registry.register(
            "probes_delayed",
            "Probes that waited for one of the --max-concurrent-probes slots (the operator is not keeping up)",
            probes_delayed.clone(),
        );
        let probes_skipped = Counter::default();
        registry.register(
            "probes_skipped",
            "Probe rounds skipped because the endpoint's previous probe was still running or the schedule fell a period behind",
            probes_skipped.clone(),
        );
        let probes_in_flight = Gauge::default();
        registry.register("probes_in_flight", "Probes running now", probes_in_flight.clone());
        let trigger_firings = Family::<TriggerLabel, Counter>::default();
        registry.register(
            "trigger_firings",
            "Triggers that started firing on a pod, by trigger",
            trigger_firings.clone(),
        );
        let verdict_changes = Family::<HealthLabel, Counter>::default();
        registry.register(
            "verdict_changes",
            "Target verdicts that changed, by the new health",
            verdict_changes.clone(),
        );
        let remediations = Family::<RemediationLabels, Counter>::default();
        registry.register(
            "remediations",
            "Remediations that ran (or, in a dry run, would have), by policy, action and result",
            remediations.clone(),
        );
        let remediation_failures = Family::<ActionReasonLabels, Counter>::default();
        registry.register(
            "remediation_failures",
            "Remediations that failed, by action and a stable name of why (Forbidden, APIError, Refused, …)",
            remediation_failures.clone(),
        );
        let holds = Family::<GuardLabels, Counter>::default();
        registry.register(
            "holds",
            "Remediations a guard began to hold back (or skipped), by policy and guard",
            holds.clone(),
        );
        let policy_health = Family::<PolicyLabel, Gauge>::default();
        registry.register(
            "policy_health",
            "The verdict on each policy's target: 1 healthy, 0 unhealthy, -1 not known",
            policy_health.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "How long a reconcile took, actions included",
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<StageLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by the stage that failed and a stable name of why",
            reconcile_errors.clone(),
        );
        let api_requests = Family::<ApiLabels, Counter>::default();
        registry.register(
            "kubernetes_api_requests",
            "Requests to the Kubernetes API, by HTTP verb and status code",
            api_requests.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica leads (probes, acts and writes status), else 0",
            leader.clone(),
        );
        let shards = Family::<ShardLabel, Gauge>::default();
        registry.register(
            "shard_held",
            "1 for each shard this replica holds (with --shards), else 0",
            shards.clone(),
        );
        let policies = Family::<ReasonLabel, Gauge>::default();
        registry.register(
            "policies",
            "Policies by the reason of their Ready condition",
            policies.clone(),
        );
        let probes_ok = probes.get_or_create(&ResultLabel { result: label("ok") }).clone();
        let probes_fail = probes
            .get_or_create(&ResultLabel {
                result: label("fail"),
            })
            .clone();
        Self {
            registry,
            probes,
            probes_ok,
            probes_fail,
            probe_failures,
            probe_latency,
            probe_lag,
            probes_delayed,
            probes_skipped,
            probes_in_flight,
            trigger_firings,
            verdict_changes,
            remediations,
            remediation_failures,
            holds,
            policy_health,
            reconcile_duration,
            reconcile_errors,
            api_requests,
            leader,
            shards,
            policies,
            ready: Mutex::default(),
        }
    }
}

fn label(s: &str) -> String {
    s.to_owned()
}

impl Metrics {
    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// A probe answered (`reason`: why it failed, empty when it did not).
    pub fn probe(&self, ok: bool, latency: Duration, reason: &str) {
        if ok {
            self.probes_ok.inc();
        } else {
            self.probes_fail.inc();
            self.probe_failures
                .get_or_create(&ReasonLabel {
                    reason: label(reason),
                })
                .inc();
        }
        self.probe_latency.observe(latency.as_secs_f64());
    }

    /// A probe started `lag` after its due time, having `waited` for a free slot or not.
    pub fn probe_started(&self, lag: Duration, waited: bool) {
        self.probe_lag.observe(lag.as_secs_f64());
        if waited {
            self.probes_delayed.inc();
        }
    }

    pub fn trigger_fired(&self, trigger: &str) {
        self.trigger_firings
            .get_or_create(&TriggerLabel {
                trigger: label(trigger),
            })
            .inc();
    }

    pub fn verdict_changed(&self, health: &str) {
        self.verdict_changes
            .get_or_create(&HealthLabel {
                health: label(health),
            })
            .inc();
    }

    pub fn remediation(&self, policy: &str, action: &str, result: &str, dry_run: bool) {
        self.remediations
            .get_or_create(&RemediationLabels {
                policy: label(policy),
                action: label(action),
                result: label(result),
                dry_run: dry_run.to_string(),
            })
            .inc();
    }

    pub fn hold(&self, policy: &str, guard: &str) {
        self.holds
            .get_or_create(&GuardLabels {
                policy: label(policy),
                guard: label(guard),
            })
            .inc();
    }

    /// The health of `policy`'s target (None: the policy is gone, and so is its gauge; its
    /// counters stay, as counters do).
    pub fn health(&self, policy: &str, health: Option<crate::api::Health>) {
        let key = PolicyLabel {
            policy: label(policy),
        };
        match health {
            Some(h) => {
                let value = match h {
                    crate::api::Health::Healthy => 1,
                    crate::api::Health::Unhealthy => 0,
                    crate::api::Health::Unknown => -1,
                };
                self.policy_health.get_or_create(&key).set(value);
            }
            None => {
                self.policy_health.remove(&key);
            }
        }
    }

    pub fn reconcile_failed(&self, stage: &str, reason: &str) {
        self.reconcile_errors
            .get_or_create(&StageLabel {
                stage: label(stage),
                reason: label(reason),
            })
            .inc();
    }

    /// Whether this replica holds `shard`.
    pub fn shard_held(&self, shard: u32, held: bool) {
        self.shards
            .get_or_create(&ShardLabel {
                shard: shard.to_string(),
            })
            .set(i64::from(held));
    }

    /// A remediation failed, for `reason` (the action's error's stable name).
    pub fn remediation_failed(&self, action: &str, reason: &str) {
        self.remediation_failures
            .get_or_create(&ActionReasonLabels {
                action: label(action),
                reason: label(reason),
            })
            .inc();
    }

    /// Records the Ready reason of `policy` (None: the policy is gone).
    pub fn policy_ready(&self, policy: &str, reason: Option<&str>) {
        let mut ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
        let before = match reason {
            Some(r) => ready.insert(policy.to_owned(), r.to_owned()),
            None => ready.remove(policy),
        };
        if before.as_deref() == reason {
            return;
        }
        if let Some(b) = before {
            self.policies.get_or_create(&ReasonLabel { reason: b }).dec();
        }
        if let Some(r) = reason {
            self.policies
                .get_or_create(&ReasonLabel { reason: label(r) })
                .inc();
        }
    }
}

/// A tower layer that counts the Kubernetes API requests of a client, by verb and status code.
#[derive(Clone)]
pub struct CountRequests(pub Arc<Metrics>);

impl<S> tower::Layer<S> for CountRequests {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Counted {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> tower::Service<http::Request<B>> for Counted<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let verb = req.method().to_string();
        let metrics = self.metrics.clone();
        let call = self.inner.call(req);
        Box::pin(async move {
            let result = call.await;
            let code = match &result {
                Ok(resp) => resp.status().as_u16().to_string(),
                Err(_) => "error".to_owned(),
            };
            metrics
                .api_requests
                .get_or_create(&ApiLabels { verb, code })
                .inc();
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_by_reason_follow_each_policy() {
        let m = Metrics::default();
        m.policy_ready("shop/web", Some("Probing"));
        m.policy_ready("shop/api", Some("Probing"));
        m.policy_ready("shop/web", Some("TargetNotFound"));
        m.policy_ready("shop/api", None);
        let text = m.render();
        assert!(
            text.contains("apphealth_policies{reason=\"Probing\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("apphealth_policies{reason=\"TargetNotFound\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn a_deleted_policy_takes_its_health_gauge_along() {
        let m = Metrics::default();
        m.health("shop/web", Some(crate::api::Health::Healthy));
        m.health("shop/api", Some(crate::api::Health::Healthy));
        m.health("shop/web", None);
        let text = m.render();
        assert!(!text.contains("policy_health{policy=\"shop/web\"}"), "{text}");
        assert!(
            text.contains("apphealth_policy_health{policy=\"shop/api\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn the_text_format_has_every_family() {
        let m = Metrics::default();
        m.probe(true, Duration::from_millis(3), "");
        m.probe(false, Duration::from_millis(3), "Timeout");
        m.remediation("shop/web", "RolloutRestart", "Succeeded", false);
        m.remediation_failed("RestartPods", "Forbidden");
        m.reconcile_failed("dereference", "APIError");
        m.hold("shop/web", "Cooldown");
        m.health("shop/web", Some(crate::api::Health::Unhealthy));
        let text = m.render();
        for name in [
            "apphealth_probes_total{result=\"ok\"} 1",
            "apphealth_probes_total{result=\"fail\"} 1",
            "apphealth_probe_failures_total{reason=\"Timeout\"} 1",
            "apphealth_remediation_failures_total{action=\"RestartPods\",reason=\"Forbidden\"} 1",
            "apphealth_reconcile_errors_total{stage=\"dereference\",reason=\"APIError\"} 1",
            "apphealth_probe_latency_seconds_count 2",
            "apphealth_remediations_total{policy=\"shop/web\",action=\"RolloutRestart\",result=\"Succeeded\",dry_run=\"false\"} 1",
            "apphealth_holds_total{policy=\"shop/web\",guard=\"Cooldown\"} 1",
            "apphealth_policy_health{policy=\"shop/web\"} 0",
            "# TYPE apphealth_leader gauge",
            "# TYPE apphealth_reconcile_duration_seconds histogram",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
