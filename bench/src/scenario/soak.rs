//! Soak: 1,000 policies over 2,000 pods whose targets fail at random, for ten minutes at a short
//! period, with a real remediation ladder. Evicted pods are replaced (as their ReplicaSet would),
//! failures heal on their own. Does RSS stay flat, does every probe round happen, does every
//! ladder end, is any action repeated or taken against a pod that never failed?

use std::{
    collections::HashMap,
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
    report::{Outcome, Row, Section, mib, num},
};

const POLICIES: usize = 1_000;
const PODS_PER_POLICY: usize = 2;
const PERIOD_SECONDS: u64 = 2;
const RUN: Duration = Duration::from_secs(600);
const QUICK_RUN: Duration = Duration::from_secs(120);
/// RSS is read this often; the slope is fitted over the second half of the run.
const SAMPLE: Duration = Duration::from_secs(10);
/// Each second, each healthy target starts failing with this probability…
const FAIL_PROBABILITY: f64 = 0.001;
/// …for this long (uniform, seconds).
const FAIL_FOR: (u64, u64) = (4, 30);
/// An eviction of a pod whose target had not failed within this long before it is a wrong action.
const BLAME_WINDOW: Duration = Duration::from_secs(60);
/// How long every ladder may take to end once every target is healed.
const SETTLE: Duration = Duration::from_secs(180);

/// A deterministic generator (xorshift64*): the same draws every run (which targets they fail
/// depends on which are healthy at the time).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// What the soak measured.
struct Soak {
    minutes: f64,
    /// (minutes since start, RSS KiB)
    rss: Vec<(f64, u64)>,
    failures_started: usize,
    evictions: usize,
    evicted_twice: usize,
    wrong_evictions: usize,
    rollout_restarts: usize,
    due: f64,
    probed: f64,
    skipped: f64,
    delayed: f64,
    lag_p99_ms: Option<f64>,
    stuck: usize,
    cpu_cores: f64,
}

pub async fn run(ctx: &Ctx, only: Option<&str>) -> Section {
    let mut section = Section {
        title: "Soak".into(),
        ..Section::default()
    };
    let id = format!("{POLICIES}");
    if only.is_some_and(|o| o != id) {
        return section;
    }
    let run_for = if ctx.quick { QUICK_RUN } else { RUN };
    let command = ctx.command(&format!("soak --only {id}"));
    eprintln!(
        "bench: soak {id}: {POLICIES} policies over {} pods failing at random, {} min",
        POLICIES * PODS_PER_POLICY,
        run_for.as_secs() / 60
    );
    match soak(ctx, run_for).await {
        Ok(s) => {
            let what = format!(
                "Soak, {} policies over {} pods failing at random, {:.0} min at a {PERIOD_SECONDS} s period",
                num(POLICIES as f64, 0),
                num((POLICIES * PODS_PER_POLICY) as f64, 0),
                s.minutes
            );
            section.rows.extend(rows(&s, &what, &command));
            let mut details = String::from("| Minute | RSS |\n|---|---|\n");
            for (minute, kib) in s.rss.iter().step_by(6) {
                let _ = writeln!(details, "| {minute:.1} | {} |", mib(*kib));
            }
            section.details = details;
            section.notes = notes(&s);
        }
        Err(e) => {
            eprintln!("bench: soak failed: {e}");
            section.rows.push(Row {
                figure: "Soak: the run".into(),
                goal: "completes".into(),
                measured: format!("failed: {e}"),
                peer: String::new(),
                outcome: Outcome::Missed,
                command,
            });
        }
    }
    section
}

