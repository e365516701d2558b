//! Detection and reaction latency: one pod of a Deployment starts answering 503 at t0; when does
//! the operator write `Healthy=False`, and when does its eviction of that pod reach the API
//! server? Many trials, with 1,000 pods and with 10, so that a detection time that grows with the
//! workload would show.
//!
//! Times are taken in the bench process: t0 just before the farm is told to fail the pod, the
//! arrival of the operator's requests from the test server's request hook (called as a request
//! comes in, before it is served).

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use serde_json::json;

use super::{Ctx, Setup, start_over};
use crate::{
    Result,
    cluster::{Cluster, NS},
    farm::{self, Farm},
    report::{Outcome, Row, Section, num},
};

const POLICY: &str = "web";
const PERIOD_SECONDS: u64 = 1;
const THRESHOLD: u64 = 3;
const TIMEOUT_SECONDS: u64 = 1;
/// How often the bench reads the policy's conditions from the test server's store.
const POLL: Duration = Duration::from_millis(5);
/// The longest a trial may take to detect, to act, and to settle again.
const PATIENCE: Duration = Duration::from_secs(60);

/// The goals of issue 8: detection within `period × threshold + timeout + 1 s`, the remediation
/// request within 500 ms of the verdict.
pub fn goal_detection() -> Duration {
    Duration::from_secs(PERIOD_SECONDS * THRESHOLD + TIMEOUT_SECONDS + 1)
}
pub const GOAL_REACTION: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy)]
struct Case {
    pods: usize,
    trials: usize,
}

impl Case {
    fn id(&self) -> String {
        format!("{}", self.pods)
    }
}

/// Every trial fails a different pod, spread over the Deployment.
const CASES: [Case; 2] = [
    Case {
        pods: 1_000,
        trials: 50,
    },
    Case { pods: 10, trials: 20 },
];

/// What one trial measured.
#[derive(Debug, Clone, Copy)]
struct Trial {
    /// t0 → the status write that set `Healthy=False` reached the API server.
    detection: Duration,
    /// That write → the eviction of the failed pod reached the API server.
    reaction: Duration,
}

/// What the request hook saw: when the policy's status was written, when a pod was evicted.
#[derive(Debug, Clone)]
enum Arrival {
    StatusWrite(Instant),
    Eviction(Instant, String),
}

type Arrivals = Arc<Mutex<Vec<Arrival>>>;

