//! Notify: POST a JSON summary (policy, target, verdict, evidence, the ladder so far, what happens
//! next, and a one-line `text` that chat webhooks render) to a URL read from a Secret, with a
//! timeout and retries with backoff. A failing webhook never blocks the ladder: the step is
//! recorded as Failed and the Event says why. Delivery is at least once: every attempt carries the
//! same `id` (and `Idempotency-Key` header), so a receiver can drop a repeat after a crash.
//!
//! The webhook is sent the way probes are (`observe::http`): a new connection per attempt, opened
//! through the same deny-list after name resolution, no proxy, no redirects. The URL is a secret
//! (chat webhooks carry their credential in it): it never appears in a message, a log line or the
//! status; they name the Secret instead.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use rustls::ClientConfig;
use serde_json::json;

use super::{
    ActCtx, ActError, Action, Descriptor, Done, Remediation, StepParams, api_error,
    params::{Params, StepField, named, required},
};
use crate::{
    api::{
        KeyRef, Method, RemediationStep, format_duration,
        validate::{InvalidSpec, chars, names},
    },
    observe::{
        error::{ExchangeError, TlsError},
        http::{Outgoing, destination, exchange},
        reach::Reach,
        request::{Sensitive, TlsOptions},
    },
    record::Finding,
};

/// What Notify is: see [`Descriptor`].
pub(super) const DESCRIPTOR: Descriptor = Descriptor {
    action: crate::api::Action::Notify,
    reason: "Notified",
    changes_target: false,
    restarts_pods: false,
    replaces_pods: false,
    permission: "notify",
    rights: &[],
    why: "nothing more: the webhook URL comes from a Secret it can already read",
};

pub struct Notify;

/// Notify's parameters, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    /// The Secret key holding the webhook URL.
    pub url: KeyRef,
}

impl Params for Notify {
    type Settings = NotifySettings;
    const TIMEOUT: std::time::Duration = std::time::Duration::ZERO;

    fn block(step: &RemediationStep) -> Option<&'static str> {
        named("notify", step.notify.as_ref())
    }

    fn limits(f: StepField, step: &RemediationStep) -> Result<(), InvalidSpec> {
        step.notify.as_ref().map_or(Ok(()), |n| {
            chars(&f.at("notify.urlSecretRef.key"), &n.url_secret_ref.key, 253)
        })
    }

    fn settings(f: StepField, step: &RemediationStep) -> Result<NotifySettings, InvalidSpec> {
        let p = required(f, "notify", "Notify", step.notify.as_deref())?;
        names::object(&f.at("notify.urlSecretRef.name"), &p.url_secret_ref.name)?;
        Ok(NotifySettings {
            url: p.url_secret_ref.clone(),
        })
    }
}

/// Why a webhook's POST failed. The text never contains the URL.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// Not sent: the URL, the address or the TLS settings cannot be used.
    #[error("{0}")]
    Unsendable(#[from] ExchangeError),
    /// An answer that retrying would not change (4xx but 429).
    #[error("the webhook answered HTTP {0}")]
    Answered(u16),
    /// Every attempt failed (timeouts, connection errors, 5xx, 429).
    #[error("{attempts} attempts failed, the last with: {last}")]
    Exhausted { attempts: u32, last: String },
}

impl PostError {
    /// A stable name for the kind of failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unsendable(e) => e.reason(),
            Self::Answered(_) => "WebhookRefused",
            Self::Exhausted { .. } => "WebhookUnavailable",
        }
    }
}

/// Sends webhook requests: through the deny-list, no proxy, no redirects, a timeout per attempt.
#[derive(Clone, Debug)]
pub struct Notifier {
    reach: Reach,
    /// For https webhooks: the system's trust roots (or why they cannot be used).
    tls: Result<Arc<ClientConfig>, TlsError>,
    timeout: Duration,
    attempts: u32,
    backoff: Duration,
}

impl Notifier {
    pub fn new(reach: Reach, timeout: Duration, attempts: u32, backoff: Duration) -> crate::Result<Self> {
        crate::observe::prober::install_crypto_provider();
        Ok(Self {
            reach,
            tls: crate::observe::tls::client_config(&TlsOptions::default()).map(Arc::new),
            timeout,
            attempts: attempts.max(1),
            backoff,
        })
    }

