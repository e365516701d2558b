//! Checks that the schema cannot express, turning a policy into the parsed settings the engine uses.
//! Pure: no client, no clock. Every error names the field and says what is wrong.

use std::{ops::RangeInclusive, time::Duration as StdDuration};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Action, AppHealthPolicySpec, KeyRef, Method, ProbeVia, Scheme};

/// Failed probes in a row that make a pod Unhealthy when a policy lists no triggers.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;

/// A policy that failed validation; `field` is the path users see in `kubectl explain`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidSpec {
    pub field: String,
    pub problem: String,
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> InvalidSpec {
    InvalidSpec {
        field: field.into(),
        problem: problem.into(),
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
            let parse_one = |s: &str| -> Result<u16, InvalidSpec> {
                s.parse::<u16>()
                    .ok()
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

/// A parsed trigger.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerSettings {
    ConsecutiveFailures {
        threshold: u32,
    },
    StatusCodes {
        codes: SuccessCodes,
        count: u32,
        window: StdDuration,
        path: String,
    },
    SlowResponses {
        threshold: StdDuration,
        count: u32,
        window: StdDuration,
    },
    ErrorRate {
        percent: u32,
        window: StdDuration,
        min_samples: u32,
    },
    Memory {
        threshold: MemoryThreshold,
        for_: StdDuration,
    },
    Cpu {
        percent_of_limit: u32,
        for_: StdDuration,
    },
    Restarts {
        count: u32,
        window: StdDuration,
    },
    OomKilled {
        within: StdDuration,
    },
    CertificateExpiresWithin {
        within: StdDuration,
    },
    ConfigChanged,
}

impl TriggerSettings {
    /// The trigger's name as users write it in the spec (and read it in evidence).
    pub fn name(&self) -> &'static str {
        match self {
            Self::ConsecutiveFailures { .. } => "consecutiveFailures",
            Self::StatusCodes { .. } => "statusCodes",
            Self::SlowResponses { .. } => "slowResponses",
            Self::ErrorRate { .. } => "errorRate",
            Self::Memory { .. } => "memory",
            Self::Cpu { .. } => "cpu",
            Self::Restarts { .. } => "restarts",
            Self::OomKilled { .. } => "oomKilled",
            Self::CertificateExpiresWithin { .. } => "certificateExpiresWithin",
            Self::ConfigChanged => "configChanged",
        }
    }

    /// The sliding window of probe samples this trigger looks at, if any.
    pub fn sample_window(&self) -> Option<StdDuration> {
        match self {
            Self::StatusCodes { window, .. }
            | Self::SlowResponses { window, .. }
            | Self::ErrorRate { window, .. } => Some(*window),
            _ => None,
        }
    }

    /// Whether it needs the metrics.k8s.io API.
    pub fn needs_metrics(&self) -> bool {
        matches!(self, Self::Memory { .. } | Self::Cpu { .. })
    }
}

impl std::fmt::Display for TriggerSettings {
    /// One line for people: what makes this trigger fire.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::format_duration as d;
        match self {
            Self::ConsecutiveFailures { threshold } => write!(f, "{threshold} failed probes in a row"),
            Self::StatusCodes {
                codes,
                count,
                window,
                path,
            } => {
                write!(
                    f,
                    "{count} responses with status {codes} within {} (path {path})",
                    d(*window)
                )
            }
            Self::SlowResponses {
                threshold,
                count,
                window,
            } => {
                write!(
                    f,
                    "{count} responses slower than {} within {}",
                    d(*threshold),
                    d(*window)
                )
            }
            Self::ErrorRate {
                percent,
                window,
                min_samples,
            } => {
                write!(
                    f,
                    "{percent}% of probes failing within {} (at least {min_samples} probes)",
                    d(*window)
                )
            }
            Self::Memory {
                threshold: MemoryThreshold::PercentOfLimit(p),
                for_,
            } => {
                write!(f, "memory at {p}% of a container's limit for {}", d(*for_))
            }
            Self::Memory {
                threshold: MemoryThreshold::Bytes(b),
                for_,
            } => {
                write!(
                    f,
                    "memory above {} for {}",
                    super::quantity::format_bytes(*b),
                    d(*for_)
                )
            }
            Self::Cpu {
                percent_of_limit,
                for_,
            } => {
                write!(
                    f,
                    "CPU at {percent_of_limit}% of a container's limit for {}",
                    d(*for_)
                )
            }
            Self::Restarts { count, window } => {
                write!(f, "{count} restarts within {} or a CrashLoopBackOff", d(*window))
            }
            Self::OomKilled { within } => write!(f, "an OOM kill within the last {}", d(*within)),
            Self::CertificateExpiresWithin { within } => {
                write!(f, "a certificate expiring within {}", d(*within))
            }
            Self::ConfigChanged => f.write_str("a ConfigMap or Secret changed after the pod started"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryThreshold {
    PercentOfLimit(u32),
    Bytes(u64),
}

/// The ladder and its guards.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemediationSettings {
    pub steps: Vec<StepSettings>,
    pub cooldown: StdDuration,
    pub min_pod_age: StdDuration,
    /// (count, window) of the circuit breaker.
    pub max_remediations: Option<(u32, StdDuration)>,
    pub max_unhealthy_percent: Option<u32>,
    pub diagnostics_retention: u32,
    pub dry_run: bool,
}

impl RemediationSettings {
    /// Step `step` (counting from 1).
    pub fn step(&self, step: u32) -> Option<&StepSettings> {
        self.steps.get((step as usize).checked_sub(1)?)
    }

    /// Whether the ladder captures diagnostics (then pods are captured before anything restarts them).
    pub fn collects_diagnostics(&self) -> Option<&StepSettings> {
        self.steps
            .iter()
            .find(|s| matches!(s.params, StepParams::CollectDiagnostics(_)))
    }
}

/// One rung of the ladder, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSettings {
    pub timeout: StdDuration,
    pub params: StepParams,
}

impl StepSettings {
    pub fn action(&self) -> Action {
        self.params.action()
    }
}

/// An action with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepParams {
    CollectDiagnostics(DiagnosticsSettings),
    RestartPods { max_unavailable: u32 },
    RolloutRestart,
    Rollback { within: StdDuration },
    ScaleOut(ScaleOutSettings),
    ScaleUp(ScaleUpSettings),
    Notify { url: KeyRef },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagnosticsSettings {
    pub log_lines: u32,
    pub previous: bool,
    pub exec: Option<ExecSettings>,
}

impl Default for DiagnosticsSettings {
    fn default() -> Self {
        Self {
            log_lines: 200,
            previous: true,
            exec: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSettings {
    pub container: Option<String>,
    pub command: Vec<String>,
    pub timeout: StdDuration,
}

/// ScaleUp: percentages (0 for a resource left alone) and the maxima, in bytes and millicores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleUpSettings {
    pub memory_percent: u32,
    pub cpu_percent: u32,
    pub max_memory: u64,
    pub max_millicores: u64,
    pub in_place: bool,
}

impl StepParams {
    pub fn action(&self) -> Action {
        match self {
            Self::CollectDiagnostics(_) => Action::CollectDiagnostics,
            Self::RestartPods { .. } => Action::RestartPods,
            Self::RolloutRestart => Action::RolloutRestart,
            Self::Rollback { .. } => Action::Rollback,
            Self::ScaleOut(_) => Action::ScaleOut,
            Self::ScaleUp(_) => Action::ScaleUp,
            Self::Notify { .. } => Action::Notify,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleOutSettings {
    pub by: Option<u32>,
    pub to: Option<u32>,
    pub max_replicas: u32,
    pub restore_after: StdDuration,
}

impl ScaleOutSettings {
    /// The replicas wanted from `current`, never beyond maxReplicas.
    pub fn wanted(&self, current: u32) -> u32 {
        let wanted = match (self.by, self.to) {
            (Some(by), _) => current.saturating_add(by),
            (None, Some(to)) => to,
            (None, None) => current,
        };
        wanted.min(self.max_replicas)
    }
}

fn step(i: usize, step: &super::RemediationStep) -> Result<StepSettings, InvalidSpec> {
    let f = |name: &str| format!("spec.remediation.steps[{i}].{name}");
    let blocks = [
        (
            "collectDiagnostics",
            step.collect_diagnostics.is_some(),
            Action::CollectDiagnostics,
        ),
        ("restartPods", step.restart_pods.is_some(), Action::RestartPods),
        ("scaleOut", step.scale_out.is_some(), Action::ScaleOut),
        ("scaleUp", step.scale_up.is_some(), Action::ScaleUp),
        ("rollback", step.rollback.is_some(), Action::Rollback),
        ("notify", step.notify.is_some(), Action::Notify),
    ];
    for (name, set, owner) in blocks {
        if set && step.action != owner {
            return Err(invalid(
                f(name),
                format!("may only be set when action is {}", owner.as_str()),
            ));
        }
    }
    let params = match step.action {
        Action::CollectDiagnostics => {
            let p = step.collect_diagnostics.clone().unwrap_or_default();
            let exec = match &p.exec {
                None => None,
                Some(e) => {
                    if e.command.is_empty() || e.command.iter().any(String::is_empty) {
                        return Err(invalid(
                            f("collectDiagnostics.exec.command"),
                            "must name a command, with no empty argument",
                        ));
                    }
                    Some(ExecSettings {
                        container: e.container.clone(),
                        command: e.command.clone(),
                        timeout: positive_duration(&f("collectDiagnostics.exec.timeout"), &e.timeout)?,
                    })
                }
            };
            StepParams::CollectDiagnostics(DiagnosticsSettings {
                log_lines: at_least_one(&f("collectDiagnostics.logLines"), p.log_lines)?,
                previous: p.previous,
                exec,
            })
        }
        Action::Rollback => StepParams::Rollback {
            within: positive_duration(
                &f("rollback.within"),
                &step
                    .rollback
                    .as_ref()
                    .map_or_else(|| super::Duration::from("1h"), |r| r.within.clone()),
            )?,
        },
        Action::ScaleUp => {
            let p = step
                .scale_up
                .as_ref()
                .ok_or_else(|| invalid(f("scaleUp"), "is required when action is ScaleUp"))?;
            if p.memory_percent.is_none() && p.cpu_percent.is_none() {
                return Err(invalid(f("scaleUp"), "must set memoryPercent or cpuPercent"));
            }
            let max_memory = match (p.memory_percent, &p.max_memory) {
                (None, _) => 0,
                (Some(_), None) => {
                    return Err(invalid(f("scaleUp.maxMemory"), "is required with memoryPercent"));
                }
                (Some(_), Some(m)) => super::quantity::bytes(m).filter(|b| *b > 0).ok_or_else(|| {
                    invalid(f("scaleUp.maxMemory"), format!("{m:?} is not a size such as 2Gi"))
                })?,
            };
            let max_millicores = match (p.cpu_percent, &p.max_cpu) {
                (None, _) => 0,
                (Some(_), None) => return Err(invalid(f("scaleUp.maxCpu"), "is required with cpuPercent")),
                (Some(_), Some(c)) => super::quantity::millicores(c).filter(|m| *m > 0).ok_or_else(|| {
                    invalid(
                        f("scaleUp.maxCpu"),
                        format!("{c:?} is not a CPU amount such as 2 or 500m"),
                    )
                })?,
            };
            StepParams::ScaleUp(ScaleUpSettings {
                memory_percent: p.memory_percent.unwrap_or(0),
                cpu_percent: p.cpu_percent.unwrap_or(0),
                max_memory,
                max_millicores,
                in_place: p.in_place,
            })
        }
        Action::RestartPods => StepParams::RestartPods {
            max_unavailable: at_least_one(
                &f("restartPods.maxUnavailable"),
                step.restart_pods.as_ref().map_or(1, |p| p.max_unavailable),
            )?,
        },
        Action::RolloutRestart => StepParams::RolloutRestart,
        Action::ScaleOut => {
            let p = step
                .scale_out
                .as_ref()
                .ok_or_else(|| invalid(f("scaleOut"), "is required when action is ScaleOut"))?;
            let target = match (p.by, p.to) {
                (Some(by), None) => by,
                (None, Some(to)) => to,
                _ => return Err(invalid(f("scaleOut"), "must set exactly one of: by, to")),
            };
            at_least_one(&f("scaleOut.maxReplicas"), p.max_replicas)?;
            if p.max_replicas < target {
                let which = if p.by.is_some() { "by" } else { "to" };
                return Err(invalid(
                    f("scaleOut.maxReplicas"),
                    format!(
                        "must be at least scaleOut.{which} ({} < {target})",
                        p.max_replicas
                    ),
                ));
            }
            StepParams::ScaleOut(ScaleOutSettings {
                by: p.by.map(|b| at_least_one(&f("scaleOut.by"), b)).transpose()?,
                to: p.to.map(|t| at_least_one(&f("scaleOut.to"), t)).transpose()?,
                max_replicas: p.max_replicas,
                restore_after: duration(&f("scaleOut.restoreAfter"), &p.restore_after)?,
            })
        }
        Action::Notify => {
            let p = step
                .notify
                .as_ref()
                .ok_or_else(|| invalid(f("notify"), "is required when action is Notify"))?;
            StepParams::Notify {
                url: p.url_secret_ref.clone(),
            }
        }
    };
    let default_timeout = match params {
        StepParams::CollectDiagnostics(_) | StepParams::Notify { .. } => StdDuration::ZERO,
        _ => StdDuration::from_secs(300),
    };
    let timeout = match &step.timeout {
        Some(t) => duration(&f("timeout"), t)?,
        None => default_timeout,
    };
    Ok(StepSettings { timeout, params })
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

fn path(field: &str, p: &str) -> Result<String, InvalidSpec> {
    if !p.starts_with('/') {
        return Err(invalid(field, format!("{p:?} must start with /")));
    }
    Ok(p.to_owned())
}

fn http_settings(http: &super::HttpProbe) -> Result<HttpSettings, InvalidSpec> {
    let mut headers = Vec::with_capacity(http.headers.len());
    for (i, h) in http.headers.iter().enumerate() {
        if reqwest::header::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
            return Err(invalid(
                format!("spec.probe.http.headers[{i}].name"),
                format!("{:?} is not a valid header name", h.name),
            ));
        }
        let value = match (&h.value, &h.value_from) {
            (Some(v), None) => {
                if reqwest::header::HeaderValue::from_str(v).is_err() {
                    return Err(invalid(
                        format!("spec.probe.http.headers[{i}].value"),
                        "contains characters not allowed in a header value",
                    ));
                }
                HeaderSource::Literal(v.clone())
            }
            (None, Some(from)) => HeaderSource::Secret(from.secret_key_ref.clone()),
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
                }) => Some(CaRef::Secret(k.clone())),
                Some(super::CaSource {
                    secret_key_ref: None,
                    config_map_key_ref: Some(k),
                }) => Some(CaRef::ConfigMap(k.clone())),
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

fn trigger(i: usize, t: &super::Trigger, primary_path: &str) -> Result<TriggerSettings, InvalidSpec> {
    let f = |name: &str| format!("spec.triggers[{i}].{name}");
    let max_window = StdDuration::from_secs(3600);
    let set = [
        t.consecutive_failures.is_some(),
        t.status_codes.is_some(),
        t.slow_responses.is_some(),
        t.error_rate.is_some(),
        t.memory.is_some(),
        t.cpu.is_some(),
        t.restarts.is_some(),
        t.oom_killed.is_some(),
        t.certificate_expires_within.is_some(),
        t.config_changed.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        return Err(invalid(
            format!("spec.triggers[{i}]"),
            "must set exactly one of: consecutiveFailures, statusCodes, slowResponses, errorRate, memory, cpu, \
             restarts, oomKilled, certificateExpiresWithin, configChanged",
        ));
    }
    Ok(if let Some(cf) = &t.consecutive_failures {
        TriggerSettings::ConsecutiveFailures {
            threshold: at_least_one(&f("consecutiveFailures.threshold"), cf.threshold)?,
        }
    } else if let Some(sc) = &t.status_codes {
        TriggerSettings::StatusCodes {
            codes: SuccessCodes::parse(&f("statusCodes.codes"), &sc.codes)?,
            count: at_least_one(&f("statusCodes.count"), sc.count)?,
            window: window(&f("statusCodes.window"), &sc.window, max_window)?,
            path: match &sc.path {
                Some(p) => path(&f("statusCodes.path"), p)?,
                None => primary_path.to_owned(),
            },
        }
    } else if let Some(sr) = &t.slow_responses {
        TriggerSettings::SlowResponses {
            threshold: positive_duration(&f("slowResponses.threshold"), &sr.threshold)?,
            count: at_least_one(&f("slowResponses.count"), sr.count)?,
            window: window(&f("slowResponses.window"), &sr.window, max_window)?,
        }
    } else if let Some(er) = &t.error_rate {
        if !(1..=100).contains(&er.percent) {
            return Err(invalid(f("errorRate.percent"), "must be between 1 and 100"));
        }
        TriggerSettings::ErrorRate {
            percent: er.percent,
            window: window(&f("errorRate.window"), &er.window, max_window)?,
            min_samples: at_least_one(&f("errorRate.minSamples"), er.min_samples)?,
        }
    } else if let Some(m) = &t.memory {
        let threshold = match (m.percent_of_limit, &m.bytes) {
            (Some(p), None) if (1..=100).contains(&p) => MemoryThreshold::PercentOfLimit(p),
            (Some(_), None) => return Err(invalid(f("memory.percentOfLimit"), "must be between 1 and 100")),
            (None, Some(b)) => {
                MemoryThreshold::Bytes(super::quantity::bytes(b).filter(|b| *b > 0).ok_or_else(|| {
                    invalid(f("memory.bytes"), format!("{b:?} is not a size such as 512Mi"))
                })?)
            }
            _ => {
                return Err(invalid(
                    f("memory"),
                    "must set exactly one of: percentOfLimit, bytes",
                ));
            }
        };
        TriggerSettings::Memory {
            threshold,
            for_: duration(&f("memory.for"), &m.for_)?,
        }
    } else if let Some(c) = &t.cpu {
        if !(1..=100).contains(&c.percent_of_limit) {
            return Err(invalid(f("cpu.percentOfLimit"), "must be between 1 and 100"));
        }
        TriggerSettings::Cpu {
            percent_of_limit: c.percent_of_limit,
            for_: duration(&f("cpu.for"), &c.for_)?,
        }
    } else if let Some(r) = &t.restarts {
        TriggerSettings::Restarts {
            count: at_least_one(&f("restarts.count"), r.count)?,
            window: window(
                &f("restarts.window"),
                &r.window,
                StdDuration::from_secs(24 * 3600),
            )?,
        }
    } else if let Some(o) = &t.oom_killed {
        TriggerSettings::OomKilled {
            within: positive_duration(&f("oomKilled.within"), &o.within)?,
        }
    } else if let Some(c) = &t.certificate_expires_within {
        TriggerSettings::CertificateExpiresWithin {
            within: positive_duration(&f("certificateExpiresWithin.duration"), &c.duration)?,
        }
    } else {
        TriggerSettings::ConfigChanged
    })
}

/// Validates a spec and returns its parsed settings, or the first problem found.
pub fn validate(spec: &AppHealthPolicySpec) -> Result<Settings, InvalidSpec> {
    if spec.target_ref.name.is_empty() {
        return Err(invalid("spec.targetRef.name", "must name a workload"));
    }
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
        (_, service) => service.clone(),
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
    if timeout_seconds >= probe.period_seconds {
        return Err(invalid(
            timeout_field,
            format!(
                "must be less than spec.probe.periodSeconds ({timeout_seconds} >= {})",
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

    let r = &spec.remediation;
    let steps = r
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| step(i, s))
        .collect::<Result<Vec<_>, InvalidSpec>>()?;
    let max_remediations = match &r.max_remediations {
        None => None,
        Some(m) => Some((
            at_least_one("spec.remediation.maxRemediations.count", m.count)?,
            positive_duration("spec.remediation.maxRemediations.window", &m.window)?,
        )),
    };
    if let Some(p) = r.max_unhealthy_percent
        && !(1..=100).contains(&p)
    {
        return Err(invalid(
            "spec.remediation.maxUnhealthyPercent",
            "must be between 1 and 100",
        ));
    }
    let remediation = RemediationSettings {
        steps,
        cooldown: duration("spec.remediation.cooldown", &r.cooldown)?,
        min_pod_age: duration("spec.remediation.minPodAge", &r.min_pod_age)?,
        max_remediations,
        max_unhealthy_percent: r.max_unhealthy_percent,
        diagnostics_retention: at_least_one(
            "spec.remediation.diagnosticsRetention",
            r.diagnostics_retention,
        )?,
        dry_run: r.dry_run,
    };

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
mod tests {
    use super::*;
    use crate::fixtures::{PolicyExt, policy};

    fn problem(patch: serde_json::Value) -> String {
        validate(&policy().with_spec(patch).spec)
            .expect_err("should be invalid")
            .to_string()
    }

    #[test]
    fn the_fixture_is_valid_and_parsed() {
        let s = policy().settings();
        assert_eq!(s.probe.port, PortRef::Name("http".into()));
        assert_eq!(s.probe.period, StdDuration::from_secs(10));
        assert_eq!(s.remediation.cooldown, StdDuration::from_secs(300));
        assert_eq!(
            s.remediation.steps,
            vec![StepSettings {
                params: StepParams::RolloutRestart,
                timeout: StdDuration::from_secs(120)
            }]
        );
        let Check::Http(http) = &s.probe.check else {
            panic!("fixture probes HTTP")
        };
        assert!(http.success_codes.contains(200) && http.success_codes.contains(399));
        assert!(!http.success_codes.contains(400));
        assert_eq!(s.probe.paths(), ["/healthz"]);
    }

    #[test]
    fn errors_name_the_field_and_the_problem() {
        let cases = [
            (
                serde_json::json!({"targetRef": {"name": ""}}),
                "spec.targetRef.name: must name a workload",
            ),
            (
                serde_json::json!({"probe": {"via": "Service"}}),
                "spec.probe.service: is required when spec.probe.via is Service",
            ),
            (
                serde_json::json!({"probe": {"periodSeconds": 2, "http": {"timeoutSeconds": 2}}}),
                "spec.probe.http.timeoutSeconds: must be less than spec.probe.periodSeconds (2 >= 2)",
            ),
            (
                serde_json::json!({"probe": {"http": {"port": 70000}}}),
                "spec.probe.http.port: 70000 is not a port number (1-65535)",
            ),
            (
                serde_json::json!({"probe": {"http": {"path": "healthz"}}}),
                "spec.probe.http.path: \"healthz\" must start with /",
            ),
            (
                serde_json::json!({"probe": {"http": {"headers": [{"name": "Bad Header", "value": "x"}]}}}),
                "spec.probe.http.headers[0].name: \"Bad Header\" is not a valid header name",
            ),
            (
                serde_json::json!({"probe": {"http": {"successCodes": ["200", "abc"]}}}),
                "spec.probe.http.successCodes[1]: \"abc\" is not a status code or range such as 200-399",
            ),
            (
                serde_json::json!({"triggers": [{}]}),
                "spec.triggers[0]: must set exactly one of: consecutiveFailures, statusCodes, slowResponses, \
                 errorRate, memory, cpu, restarts, oomKilled, certificateExpiresWithin, configChanged",
            ),
            (
                serde_json::json!({"triggers": [{"consecutiveFailures": {"threshold": 0}}]}),
                "spec.triggers[0].consecutiveFailures.threshold: must be at least 1",
            ),
            (
                serde_json::json!({"remediation": {"cooldown": "soon"}}),
                "spec.remediation.cooldown: \"soon\" is not a duration such as 90s, 5m or 1h30m",
            ),
            (
                serde_json::json!({"remediation": {"steps": [{"action": "RolloutRestart", "timeout": "soon"}]}}),
                "spec.remediation.steps[0].timeout: \"soon\" is not a duration such as 90s, 5m or 1h30m",
            ),
            (
                serde_json::json!({"remediation": {"steps": [{"action": "RestartPods", "scaleOut": {"by": 1, "maxReplicas": 3}}]}}),
                "spec.remediation.steps[0].scaleOut: may only be set when action is ScaleOut",
            ),
            (
                serde_json::json!({"remediation": {"steps": [{"action": "ScaleOut", "scaleOut": {"by": 4, "maxReplicas": 3}}]}}),
                "spec.remediation.steps[0].scaleOut.maxReplicas: must be at least scaleOut.by (3 < 4)",
            ),
            (
                serde_json::json!({"remediation": {"steps": [{"action": "ScaleOut"}]}}),
                "spec.remediation.steps[0].scaleOut: is required when action is ScaleOut",
            ),
            (
                serde_json::json!({"remediation": {"steps": [{"action": "Notify"}]}}),
                "spec.remediation.steps[0].notify: is required when action is Notify",
            ),
            (
                serde_json::json!({"remediation": {"maxRemediations": {"count": 0, "window": "1h"}}}),
                "spec.remediation.maxRemediations.count: must be at least 1",
            ),
        ];
        for (patch, expected) in cases {
            assert_eq!(problem(patch.clone()), expected, "{patch}");
        }
    }

    #[test]
    fn sample_capacity_follows_the_longest_window_and_is_capped_with_a_note() {
        let s = policy()
            .with_spec(serde_json::json!({"triggers": [{"errorRate": {"percent": 50, "window": "5m"}}]}))
            .settings();
        assert_eq!(s.sample_capacity, 32, "5m at a 10s period: 30 rounds and slack");
        assert!(s.notes.is_empty());
        let s = policy()
            .with_spec(serde_json::json!({
                "probe": {"periodSeconds": 2},
                "triggers": [{"statusCodes": {"codes": ["503"], "count": 5, "window": "1h", "path": "/deep"}}]
            }))
            .settings();
        assert_eq!(s.probe.paths(), ["/healthz", "/deep"]);
        assert_eq!(s.sample_capacity, MAX_SAMPLES_PER_ENDPOINT);
        assert_eq!(
            s.notes,
            ["a window of 1h at a 2s period needs 3604 samples per pod; only the last 2048 are kept"]
        );
    }

    #[test]
    fn numeric_port_strings_are_numbers() {
        let s = policy()
            .with_spec(serde_json::json!({"probe": {"http": {"port": "8080"}}}))
            .settings();
        assert_eq!(s.probe.port, PortRef::Number(8080));
    }
}
