//! Checks that the schema cannot express, turning a policy into the parsed settings the engine uses.
//! Pure: no client, no clock. Every error names the field and says what is wrong.

use std::{ops::RangeInclusive, time::Duration as StdDuration};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{AppHealthPolicySpec, KeyRef, Method, ProbeVia, Scheme};

mod limits;
mod names;
mod remediation;
mod triggers;

pub use remediation::*;
pub use triggers::*;

/// Failed probes in a row that make a pod Unhealthy when a policy lists no triggers.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;

/// A policy that failed validation; `field` is the path users see in `kubectl explain`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidSpec {
    pub field: String,
    pub problem: String,
}

/// Longest problem text kept: a problem quotes what the policy says, which may be a megabyte.
pub const MAX_PROBLEM_BYTES: usize = 512;

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> InvalidSpec {
    InvalidSpec {
        field: field.into(),
        problem: super::bounded(&problem.into(), MAX_PROBLEM_BYTES),
    }
}

/// The settings of a valid policy, parsed once.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub probe: ProbeSettings,
    pub triggers: Vec<TriggerSettings>,
    pub recovery: RecoverySettings,
    pub remediation: RemediationSettings,
    /// Probe samples kept per endpoint: enough for the longest window at this period, capped.
    pub sample_capacity: usize,
    /// Sentences about settings the operator adjusted (e.g. a window capped by the sample bound).
    pub notes: Vec<String>,
}

/// Most probe samples kept per endpoint, whatever the windows: bounds memory per target.
pub const MAX_SAMPLES_PER_ENDPOINT: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverySettings {
    pub consecutive_successes: u32,
    pub healthy_delay: StdDuration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSettings {
    pub via: ProbeVia,
    pub service: Option<String>,
    pub port: PortRef,
    pub timeout: StdDuration,
    pub period: StdDuration,
    pub check: Check,
}

impl ProbeSettings {
    /// The path whose samples feed consecutiveFailures, errorRate, slowResponses and recovery
    /// ("" for TCP probes).
    pub fn primary_path(&self) -> &str {
        match &self.check {
            Check::Http(http) => &http.path,
            Check::Tcp => "",
        }
    }

    /// Every path probed each period: the primary one first, then extra trigger paths.
    pub fn paths(&self) -> Vec<String> {
        match &self.check {
            Check::Http(http) => std::iter::once(http.path.clone())
                .chain(http.extra_paths.iter().cloned())
                .collect(),
            Check::Tcp => vec![String::new()],
        }
    }
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Http(Box<HttpSettings>),
    Tcp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    pub path: String,
    /// Paths of statusCodes triggers that differ from `path`, probed too.
    pub extra_paths: Vec<String>,
    pub scheme: Scheme,
    pub method: Method,
    pub headers: Vec<HeaderSetting>,
    pub body: Option<String>,
    pub success_codes: SuccessCodes,
    pub response: BodyChecks,
    pub tls: TlsSettings,
}

/// A header and where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSetting {
    pub name: String,
    pub value: HeaderSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderSource {
    Literal(String),
    /// Resolved by the controller; the value never appears in logs, status or Events.
    Secret(KeyRef),
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct TlsSettings {
    pub ca: Option<CaRef>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CaRef {
    Secret(KeyRef),
    ConfigMap(KeyRef),
}

/// A compiled regular expression, compared by its source.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// Conditions on a response body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BodyChecks {
    pub must_match: Option<Pattern>,
    pub must_not_match: Option<Pattern>,
    /// (JSON pointer, expected value)
    pub json: Vec<(String, String)>,
}

impl BodyChecks {
    pub fn is_empty(&self) -> bool {
        self.must_match.is_none() && self.must_not_match.is_none() && self.json.is_empty()
    }
}

/// A port by number or by name (resolved against the pod or Service spec).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(n) => write!(f, "{n:?}"),
        }
    }
}

/// Status codes that count as success (or, for a statusCodes trigger, that count).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SuccessCodes(Vec<RangeInclusive<u16>>);

