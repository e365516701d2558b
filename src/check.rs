//! Local mode: run the observe → evaluate → plan path of one policy against a real HTTP endpoint,
//! printing each probe, every verdict change with its evidence, and the remediation the operator
//! would take. It never talks to Kubernetes and never acts.

use std::{io::Write, path::Path, sync::Arc, time::Duration};

use crate::{
    Error, Result, act,
    api::{AppHealthPolicy, AppHealthPolicyStatus, Health, format_duration, validate::TriggerSettings},
    clock::{self, Clock},
    evaluate::{Evaluator, TargetVerdict},
    observation::{Sample, Usage},
    observe::{prober::HttpProber, reach::Reach, request::RequestTemplate},
    plan::{Budget, PlanInput},
    report::{self, Observation, Readiness, convert, text},
    settings::{self, Settings},
    step::{self, Then, Work},
};

/// What to check and for how long.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Probe this URL instead of the policy's target.
    pub url: String,
    /// Stop after this many probes (None: run until interrupted).
    pub probes: Option<u32>,
    /// Probe this often instead of spec.probe.periodSeconds.
    pub period: Option<Duration>,
}

/// What a check saw, for callers that want more than the printout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckReport {
    pub probes: u32,
    pub verdicts: Vec<Health>,
    /// Every remediation decision that was not "nothing to do", as printed.
    pub decisions: Vec<String>,
}

/// Reads an AppHealthPolicy from a YAML file.
pub fn load_policy(path: &Path) -> Result<AppHealthPolicy> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::PolicyFile {
        path: path.display().to_string(),
        source,
    })?;
    parse_policy(&path.display().to_string(), &text)
}

/// Parses an AppHealthPolicy from YAML text.
pub fn parse_policy(origin: &str, text: &str) -> Result<AppHealthPolicy> {
    let policy: AppHealthPolicy = serde_saphyr::from_str(text).map_err(|e| Error::PolicyParse {
        path: origin.to_owned(),
        message: e.to_string(),
    })?;
    if policy.metadata.name.is_none() {
        return Err(Error::PolicyParse {
            path: origin.to_owned(),
            message: "metadata.name is required".into(),
        });
    }
    Ok(policy)
}

fn describe(settings: &Settings) -> String {
    let triggers: Vec<String> = settings.triggers.iter().map(TriggerSettings::to_string).collect();
    let steps: Vec<String> = settings
        .remediation
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "{}. {} (wait {})",
                i + 1,
                s.action().as_str(),
                format_duration(s.timeout)
            )
        })
        .collect();
    format!(
        "unhealthy when: {}; recovered after {} successes in a row\nremediation: {}; cooldown {}{}",
        triggers.join(" or "),
        settings.recovery.consecutive_successes,
        if steps.is_empty() {
            "none (observe only)".to_owned()
        } else {
            steps.join(", ")
        },
        format_duration(settings.remediation.cooldown),
        if settings.remediation.dry_run {
            ", dry run"
        } else {
            ""
        },
    )
}

/// What check mode cannot reproduce without a cluster, so the printout does not pretend.
fn unavailable_here(settings: &Settings) -> Vec<String> {
    let mut notes = Vec::new();
    if let crate::api::validate::Check::Http(http) = &settings.probe.check {
        for h in &http.headers {
            if let crate::api::validate::HeaderSource::Secret(key) = &h.value {
                notes.push(format!(
                    "header {} comes from Secret {} and is not sent (check mode reads no cluster)",
                    h.name, key.name
                ));
            }
        }
        if http.tls.ca.is_some() {
            notes.push("tls.ca is read from the cluster; the system trust roots are used instead".into());
        }
        for path in &http.extra_paths {
            notes.push(format!(
                "only the given URL is probed, not the trigger path {path}"
            ));
        }
    }
    let cluster_only: Vec<&str> = settings
        .triggers
        .iter()
        .filter(|t| {
            matches!(
                t,
                TriggerSettings::Memory { .. }
                    | TriggerSettings::Cpu { .. }
                    | TriggerSettings::Restarts { .. }
                    | TriggerSettings::OomKilled { .. }
                    | TriggerSettings::ConfigChanged
            )
        })
        .map(TriggerSettings::name)
        .collect();
    if !cluster_only.is_empty() {
        notes.push(format!(
            "{} read pods and metrics from a cluster and stay inactive here",
            cluster_only.join(", ")
        ));
    }
    notes
}

fn io(e: std::io::Error) -> Error {
    Error::Usage(format!("could not write output: {e}"))
}