    /// Posts `body` to `url`; retries failures (connection errors, timeouts, 5xx, 429) with
    /// doubling backoff. An address the deny-list refuses is not retried. Errors never contain
    /// the URL.
    pub async fn post(&self, url: &Sensitive, id: &str, body: &serde_json::Value) -> Result<u16, PostError> {
        let to = destination(url.expose())?;
        // Refused before the first attempt; each attempt checks again on connect.
        self.reach
            .resolve(&to.host, to.port)
            .await
            .map_err(ExchangeError::from)?;
        let tls = if to.https {
            Some(self.tls.clone().map_err(ExchangeError::from)?)
        } else {
            None
        };
        let headers = [
            ("Idempotency-Key".to_owned(), Sensitive::new(id)),
            ("Content-Type".to_owned(), Sensitive::new("application/json")),
        ];
        let body = body.to_string();
        let request = Outgoing {
            url: url.expose(),
            method: Method::Post,
            headers: &headers,
            body: Some(&body),
        };
        let mut delay = self.backoff;
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match tokio::time::timeout(self.timeout, exchange(&self.reach, &request, tls.clone())).await {
                Err(_) => last = format!("timed out after {}", format_duration(self.timeout)),
                Ok(Err(e)) => last = e.to_string(),
                Ok(Ok(answer)) if (200..300).contains(&answer.code) => return Ok(answer.code),
                Ok(Ok(answer)) if answer.code >= 500 || answer.code == 429 => {
                    last = format!("HTTP {}", answer.code);
                }
                Ok(Ok(answer)) => return Err(PostError::Answered(answer.code)),
            }
            if attempt < self.attempts {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
        }
        Err(PostError::Exhausted {
            attempts: self.attempts,
            last,
        })
    }
}

/// The webhook URL in the Secret `url` names, checked: http or https, and not an address the
/// deny-list refuses when it is written as one (a name is judged when it is resolved).
async fn url(ctx: &ActCtx<'_>, url: &KeyRef) -> Result<Sensitive, ActError> {
    let ns = &ctx.workload.namespace;
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), ns)
        .get_opt(&url.name)
        .await
        .map_err(api_error("get", "secrets", ns))?
        .ok_or_else(|| {
            ActError::Refused(format!("Secret {} (notify.urlSecretRef) was not found", url.name))
        })?;
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&url.key))
        .map(|b| Sensitive::new(String::from_utf8_lossy(&b.0).trim()))
        .ok_or_else(|| ActError::Refused(format!("Secret {} has no key {}", url.name, url.key)))?;
    let to = destination(value.expose()).map_err(|e| {
        ActError::Refused(format!(
            "the webhook URL in Secret {} key {} cannot be used: {e}",
            url.name, url.key
        ))
    })?;
    if let Some(Err(refused)) = ctx.notifier.reach.check_literal(&to.host, to.port) {
        return Err(ActError::Refused(format!(
            "the webhook URL in Secret {} points to an address the operator never posts to: {refused}",
            url.name
        )));
    }
    Ok(value)
}

/// The evidence as the payload carries it: each fired trigger, its pods and since when.
fn evidence(findings: &[Finding]) -> Vec<serde_json::Value> {
    findings
        .iter()
        .map(|f| {
            let mut e = json!({"trigger": f.trigger, "message": f.message});
            if !f.pods.is_empty() {
                e["pods"] = json!(f.pods);
            }
            if let Some(since) = f.since {
                e["since"] = json!(since.to_string());
            }
            e
        })
        .collect()
}

fn payload(ctx: &ActCtx<'_>, r: &Remediation, id: &str) -> serde_json::Value {
    let ladder: Vec<serde_json::Value> = ctx
        .recorded
        .history
        .iter()
        .filter(|h| ctx.recorded.ladder.as_ref().is_some_and(|l| h.at >= l.started_at))
        .map(|h| {
            json!({"step": h.step, "action": h.action.as_str(), "result": h.result.as_str(),
                   "at": h.at.to_string(), "message": h.message})
        })
        .collect();
    let text = format!(
        "{}/{}: {} is unhealthy. {} Next: {}",
        ctx.workload.namespace, ctx.policy.name, ctx.workload, ctx.summary, ctx.next
    );
    json!({
        "id": id,
        "text": text,
        "policy": {"name": ctx.policy.name, "namespace": ctx.workload.namespace},
        "target": {"kind": ctx.workload.kind.as_str(), "name": ctx.workload.name},
        "verdict": {"health": "Unhealthy", "summary": ctx.summary, "evidence": evidence(&ctx.evidence)},
        "step": {"number": r.step, "of": r.of, "action": "Notify"},
        "ladder": ladder,
        "next": ctx.next,
        "at": r.at.to_string(),
    })
}

impl Action for Notify {
    async fn apply(&self, ctx: &ActCtx<'_>, r: &Remediation) -> Result<Done, ActError> {
        let StepParams::Notify(NotifySettings { url: reference }) = &r.params else {
            return Err(ActError::Refused("Notify without its parameters".into()));
        };
        let url = url(ctx, reference).await?;
        let secret = &reference.name;
        if r.dry_run {
            return Ok(Done::succeeded(format!(
                "would post a summary to the webhook in Secret {secret}."
            )));
        }
        let id = format!("{}/{}", ctx.policy.uid, r.at);
        let code = ctx
            .notifier
            .post(&url, &id, &payload(ctx, r, &id))
            .await
            .map_err(|e| ActError::Refused(format!("the webhook in Secret {secret} failed: {e}")))?;
        Ok(Done::succeeded(format!(
            "Posted a summary to the webhook in Secret {secret} (HTTP {code})."
        )))
    }

    async fn applied(&self, _ctx: &ActCtx<'_>, _r: &Remediation) -> Result<Option<Done>, ActError> {
        // A webhook keeps no mark the operator can read: resuming sends again, with the same id.
        Ok(None)
    }
}
