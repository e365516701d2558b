//! Act: one implementation per action behind one static dispatch (the `actions!` list). Each
//! action's file has its [`Descriptor`] (Event reason, whether it changes the target or restarts
//! pods, its chart permission and Kubernetes rights), its parameters (`Params`: the settings type,
//! the schema's bounds on its block, parsing that names the field, its default timeout), `apply`
//! (idempotent Kubernetes API calls; in a dry run it only reads and describes) and `applied` (reads
//! back the mark it leaves, so an operator that stopped between recording its intent and
//! recording the result neither repeats nor loses it).
//!
//! Adding an action: its CRD block (the variant in `Action` and `Action::ALL`, its parameters'
//! struct and field on `RemediationStep`), its file here, and one line in `actions!`; then
//! `make generate` (the CRD, the chart's rule table, the README's table of rights).

mod diagnostics;
mod evict;
mod notify;
mod outcome;
mod params;
mod remediation;
mod resize;
mod restart;
mod rollback;
mod scale;
#[cfg(test)]
mod tables;
mod workload;

use jiff::Timestamp;
use kube::Client;

pub use diagnostics::ExecSettings;
pub use notify::{Notifier, PostError};
pub use outcome::{Effect, Outcome};
use params::Params;
pub use params::StepField;
pub use remediation::{Descriptor, Remediation};

use crate::{
    api::{self, RemediationResult, TargetKind},
    clock,
    record::{Entry, Finding, Raised, Recorded},
};

/// The field manager the operator writes with.
pub const MANAGER: &str = "apphealth-operator";

/// The workload a remediation acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub kind: TargetKind,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.name)
    }
}

/// The policy an action runs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    /// AppHealthPolicy or ClusterAppHealthPolicy: what owns the ConfigMaps it writes.
    pub kind: String,
    pub name: String,
    pub uid: String,
    /// What diagnostics ConfigMaps are named after: the policy's name, or for a workload of a
    /// targetSelector policy `<policy>-<workload>`, so two workloads' captures never collide.
    pub captures: String,
}

impl PolicyInfo {
    /// The policy `policy` refers to, its diagnostics named after `captures`.
    pub fn of(policy: &k8s_openapi::api::core::v1::ObjectReference, captures: String) -> Self {
        Self {
            kind: policy.kind.clone().unwrap_or_default(),
            name: policy.name.clone().unwrap_or_default(),
            uid: policy.uid.clone().unwrap_or_default(),
            captures,
        }
    }
}

/// What every action may use.
pub struct ActCtx<'a> {
    pub client: Client,
    /// A client that does not retry 429 by itself (evictions).
    pub direct_client: Client,
    pub notifier: &'a Notifier,
    pub workload: &'a Workload,
    pub policy: &'a PolicyInfo,
    /// What was recorded before this remediation (history, scale restore, diagnostics).
    pub recorded: Recorded,
    /// The verdict behind the remediation, for people.
    pub summary: String,
    pub evidence: Vec<Finding>,
    /// Diagnostics ConfigMaps kept.
    pub retention: u32,
    /// The ladder's CollectDiagnostics settings, for captures taken before a restart.
    pub diagnostics: DiagnosticsSettings,
    /// What the ladder does next if this step does not help, for notifications.
    pub next: String,
    /// The injected clock's time, in whole seconds.
    pub now: Timestamp,
}

/// What an action did.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    /// Succeeded, Skipped (nothing to do) or Held (refused for now, tried again at `retry_at`).
    pub result: RemediationResult,
    /// What changed (or, in a dry run, would have), for people.
    pub message: String,
    pub retry_at: Option<Timestamp>,
    pub effects: Vec<Effect>,
}

impl Done {
    pub fn succeeded(message: impl Into<String>) -> Self {
        Self {
            result: RemediationResult::Succeeded,
            message: message.into(),
            retry_at: None,
            effects: Vec::new(),
        }
    }

    pub fn skipped(message: impl Into<String>) -> Self {
        Self {
            result: RemediationResult::Skipped,
            ..Self::succeeded(message)
        }
    }

    fn with(mut self, effect: Effect) -> Self {
        self.effects.push(effect);
        self
    }
}

/// What an action decided from what it read: what to do, or that there is nothing to do (and why,
/// for people; recorded as Skipped).
pub(crate) enum Decided<T> {
    Do(T),
    Nothing(String),
}

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error(
        "the operator may not {verb} {resource} in namespace {namespace} (HTTP 403); grant it that right, \
         or remove the step"
    )]
    Forbidden {
        verb: &'static str,
        resource: &'static str,
        namespace: String,
    },
    #[error("{verb} {resource} failed: {source}")]
    Api {
        verb: &'static str,
        resource: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Refused(String),
}

