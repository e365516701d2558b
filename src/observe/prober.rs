//! The HTTP prober: one shared client, no proxy, no redirects, a timeout on every probe and a
//! bound on how much of a body is read.

use std::{error::Error as _, time::Duration};

use super::Sample;
use crate::{
    api::{
        Method,
        validate::{ProbeSettings, SuccessCodes},
    },
    clock::Clock,
};

/// Bytes of a response body read at most; the rest is discarded with the connection.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// One probe to send.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRequest {
    /// The pod or Service being probed, as it appears in evidence.
    pub endpoint: String,
    pub url: String,
    pub method: Method,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub success_codes: SuccessCodes,
}

impl ProbeRequest {
    /// A request for `url` with the policy's probe settings.
    pub fn new(endpoint: impl Into<String>, url: impl Into<String>, probe: &ProbeSettings) -> Self {
        Self {
            endpoint: endpoint.into(),
            url: url.into(),
            method: probe.method,
            headers: probe.headers.clone(),
            timeout: probe.timeout,
            success_codes: probe.success_codes.clone(),
        }
    }
}

/// Sends probes. Cheap to clone: the connection pool is shared.
#[derive(Clone, Debug)]
pub struct HttpProber {
    client: reqwest::Client,
}

/// Installs the process-wide rustls crypto provider (ring) once; later calls are no-ops.
pub fn install_crypto_provider() {
    // An Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl HttpProber {
    pub fn new() -> crate::Result<Self> {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("apphealth-operator/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(2)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| crate::Error::HttpClient(e.to_string()))?;
        Ok(Self { client })
    }

    /// Sends one probe and judges the response. Never fails: a failed probe is a sample too.
    pub async fn probe(&self, req: &ProbeRequest, clock: &dyn Clock) -> Sample {
        let at = clock.now();
        let started = tokio::time::Instant::now();
        let outcome = tokio::time::timeout(req.timeout, self.exchange(req)).await;
        let latency = started.elapsed();
        let sample = |ok: bool, code: Option<u16>, detail: String| Sample {
            endpoint: req.endpoint.clone(),
            at,
            ok,
            code,
            latency,
            detail,
        };
        match outcome {
            Err(_) => sample(
                false,
                None,
                format!("timed out after {}", crate::api::format_duration(req.timeout)),
            ),
            Ok(Err(e)) => sample(false, None, describe_error(&e)),
            Ok(Ok(code)) => {
                let ok = req.success_codes.contains(code);
                sample(ok, Some(code), format!("HTTP {code}"))
            }
        }
    }

    async fn exchange(&self, req: &ProbeRequest) -> Result<u16, reqwest::Error> {
        let method =
            reqwest::Method::from_bytes(req.method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut builder = self.client.request(method, &req.url);
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        let response = builder.send().await?;
        let code = response.status().as_u16();
        // Drain a bounded prefix of the body so a well-behaved connection can be reused; a body
        // larger than the bound is cut off (the connection is dropped, not read to the end).
        let mut response = response;
        let mut read = 0usize;
        while read < MAX_BODY_BYTES {
            match response.chunk().await? {
                Some(chunk) => read += chunk.len(),
                None => break,
            }
        }
        Ok(code)
    }
}

/// A short, human description of a transport error: "connection refused", "connection reset".
fn describe_error(e: &reqwest::Error) -> String {
    let mut innermost: &dyn std::error::Error = e;
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => "connection reset".into(),
                std::io::ErrorKind::ConnectionAborted => "connection aborted".into(),
                std::io::ErrorKind::UnexpectedEof => "connection closed before a response".into(),
                _ => format!("I/O error: {io}"),
            };
        }
        innermost = s;
        source = s.source();
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
