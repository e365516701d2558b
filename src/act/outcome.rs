//! What the act stage hands to report: the record of what an action did and the side results
//! that status keeps. Plain data; `report` folds it into the desired status.

use crate::record::{Capture, Entry, Raised};

/// What the act stage did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The record to fold into the ladder and history (None for a scale restore).
    pub record: Option<Entry>,
    /// The Event reason of the action that ran (each action names its own).
    pub action_reason: &'static str,
    /// Completed a remediation another operator instance (or a crashed one) had started.
    pub resumed: bool,
    pub effects: Vec<Effect>,
}

/// Side results of an action that status keeps.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// ScaleOut raised these values.
    ScaleRecorded(Raised),
    /// The raised values were put back (`restored`) or left alone because someone changed them.
    ScaleRestoreDone { restored: bool, message: String },
    /// CollectDiagnostics stored a capture.
    Diagnostics(Capture),
}