/// Patches as the operator's field manager, so its ownership shows in managedFields.
pub(crate) fn as_operator() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(MANAGER.into()),
        ..kube::api::PatchParams::default()
    }
}

/// Wraps an API error with the verb and resource it concerned (a 403 names the missing right).
pub(crate) fn api_error(
    verb: &'static str,
    resource: &'static str,
    namespace: &str,
) -> impl FnOnce(kube::Error) -> ActError {
    let namespace = namespace.to_owned();
    move |source| match &source {
        kube::Error::Api(s) if s.code == 403 => ActError::Forbidden {
            verb,
            resource,
            namespace,
        },
        _ => ActError::Api {
            verb,
            resource,
            source,
        },
    }
}

impl ActError {
    /// A stable name for the kind of failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Forbidden { .. } => "Forbidden",
            Self::Api { .. } if self.is_transient() => "APIUnavailable",
            Self::Api { .. } => "APIError",
            Self::Refused(_) => "Refused",
        }
    }

    /// A failure that says nothing about the action: the API server answered 5xx or 429
    /// (throttled, after the client's own retries), or did not answer at all.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api { source, .. } => match source {
                kube::Error::Api(s) => s.code >= 500 || s.code == 429,
                kube::Error::HyperError(_) | kube::Error::Service(_) => true,
                _ => false,
            },
            Self::Forbidden { .. } | Self::Refused(_) => false,
        }
    }
}

/// However short a step's timeout, a remediation whose API calls fail transiently is tried again
/// (resumed under its mark) for at least this long before it is recorded as failed.
pub const RETRY_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether a failure of `r` at `now` is to be tried again rather than recorded: it is transient
/// and the step's time (at least [`RETRY_WINDOW`]) is not up.
pub fn retry_later(r: &Remediation, error: &ActError, now: Timestamp) -> bool {
    error.is_transient() && now < clock::after(r.at, r.timeout.max(RETRY_WINDOW))
}

/// One remediation the operator can perform. Dispatched statically ([`actions!`]): no boxed
/// futures, no trait objects.
pub(crate) trait Action {
    /// Performs the remediation (or, when `r.dry_run`, reads and describes what it would do).
    async fn apply(&self, ctx: &ActCtx<'_>, r: &Remediation) -> Result<Done, ActError>;

    /// Whether its mark shows it already happened (read from the API, never a cache): Some with
    /// what it did, None if it has not.
    async fn applied(&self, ctx: &ActCtx<'_>, r: &Remediation) -> Result<Option<Done>, ActError>;
}

/// The one list of actions, each with its CRD variant, the module of its file and its type:
/// makes the dispatch to each action's descriptor and implementation.
macro_rules! actions {
    ($($kind:ident => $module:ident :: $implementation:ident ($settings:ident),)*) => {
        $(pub use $module::$settings;)*

        /// An action with its parameters, parsed.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum StepParams {
            $($kind($settings),)*
        }

        impl StepParams {
            pub fn action(&self) -> api::Action {
                match self {
                    $(Self::$kind(_) => api::Action::$kind,)*
                }
            }

            /// The parameters of step `f` for its action, within the schema's bounds; a block of
            /// another action's is refused.
            pub fn parse(f: StepField, step: &api::RemediationStep) -> Result<Self, api::validate::InvalidSpec> {
                $(
                    <$module::$implementation as Params>::limits(f, step)?;
                    if let Some(block) = <$module::$implementation as Params>::block(step)
                        && step.action != api::Action::$kind
                    {
                        return Err(api::validate::invalid(
                            f.at(block),
                            format!("may only be set when action is {}", api::Action::$kind.as_str()),
                        ));
                    }
                )*
                match step.action {
                    $(api::Action::$kind => <$module::$implementation as Params>::settings(f, step).map(Self::$kind),)*
                }
            }

            /// How long a step of this action waits for recovery when its timeout is not set.
            pub fn default_timeout(&self) -> std::time::Duration {
                match self {
                    $(Self::$kind(_) => <$module::$implementation as Params>::TIMEOUT,)*
                }
            }
        }

        /// What an action says about itself.
        pub fn descriptor(kind: api::Action) -> &'static Descriptor {
            match kind {
                $(api::Action::$kind => &$module::DESCRIPTOR,)*
            }
        }

        /// Performs `r` with its action.
        async fn apply(ctx: &ActCtx<'_>, r: &Remediation) -> Result<Done, ActError> {
            match r.action() {
                $(api::Action::$kind => $module::$implementation.apply(ctx, r).await,)*
            }
        }

        /// Reads `r`'s mark back with its action.
        async fn applied(ctx: &ActCtx<'_>, r: &Remediation) -> Result<Option<Done>, ActError> {
            match r.action() {
                $(api::Action::$kind => $module::$implementation.applied(ctx, r).await,)*
            }
        }
    };
}

