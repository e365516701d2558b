//! The prober: a new connection per probe (no pool, no proxy, no redirects), TCP connect probes,
//! a timeout on every probe, a bound on how much of a body is read, and body checks. Every
//! connection passes the deny-list of [`Reach`] after name resolution, on the address connected to.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use rustls::ClientConfig;

use super::{
    error::{BodyMismatch, ExchangeError, TlsError},
    http::exchange,
    reach::Reach,
    request::{ProbeRequest, ProbeTarget, TlsOptions},
};
use crate::{api::validate::BodyChecks, clock::Clock, observation::Sample};

pub use super::{http::MAX_BODY_BYTES, request::Sensitive};

/// Installs the process-wide rustls crypto provider (ring) once; later calls are no-ops.
pub fn install_crypto_provider() {
    // An Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Sends probes. Cheap to clone: TLS configurations are shared.
#[derive(Clone, Debug)]
pub struct HttpProber {
    /// TLS client configurations, one per distinct set of TLS options.
    tls: Arc<Mutex<HashMap<TlsOptions, Arc<ClientConfig>>>>,
    /// What probes may connect to.
    reach: Reach,
}

impl HttpProber {
    pub fn new(reach: Reach) -> crate::Result<Self> {
        install_crypto_provider();
        Ok(Self {
            tls: Arc::default(),
            reach,
        })
    }

    /// Sends one probe and judges the answer. Never fails: a failed probe is a sample too.
    pub async fn probe(&self, req: &ProbeRequest, clock: &dyn Clock) -> Sample {
        let at = clock.now();
        let started = tokio::time::Instant::now();
        let mut sample = Sample {
            endpoint: req.endpoint.clone(),
            path: req.path.clone(),
            at,
            ok: false,
            code: None,
            latency: Duration::ZERO,
            detail: String::new(),
            reason: "",
            timed_out: false,
            certificate_not_after: None,
        };
        match &req.target {
            ProbeTarget::Tcp { addr } => {
                let connect = async {
                    let (host, port) = split_host_port(addr)?;
                    self.reach.connect(host, port).await.map_err(ExchangeError::from)
                };
                match tokio::time::timeout(req.timeout, connect).await {
                    Err(_) => self.timed_out(&mut sample, req.timeout),
                    Ok(Err(e)) => sample.failed(&e, e.reason()),
                    Ok(Ok(_)) => {
                        sample.ok = true;
                        sample.detail = "connected".into();
                    }
                }
            }
            ProbeTarget::Http(http) => {
                let tls = match http.tls.as_ref().map(|t| self.tls_config(t)).transpose() {
                    Ok(tls) => tls,
                    Err(why) => {
                        sample.failed(&why, "TLSConfig");
                        sample.latency = started.elapsed();
                        return sample;
                    }
                };
                self.judge_http(&mut sample, http, tls, req.timeout).await;
            }
        }
        sample.latency = started.elapsed();
        sample
    }

    async fn judge_http(
        &self,
        sample: &mut Sample,
        http: &super::request::HttpRequest,
        tls: Option<Arc<ClientConfig>>,
        timeout: Duration,
    ) {
        match tokio::time::timeout(timeout, exchange(&self.reach, &http.into(), tls)).await {
            Err(_) => self.timed_out(sample, timeout),
            Ok(Err(e)) => sample.failed(&e, e.reason()),
            Ok(Ok(ex)) => {
                sample.code = Some(ex.code);
                sample.certificate_not_after = ex.certificate_not_after;
                if !http.success_codes.contains(ex.code) {
                    sample.detail = format!("HTTP {}", ex.code);
                    sample.reason = "HTTPStatus";
                } else {
                    match check_body(&http.checks, &ex.body) {
                        Ok(()) => {
                            sample.ok = true;
                            sample.detail = format!("HTTP {}", ex.code);
                        }
                        Err(why) => {
                            sample.detail = format!("HTTP {}, {why}", ex.code);
                            sample.reason = why.reason();
                        }
                    }
                }
            }
        }
    }

    fn timed_out(&self, sample: &mut Sample, timeout: Duration) {
        sample.timed_out = true;
        sample.reason = "Timeout";
        sample.detail = format!("timed out after {}", crate::api::format_duration(timeout));
    }

    fn tls_config(&self, tls: &TlsOptions) -> Result<Arc<ClientConfig>, TlsError> {
        let mut configs = self.tls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = configs.get(tls) {
            return Ok(c.clone());
        }
        let config = Arc::new(super::tls::client_config(tls)?);
        configs.insert(tls.clone(), config.clone());
        Ok(config)
    }
}

/// The host and port of a TCP probe's `host:port` (`10.0.0.1:8080`, `[fd00::1]:8080`).
pub fn split_host_port(addr: &str) -> Result<(&str, u16), ExchangeError> {
    addr.rsplit_once(':')
        .and_then(|(host, port)| {
            Some((
                host.trim_start_matches('[').trim_end_matches(']'),
                port.parse().ok()?,
            ))
        })
        .filter(|(host, _)| !host.is_empty())
        .ok_or_else(|| ExchangeError::NotHostPort(addr.to_owned()))
}

/// Checks a body against the policy's response conditions; Err says which one failed.
pub fn check_body(checks: &BodyChecks, body: &[u8]) -> Result<(), BodyMismatch> {
    if checks.is_empty() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(body);
    if let Some(p) = &checks.must_match
        && !p.0.is_match(&text)
    {
        return Err(BodyMismatch::NoMatch(p.0.as_str().to_owned()));
    }
    if let Some(p) = &checks.must_not_match
        && p.0.is_match(&text)
    {
        return Err(BodyMismatch::Matches(p.0.as_str().to_owned()));
    }
    if !checks.json.is_empty() {
        let json: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| BodyMismatch::NotJson(e.to_string()))?;
        for (pointer, expected) in &checks.json {
            let actual = match json.pointer(pointer) {
                None => return Err(BodyMismatch::Missing(pointer.clone())),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            if actual != *expected {
                return Err(BodyMismatch::Differs {
                    pointer: pointer.clone(),
                    actual,
                    expected: expected.clone(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn tcp_addresses_are_split_into_host_and_port() {
        let cases = [
            ("10.0.0.1:8080", Some(("10.0.0.1", 8080))),
            ("[fd00::1]:8080", Some(("fd00::1", 8080))),
            ("web.shop.svc:80", Some(("web.shop.svc", 80))),
            ("10.0.0.1", None),
            (":80", None),
            ("10.0.0.1:http", None),
            ("10.0.0.1:70000", None),
        ];
        for (addr, expected) in cases {
            assert_eq!(split_host_port(addr).ok(), expected, "{addr}");
        }
    }
}
