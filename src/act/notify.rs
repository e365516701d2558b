//! Notify: POST a JSON summary (policy, target, verdict, evidence, the ladder so far, what happens
//! next, and a one-line `text` that chat webhooks render) to a URL read from a Secret, with a
//! timeout and retries with backoff. A failing webhook never blocks the ladder: the step is
//! recorded as Failed and the Event says why. Delivery is at least once: every attempt carries the
//! same `id` (and `Idempotency-Key` header), so a receiver can drop a repeat after a crash.

use std::{net::IpAddr, time::Duration};

use futures::{FutureExt, future::BoxFuture};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::json;

use super::{ActCtx, ActError, Action, Done, api_error};
use crate::{api::validate::StepParams, plan::Remediation};

pub struct Notify;

/// Sends webhook requests: no proxy, no redirects, a timeout per attempt.
#[derive(Clone, Debug)]
pub struct Notifier {
    client: reqwest::Client,
    attempts: u32,
    backoff: Duration,
}

impl Notifier {
    pub fn new(timeout: Duration, attempts: u32, backoff: Duration) -> crate::Result<Self> {
        crate::observe::prober::install_crypto_provider();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("apphealth-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| crate::Error::HttpClient(e.to_string()))?;
        Ok(Self {
            client,
            attempts: attempts.max(1),
            backoff,
        })
    }

    /// Posts `body`; retries failures (connection errors, 5xx, 429) with doubling backoff.
    async fn post(&self, url: &str, id: &str, body: &serde_json::Value) -> Result<u16, String> {
        let mut delay = self.backoff;
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match self
                .client
                .post(url)
                .header("Idempotency-Key", id)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
                .send()
                .await
            {
                Ok(resp) if resp.status().is_success() => return Ok(resp.status().as_u16()),
                Ok(resp) if resp.status().is_server_error() || resp.status().as_u16() == 429 => {
                    last = format!("HTTP {}", resp.status().as_u16());
                }
                Ok(resp) => return Err(format!("the webhook answered HTTP {}", resp.status().as_u16())),
                Err(e) => last = e.to_string(),
            }
            if attempt < self.attempts {
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
        }
        Err(format!(
            "{} attempts failed, the last with: {last}",
            self.attempts
        ))
    }
}

/// Why a webhook host is refused: link-local addresses (cloud metadata endpoints live there) and
/// the unspecified address. Hostnames are not resolved here.
pub fn forbidden_webhook_host(host: &str) -> Option<&'static str> {
    let ip: IpAddr = host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        Some("a link-local address (where cloud metadata services answer)")
    } else if ip.is_unspecified() {
        Some("the unspecified address")
    } else {
        None
    }
}

async fn url(ctx: &ActCtx<'_>, r: &Remediation) -> Result<String, ActError> {
    let StepParams::Notify { url } = &r.params else {
        return Err(ActError::Refused("Notify without its parameters".into()));
    };
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
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_owned())
        .ok_or_else(|| ActError::Refused(format!("Secret {} has no key {}", url.name, url.key)))?;
    let parsed = reqwest::Url::parse(&value)
        .map_err(|_| ActError::Refused(format!("Secret {} key {} is not a URL", url.name, url.key)))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ActError::Refused(format!(
            "the webhook URL in Secret {} must be http or https",
            url.name
        )));
    }
    if let Some(why) = parsed.host_str().and_then(forbidden_webhook_host) {
        return Err(ActError::Refused(format!(
            "the webhook URL in Secret {} points to {why}",
            url.name
        )));
    }
    Ok(value)
}

fn payload(ctx: &ActCtx<'_>, r: &Remediation, id: &str) -> serde_json::Value {
    let ladder: Vec<serde_json::Value> = ctx
        .status
        .history
        .iter()
        .filter(|h| {
            ctx.status
                .ladder
                .as_ref()
                .is_some_and(|l| h.at.0 >= l.started_at.0)
        })
        .map(|h| {
            json!({"step": h.step, "action": h.action.as_str(), "result": h.result.as_str(),
                   "at": h.at.0.to_string(), "message": h.message})
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
        "verdict": {"health": "Unhealthy", "summary": ctx.summary, "evidence": ctx.evidence},
        "step": {"number": r.step, "of": r.of, "action": "Notify"},
        "ladder": ladder,
        "next": ctx.next,
        "at": r.at.to_string(),
    })
}

impl Action for Notify {
    fn reason(&self) -> &'static str {
        "Notified"
    }

    fn apply<'a>(&'a self, ctx: &'a ActCtx<'a>, r: &'a Remediation) -> BoxFuture<'a, Result<Done, ActError>> {
        async move {
            let url = url(ctx, r).await?;
            let host = reqwest::Url::parse(&url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default();
            if r.dry_run {
                return Ok(Done::succeeded(format!(
                    "would post a summary to the webhook at {host}."
                )));
            }
            let id = format!("{}/{}", ctx.policy.uid, r.at);
            let code = ctx
                .notifier
                .post(&url, &id, &payload(ctx, r, &id))
                .await
                .map_err(|e| ActError::Refused(format!("the webhook at {host} failed: {e}")))?;
            Ok(Done::succeeded(format!(
                "Posted a summary to the webhook at {host} (HTTP {code})."
            )))
        }
        .boxed()
    }

    fn applied<'a>(
        &'a self,
        _ctx: &'a ActCtx<'a>,
        _r: &'a Remediation,
    ) -> BoxFuture<'a, Result<Option<Done>, ActError>> {
        // A webhook keeps no mark the operator can read: resuming sends again, with the same id.
        async { Ok(None) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::forbidden_webhook_host;

    #[test]
    fn link_local_and_unspecified_hosts_are_refused_without_sending_anything() {
        for host in ["169.254.169.254", "[fe80::1]", "0.0.0.0", "[::]"] {
            assert!(forbidden_webhook_host(host).is_some(), "{host}");
        }
        for host in ["127.0.0.1", "[::1]", "hooks.example", "10.0.0.1"] {
            assert!(forbidden_webhook_host(host).is_none(), "{host}");
        }
    }
}
