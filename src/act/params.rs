//! How an action reads its block of a ladder step: each action's file implements [`Params`] for
//! its parameters, their bounds and their parsing; [`actions!`](super) gathers them into
//! [`StepParams`](super::StepParams).

use std::time::Duration;

use crate::api::{RemediationStep, validate::InvalidSpec};

/// Names the fields of one ladder step in errors: `spec.remediation.steps[i].<name>`.
#[derive(Debug, Clone, Copy)]
pub struct StepField(pub usize);

impl StepField {
    pub fn at(self, name: &str) -> String {
        format!("spec.remediation.steps[{}].{name}", self.0)
    }
}

/// An action's parameters, read from its block of a step.
pub(crate) trait Params {
    /// The parameters, parsed.
    type Settings;

    /// The name of the action's block, when the step sets it (a block of another action's is
    /// refused).
    fn block(step: &RemediationStep) -> Option<&'static str>;

    /// The schema's bounds on the block, checked before anything is parsed.
    fn limits(_f: StepField, _step: &RemediationStep) -> Result<(), InvalidSpec> {
        Ok(())
    }

    /// Parses the block; errors name the field.
    fn settings(f: StepField, step: &RemediationStep) -> Result<Self::Settings, InvalidSpec>;

    /// How long a step waits for the target to recover when its timeout is not set.
    const TIMEOUT: Duration = Duration::from_secs(300);
}

/// The block `name` when `set`.
pub(crate) fn named<T>(name: &'static str, set: Option<&T>) -> Option<&'static str> {
    set.map(|_| name)
}

/// The block a step's action requires.
pub(crate) fn required<'a, T>(
    f: StepField,
    name: &str,
    action: &str,
    block: Option<&'a T>,
) -> Result<&'a T, InvalidSpec> {
    block.ok_or_else(|| {
        crate::api::validate::invalid(f.at(name), format!("is required when action is {action}"))
    })
}