/// Runs the check, writing a line per probe and per decision to `out`.
pub async fn run(
    policy: &AppHealthPolicy,
    options: &CheckOptions,
    clock: Arc<dyn Clock>,
    out: &mut (dyn Write + Send),
) -> Result<CheckReport> {
    let settings = settings::validate(&policy.spec)?;
    let period = options.period.unwrap_or(settings.probe.period);
    let name = policy.metadata.name.clone().unwrap_or_default();
    let target = policy.spec.describe_target();
    // The URL is one the person running the check could fetch themselves, from their own machine:
    // loopback is allowed; the rest of the deny-list holds, as in the operator.
    let prober = HttpProber::new(Reach::with_loopback())?;
    // Header values and CA bundles from Secrets or ConfigMaps cannot be read without a cluster:
    // check mode sends only the headers written in the policy and trusts the system roots.
    let request = RequestTemplate::literal(&settings.probe).request_for_url(&options.url, &options.url);
    writeln!(
        out,
        "checking policy {name} against {} every {} (timeout {}), standing in for {target}\n{}\nnothing is ever changed in check mode",
        options.url,
        format_duration(period),
        format_duration(settings.probe.timeout),
        describe(&settings)
    )
    .map_err(io)?;
    for note in unavailable_here(&settings) {
        writeln!(out, "note: {note}").map_err(io)?;
    }

    let mut session = Session::new(&settings, target, &options.url);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while options.probes.is_none_or(|max| session.report.probes < max) {
        ticks.tick().await;
        let sample = prober.probe(&request, clock.as_ref()).await;
        session.round(&sample, clock.now(), out)?;
    }
    Ok(session.report)
}

/// What a check carries from one probe to the next: the evaluator's windows, the ladder's status
/// (advanced by the same function as the controller's), and what was last printed.
struct Session<'a> {
    settings: &'a Settings,
    target: String,
    url: &'a str,
    evaluator: Evaluator,
    status: AppHealthPolicyStatus,
    report: CheckReport,
    last: Option<TargetVerdict>,
    last_decision: String,
}

impl<'a> Session<'a> {
    fn new(settings: &'a Settings, target: String, url: &'a str) -> Self {
        Self {
            settings,
            target,
            url,
            evaluator: Evaluator::new(settings),
            status: AppHealthPolicyStatus::default(),
            report: CheckReport::default(),
            last: None,
            last_decision: String::new(),
        }
    }

    /// One probe: its line, the verdict when it changes, and the plan when it changes.
    fn round(&mut self, sample: &Sample, now: jiff::Timestamp, out: &mut (dyn Write + Send)) -> Result<()> {
        self.report.probes += 1;
        self.evaluator.observe(sample);
        self.evaluator.observe_signals(
            now,
            &[],
            &Usage::Unavailable("check mode reads nothing from a cluster".into()),
        );
        let verdict = self.evaluator.verdict(now);
        writeln!(
            out,
            "{}  {:<4} {:<40} {:>6}ms",
            sample.at.strftime("%H:%M:%S"),
            if sample.ok { "ok" } else { "FAIL" },
            sample.detail,
            sample.latency.as_millis()
        )
        .map_err(io)?;
        if self.last.as_ref().is_none_or(|l| verdict.differs_from(l)) && verdict.health != Health::Unknown {
            writeln!(
                out,
                "verdict: {} — {}",
                verdict.health.as_str(),
                verdict.summary()
            )
            .map_err(io)?;
            self.report.verdicts.push(verdict.health);
        }
        let decision = self.advance(&verdict, clock::whole_seconds(now));
        if !decision.is_empty() && decision != self.last_decision {
            writeln!(out, "plan: {decision}").map_err(io)?;
            self.report.decisions.push(decision.clone());
        }
        self.last_decision = decision;
        self.last = Some(verdict);
        Ok(())
    }

    /// Steps the ladder as the controller would (the work simulated: check mode never acts), and
    /// says what was decided.
    fn advance(&mut self, verdict: &TargetVerdict, now: jiff::Timestamp) -> String {
        let remediation = &self.settings.remediation;
        let recorded = convert::recorded(&self.status);
        let input = PlanInput {
            settings: remediation,
            suspended: false,
            health: verdict.health,
            pods: &[],
            recorded: &recorded,
            rollout: None,
            budget: Budget::default(),
            now,
        };
        let seen = Observation::new(
            None,
            self.target.clone(),
            Readiness::Probing {
                message: text::check_probing(self.url),
            },
            Some(verdict.clone()),
            remediation.into(),
        );
        let step = step::step(&self.status, &seen, &input, now);
        self.status = match &step.then {
            Then::Write((status, _)) => status.clone(),
            Then::Work {
                intent,
                work: Work::Run(r) | Work::Resume(r),
            } => {
                let from = intent.as_ref().map_or(&self.status, |(status, _)| status);
                let done = act::simulated(r, text::CHECK_NEVER_ACTS);
                step::finish(from, &seen, &step.plan, &done, now).0
            }
            // A restore: a simulated ScaleOut raised nothing, so there is nothing to put back.
            Then::Work {
                work: Work::Restore(_),
                ..
            } => report::desired_status(&self.status, &seen, Some(&step.plan), None, now).0,
        };
        text::decision(&step.plan, &self.target)
    }
}
