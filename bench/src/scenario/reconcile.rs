//! Reconcile throughput: 10,000 policies over one Deployment, all healthy and settled; one change
//! to the Deployment wakes every one of them, and none has anything to write. How many of these
//! no-op reconciles does the operator get through per second, with its default bound on
//! concurrent reconciles?

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use super::{Ctx, Setup, start_over};
use crate::{
    Result,
    cluster::{Cluster, NS},
    farm::{self, Farm},
    operator::Operator,
    report::{Outcome, Row, Section, num},
};

const POLICIES: usize = 10_000;
const TARGET: &str = "web";
/// Long enough that probing (every policy probes the one pod) stays a small background load.
const PERIOD_SECONDS: u64 = 30;
const BURSTS: usize = 3;
/// How often /metrics is read during a burst (each read is a few MB with 10,000 policies, so not
/// too often: it costs the operator CPU).
const SCRAPE: Duration = Duration::from_millis(200);
const BURST_PATIENCE: Duration = Duration::from_secs(120);
pub const GOAL_PER_SECOND: f64 = 1_000.0;

const RECONCILES: &str = "apphealth_reconcile_duration_seconds_count";
const DURATION: &str = "apphealth_reconcile_duration_seconds";

/// One burst: the Deployment changed at `started`, every policy reconciled after `took`.
#[derive(Debug, Clone)]
struct Burst {
    took: Duration,
    cpu_seconds: f64,
    /// API requests the operator made meanwhile (a no-op reconcile makes none).
    requests: usize,
    writes: usize,
    /// Reconcile duration p50 / p99 over the burst, seconds.
    duration: (Option<f64>, Option<f64>),
}

impl Burst {
    fn per_second(&self) -> f64 {
        POLICIES as f64 / self.took.as_secs_f64()
    }
}