/// The soak's figures, each judged.
fn rows(s: &Soak, what: &str, command: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let (slope, last) = (slope(&s.rss), s.rss.last().map_or(0, |r| r.1));
    let growth = slope * (s.minutes / 2.0);
    rows.push(Row {
        figure: format!("{what}: RSS over the second half"),
        goal: "flat (grows < 5 %)".into(),
        measured: format!(
            "slope {} KiB/min ({} over the half; RSS at the end {})",
            num(slope, 1),
            mib(growth.max(0.0) as u64),
            mib(last)
        ),
        peer: String::new(),
        outcome: Outcome::from(growth < 0.05 * last as f64),
        command: command.to_owned(),
    });
    rows.push(Row {
        figure: format!("{what}: probe rounds missed"),
        goal: "0 skipped; achieved ≥ 99 % of due".into(),
        measured: format!(
            "{} skipped, {} delayed; {} of {} due ({:.1} %); p99 lag {}",
            num(s.skipped, 0),
            num(s.delayed, 0),
            num(s.probed, 0),
            num(s.due, 0),
            100.0 * s.probed / s.due.max(1.0),
            s.lag_p99_ms.map_or("n/a".into(), |l| format!("{l:.1} ms"))
        ),
        peer: String::new(),
        outcome: Outcome::from(s.skipped == 0.0 && s.probed >= 0.99 * s.due),
        command: command.to_owned(),
    });
    rows.push(Row {
        figure: format!(
            "{what}: ladders still open {} s after every target healed",
            SETTLE.as_secs()
        ),
        goal: "0".into(),
        measured: num(s.stuck as f64, 0),
        peer: String::new(),
        outcome: Outcome::from(s.stuck == 0),
        command: command.to_owned(),
    });
    rows.push(Row {
        figure: format!("{what}: repeated or wrong actions"),
        goal: "0".into(),
        measured: format!(
            "{} pods evicted twice, {} evictions of pods that had not failed; {} evictions, {} rolling restarts in all",
            s.evicted_twice, s.wrong_evictions, s.evictions, s.rollout_restarts
        ),
        peer: String::new(),
        outcome: Outcome::from(s.evicted_twice == 0 && s.wrong_evictions == 0),
        command: command.to_owned(),
    });
    rows
}

/// What the soak runs and how its figures are read.
fn notes(s: &Soak) -> Vec<String> {
    vec![
        format!(
            "{POLICIES} policies, each over a Deployment of {PODS_PER_POLICY} ready pods on farm targets, \
             probing every {PERIOD_SECONDS} s (`consecutiveFailures: 3`), ladder `RestartPods` (20 s) → \
             `RolloutRestart` (1 m), cooldown 10 s. Each second each healthy target starts answering \
             503 with probability {FAIL_PROBABILITY} for {}–{} s (a seeded generator, though \
             which targets are healthy to fail depends on timing, so the count varies a little \
             between runs); {} failures started. An evicted pod is replaced at once by a \
             new pod at the same address that answers 200 (what its ReplicaSet would do).",
            FAIL_FOR.0, FAIL_FOR.1, s.failures_started
        ),
        format!(
            "RSS read every {} s; the slope is a least-squares fit over the second half. Probes: \
             farm requests against the due count (targets × run ÷ period). An eviction is wrong \
             when its pod's target had not failed within {} s before it. After the run every \
             target is healed and every policy must be `Healthy=True` and not remediating within \
             {} s. The operator used {} cores on average.",
            SAMPLE.as_secs(),
            BLAME_WINDOW.as_secs(),
            SETTLE.as_secs(),
            num(s.cpu_cores, 3)
        ),
    ]
}

fn app(i: usize) -> String {
    format!("soak-{i:04}")
}

fn create(cluster: &Cluster, farm: &Farm) -> Result<()> {
    for i in 0..POLICIES {
        let app = app(i);
        cluster.add_deployment(&app, PODS_PER_POLICY, farm.port())?;
        for j in 0..PODS_PER_POLICY {
            let target = i * PODS_PER_POLICY + j;
            cluster.add_pod(&format!("{app}-{j}"), &app, farm::address(target)?, farm.port())?;
        }
        cluster.add_policy_with(
            &app,
            json!({
                "targetRef": {"kind": "Deployment", "name": app},
                "probe": {"http": {"port": "http", "path": "/healthz", "timeoutSeconds": 1},
                          "periodSeconds": PERIOD_SECONDS},
                "triggers": [{"consecutiveFailures": {"threshold": 3}}],
                "recovery": {"consecutiveSuccesses": 2},
                "remediation": {
                    "steps": [{"action": "RestartPods", "timeout": "20s"},
                              {"action": "RolloutRestart", "timeout": "1m"}],
                    "cooldown": "10s"
                }
            }),
        )?;
    }
    Ok(())
}