// A new action is its file, its CRD block and a line here.
actions! {
    CollectDiagnostics => diagnostics::CollectDiagnostics(DiagnosticsSettings),
    RestartPods => evict::RestartPods(RestartPodsSettings),
    RolloutRestart => restart::RolloutRestart(RolloutRestartSettings),
    Rollback => rollback::Rollback(RollbackSettings),
    ScaleOut => scale::ScaleOut(ScaleOutSettings),
    ScaleUp => resize::ScaleUp(ScaleUpSettings),
    Notify => notify::Notify(NotifySettings),
}

/// Every action's descriptor, in the CRD's order.
pub fn descriptors() -> impl Iterator<Item = &'static Descriptor> {
    api::Action::ALL.into_iter().map(descriptor)
}

/// Every chart `permissions.*` value: one per action, then the extra ones some rights need too
/// (off by default).
pub fn permission_values() -> impl Iterator<Item = &'static str> {
    descriptors()
        .map(|d| d.permission)
        .chain(crate::rbac::EXTRA_TOGGLES.iter().map(|(name, _)| *name))
}

/// The chart values that must all be true for the chart to grant `rule` (none for the
/// controller's own).
pub fn toggles(rule: &crate::rbac::Rule) -> Vec<&'static str> {
    match rule.need {
        crate::rbac::Need::Always => Vec::new(),
        crate::rbac::Need::Action(a) => std::iter::once(descriptor(a).permission)
            .chain(rule.also)
            .collect(),
    }
}

/// Every right the operator uses (leader election's apart): the controller's own, then each
/// action's.
pub fn rules() -> Vec<crate::rbac::Rule> {
    use crate::rbac::{CONTROLLER, Need, Rule};
    let own = CONTROLLER
        .iter()
        .flat_map(|group| group.rights)
        .map(|r| Rule::new(r, Need::Always));
    let actions = descriptors().flat_map(|d| d.rights.iter().map(|r| Rule::new(r, Need::Action(d.action))));
    own.chain(actions).collect()
}

fn record(r: &Remediation, result: RemediationResult, message: String, retry_at: Option<Timestamp>) -> Entry {
    Entry {
        reason: None,
        action: r.action(),
        step: r.step,
        at: r.at,
        result,
        dry_run: r.dry_run,
        pods: r.pods.clone(),
        message: Some(message),
        retry_at,
    }
}

/// The intent recorded before acting.
pub fn pending(r: &Remediation) -> Outcome {
    Outcome {
        record: Some(Entry {
            message: None,
            ..record(r, RemediationResult::Pending, String::new(), None)
        }),
        action_reason: descriptor(r.action()).reason,
        resumed: false,
        effects: Vec::new(),
    }
}

/// A remediation recorded as done without touching anything (check mode).
pub fn simulated(r: &Remediation, message: &str) -> Outcome {
    Outcome {
        record: Some(record(r, RemediationResult::Succeeded, message.to_owned(), None)),
        action_reason: descriptor(r.action()).reason,
        resumed: false,
        effects: Vec::new(),
    }
}

/// A step a guard skipped, with why.
pub fn skipped(r: &Remediation, why: String) -> Outcome {
    Outcome {
        record: Some(record(r, RemediationResult::Skipped, why, None)),
        action_reason: descriptor(r.action()).reason,
        resumed: false,
        effects: Vec::new(),
    }
}

fn outcome(r: &Remediation, done: Result<Done, ActError>, resumed: bool) -> Outcome {
    let reason = descriptor(r.action()).reason;
    match done {
        Ok(done) => Outcome {
            record: Some(record(r, done.result, done.message, done.retry_at)),
            action_reason: reason,
            resumed,
            effects: done.effects,
        },
        Err(e) => Outcome {
            record: Some(Entry {
                reason: Some(e.reason().to_owned()),
                ..record(
                    r,
                    RemediationResult::Failed,
                    format!("{} failed ({}): {e}", r.action().as_str(), e.reason()),
                    None,
                )
            }),
            action_reason: reason,
            resumed,
            effects: Vec::new(),
        },
    }
}