pub async fn run(ctx: &Ctx, only: Option<&str>) -> Section {
    let mut section = Section {
        title: "Reconcile throughput".into(),
        ..Section::default()
    };
    let id = format!("{POLICIES}");
    let command = ctx.command(&format!("reconcile --only {id}"));
    if only.is_some_and(|o| o != id) {
        return section;
    }
    eprintln!("bench: reconcile {id}: {POLICIES} policies over one Deployment, {BURSTS} bursts");
    match measure(ctx).await {
        Ok((bursts, startup)) => {
            let mut rates: Vec<f64> = bursts.iter().map(Burst::per_second).collect();
            rates.sort_by(f64::total_cmp);
            let median = rates[rates.len() / 2];
            let requests: usize = bursts.iter().map(|b| b.requests).sum();
            section.rows.push(Row {
                figure: format!(
                    "No-op reconciles per second, {} policies, concurrency bounded (default 16)",
                    num(POLICIES as f64, 0)
                ),
                goal: format!("≥ {}/s", num(GOAL_PER_SECOND, 0)),
                measured: format!(
                    "{}/s (median of {BURSTS} bursts; {} API requests during them)",
                    num(median, 0),
                    requests
                ),
                peer: String::new(),
                outcome: Outcome::from(median >= GOAL_PER_SECOND),
                command: command.clone(),
            });
            let mut details = String::from(
                "| Burst | Every policy reconciled after | Reconciles/s | Operator CPU per reconcile | Reconcile p50 / p99 | API requests (writes) |\n\
                 |---|---|---|---|---|---|\n",
            );
            for (i, b) in bursts.iter().enumerate() {
                let ms = |s: Option<f64>| s.map_or("n/a".into(), |s| format!("{:.2} ms", s * 1000.0));
                let _ = writeln!(
                    details,
                    "| {} | {:.2} s | {} | {} µs | {} / {} | {} ({}) |",
                    i + 1,
                    b.took.as_secs_f64(),
                    num(b.per_second(), 0),
                    num(b.cpu_seconds / POLICIES as f64 * 1e6, 0),
                    ms(b.duration.0),
                    ms(b.duration.1),
                    b.requests,
                    b.writes
                );
            }
            section.details = details;
            section.notes = vec![
                format!(
                    "{} policies over one Deployment of one ready pod (`periodSeconds: {PERIOD_SECONDS}`, \
                     dry-run remediation), started ({:.1} s) and left until every policy was `Healthy=True` \
                     and its reconciles had stopped. A burst: one change to the Deployment (an annotation) \
                     wakes every policy; it ends when the operator's reconcile count \
                     (`{RECONCILES}`, read every {} ms) has risen by {} — interpolated between reads. The \
                     time includes the controller's 200 ms debounce.",
                    num(POLICIES as f64, 0),
                    startup.as_secs_f64(),
                    SCRAPE.as_millis(),
                    num(POLICIES as f64, 0)
                ),
                "A no-op reconcile reads only the operator's caches and writes nothing: the API requests \
                 column counts every request the test server saw during the bursts."
                    .into(),
            ];
        }
        Err(e) => {
            eprintln!("bench: reconcile failed: {e}");
            section.rows.push(Row {
                figure: "Reconcile throughput: the run".into(),
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

fn create(cluster: &Cluster, farm: &Farm) -> Result<()> {
    cluster.add_deployment(TARGET, 1, farm.port())?;
    cluster.add_pod(&format!("{TARGET}-0"), TARGET, farm::address(0)?, farm.port())?;
    for i in 0..POLICIES {
        cluster.add_policy(&format!("p-{i:05}"), TARGET, PERIOD_SECONDS)?;
    }
    Ok(())
}

async fn measure(ctx: &Ctx) -> Result<(Vec<Burst>, Duration)> {
    let setup = Setup {
        pods: 1,
        policies: POLICIES,
        create: &create,
    };
    let mut running = start_over(ctx, &format!("reconcile-{POLICIES}"), &setup).await?;
    settle(&running.cluster, &running.operator).await?;
    let mut bursts = Vec::new();
    for n in 0..BURSTS {
        bursts.push(burst(&running.cluster, &mut running.operator, n).await?);
    }
    let startup = running.startup;
    running.operator.process.stop();
    Ok((bursts, startup))
}

/// Waits until every policy is `Healthy=True` and the reconcile count has stood still for a while.
async fn settle(cluster: &Cluster, operator: &Operator) -> Result<()> {
    let started = Instant::now();
    let patience = Duration::from_secs(PERIOD_SECONDS * 4);
    loop {
        let healthy = cluster
            .server
            .list("apphealth.io/v1alpha1", "AppHealthPolicy", Some(NS))
            .iter()
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Healthy" && c["status"] == "True"))
            })
            .count();
        if healthy >= POLICIES {
            break;
        }
        if started.elapsed() > patience {
            return Err(format!(
                "{healthy} of {POLICIES} policies were Healthy=True after {} s",
                patience.as_secs()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut last = reconciles(operator).await?;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = reconciles(operator).await?;
        if now == last {
            return Ok(());
        }
        if started.elapsed() > patience * 2 {
            return Err("the operator's reconciles did not stop".into());
        }
        last = now;
    }
}

async fn reconciles(operator: &Operator) -> Result<f64> {
    operator
        .metrics()
        .await?
        .sum(RECONCILES, &[])
        .ok_or_else(|| format!("the operator exports no {RECONCILES}").into())
}

async fn burst(cluster: &Cluster, operator: &mut Operator, n: usize) -> Result<Burst> {
    let before = operator.metrics().await?;
    let count0 = before.sum(RECONCILES, &[]).unwrap_or(0.0);
    let goal = count0 + POLICIES as f64;
    let requests0 = cluster.server.requests().len();
    let cpu0 = operator.process.cpu_seconds()?;
    let started = Instant::now();
    cluster.touch_deployment(TARGET, n)?;
    let mut previous = (Duration::ZERO, count0);
    let (took, after) = loop {
        tokio::time::sleep(SCRAPE).await;
        let metrics = operator.metrics().await?;
        let at = started.elapsed();
        let count = metrics.sum(RECONCILES, &[]).unwrap_or(0.0);
        if count >= goal {
            break (interpolate(previous, (at, count), goal), metrics);
        }
        if at > BURST_PATIENCE {
            return Err(format!(
                "burst {n}: {} of {POLICIES} reconciles after {} s",
                count - count0,
                BURST_PATIENCE.as_secs()
            )
            .into());
        }
        previous = (at, count);
    };
    let cpu_seconds = operator.process.cpu_seconds()? - cpu0;
    let requests = cluster.server.requests();
    let during = requests.get(requests0..).unwrap_or_default();
    let histogram = match (before.histogram(DURATION), after.histogram(DURATION)) {
        (Some(a), Some(b)) => Some(b.since(&a)),
        _ => None,
    };
    Ok(Burst {
        took,
        cpu_seconds,
        requests: during.len(),
        writes: during.iter().filter(|r| r.is_write()).count(),
        duration: (
            histogram.as_ref().and_then(|h| h.quantile(0.5)),
            histogram.as_ref().and_then(|h| h.quantile(0.99)),
        ),
    })
}

/// When the count reached `goal`, between two reads `(time, count)` (straight line between them).
fn interpolate(a: (Duration, f64), b: (Duration, f64), goal: f64) -> Duration {
    if b.1 <= a.1 {
        return b.0;
    }
    let share = ((goal - a.1) / (b.1 - a.1)).clamp(0.0, 1.0);
    a.0 + (b.0 - a.0).mul_f64(share)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_goal_is_placed_between_two_reads() {
        let a = (Duration::from_millis(1000), 100.0);
        let b = (Duration::from_millis(2000), 300.0);
        assert_eq!(interpolate(a, b, 200.0), Duration::from_millis(1500));
        assert_eq!(interpolate(a, b, 300.0), Duration::from_millis(2000));
        // Nothing counted between them: the later read.
        assert_eq!(interpolate(a, (b.0, 100.0), 100.0), b.0);
    }
}