pub async fn run(ctx: &Ctx, only: Option<&str>) -> Section {
    let mut section = Section {
        title: "Detection and reaction".into(),
        ..Section::default()
    };
    let mut details = String::from(
        "| Pods | Trials | Detection p50 / p90 / p99 / max | Reaction p50 / p90 / p99 / max | Trials that failed |\n\
         |---|---|---|---|---|\n",
    );
    for case in CASES {
        let id = case.id();
        if only.is_some_and(|o| o != id) {
            continue;
        }
        let trials = if ctx.quick {
            case.trials.min(5)
        } else {
            case.trials
        };
        let case = Case { trials, ..case };
        let command = ctx.command(&format!("latency --only {id}"));
        eprintln!(
            "bench: latency {id}: {} trials over {} pods",
            case.trials, case.pods
        );
        match measure(ctx, case).await {
            Ok((trials, failures)) => {
                rows(&mut section.rows, case, &trials, &failures, &command);
                let detection: Vec<Duration> = trials.iter().map(|t| t.detection).collect();
                let reaction: Vec<Duration> = trials.iter().map(|t| t.reaction).collect();
                let _ = writeln!(
                    details,
                    "| {} | {} | {} | {} | {} |",
                    num(case.pods as f64, 0),
                    trials.len(),
                    spread(&detection),
                    spread(&reaction),
                    if failures.is_empty() {
                        "0".to_string()
                    } else {
                        format!("{}: {}", failures.len(), failures.join("; "))
                    }
                );
            }
            Err(e) => {
                eprintln!("bench: latency {id} failed: {e}");
                section.rows.push(Row {
                    figure: format!("Detection and reaction, {} pods: the run", case.pods),
                    goal: "completes".into(),
                    measured: format!("failed: {e}"),
                    peer: String::new(),
                    outcome: Outcome::Missed,
                    command,
                });
            }
        }
    }
    section.details = details;
    section.notes = vec![
        format!(
            "Each case: a fresh test server, one Deployment of N ready pods on farm targets and one policy \
             over it probing every {PERIOD_SECONDS} s (timeout {TIMEOUT_SECONDS} s), `consecutiveFailures: \
             {THRESHOLD}`, `consecutiveSuccesses: 2`, and one real step, `RestartPods` (cooldown 0s, storm \
             guard 50 %). Goal for detection: period × threshold + timeout + 1 s = {} s.",
            goal_detection().as_secs()
        ),
        "A trial: t0 is taken just before the farm is told to answer 503 for one pod (a different pod each \
         trial, spread over the Deployment). Detection ends when the status write that set `Healthy=False` \
         reaches the API server; reaction ends when the eviction of that pod reaches it. Arrival times come \
         from the test server's request hook (called before a request is served); which status write set \
         `Healthy=False` is found by reading the policy from the store every 5 ms. Then the pod answers 200 \
         again, its replacement is created at the same address (what its ReplicaSet would do), and the next \
         trial waits until the policy is `Healthy=True` and no longer remediating."
            .into(),
        "Between t0 and the first failed probe lies up to one period (where the pod's phase falls), so \
         detection is spread over [(threshold − 1) × period, threshold × period] plus the probe's answer \
         and the controller's 200 ms debounce. Reaction includes publishing the Events that say what is \
         about to happen (they are sent before the action)."
            .into(),
        "Each trial's figures are in `target/bench/latency-N/trials.csv`.".into(),
    ];
    section
}

fn rows(rows: &mut Vec<Row>, case: Case, trials: &[Trial], failures: &[String], command: &str) {
    let what = format!(
        "One pod of a {}-pod Deployment turns 503 ({} trials{})",
        num(case.pods as f64, 0),
        trials.len(),
        if failures.is_empty() {
            String::new()
        } else {
            format!(", {} failed", failures.len())
        }
    );
    let detection: Vec<Duration> = trials.iter().map(|t| t.detection).collect();
    let reaction: Vec<Duration> = trials.iter().map(|t| t.reaction).collect();
    let goal = goal_detection();
    let p99 = |v: &[Duration]| quantile(v, 0.99);
    rows.push(Row {
        figure: format!("{what}: t0 → `Healthy=False` written, p99"),
        goal: format!("≤ {} s", goal.as_secs()),
        measured: format!(
            "{} (p50 {})",
            secs(p99(&detection)),
            secs(quantile(&detection, 0.5))
        ),
        peer: "kubelet liveness default: 30 s; App Service health check: 2–10 min".into(),
        outcome: Outcome::from(failures.is_empty() && p99(&detection).is_some_and(|d| d <= goal)),
        command: command.into(),
    });
    rows.push(Row {
        figure: format!("{what}: `Healthy=False` → eviction request at the API server, p99"),
        goal: format!("≤ {} ms", GOAL_REACTION.as_millis()),
        measured: format!(
            "{} (p50 {})",
            millis(p99(&reaction)),
            millis(quantile(&reaction, 0.5))
        ),
        peer: String::new(),
        outcome: Outcome::from(failures.is_empty() && p99(&reaction).is_some_and(|d| d <= GOAL_REACTION)),
        command: command.into(),
    });
}