/// Runs a remediation: first the diagnostics of pods it is about to restart, when the ladder
/// collects them, then the action itself. A transient failure within the step's time is returned
/// as an error: the recorded intent stays Pending and is resumed under its mark.
pub async fn run(ctx: &ActCtx<'_>, r: &Remediation) -> Result<Outcome, ActError> {
    let mut effects = Vec::new();
    // Evidence first; a capture that fails is said, but does not keep the target broken.
    let mut first = String::new();
    if !r.capture_first.is_empty() && !r.dry_run {
        match diagnostics::capture_before_restart(ctx, r).await {
            Ok(done) => {
                first = format!("{} ", done.message);
                effects.extend(done.effects);
            }
            Err(e) => first = format!("Diagnostics could not be captured first ({e}). "),
        }
    }
    let done = match apply(ctx, r).await {
        Err(e) if retry_later(r, &e, ctx.now) => return Err(e),
        done => done,
    };
    let mut out = outcome(r, done, false);
    if let Some(message) = out.record.as_mut().and_then(|rec| rec.message.as_mut()) {
        message.insert_str(0, &first);
    }
    effects.append(&mut out.effects);
    out.effects = effects;
    Ok(out)
}

/// Completes a remediation recorded as Pending: if its mark shows it ran, records that; otherwise
/// runs it now with the same mark. Transient failures are returned as for [`run`].
pub async fn resume(ctx: &ActCtx<'_>, r: &Remediation) -> Result<Outcome, ActError> {
    let done = match applied(ctx, r).await {
        Ok(Some(mut done)) => {
            done.message = format!(
                "{} (step {}) was found applied when resumed (after an operator restart or a failed API call); not repeated. {}",
                r.action().as_str(),
                r.step,
                done.message
            );
            Ok(done)
        }
        Ok(None) => apply(ctx, r).await.map(|mut done| {
            done.message = format!(
                "Completed when resumed (after an operator restart or a failed API call). {}",
                done.message
            );
            done
        }),
        Err(e) => Err(e),
    };
    match done {
        Err(e) if retry_later(r, &e, ctx.now) => Err(e),
        done => Ok(outcome(r, done, true)),
    }
}

/// Puts back what ScaleOut raised.
pub async fn restore(ctx: &ActCtx<'_>, raised: &Raised) -> Outcome {
    let (restored, message) = match scale::restore(ctx, raised).await {
        Ok(result) => result,
        Err(e) => (false, format!("Could not restore what ScaleOut raised: {e}")),
    };
    Outcome {
        record: None,
        action_reason: scale::DESCRIPTOR.reason,
        resumed: false,
        effects: vec![Effect::ScaleRestoreDone { restored, message }],
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kube::core::Status;

    use super::*;

    fn api(code: u16) -> ActError {
        ActError::Api {
            verb: "create",
            resource: "pods/eviction",
            source: kube::Error::Api(Box::new(Status::failure("x", "y").with_code(code))),
        }
    }

    #[test]
    fn transient_failures_within_the_steps_time_are_tried_again() {
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let r = |timeout: u64| Remediation {
            step: 1,
            of: 1,
            params: StepParams::RolloutRestart(RolloutRestartSettings),
            timeout: Duration::from_secs(timeout),
            pods: Vec::new(),
            capture_first: Vec::new(),
            at,
            dry_run: false,
        };
        let later = |secs: u64| clock::after(at, Duration::from_secs(secs));
        let forbidden = ActError::Forbidden {
            verb: "create",
            resource: "pods/eviction",
            namespace: "shop".into(),
        };
        let cases: [(&str, ActError, u64, u64, bool); 9] = [
            ("500", api(500), 600, 10, true),
            ("503", api(503), 600, 10, true),
            ("429 after the client's retries", api(429), 600, 10, true),
            ("404 is an answer", api(404), 600, 10, false),
            ("422 is an answer", api(422), 600, 10, false),
            ("403 is an answer", forbidden, 600, 10, false),
            ("refused", ActError::Refused("no".into()), 600, 10, false),
            ("the step's time is up", api(500), 600, 600, false),
            ("a short step still gets the retry window", api(500), 1, 299, true),
        ];
        for (what, error, timeout, elapsed, want) in cases {
            assert_eq!(retry_later(&r(timeout), &error, later(elapsed)), want, "{what}");
        }
        assert!(
            !retry_later(&r(1), &api(500), later(300)),
            "the retry window ends"
        );
    }

    #[test]
    fn each_failure_has_a_stable_reason() {
        let forbidden = ActError::Forbidden {
            verb: "create",
            resource: "pods/eviction",
            namespace: "shop".into(),
        };
        let cases = [
            (forbidden, "Forbidden"),
            (api(503), "APIUnavailable"),
            (api(429), "APIUnavailable"),
            (api(404), "APIError"),
            (ActError::Refused("no".into()), "Refused"),
        ];
        for (error, reason) in cases {
            assert_eq!(error.reason(), reason, "{error}");
        }
    }
}
