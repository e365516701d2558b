//! Probe requests: what one probe of one endpoint sends and how its answer is judged. Built by the
//! controller from a policy's settings, with values from Secrets already resolved.

use std::{fmt, time::Duration};

use crate::api::{
    Method,
    validate::{BodyChecks, Check, HttpSettings, ProbeSettings, SuccessCodes},
};

/// A value that must never be logged, written to status or put in an Event: its Debug output is
/// redacted and it has no Display.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Sensitive(String);

impl Sensitive {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// TLS settings of an HTTPS probe, with the CA bundle read from its Secret or ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TlsOptions {
    /// PEM certificates to trust instead of the system roots.
    pub ca_pem: Option<String>,
    /// The name the certificate must be valid for, instead of the probed host.
    pub server_name: Option<String>,
    /// Accept any certificate (its expiry is still recorded).
    pub insecure_skip_verify: bool,
}

/// An HTTP(S) request and how to judge its response.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    pub url: String,
    pub method: Method,
    pub headers: Vec<(String, Sensitive)>,
    pub body: Option<String>,
    pub success_codes: SuccessCodes,
    pub checks: BodyChecks,
    /// Set for https URLs.
    pub tls: Option<TlsOptions>,
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeTarget {
    Http(Box<HttpRequest>),
    /// Connect to `addr` ("10.0.0.1:8080", "[fd00::1]:8080") and close.
    Tcp {
        addr: String,
    },
}

/// One probe to send.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRequest {
    /// The pod or Service being probed, as it appears in evidence.
    pub endpoint: String,
    /// The HTTP path probed ("" for TCP), so triggers can tell paths apart.
    pub path: String,
    pub timeout: Duration,
    pub target: ProbeTarget,
}

/// A policy's probe with headers and TLS material resolved: stamps out requests per endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestTemplate {
    pub probe: ProbeSettings,
    pub headers: Vec<(String, Sensitive)>,
    pub tls: Option<TlsOptions>,
}

impl RequestTemplate {
    /// A template for probes that need nothing from Secrets or ConfigMaps (literal headers only).
    pub fn literal(probe: &ProbeSettings) -> Self {
        let headers = match &probe.check {
            Check::Http(http) => http
                .headers
                .iter()
                .filter_map(|h| match &h.value {
                    crate::api::validate::HeaderSource::Literal(v) => {
                        Some((h.name.clone(), Sensitive::new(v.clone())))
                    }
                    crate::api::validate::HeaderSource::Secret(_) => None,
                })
                .collect(),
            Check::Tcp => Vec::new(),
        };
        let tls = match &probe.check {
            Check::Http(http) if http.scheme == crate::api::Scheme::Https => Some(TlsOptions {
                ca_pem: None,
                server_name: http.tls.server_name.clone(),
                insecure_skip_verify: http.tls.insecure_skip_verify,
            }),
            _ => None,
        };
        Self {
            probe: probe.clone(),
            headers,
            tls,
        }
    }

    /// The requests for one endpoint at `host` (an IP) and `port`: one per probed path.
    pub fn requests(&self, endpoint: &str, host: &str, port: u16) -> Vec<ProbeRequest> {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        match &self.probe.check {
            Check::Tcp => vec![ProbeRequest {
                endpoint: endpoint.to_owned(),
                path: String::new(),
                timeout: self.probe.timeout,
                target: ProbeTarget::Tcp {
                    addr: format!("{host}:{port}"),
                },
            }],
            Check::Http(http) => self
                .probe
                .paths()
                .into_iter()
                .map(|path| ProbeRequest {
                    endpoint: endpoint.to_owned(),
                    timeout: self.probe.timeout,
                    target: ProbeTarget::Http(Box::new(
                        self.http(http, &format!("{}://{host}:{port}{path}", http.scheme.as_str())),
                    )),
                    path,
                })
                .collect(),
        }
    }

    /// A request for an explicit URL (local check mode).
    pub fn request_for_url(&self, endpoint: &str, url: &str) -> ProbeRequest {
        match &self.probe.check {
            Check::Http(http) => ProbeRequest {
                endpoint: endpoint.to_owned(),
                path: http.path.clone(),
                timeout: self.probe.timeout,
                target: ProbeTarget::Http(Box::new(self.http(http, url))),
            },
            Check::Tcp => {
                let addr = url
                    .split("://")
                    .last()
                    .unwrap_or(url)
                    .trim_end_matches('/')
                    .to_owned();
                ProbeRequest {
                    endpoint: endpoint.to_owned(),
                    path: String::new(),
                    timeout: self.probe.timeout,
                    target: ProbeTarget::Tcp { addr },
                }
            }
        }
    }

    fn http(&self, http: &HttpSettings, url: &str) -> HttpRequest {
        HttpRequest {
            url: url.to_owned(),
            method: http.method,
            headers: self.headers.clone(),
            body: http.body.clone(),
            success_codes: http.success_codes.clone(),
            checks: http.response.clone(),
            tls: if url.starts_with("https://") {
                Some(self.tls.clone().unwrap_or_default())
            } else {
                None
            },
        }
    }
}