/// Starts the operator over one Deployment of `case.pods` pods and runs the trials; returns the
/// trials that completed and why the others did not.
async fn measure(ctx: &Ctx, case: Case) -> Result<(Vec<Trial>, Vec<String>)> {
    let dir = ctx.case_dir(&format!("latency-{}", case.id()))?;
    let setup = Setup {
        pods: case.pods,
        policies: 1,
        create: &|cluster: &Cluster, farm: &Farm| create(cluster, farm, case.pods),
    };
    let running = start_over(ctx, &format!("latency-{}", case.id()), &setup).await?;
    let cluster = &running.cluster;
    let arrivals: Arrivals = Arc::default();
    {
        let arrivals = arrivals.clone();
        let status_path = format!("/namespaces/{NS}/apphealthpolicies/{POLICY}/status");
        cluster.server.set_fault_hook(move |r| {
            let now = Instant::now();
            let seen = if r.method == "PATCH" && r.path.ends_with(&status_path) {
                Some(Arrival::StatusWrite(now))
            } else if r.method == "POST" && r.path.ends_with("/eviction") {
                let pod = r.path.rsplit('/').nth(1).unwrap_or_default().to_string();
                Some(Arrival::Eviction(now, pod))
            } else {
                None
            };
            if let Some(seen) = seen {
                arrivals.lock().unwrap_or_else(PoisonError::into_inner).push(seen);
            }
            None
        });
    }
    settle(cluster).await?;
    // The pods by name and farm target; a replaced pod keeps its target under a new name.
    let mut pods: Vec<String> = (0..case.pods).map(pod_name).collect();
    let mut trials = Vec::new();
    let mut failures = Vec::new();
    let mut csv = String::from("trial,pod,detection_ms,reaction_ms\n");
    for n in 0..case.trials {
        // Spread over the Deployment: a stride coprime with the pod count.
        let target = (n * 7919 + 13) % case.pods;
        let pod = pods[target].clone();
        match trial(cluster, &ctx.farm, &arrivals, &pod, target).await {
            Ok(t) => {
                let _ = writeln!(
                    csv,
                    "{n},{pod},{:.1},{:.1}",
                    t.detection.as_secs_f64() * 1000.0,
                    t.reaction.as_secs_f64() * 1000.0
                );
                trials.push(t);
            }
            Err(e) => {
                eprintln!("bench: latency trial {n} ({pod}): {e}");
                failures.push(format!("trial {n} ({pod}): {e}"));
            }
        }
        ctx.farm.set_failing(target, false).await?;
        pods[target] = replace_pod(cluster, &ctx.farm, &pod, target, n)?;
        settle(cluster).await?;
    }
    super::write_file(&dir.join("trials.csv"), &csv)?;
    running.operator.process.stop();
    Ok((trials, failures))
}

fn pod_name(i: usize) -> String {
    format!("{POLICY}-{i:05}")
}

fn create(cluster: &Cluster, farm: &Farm, pods: usize) -> Result<()> {
    cluster.add_deployment(POLICY, pods, farm.port())?;
    for i in 0..pods {
        cluster.add_pod(&pod_name(i), POLICY, farm::address(i)?, farm.port())?;
    }
    cluster.add_policy_with(
        POLICY,
        json!({
            "targetRef": {"kind": "Deployment", "name": POLICY},
            "probe": {"http": {"port": "http", "path": "/healthz", "timeoutSeconds": TIMEOUT_SECONDS},
                      "periodSeconds": PERIOD_SECONDS},
            "triggers": [{"consecutiveFailures": {"threshold": THRESHOLD}}],
            "recovery": {"consecutiveSuccesses": 2},
            "remediation": {
                "steps": [{"action": "RestartPods", "timeout": "1m"}],
                "cooldown": "0s",
                "maxUnhealthyPercent": 50
            }
        }),
    )
}

/// The evicted pod's replacement, at the same farm target (as its ReplicaSet would make it).
fn replace_pod(cluster: &Cluster, farm: &Farm, old: &str, target: usize, trial: usize) -> Result<String> {
    // The eviction deleted it; a trial that failed before the eviction leaves it to be removed here.
    let _ = cluster.server.delete("v1", "Pod", Some(NS), old);
    let name = format!("{}-r{trial}", pod_name(target));
    cluster.add_pod(&name, POLICY, farm::address(target)?, farm.port())?;
    Ok(name)
}