impl SuccessCodes {
    pub fn parse(field: &str, codes: &[String]) -> Result<Self, InvalidSpec> {
        let mut ranges = Vec::with_capacity(codes.len());
        for (i, code) in codes.iter().enumerate() {
            let field = format!("{field}[{i}]");
            // Three digits, as the schema's pattern has them (u16's parser would take "+200").
            let parse_one = |s: &str| -> Result<u16, InvalidSpec> {
                Some(s)
                    .filter(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u16>().ok())
                    .filter(|c| (100..=599).contains(c))
                    .ok_or_else(|| {
                        invalid(
                            &field,
                            format!("{code:?} is not a status code or range such as 200-399"),
                        )
                    })
            };
            let range = match code.split_once('-') {
                Some((lo, hi)) => parse_one(lo)?..=parse_one(hi)?,
                None => {
                    let c = parse_one(code)?;
                    c..=c
                }
            };
            if range.is_empty() {
                return Err(invalid(
                    field,
                    format!("range {code:?} is empty: its start is above its end"),
                ));
            }
            ranges.push(range);
        }
        if ranges.is_empty() {
            return Err(invalid(field, "must list at least one status code"));
        }
        Ok(Self(ranges))
    }

    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|r| r.contains(&code))
    }
}

impl std::fmt::Display for SuccessCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|r| {
                if r.start() == r.end() {
                    r.start().to_string()
                } else {
                    format!("{}-{}", r.start(), r.end())
                }
            })
            .collect();
        f.write_str(&parts.join(", "))
    }
}

fn duration(field: &str, value: &super::Duration) -> Result<StdDuration, InvalidSpec> {
    value.parse().map_err(|problem| invalid(field, problem))
}

fn positive_duration(field: &str, value: &super::Duration) -> Result<StdDuration, InvalidSpec> {
    let d = duration(field, value)?;
    if d.is_zero() {
        return Err(invalid(field, "must be longer than zero"));
    }
    Ok(d)
}

fn window(field: &str, value: &super::Duration, max: StdDuration) -> Result<StdDuration, InvalidSpec> {
    let d = positive_duration(field, value)?;
    if d > max {
        return Err(invalid(
            field,
            format!("must be at most {}", super::format_duration(max)),
        ));
    }
    Ok(d)
}

fn at_least_one(field: &str, n: u32) -> Result<u32, InvalidSpec> {
    if n == 0 {
        Err(invalid(field, "must be at least 1"))
    } else {
        Ok(n)
    }
}

fn port(field: &str, port: &IntOrString) -> Result<PortRef, InvalidSpec> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|n| *n > 0)
            .map(PortRef::Number)
            .ok_or_else(|| invalid(field, format!("{n} is not a port number (1-65535)"))),
        IntOrString::String(s) if s.is_empty() => Err(invalid(field, "must be a port number or a port name")),
        IntOrString::String(s) => Ok(match s.parse::<u16>() {
            Ok(n) if n > 0 => PortRef::Number(n),
            _ => PortRef::Name(s.clone()),
        }),
    }
}

/// Regular expressions from policies are compiled with a size bound, so a pathological pattern
/// costs an error message rather than memory.
fn pattern(field: &str, source: &str) -> Result<Pattern, InvalidSpec> {
    regex::RegexBuilder::new(source)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map(Pattern)
        .map_err(|e| invalid(field, format!("is not a valid regular expression: {e}")))
}

/// A request path (and query): it goes into the probe's URL, so it must be one an HTTP request
/// can carry — no spaces, control characters or fragment, which would only fail every probe.
fn path(field: &str, p: &str) -> Result<String, InvalidSpec> {
    if !p.starts_with('/') {
        return Err(invalid(field, format!("{p:?} must start with /")));
    }
    if p.contains('#') || p.parse::<http::uri::PathAndQuery>().is_err() {
        return Err(invalid(
            field,
            format!("{p:?} is not a URL path: spaces, control characters and '#' are not allowed"),
        ));
    }
    Ok(p.to_owned())
}

