//! The ladder's part of validation: each step's action and parameters, and the guards' settings.

use std::time::Duration as StdDuration;

use super::{InvalidSpec, at_least_one, duration, invalid, positive_duration};
use crate::api::{Action, KeyRef};

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

/// `spec.remediation.steps[i].<name>`.
fn field(i: usize, name: &str) -> String {
    format!("spec.remediation.steps[{i}].{name}")
}

fn step(i: usize, step: &crate::api::RemediationStep) -> Result<StepSettings, InvalidSpec> {
    let f = |name: &str| field(i, name);
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
        Action::CollectDiagnostics => StepParams::CollectDiagnostics(diagnostics(
            i,
            &step.collect_diagnostics.clone().unwrap_or_default(),
        )?),
        Action::Rollback => StepParams::Rollback {
            within: positive_duration(
                &f("rollback.within"),
                &step
                    .rollback
                    .as_ref()
                    .map_or_else(|| crate::api::Duration::from("1h"), |r| r.within.clone()),
            )?,
        },
        Action::ScaleUp => {
            let p = step
                .scale_up
                .as_ref()
                .ok_or_else(|| invalid(f("scaleUp"), "is required when action is ScaleUp"))?;
            StepParams::ScaleUp(scale_up(i, p)?)
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
            StepParams::ScaleOut(scale_out(i, p)?)
        }
        Action::Notify => {
            let p = step
                .notify
                .as_ref()
                .ok_or_else(|| invalid(f("notify"), "is required when action is Notify"))?;
            super::names::object(&f("notify.urlSecretRef.name"), &p.url_secret_ref.name)?;
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

fn diagnostics(
    i: usize,
    p: &crate::api::remediation::CollectDiagnosticsParams,
) -> Result<DiagnosticsSettings, InvalidSpec> {
    let f = |name: &str| field(i, name);
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
    Ok(DiagnosticsSettings {
        log_lines: at_least_one(&f("collectDiagnostics.logLines"), p.log_lines)?,
        previous: p.previous,
        exec,
    })
}

fn scale_up(i: usize, p: &crate::api::remediation::ScaleUpParams) -> Result<ScaleUpSettings, InvalidSpec> {
    let f = |name: &str| field(i, name);
    if p.memory_percent.is_none() && p.cpu_percent.is_none() {
        return Err(invalid(f("scaleUp"), "must set memoryPercent or cpuPercent"));
    }
    let max_memory = match (p.memory_percent, &p.max_memory) {
        (None, _) => 0,
        (Some(_), None) => {
            return Err(invalid(f("scaleUp.maxMemory"), "is required with memoryPercent"));
        }
        (Some(_), Some(m)) => crate::api::quantity::bytes(m)
            .filter(|b| *b > 0)
            .ok_or_else(|| invalid(f("scaleUp.maxMemory"), format!("{m:?} is not a size such as 2Gi")))?,
    };
    let max_millicores = match (p.cpu_percent, &p.max_cpu) {
        (None, _) => 0,
        (Some(_), None) => return Err(invalid(f("scaleUp.maxCpu"), "is required with cpuPercent")),
        (Some(_), Some(c)) => crate::api::quantity::millicores(c)
            .filter(|m| *m > 0)
            .ok_or_else(|| {
                invalid(
                    f("scaleUp.maxCpu"),
                    format!("{c:?} is not a CPU amount such as 2 or 500m"),
                )
            })?,
    };
    Ok(ScaleUpSettings {
        memory_percent: p.memory_percent.unwrap_or(0),
        cpu_percent: p.cpu_percent.unwrap_or(0),
        max_memory,
        max_millicores,
        in_place: p.in_place,
    })
}

fn scale_out(i: usize, p: &crate::api::remediation::ScaleOutParams) -> Result<ScaleOutSettings, InvalidSpec> {
    let f = |name: &str| field(i, name);
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
    Ok(ScaleOutSettings {
        by: p.by.map(|b| at_least_one(&f("scaleOut.by"), b)).transpose()?,
        to: p.to.map(|t| at_least_one(&f("scaleOut.to"), t)).transpose()?,
        max_replicas: p.max_replicas,
        restore_after: duration(&f("scaleOut.restoreAfter"), &p.restore_after)?,
    })
}

/// Parses `spec.remediation`.
pub(super) fn remediation(r: &crate::api::RemediationSpec) -> Result<RemediationSettings, InvalidSpec> {
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
            super::window(
                "spec.remediation.maxRemediations.window",
                &m.window,
                StdDuration::from_secs(168 * 3600),
            )?,
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

    Ok(remediation)
}
