//! Local mode: run the observe → evaluate → plan path of one policy against a real HTTP endpoint,
//! printing each probe, every verdict change with its evidence, and the remediation the operator
//! would take. It never talks to Kubernetes and never acts.

use std::{io::Write, path::Path, sync::Arc, time::Duration};

use crate::{
    Error, Result,
    api::{
        AppHealthPolicy, Health, format_duration,
        validate::{self, Settings, TriggerSettings},
    },
    clock::Clock,
    evaluate::{Evaluator, TargetVerdict},
    observe::{prober::HttpProber, request::RequestTemplate, signals::Usage},
    plan::{self, LadderState, Plan},
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
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "{}. {} (wait {})",
                i + 1,
                s.action.as_str(),
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
        format_duration(settings.cooldown),
        if settings.dry_run { ", dry run" } else { "" },
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

/// Runs the check, writing a line per probe and per decision to `out`.
pub async fn run(
    policy: &AppHealthPolicy,
    options: &CheckOptions,
    clock: Arc<dyn Clock>,
    out: &mut (dyn Write + Send),
) -> Result<CheckReport> {
    let settings = validate::validate(&policy.spec)?;
    let period = options.period.unwrap_or(settings.probe.period);
    let name = policy.metadata.name.clone().unwrap_or_default();
    let target = format!(
        "{} {}",
        policy.spec.target_ref.kind.as_str(),
        policy.spec.target_ref.name
    );
    let prober = HttpProber::new()?;
    // Header values and CA bundles from Secrets or ConfigMaps cannot be read without a cluster:
    // check mode sends only the headers written in the policy and trusts the system roots.
    let request = RequestTemplate::literal(&settings.probe).request_for_url(&options.url, &options.url);
    let mut evaluator = Evaluator::new(&settings);
    let mut ladder = LadderState::default();
    let mut report = CheckReport::default();
    let mut last: Option<TargetVerdict> = None;
    let mut last_decision = String::new();

    let io = |e: std::io::Error| Error::Usage(format!("could not write output: {e}"));
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

    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while options.probes.is_none_or(|max| report.probes < max) {
        ticks.tick().await;
        let sample = prober.probe(&request, clock.as_ref()).await;
        report.probes += 1;
        evaluator.observe(&sample);
        let now = clock.now();
        evaluator.observe_signals(
            now,
            &[],
            &Usage::Unavailable("check mode reads nothing from a cluster".into()),
        );
        let verdict = evaluator.verdict(now);
        writeln!(
            out,
            "{}  {:<4} {:<40} {:>6}ms",
            sample.at.strftime("%H:%M:%S"),
            if sample.ok { "ok" } else { "FAIL" },
            sample.detail,
            sample.latency.as_millis()
        )
        .map_err(io)?;
        if last.as_ref().is_none_or(|l| verdict.differs_from(l)) && verdict.health != Health::Unknown {
            writeln!(
                out,
                "verdict: {} — {}",
                verdict.health.as_str(),
                verdict.summary()
            )
            .map_err(io)?;
            report.verdicts.push(verdict.health);
        }
        let decision = match plan::plan(&settings, verdict.health, &ladder, now) {
            Plan::Idle => String::new(),
            Plan::Recovered { step } => {
                ladder.step = None;
                format!("recovered after step {step}; the ladder is closed")
            }
            Plan::Wait { step, until } => match until {
                Some(until) => format!(
                    "waiting for recovery after step {step} until {}",
                    until.strftime("%H:%M:%S")
                ),
                None => format!("waiting for a verdict after step {step}"),
            },
            Plan::Act { step, action } => {
                // Pretend it ran, so the printout shows the ladder and guards as the operator would.
                ladder.step = Some(step);
                ladder.last_action_at = Some(now);
                format!(
                    "would run {} (step {step} of {}) on {target}: {}",
                    action.as_str(),
                    settings.steps.len(),
                    "check mode never acts"
                )
            }
            Plan::Blocked { reason, message, .. } => format!("held back ({reason}): {message}"),
        };
        if !decision.is_empty() && decision != last_decision {
            writeln!(out, "plan: {decision}").map_err(io)?;
            report.decisions.push(decision.clone());
        }
        last_decision = decision;
        last = Some(verdict);
    }
    Ok(report)
}