fn http_settings(http: &super::HttpProbe) -> Result<HttpSettings, InvalidSpec> {
    let mut headers = Vec::with_capacity(http.headers.len());
    for (i, h) in http.headers.iter().enumerate() {
        if http::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
            return Err(invalid(
                format!("spec.probe.http.headers[{i}].name"),
                format!("{:?} is not a valid header name", h.name),
            ));
        }
        let value = match (&h.value, &h.value_from) {
            (Some(v), None) => {
                // What the schema's pattern admits: http would also take bytes beyond ASCII.
                let printable = v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
                if !printable || http::HeaderValue::from_str(v).is_err() {
                    return Err(invalid(
                        format!("spec.probe.http.headers[{i}].value"),
                        "contains characters not allowed in a header value (printable ASCII, spaces and tabs)",
                    ));
                }
                HeaderSource::Literal(v.clone())
            }
            (None, Some(from)) => {
                let key = &from.secret_key_ref;
                names::object(
                    &format!("spec.probe.http.headers[{i}].valueFrom.secretKeyRef.name"),
                    &key.name,
                )?;
                HeaderSource::Secret(key.clone())
            }
            _ => {
                return Err(invalid(
                    format!("spec.probe.http.headers[{i}]"),
                    "must set exactly one of: value, valueFrom",
                ));
            }
        };
        headers.push(HeaderSetting {
            name: h.name.clone(),
            value,
        });
    }
    let response = match &http.response {
        None => BodyChecks::default(),
        Some(r) => BodyChecks {
            must_match: r
                .body_matches
                .as_deref()
                .map(|p| pattern("spec.probe.http.response.bodyMatches", p))
                .transpose()?,
            must_not_match: r
                .body_not_matches
                .as_deref()
                .map(|p| pattern("spec.probe.http.response.bodyNotMatches", p))
                .transpose()?,
            json: r
                .json
                .iter()
                .enumerate()
                .map(|(i, j)| {
                    if !(j.pointer.is_empty() || j.pointer.starts_with('/')) {
                        return Err(invalid(
                            format!("spec.probe.http.response.json[{i}].pointer"),
                            format!("{:?} is not a JSON pointer such as /status", j.pointer),
                        ));
                    }
                    Ok((j.pointer.clone(), j.equals.clone()))
                })
                .collect::<Result<_, _>>()?,
        },
    };
    let tls = match &http.tls {
        None => TlsSettings::default(),
        Some(t) => {
            let ca = match &t.ca {
                None => None,
                Some(super::CaSource {
                    secret_key_ref: Some(k),
                    config_map_key_ref: None,
                }) => {
                    names::object("spec.probe.http.tls.ca.secretKeyRef.name", &k.name)?;
                    Some(CaRef::Secret(k.clone()))
                }
                Some(super::CaSource {
                    secret_key_ref: None,
                    config_map_key_ref: Some(k),
                }) => {
                    names::object("spec.probe.http.tls.ca.configMapKeyRef.name", &k.name)?;
                    Some(CaRef::ConfigMap(k.clone()))
                }
                Some(_) => {
                    return Err(invalid(
                        "spec.probe.http.tls.ca",
                        "must set exactly one of: secretKeyRef, configMapKeyRef",
                    ));
                }
            };
            if ca.is_some() && t.insecure_skip_verify {
                return Err(invalid(
                    "spec.probe.http.tls",
                    "ca and insecureSkipVerify exclude each other",
                ));
            }
            TlsSettings {
                ca,
                server_name: t.server_name.clone(),
                insecure_skip_verify: t.insecure_skip_verify,
            }
        }
    };
    if http.tls.is_some() && http.scheme != Scheme::Https {
        return Err(invalid("spec.probe.http.tls", "is only used with scheme HTTPS"));
    }
    Ok(HttpSettings {
        path: path("spec.probe.http.path", &http.path)?,
        extra_paths: Vec::new(),
        scheme: http.scheme,
        method: http.method,
        headers,
        body: http.body.clone(),
        success_codes: SuccessCodes::parse("spec.probe.http.successCodes", &http.success_codes)?,
        response,
        tls,
    })
}

