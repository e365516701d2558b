//! `spec.remediation` parsed: the guards' settings here, each step's parameters by its action
//! ([`StepParams::parse`]).

use std::time::Duration;

use crate::{
    act::{StepField, StepParams},
    api::{
        RemediationSpec,
        validate::{InvalidSpec, at_least_one, at_most, duration, invalid, items, window},
    },
    plan::{RemediationSettings, StepSettings},
};

/// Parses `spec.remediation`, or names the first problem found.
pub fn remediation(r: &RemediationSpec) -> Result<RemediationSettings, InvalidSpec> {
    items("spec.remediation.steps", &r.steps, 8)?;
    if let Some(m) = &r.max_remediations {
        at_most("spec.remediation.maxRemediations.count", m.count, 10)?;
    }
    at_most(
        "spec.remediation.diagnosticsRetention",
        r.diagnostics_retention,
        20,
    )?;
    let steps = r
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let f = StepField(i);
            let params = StepParams::parse(f, step)?;
            let timeout = match &step.timeout {
                Some(t) => duration(&f.at("timeout"), t)?,
                None => params.default_timeout(),
            };
            Ok(StepSettings { timeout, params })
        })
        .collect::<Result<Vec<_>, InvalidSpec>>()?;
    let max_remediations = match &r.max_remediations {
        None => None,
        Some(m) => Some((
            at_least_one("spec.remediation.maxRemediations.count", m.count)?,
            window(
                "spec.remediation.maxRemediations.window",
                &m.window,
                Duration::from_secs(168 * 3600),
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
    Ok(RemediationSettings {
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
        max_concurrent: match r.max_concurrent {
            Some(n) => Some(at_least_one("spec.remediation.maxConcurrent", n)?),
            None => None,
        },
    })
}
