//! The prober: one shared HTTP client per TLS configuration (no proxy, no redirects), TCP connect
//! probes, a timeout on every probe, a bound on how much of a body is read, and body checks.

use std::{
    collections::HashMap,
    error::Error as _,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use super::request::{HttpRequest, ProbeRequest, ProbeTarget, TlsOptions};
use crate::{api::validate::BodyChecks, clock::Clock, observation::Sample};

pub use super::request::Sensitive;

/// Bytes of a response body read at most; the rest is discarded with the connection.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Installs the process-wide rustls crypto provider (ring) once; later calls are no-ops.
pub fn install_crypto_provider() {
    // An Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Sends probes. Cheap to clone: connection pools are shared.
#[derive(Clone, Debug)]
pub struct HttpProber {
    plain: reqwest::Client,
    /// Clients for HTTPS probes, one per distinct TLS configuration.
    tls: Arc<Mutex<HashMap<TlsOptions, reqwest::Client>>>,
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("apphealth-operator/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(2)
        .connect_timeout(Duration::from_secs(10))
}

/// What an exchange produced, before judging.
struct Exchange {
    code: u16,
    body: Vec<u8>,
    certificate_not_after: Option<jiff::Timestamp>,
}

impl HttpProber {
    pub fn new() -> crate::Result<Self> {
        install_crypto_provider();
        let plain = builder()
            .build()
            .map_err(|e| crate::Error::HttpClient(e.to_string()))?;
        Ok(Self {
            plain,
            tls: Arc::default(),
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
            timed_out: false,
            certificate_not_after: None,
        };
        match &req.target {
            ProbeTarget::Tcp { addr } => {
                match tokio::time::timeout(req.timeout, tokio::net::TcpStream::connect(addr.as_str())).await {
                    Err(_) => self.timed_out(&mut sample, req.timeout),
                    Ok(Err(e)) => sample.detail = describe_io(&e),
                    Ok(Ok(_)) => {
                        sample.ok = true;
                        sample.detail = "connected".into();
                    }
                }
            }
            ProbeTarget::Http(http) => match tokio::time::timeout(req.timeout, self.exchange(http)).await {
                Err(_) => self.timed_out(&mut sample, req.timeout),
                Ok(Err(detail)) => sample.detail = detail,
                Ok(Ok(ex)) => {
                    sample.code = Some(ex.code);
                    sample.certificate_not_after = ex.certificate_not_after;
                    if !http.success_codes.contains(ex.code) {
                        sample.detail = format!("HTTP {}", ex.code);
                    } else {
                        match check_body(&http.checks, &ex.body) {
                            Ok(()) => {
                                sample.ok = true;
                                sample.detail = format!("HTTP {}", ex.code);
                            }
                            Err(why) => sample.detail = format!("HTTP {}, {why}", ex.code),
                        }
                    }
                }
            },
        }
        sample.latency = started.elapsed();
        sample
    }

    fn timed_out(&self, sample: &mut Sample, timeout: Duration) {
        sample.timed_out = true;
        sample.detail = format!("timed out after {}", crate::api::format_duration(timeout));
    }

    fn client(&self, tls: Option<&TlsOptions>) -> Result<reqwest::Client, String> {
        let Some(tls) = tls else {
            return Ok(self.plain.clone());
        };
        let mut clients = self.tls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(tls) {
            return Ok(c.clone());
        }
        let config = super::tls::client_config(tls)?;
        let client = builder()
            .tls_backend_preconfigured(config)
            .tls_info(true)
            .build()
            .map_err(|e| format!("TLS client could not be built: {e}"))?;
        clients.insert(tls.clone(), client.clone());
        Ok(client)
    }

    async fn exchange(&self, req: &HttpRequest) -> Result<Exchange, String> {
        let client = self.client(req.tls.as_ref())?;
        let method =
            reqwest::Method::from_bytes(req.method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut builder = client.request(method, &req.url);
        for (name, value) in &req.headers {
            builder = builder.header(name, value.expose());
        }
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        let mut response = builder.send().await.map_err(|e| describe_error(&e))?;
        let code = response.status().as_u16();
        let certificate_not_after = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
            .and_then(super::tls::certificate_not_after);
        // Read a bounded prefix of the body; a larger body is cut off (the connection is dropped,
        // not read to the end).
        let mut body = Vec::new();
        while body.len() < MAX_BODY_BYTES {
            match response.chunk().await.map_err(|e| describe_error(&e))? {
                Some(chunk) => body.extend_from_slice(&chunk),
                None => break,
            }
        }
        body.truncate(MAX_BODY_BYTES);
        Ok(Exchange {
            code,
            body,
            certificate_not_after,
        })
    }
}

/// Checks a body against the policy's response conditions; Err says which one failed.
pub fn check_body(checks: &BodyChecks, body: &[u8]) -> Result<(), String> {
    if checks.is_empty() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(body);
    if let Some(p) = &checks.must_match
        && !p.0.is_match(&text)
    {
        return Err(format!("body does not match {:?}", p.0.as_str()));
    }
    if let Some(p) = &checks.must_not_match
        && p.0.is_match(&text)
    {
        return Err(format!("body matches {:?}", p.0.as_str()));
    }
    if !checks.json.is_empty() {
        let json: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("body is not JSON ({e})"))?;
        for (pointer, expected) in &checks.json {
            let actual = match json.pointer(pointer) {
                None => return Err(format!("JSON field {pointer} is missing")),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            if actual != *expected {
                return Err(format!(
                    "JSON field {pointer} is {actual:?}, expected {expected:?}"
                ));
            }
        }
    }
    Ok(())
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        std::io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        std::io::ErrorKind::UnexpectedEof => "connection closed before a response".into(),
        _ => format!("I/O error: {e}"),
    }
}

/// A short, human description of a transport error: "connection refused", "connection reset",
/// "TLS handshake failed: certificate expired at 2021-01-01T00:00:00Z".
fn describe_error(e: &reqwest::Error) -> String {
    let mut innermost: &dyn std::error::Error = e;
    let mut io = None;
    let mut next = e.source();
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return format!("TLS handshake failed: {}", super::tls::describe(tls));
        }
        innermost = err;
        // An I/O error's `source()` skips the error it wraps (rustls reports certificate
        // problems that way, sometimes wrapped twice), so step into it explicitly.
        next = match err.downcast_ref::<std::io::Error>() {
            Some(e) => {
                io = Some(e);
                e.get_ref()
                    .map(|inner| inner as &(dyn std::error::Error + 'static))
            }
            None => err.source(),
        };
    }
    if let Some(io) = io {
        return describe_io(io);
    }
    let kind = if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "response body could not be read"
    } else {
        "request failed"
    };
    format!("{kind}: {innermost}")
}