/// Validates a spec and returns its parsed settings, or the first problem found.
pub fn validate(spec: &AppHealthPolicySpec) -> Result<Settings, InvalidSpec> {
    limits::within_limits(spec)?;
    if spec.target_ref.name.is_empty() {
        return Err(invalid("spec.targetRef.name", "must name a workload"));
    }
    names::object("spec.targetRef.name", &spec.target_ref.name)?;
    let probe = &spec.probe;
    let service = match (probe.via, &probe.service) {
        (ProbeVia::Service, None) => {
            return Err(invalid(
                "spec.probe.service",
                "is required when spec.probe.via is Service",
            ));
        }
        (ProbeVia::Service, Some(name)) if name.is_empty() => {
            return Err(invalid("spec.probe.service", "must name a Service"));
        }
        (_, Some(name)) => {
            names::service("spec.probe.service", name)?;
            Some(name.clone())
        }
        (_, None) => None,
    };
    if probe.period_seconds == 0 {
        return Err(invalid("spec.probe.periodSeconds", "must be at least 1"));
    }
    let (check, port_ref, timeout_seconds, timeout_field) = match (&probe.http, &probe.tcp) {
        (Some(http), None) => (
            Check::Http(Box::new(http_settings(http)?)),
            port("spec.probe.http.port", &http.port)?,
            http.timeout_seconds,
            "spec.probe.http.timeoutSeconds",
        ),
        (None, Some(tcp)) => (
            Check::Tcp,
            port("spec.probe.tcp.port", &tcp.port)?,
            tcp.timeout_seconds,
            "spec.probe.tcp.timeoutSeconds",
        ),
        _ => return Err(invalid("spec.probe", "must set exactly one of: http, tcp")),
    };
    if timeout_seconds == 0 {
        return Err(invalid(timeout_field, "must be at least 1"));
    }
    if timeout_seconds > probe.period_seconds {
        return Err(invalid(
            timeout_field,
            format!(
                "must be at most spec.probe.periodSeconds ({timeout_seconds} > {})",
                probe.period_seconds
            ),
        ));
    }
    let mut probe_settings = ProbeSettings {
        via: probe.via,
        service,
        port: port_ref,
        timeout: StdDuration::from_secs(timeout_seconds.into()),
        period: StdDuration::from_secs(probe.period_seconds.into()),
        check,
    };

    let primary = probe_settings.primary_path().to_owned();
    let mut triggers = spec
        .triggers
        .iter()
        .enumerate()
        .map(|(i, t)| trigger(i, t, &primary))
        .collect::<Result<Vec<_>, _>>()?;
    if triggers.is_empty() {
        triggers.push(TriggerSettings::ConsecutiveFailures {
            threshold: DEFAULT_FAILURE_THRESHOLD,
        });
    }
    for (i, t) in triggers.iter().enumerate() {
        match (t, &mut probe_settings.check) {
            (TriggerSettings::StatusCodes { path, .. }, Check::Http(http))
                if *path != http.path && !http.extra_paths.contains(path) =>
            {
                http.extra_paths.push(path.clone());
            }
            (
                TriggerSettings::StatusCodes { .. } | TriggerSettings::CertificateExpiresWithin { .. },
                Check::Tcp,
            ) => {
                return Err(invalid(
                    format!("spec.triggers[{i}].{}", t.name()),
                    "needs an http probe, not tcp",
                ));
            }
            _ => {}
        }
    }

    // Keep enough samples for the longest window at this period (every path is probed each
    // period), within a fixed bound per endpoint.
    let paths = probe_settings.paths().len();
    let longest = triggers
        .iter()
        .filter_map(TriggerSettings::sample_window)
        .max()
        .unwrap_or_default();
    let rounds =
        usize::try_from(longest.as_secs().div_ceil(u64::from(probe.period_seconds))).unwrap_or(usize::MAX);
    let needed = rounds.saturating_add(2).saturating_mul(paths);
    let mut notes = Vec::new();
    let sample_capacity = if needed > MAX_SAMPLES_PER_ENDPOINT {
        notes.push(format!(
            "a window of {} at a {}s period needs {needed} samples per pod; only the last {MAX_SAMPLES_PER_ENDPOINT} are kept",
            super::format_duration(longest),
            probe.period_seconds
        ));
        MAX_SAMPLES_PER_ENDPOINT
    } else {
        needed.max(paths * 4)
    };

    let recovery = RecoverySettings {
        consecutive_successes: at_least_one(
            "spec.recovery.consecutiveSuccesses",
            spec.recovery.consecutive_successes,
        )?,
        healthy_delay: duration("spec.recovery.healthyDelay", &spec.recovery.healthy_delay)?,
    };

    let remediation = remediation::remediation(&spec.remediation)?;

    Ok(Settings {
        probe: probe_settings,
        triggers,
        recovery,
        remediation,
        sample_capacity,
        notes,
    })
}

#[cfg(test)]
mod tests;
