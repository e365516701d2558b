//! Checks that the schema cannot express, turning a policy into the parsed settings the engine uses.
//! Pure: no client, no clock. Every error names the field and says what is wrong.

use std::{ops::RangeInclusive, time::Duration as StdDuration};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{AppHealthPolicySpec, KeyRef, Method, ProbeVia, Scheme};

mod limits;
pub mod names;
mod probe;
mod target;
mod triggers;

pub use limits::{at_most, chars, items, optional_at_most, optional_chars};
pub use target::cluster;
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

/// A problem with `field`, its text bounded.
pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> InvalidSpec {
    InvalidSpec {
        field: field.into(),
        problem: super::bounded(&problem.into(), MAX_PROBLEM_BYTES),
    }
}

/// What a valid policy says about probing and judging, parsed once (the ladder is parsed by
/// `plan`, each step's parameters by its action).
#[derive(Debug, Clone, PartialEq)]
pub struct Probing {
    pub probe: ProbeSettings,
    pub triggers: Vec<TriggerSettings>,
    pub recovery: RecoverySettings,
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

/// A duration, or a problem naming `field`.
pub fn duration(field: &str, value: &super::Duration) -> Result<StdDuration, InvalidSpec> {
    value
        .parse()
        .map_err(|problem| invalid(field, problem.to_string()))
}

/// A duration longer than zero.
pub fn positive_duration(field: &str, value: &super::Duration) -> Result<StdDuration, InvalidSpec> {
    let d = duration(field, value)?;
    if d.is_zero() {
        return Err(invalid(field, "must be longer than zero"));
    }
    Ok(d)
}

/// A duration longer than zero and at most `max`.
pub fn window(field: &str, value: &super::Duration, max: StdDuration) -> Result<StdDuration, InvalidSpec> {
    let d = positive_duration(field, value)?;
    if d > max {
        return Err(invalid(
            field,
            format!("must be at most {}", super::format_duration(max)),
        ));
    }
    Ok(d)
}

/// A count of at least one.
pub fn at_least_one(field: &str, n: u32) -> Result<u32, InvalidSpec> {
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

/// Validates the spec's target, probe, triggers and recovery, or names the first problem found.
pub fn probing(spec: &AppHealthPolicySpec) -> Result<Probing, InvalidSpec> {
    limits::within_limits(spec)?;
    target::target(spec)?;
    let mut probe = probe::probe(&spec.probe)?;
    let triggers = triggers_of(spec, &mut probe)?;
    let (sample_capacity, notes) = sample_capacity(&probe, &triggers, spec.probe.period_seconds);
    let recovery = RecoverySettings {
        consecutive_successes: at_least_one(
            "spec.recovery.consecutiveSuccesses",
            spec.recovery.consecutive_successes,
        )?,
        healthy_delay: duration("spec.recovery.healthyDelay", &spec.recovery.healthy_delay)?,
    };
    Ok(Probing {
        probe,
        triggers,
        recovery,
        sample_capacity,
        notes,
    })
}

/// The triggers (a failure threshold when none are listed), each checked against the probe; the
/// status-code paths they watch besides the probe's join the probed paths.
fn triggers_of(
    spec: &AppHealthPolicySpec,
    probe: &mut ProbeSettings,
) -> Result<Vec<TriggerSettings>, InvalidSpec> {
    let primary = probe.primary_path().to_owned();
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
        match (t, &mut probe.check) {
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
    Ok(triggers)
}

/// Enough samples for the longest window at this period (every path is probed each period),
/// within a fixed bound per endpoint; a note when the bound cuts a window short.
fn sample_capacity(
    probe: &ProbeSettings,
    triggers: &[TriggerSettings],
    period_seconds: u32,
) -> (usize, Vec<String>) {
    let paths = probe.paths().len();
    let longest = triggers
        .iter()
        .filter_map(TriggerSettings::sample_window)
        .max()
        .unwrap_or_default();
    let rounds = usize::try_from(longest.as_secs().div_ceil(u64::from(period_seconds))).unwrap_or(usize::MAX);
    let needed = rounds.saturating_add(2).saturating_mul(paths);
    if needed > MAX_SAMPLES_PER_ENDPOINT {
        let note = format!(
            "a window of {} at a {period_seconds}s period needs {needed} samples per pod; only the last {MAX_SAMPLES_PER_ENDPOINT} are kept",
            super::format_duration(longest),
        );
        (MAX_SAMPLES_PER_ENDPOINT, vec![note])
    } else {
        (needed.max(paths * 4), Vec::new())
    }
}
