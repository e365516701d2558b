//! Checks that the schema cannot express, turning a policy into the parsed settings the engine uses.
//! Pure: no client, no clock. Every error names the field and says what is wrong.

use std::{ops::RangeInclusive, time::Duration as StdDuration};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Action, AppHealthPolicySpec, Method, ProbeVia, Scheme};

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
    pub recovery_successes: u32,
    pub steps: Vec<StepSettings>,
    pub cooldown: StdDuration,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSettings {
    pub via: ProbeVia,
    pub service: Option<String>,
    pub port: PortRef,
    pub path: String,
    pub scheme: Scheme,
    pub method: Method,
    pub headers: Vec<(String, String)>,
    pub timeout: StdDuration,
    pub period: StdDuration,
    pub success_codes: SuccessCodes,
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

/// Status codes that count as success.
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerSettings {
    ConsecutiveFailures { threshold: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSettings {
    pub action: Action,
    pub timeout: StdDuration,
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

/// Validates a spec and returns its parsed settings, or the first problem found.
pub fn validate(spec: &AppHealthPolicySpec) -> Result<Settings, InvalidSpec> {
    if spec.target_ref.name.is_empty() {
        return Err(invalid("spec.targetRef.name", "must name a workload"));
    }
    let probe = &spec.probe;
    let http = &probe.http;
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
    if http.timeout_seconds == 0 {
        return Err(invalid("spec.probe.http.timeoutSeconds", "must be at least 1"));
    }
    if http.timeout_seconds >= probe.period_seconds {
        return Err(invalid(
            "spec.probe.http.timeoutSeconds",
            format!(
                "must be less than spec.probe.periodSeconds ({} >= {})",
                http.timeout_seconds, probe.period_seconds
            ),
        ));
    }
    let port = match &http.port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|n| *n > 0)
            .map(PortRef::Number)
            .ok_or_else(|| {
                invalid(
                    "spec.probe.http.port",
                    format!("{n} is not a port number (1-65535)"),
                )
            })?,
        IntOrString::String(s) if s.is_empty() => {
            return Err(invalid(
                "spec.probe.http.port",
                "must be a port number or a port name",
            ));
        }
        IntOrString::String(s) => match s.parse::<u16>() {
            Ok(n) if n > 0 => PortRef::Number(n),
            _ => PortRef::Name(s.clone()),
        },
    };
    if !http.path.starts_with('/') {
        return Err(invalid(
            "spec.probe.http.path",
            format!("{:?} must start with /", http.path),
        ));
    }
    let mut headers = Vec::with_capacity(http.headers.len());
    for (i, h) in http.headers.iter().enumerate() {
        if reqwest::header::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
            return Err(invalid(
                format!("spec.probe.http.headers[{i}].name"),
                format!("{:?} is not a valid header name", h.name),
            ));
        }
        if reqwest::header::HeaderValue::from_str(&h.value).is_err() {
            return Err(invalid(
                format!("spec.probe.http.headers[{i}].value"),
                "contains characters not allowed in a header value",
            ));
        }
        headers.push((h.name.clone(), h.value.clone()));
    }
    let success_codes = SuccessCodes::parse("spec.probe.http.successCodes", &http.success_codes)?;

    let mut triggers = Vec::with_capacity(spec.triggers.len().max(1));
    for (i, t) in spec.triggers.iter().enumerate() {
        match &t.consecutive_failures {
            Some(cf) if cf.threshold == 0 => {
                return Err(invalid(
                    format!("spec.triggers[{i}].consecutiveFailures.threshold"),
                    "must be at least 1",
                ));
            }
            Some(cf) => triggers.push(TriggerSettings::ConsecutiveFailures {
                threshold: cf.threshold,
            }),
            None => {
                return Err(invalid(
                    format!("spec.triggers[{i}]"),
                    "must set one of: consecutiveFailures",
                ));
            }
        }
    }
    if triggers.is_empty() {
        triggers.push(TriggerSettings::ConsecutiveFailures {
            threshold: DEFAULT_FAILURE_THRESHOLD,
        });
    }
    if spec.recovery.consecutive_successes == 0 {
        return Err(invalid(
            "spec.recovery.consecutiveSuccesses",
            "must be at least 1",
        ));
    }

    let remediation = &spec.remediation;
    let steps = remediation
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            Ok(StepSettings {
                action: step.action,
                timeout: positive_duration(&format!("spec.remediation.steps[{i}].timeout"), &step.timeout)?,
            })
        })
        .collect::<Result<Vec<_>, InvalidSpec>>()?;
    let cooldown = duration("spec.remediation.cooldown", &remediation.cooldown)?;

    Ok(Settings {
        probe: ProbeSettings {
            via: probe.via,
            service,
            port,
            path: http.path.clone(),
            scheme: http.scheme,
            method: http.method,
            headers,
            timeout: StdDuration::from_secs(http.timeout_seconds.into()),
            period: StdDuration::from_secs(probe.period_seconds.into()),
            success_codes,
        },
        triggers,
        recovery_successes: spec.recovery.consecutive_successes,
        steps,
        cooldown,
        dry_run: remediation.dry_run,
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
        assert_eq!(s.cooldown, StdDuration::from_secs(300));
        assert_eq!(
            s.steps,
            vec![StepSettings {
                action: Action::RolloutRestart,
                timeout: StdDuration::from_secs(120)
            }]
        );
        assert!(s.probe.success_codes.contains(200) && s.probe.success_codes.contains(399));
        assert!(!s.probe.success_codes.contains(400));
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
                "spec.triggers[0]: must set one of: consecutiveFailures",
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
                serde_json::json!({"remediation": {"steps": [{"action": "RolloutRestart", "timeout": "0s"}]}}),
                "spec.remediation.steps[0].timeout: must be longer than zero",
            ),
        ];
        for (patch, expected) in cases {
            assert_eq!(problem(patch.clone()), expected, "{patch}");
        }
    }

    #[test]
    fn numeric_port_strings_are_numbers() {
        let s = policy()
            .with_spec(serde_json::json!({"probe": {"http": {"port": "8080"}}}))
            .settings();
        assert_eq!(s.probe.port, PortRef::Number(8080));
    }
}