/// Waits until the policy is `Healthy=True` and not remediating.
async fn settle(cluster: &Cluster) -> Result<()> {
    let started = Instant::now();
    loop {
        let healthy = cluster.condition(POLICY, "Healthy");
        let remediating = cluster.condition(POLICY, "Remediating");
        if healthy.as_deref() == Some("True") && remediating.as_deref() != Some("True") {
            return Ok(());
        }
        if started.elapsed() > PATIENCE {
            return Err(format!(
                "the policy did not settle within {} s (Healthy {healthy:?}, Remediating {remediating:?})",
                PATIENCE.as_secs()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fails `pod` (farm target `target`) and measures until its eviction reaches the API server.
async fn trial(
    cluster: &Cluster,
    farm: &Farm,
    arrivals: &Arrivals,
    pod: &str,
    target: usize,
) -> Result<Trial> {
    arrivals.lock().unwrap_or_else(PoisonError::into_inner).clear();
    let t0 = Instant::now();
    farm.set_failing(target, true).await?;
    let flipped = loop {
        let unhealthy = cluster.condition(POLICY, "Healthy").as_deref() == Some("False");
        // Taken after the read: every write the read saw arrived before it.
        let now = Instant::now();
        if unhealthy {
            break now;
        }
        if now - t0 > PATIENCE {
            return Err(format!("no Healthy=False within {} s", PATIENCE.as_secs()).into());
        }
        tokio::time::sleep(POLL).await;
    };
    let evicted = loop {
        let seen = arrivals.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(at) = seen.iter().find_map(|a| match a {
            Arrival::Eviction(at, p) if p == pod => Some(*at),
            _ => None,
        }) {
            break (at, seen);
        }
        if t0.elapsed() > PATIENCE {
            return Err(format!("{pod} was not evicted within {} s", PATIENCE.as_secs()).into());
        }
        tokio::time::sleep(POLL).await;
    };
    let (evicted_at, seen) = evicted;
    let written =
        detection_write(&seen, flipped, evicted_at).ok_or("no status write before Healthy=False was read")?;
    Ok(Trial {
        detection: written.saturating_duration_since(t0),
        reaction: evicted_at.saturating_duration_since(written),
    })
}

/// Which status write set `Healthy=False`: the latest that arrived before the store was seen with
/// it and before the eviction (the operator records its intent, with the verdict, before it acts;
/// the write after the eviction records the outcome).
fn detection_write(seen: &[Arrival], flipped: Instant, evicted: Instant) -> Option<Instant> {
    let cutoff = flipped.min(evicted);
    seen.iter()
        .filter_map(|a| match a {
            Arrival::StatusWrite(at) if *at <= cutoff => Some(*at),
            _ => None,
        })
        .max()
}

/// The nearest-rank quantile (None for no values).
fn quantile(values: &[Duration], q: f64) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("n/a".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

fn millis(d: Option<Duration>) -> String {
    d.map_or("n/a".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
}

fn spread(values: &[Duration]) -> String {
    if values.is_empty() {
        return "n/a".into();
    }
    let ms = |q: f64| quantile(values, q).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    format!(
        "{:.0} / {:.0} / {:.0} / {:.0} ms",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(1.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&v, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&v, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(quantile(&[], 0.5), None);
        let one = [Duration::from_millis(7)];
        assert_eq!(quantile(&one, 0.99), Some(Duration::from_millis(7)));
    }

    #[test]
    fn the_detection_write_is_the_intent_not_the_outcome() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        let seen = vec![
            Arrival::StatusWrite(at(10)),  // an earlier write (the first failed probe)
            Arrival::StatusWrite(at(100)), // the intent: Healthy=False, about to evict
            Arrival::Eviction(at(110), "web-00001".into()),
            Arrival::StatusWrite(at(120)), // the outcome
        ];
        // The store was read late, after the outcome write.
        assert_eq!(detection_write(&seen, at(130), at(110)), Some(at(100)));
        // Read in time: the latest write before the read.
        assert_eq!(detection_write(&seen, at(105), at(110)), Some(at(100)));
        assert_eq!(detection_write(&seen, at(5), at(110)), None);
    }
}
