//! A policy's settings, parsed once: what `api::validate` reads of the target, probe, triggers and
//! recovery, and the ladder (`ladder`; each step's parameters parsed by its action).

mod ladder;

use crate::{
    api::{
        AppHealthPolicySpec,
        validate::{self, InvalidSpec, ProbeSettings, Probing, RecoverySettings, TriggerSettings},
    },
    plan::RemediationSettings,
};

/// The settings of a valid policy.
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

/// Validates a spec and returns its parsed settings, or the first problem found (naming its field).
pub fn validate(spec: &AppHealthPolicySpec) -> Result<Settings, InvalidSpec> {
    let Probing {
        probe,
        triggers,
        recovery,
        sample_capacity,
        notes,
    } = validate::probing(spec)?;
    Ok(Settings {
        probe,
        triggers,
        recovery,
        remediation: ladder::remediation(&spec.remediation)?,
        sample_capacity,
        notes,
    })
}

#[cfg(test)]
mod tests;