/// Random failures of the farm's targets: which fail now (until when), and every failure so far.
struct Chaos {
    rng: Rng,
    failing: HashMap<usize, Instant>,
    /// Every failure: target → (from, until).
    failures: HashMap<usize, Vec<(Instant, Instant)>>,
    started: usize,
}

impl Chaos {
    /// Heals the failures whose time came and starts new ones.
    async fn step(&mut self, farm: &Farm, targets: usize, now: Instant) -> Result<()> {
        let healed: Vec<usize> = self
            .failing
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in healed {
            self.failing.remove(&t);
            farm.set_failing(t, false).await?;
        }
        for t in 0..targets {
            if !self.failing.contains_key(&t) && self.rng.chance(FAIL_PROBABILITY) {
                let secs = self.rng.between(FAIL_FOR.0, FAIL_FOR.1);
                let until = now + Duration::from_secs(secs);
                self.failing.insert(t, until);
                self.failures.entry(t).or_default().push((now, until));
                self.started += 1;
                farm.set_failing(t, true).await?;
            }
        }
        Ok(())
    }
}

/// Evictions as the API server saw them: when, and which pod.
type Evictions = Arc<Mutex<Vec<(Instant, String)>>>;

async fn soak(ctx: &Ctx, run_for: Duration) -> Result<Soak> {
    let targets = POLICIES * PODS_PER_POLICY;
    let setup = Setup {
        pods: targets,
        policies: POLICIES,
        create: &create,
    };
    let mut running = start_over(ctx, &format!("soak-{POLICIES}"), &setup).await?;
    let evictions: Evictions = Arc::default();
    {
        let evictions = evictions.clone();
        running.cluster.server.set_fault_hook(move |r| {
            if r.method == "POST" && r.path.ends_with("/eviction") {
                let pod = r.path.rsplit('/').nth(1).unwrap_or_default().to_string();
                evictions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((Instant::now(), pod));
            }
            None
        });
    }
    // Which target each current pod stands on, and when each target last failed.
    let mut pod_target: HashMap<String, usize> = (0..targets)
        .map(|t| (format!("{}-{}", app(t / PODS_PER_POLICY), t % PODS_PER_POLICY), t))
        .collect();
    let mut chaos = Chaos {
        rng: Rng(0x9E37_79B9_7F4A_7C15),
        failing: HashMap::new(),
        failures: HashMap::new(),
        started: 0,
    };
    let started = Instant::now();
    let first = running.operator.snapshot(Some(&ctx.farm)).await?;
    let mut rss = Vec::new();
    let mut next_sample = started;
    let mut replacements = 0usize;
    while started.elapsed() < run_for {
        let now = Instant::now();
        chaos.step(&ctx.farm, targets, now).await?;
        replacements +=
            replace_evicted(&running.cluster, &ctx.farm, &mut pod_target, &mut chaos.failing).await?;
        if now >= next_sample {
            running.operator.process.check_running()?;
            rss.push((
                started.elapsed().as_secs_f64() / 60.0,
                running.operator.memory()?.rss_kib,
            ));
            next_sample += SAMPLE;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let last = running.operator.snapshot(Some(&ctx.farm)).await?;
    let seconds = (last.at - first.at).as_secs_f64();
    let window = super::Window::between(&first, &last, targets, running.operator.memory()?);
    // Heal everything and let every ladder end.
    ctx.farm.heal_all().await?;
    chaos.failing.clear();
    let stuck = settle(&running.cluster, &ctx.farm, &mut pod_target, &mut chaos.failing).await?;
    eprintln!("bench: soak: {replacements} pods replaced, {stuck} ladders still open");
    let seen = evictions.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let (evicted_twice, wrong) = judge_evictions(&seen, &chaos.failures);
    let requests = running.cluster.server.requests();
    let log: String = requests
        .iter()
        .filter(|r| r.path.ends_with("/eviction") || r.path.contains("/deployments/"))
        .map(|r| format!("{} {} {}\n", r.status, r.method, r.path))
        .collect();
    super::write_file(
        &ctx.case_dir(&format!("soak-{POLICIES}"))?.join("actions.log"),
        &log,
    )?;
    let rollout_restarts = requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/deployments/") && !r.path.ends_with("/scale"))
        .count();
    running.operator.process.stop();
    Ok(Soak {
        minutes: seconds / 60.0,
        rss,
        failures_started: chaos.started,
        evictions: seen.len(),
        evicted_twice,
        wrong_evictions: wrong,
        rollout_restarts,
        due: targets as f64 * seconds / PERIOD_SECONDS as f64,
        probed: window.probes,
        skipped: window.skipped.unwrap_or(0.0),
        delayed: window.delayed.unwrap_or(0.0),
        lag_p99_ms: window.lag_ms(0.99),
        stuck,
        cpu_cores: window.cores(),
    })
}

/// Replaces evicted pods: a new pod at the same address, answering 200. Returns how many.
async fn replace_evicted(
    cluster: &Cluster,
    farm: &Farm,
    pod_target: &mut HashMap<String, usize>,
    failing: &mut HashMap<usize, Instant>,
) -> Result<usize> {
    let present: std::collections::HashSet<String> = cluster
        .server
        .list("v1", "Pod", Some(NS))
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let gone: Vec<(String, usize)> = pod_target
        .iter()
        .filter(|(name, _)| !present.contains(*name))
        .map(|(n, t)| (n.clone(), *t))
        .collect();
    for (name, target) in &gone {
        pod_target.remove(name);
        failing.remove(target);
        farm.set_failing(*target, false).await?;
        let new = replacement(name, *target);
        cluster.add_pod(
            &new,
            &app(target / PODS_PER_POLICY),
            farm::address(*target)?,
            farm.port(),
        )?;
        pod_target.insert(new, *target);
    }
    Ok(gone.len())
}

/// The name of the pod that replaces `name` on `target`: `soak-IIII-J-rN`, N one more than the
/// last (every incarnation has a name of its own).
fn replacement(name: &str, target: usize) -> String {
    format!(
        "{}-{}-r{}",
        app(target / PODS_PER_POLICY),
        target % PODS_PER_POLICY,
        next_suffix(name)
    )
}

/// A pod's replacement number: one more than the last.
fn next_suffix(name: &str) -> u32 {
    name.rsplit('-')
        .next()
        .and_then(|s| s.strip_prefix('r'))
        .and_then(|n| n.parse::<u32>().ok())
        .map_or(1, |n| n + 1)
}

/// Waits until every policy is `Healthy=True` and not remediating (replacing evicted pods
/// meanwhile); returns how many are not.
async fn settle(
    cluster: &Cluster,
    farm: &Farm,
    pod_target: &mut HashMap<String, usize>,
    failing: &mut HashMap<usize, Instant>,
) -> Result<usize> {
    let started = Instant::now();
    loop {
        replace_evicted(cluster, farm, pod_target, failing).await?;
        let open = cluster
            .server
            .list("apphealth.io/v1alpha1", "AppHealthPolicy", Some(NS))
            .iter()
            .filter(|p| {
                let condition = |t: &str| {
                    p["status"]["conditions"]
                        .as_array()
                        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
                        .and_then(|c| c["status"].as_str())
                        .map(str::to_string)
                };
                condition("Healthy").as_deref() != Some("True")
                    || condition("Remediating").as_deref() == Some("True")
            })
            .count();
        if open == 0 || started.elapsed() > SETTLE {
            return Ok(open);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The target of a pod named `soak-IIII-J[-rN]`.
fn target_of(pod: &str) -> Option<usize> {
    let mut parts = pod.strip_prefix("soak-")?.split('-');
    let policy: usize = parts.next()?.parse().ok()?;
    let slot: usize = parts.next()?.parse().ok()?;
    Some(policy * PODS_PER_POLICY + slot)
}

/// Pods evicted more than once, and evictions of pods whose target had not been failing within
/// the blame window before (a failure the bench healed early, when it replaced the pod, still
/// counts until its planned end: the operator decided while it lasted).
fn judge_evictions(
    seen: &[(Instant, String)],
    failures: &HashMap<usize, Vec<(Instant, Instant)>>,
) -> (usize, usize) {
    let mut per_pod: HashMap<&str, usize> = HashMap::new();
    let mut wrong = 0;
    for (at, pod) in seen {
        *per_pod.entry(pod).or_default() += 1;
        let blamed = target_of(pod)
            .and_then(|t| failures.get(&t))
            .is_some_and(|spans| {
                spans
                    .iter()
                    .any(|(from, until)| *from <= *at && at.saturating_duration_since(*until) <= BLAME_WINDOW)
            });
        if !blamed {
            wrong += 1;
        }
    }
    (per_pod.values().filter(|n| **n > 1).count(), wrong)
}

/// Least-squares slope of RSS (KiB per minute) over the second half of the samples.
fn slope(samples: &[(f64, u64)]) -> f64 {
    let half = &samples[samples.len() / 2..];
    let n = half.len() as f64;
    if half.len() < 2 {
        return 0.0;
    }
    let mean_x = half.iter().map(|s| s.0).sum::<f64>() / n;
    let mean_y = half.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let cov: f64 = half.iter().map(|s| (s.0 - mean_x) * (s.1 as f64 - mean_y)).sum();
    let var: f64 = half.iter().map(|s| (s.0 - mean_x).powi(2)).sum();
    if var == 0.0 { 0.0 } else { cov / var }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slope_is_fitted_over_the_second_half() {
        // Flat, then rising 100 KiB a minute in the second half.
        let samples: Vec<(f64, u64)> = (0..10)
            .map(|m| {
                (
                    m as f64,
                    if m < 5 {
                        5_000
                    } else {
                        5_000 + 100 * (m - 5) as u64
                    },
                )
            })
            .collect();
        assert!((slope(&samples) - 100.0).abs() < 1e-9);
        assert_eq!(slope(&[(0.0, 1)]), 0.0);
    }

    #[test]
    fn pods_name_their_targets_and_replacements_count_up() {
        assert_eq!(target_of("soak-0007-1"), Some(15));
        assert_eq!(target_of("soak-0007-1-r3"), Some(15));
        assert_eq!(target_of("web-1"), None);
        assert_eq!(next_suffix("soak-0007-1"), 1);
        assert_eq!(next_suffix("soak-0007-1-r3"), 4);
        // Every incarnation has a name of its own, on the same target.
        let first = replacement("soak-0007-1", 15);
        let second = replacement(&first, 15);
        assert_eq!(
            (first.as_str(), second.as_str()),
            ("soak-0007-1-r1", "soak-0007-1-r2")
        );
        assert_eq!(target_of(&second), Some(15));
    }

    #[test]
    fn evictions_are_judged_against_failures_and_repeats() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let seen = vec![
            (at(100), "soak-0000-0".to_string()),
            (at(200), "soak-0000-1".to_string()),
            (at(300), "soak-0000-1".to_string()),
        ];
        // Target 0 was failing when evicted; target 1's failure ended long before its evictions.
        let failures = HashMap::from([(0, vec![(at(90), at(120))]), (1, vec![(at(5), at(10))])]);
        assert_eq!(judge_evictions(&seen, &failures), (1, 2));
        // An eviction within the window after a failure ended is blamed on it.
        let late = vec![(at(150), "soak-0000-0".to_string())];
        assert_eq!(judge_evictions(&late, &failures), (0, 0));
    }

    #[test]
    fn the_generator_is_seeded() {
        let (mut a, mut b) = (Rng(7), Rng(7));
        assert!((0..100).all(|_| a.next() == b.next()));
        let mut r = Rng(7);
        assert!((0..1000).all(|_| (4..=30).contains(&r.between(4, 30))));
    }
}
