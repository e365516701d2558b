//! Memory: the operator's RSS idle, with 1,000 and 10,000 policies, and with 10,000 realistic pods
//! in its cache.

use std::{fmt::Write as _, time::Duration};

use super::{Ctx, Layout, PERIOD, Running, Setup, start, start_over};
use crate::{
    Result,
    cluster::{Cluster, realistic_pod_name},
    operator::Operator,
    process::Memory,
    report::{Outcome, Row, Section, mib, num},
};

pub const GOAL_IDLE_KIB: u64 = 20 * 1024;
pub const GOAL_PER_POD_KIB: f64 = 4.0;
pub const GOAL_PER_POLICY_KIB: f64 = 8.0;
const REALISTIC_PODS: usize = 10_000;
const SHARED_POLICIES: usize = 10_000;
/// How long RSS is left to settle after a start before it is read.
pub(super) const SETTLE: Duration = Duration::from_secs(5);

pub(super) struct Reading {
    pub memory: Memory,
    pub startup: Duration,
}

pub async fn run(ctx: &Ctx, only: Option<&str>) -> Section {
    let mut section = Section {
        title: "Memory".into(),
        ..Section::default()
    };
    let mut details = String::from(
        "| Case | Startup | RSS | Peak RSS | RSS over idle | Per object |\n|---|---|---|---|---|---|\n",
    );
    // Every other figure is a difference from idle, so idle always runs.
    eprintln!("bench: memory idle");
    let idle = idle(ctx).await;
    let command = |id: &str| ctx.command(&format!("memory --only {id}"));
    match &idle {
        Ok(r) => {
            section.rows.push(Row {
                figure: "Idle RSS (no policies, no pods)".into(),
                goal: "≤ 20 MiB".into(),
                measured: format!("{} (peak {})", mib(r.memory.rss_kib), mib(r.memory.peak_kib)),
                peer: String::new(),
                outcome: Outcome::from(r.memory.rss_kib <= GOAL_IDLE_KIB),
                command: command("idle"),
            });
            let _ = writeln!(
                details,
                "| idle | {:.1} s | {} | {} | — | — |",
                r.startup.as_secs_f64(),
                mib(r.memory.rss_kib),
                mib(r.memory.peak_kib)
            );
        }
        Err(e) => section
            .rows
            .push(failed("Idle RSS", "≤ 20 MiB", e, command("idle"))),
    }
    let mut pod_bytes = 0;
    for (id, figure, goal, limit, count) in cases() {
        if only.is_some_and(|o| o != id) {
            continue;
        }
        eprintln!("bench: memory {id}");
        let reading = if id.starts_with("pods") {
            pods(ctx, &id, count).await.map(|(r, bytes)| {
                pod_bytes = bytes;
                r
            })
        } else if id.ends_with("shared") {
            shared(ctx, &id, count).await
        } else {
            policies(ctx, &id, count).await
        };
        match (&reading, &idle) {
            (Ok(r), Ok(i)) => {
                let over = r.memory.rss_kib.saturating_sub(i.memory.rss_kib);
                let per = over as f64 / count as f64;
                section.rows.push(Row {
                    figure,
                    goal: goal.into(),
                    measured: format!(
                        "{} KiB ({} over idle; RSS {}, peak {})",
                        num(per, 1),
                        mib(over),
                        mib(r.memory.rss_kib),
                        mib(r.memory.peak_kib)
                    ),
                    peer: String::new(),
                    outcome: Outcome::from(per <= limit),
                    command: command(&id),
                });
                let _ = writeln!(
                    details,
                    "| {id} | {:.1} s | {} | {} | {} | {} KiB |",
                    r.startup.as_secs_f64(),
                    mib(r.memory.rss_kib),
                    mib(r.memory.peak_kib),
                    mib(over),
                    num(per, 1)
                );
            }
            (Err(e), _) => section.rows.push(failed(&figure, goal, e, command(&id))),
            (Ok(_), Err(_)) => section.rows.push(Row {
                figure,
                goal: goal.into(),
                measured: "n/a: no idle figure to subtract".into(),
                peer: String::new(),
                outcome: Outcome::NotJudged,
                command: command(&id),
            }),
        }
    }
    section.details = details;
    section.notes = notes(pod_bytes);
    section
}

/// The cases besides idle: (id, figure, goal, limit in KiB per object, objects).
fn cases() -> Vec<(String, String, &'static str, f64, usize)> {
    let mut cases = Vec::new();
    for policies in [1_000, 10_000] {
        cases.push((
            format!("policies-{policies}"),
            format!(
                "RSS per policy with its own Deployment and pod, {} policies",
                num(policies as f64, 0)
            ),
            "≤ 12 KiB per policy (8 for the policy, 4 for its pod)",
            GOAL_PER_POLICY_KIB + GOAL_PER_POD_KIB,
            policies,
        ));
    }
    cases.push((
        format!("policies-{SHARED_POLICIES}-shared"),
        format!(
            "RSS per cached policy, {} policies over one Deployment",
            num(SHARED_POLICIES as f64, 0)
        ),
        "≤ 8 KiB per policy",
        GOAL_PER_POLICY_KIB,
        SHARED_POLICIES,
    ));
    cases.push((
        format!("pods-{REALISTIC_PODS}"),
        format!(
            "RSS per cached pod, {} realistic pods",
            num(REALISTIC_PODS as f64, 0)
        ),
        "≤ 4 KiB per pod",
        GOAL_PER_POD_KIB,
        REALISTIC_PODS,
    ));
    cases
}

/// How the figures are taken; `pod_bytes`: the JSON size of a realistic pod (0: not measured).
fn notes(pod_bytes: usize) -> Vec<String> {
    vec![
        format!(
            "RSS is VmRSS of the operator process {} s after it is ready (and, with policies, after every \
             policy has a Ready condition and probing has run for a period); peak is VmHWM. Per object = \
             (RSS − idle RSS) / objects, idle measured in the same run.",
            SETTLE.as_secs()
        ),
        format!(
            "policies-N: each policy over its own Deployment (1 replica) with one small ready pod at a farm \
             address, probed every {} s, so the figure includes a Deployment and a pod in the caches besides the \
             policy and its probe state; judged against the policy's and the pod's budgets together (a cached \
             Deployment, about 2.4 KiB as k8s-openapi's struct, has no budget of its own). policies-N-shared: \
             N policies over one Deployment of one pod — what a policy costs by itself: its object in the \
             cache, its probe task, schedule and evaluator state, index entries and metric series.",
            PERIOD.as_secs()
        ),
        format!(
            "Realistic pods: no policies; each pod is shaped like a ReplicaSet's pod in a real cluster \
             (an app container, a mesh sidecar and a log shipper, an init container, env from values, \
             fields, Secrets and ConfigMaps, eleven volumes, three kinds of probes, resources, security \
             contexts, tolerations, anti-affinity, mesh and scraper annotations, full status with container \
             statuses); the API test server serves {} bytes of JSON per pod. The test server keeps its own \
             one-entry `managedFields` (it ignores those in a body), so a real pod's several KiB of \
             `managedFields` are made up by the rest. The server lists in one page (it ignores `limit`).",
            if pod_bytes > 0 {
                num(pod_bytes as f64, 0)
            } else {
                "n/a".into()
            }
        ),
    ]
}

fn failed(figure: &str, goal: &str, e: &crate::Error, command: String) -> Row {
    eprintln!("bench: memory {figure} failed: {e}");
    Row {
        figure: figure.into(),
        goal: goal.into(),
        measured: format!("failed: {e}"),
        peer: String::new(),
        outcome: Outcome::Missed,
        command,
    }
}

pub(super) async fn idle(ctx: &Ctx) -> Result<Reading> {
    let running = start(
        ctx,
        "memory-idle",
        Layout {
            pods: 0,
            policies: 0,
            over: super::Over::Each,
        },
    )
    .await?;
    read(running.operator, running.startup).await
}

async fn policies(ctx: &Ctx, id: &str, count: usize) -> Result<Reading> {
    let running = start(
        ctx,
        &format!("memory-{id}"),
        Layout {
            pods: count,
            policies: count,
            over: super::Over::Each,
        },
    )
    .await?;
    tokio::time::sleep(PERIOD).await;
    read(running.operator, running.startup).await
}

/// `count` policies over one Deployment of one pod: what a policy costs by itself (its object,
/// probe task and state, index entries, metrics), without a workload and pod of its own.
async fn shared(ctx: &Ctx, id: &str, count: usize) -> Result<Reading> {
    let running = start_shared(ctx, &format!("memory-{id}"), count).await?;
    tokio::time::sleep(PERIOD).await;
    read(running.operator, running.startup).await
}

/// The Deployment of the shared layout.
pub(super) const SHARED_TARGET: &str = "web";

/// The shared layout: Deployment [`SHARED_TARGET`] of one pod at farm target 0 and `count`
/// policies `p-00000`, ... over it (probing every [`PERIOD`], dry run), started as every
/// test-server case is.
pub(super) async fn start_shared(ctx: &Ctx, case: &str, count: usize) -> Result<Running> {
    let create = |cluster: &Cluster, farm: &crate::farm::Farm| -> Result<()> {
        cluster.add_deployment(SHARED_TARGET, 1, farm.port())?;
        cluster.add_pod(
            &format!("{SHARED_TARGET}-0"),
            SHARED_TARGET,
            crate::farm::address(0)?,
            farm.port(),
        )?;
        for i in 0..count {
            cluster.add_policy(&format!("p-{i:05}"), SHARED_TARGET, PERIOD.as_secs())?;
        }
        Ok(())
    };
    let setup = Setup {
        pods: 1,
        policies: count,
        create: &create,
    };
    start_over(ctx, case, &setup).await
}

async fn pods(ctx: &Ctx, id: &str, count: usize) -> Result<(Reading, usize)> {
    let dir = ctx.case_dir(&format!("memory-{id}"))?;
    let cluster = Cluster::start(&ctx.crds, &dir).await?;
    for i in 0..count {
        cluster.add_realistic_pod(i, unprobed_address(i))?;
    }
    let bytes = cluster.pod_json_bytes(&realistic_pod_name(0));
    let started = std::time::Instant::now();
    let mut operator = Operator::start(
        &ctx.operator,
        &cluster.kubeconfig,
        &dir.join("operator.log"),
        ctx.ticks_per_second,
    )?;
    if let Err(e) = operator.wait_ready(ctx.patience).await {
        let seen = operator.memory().map_or(String::new(), |m| {
            format!(" (RSS then {}, peak {})", mib(m.rss_kib), mib(m.peak_kib))
        });
        return Err(format!("{e}{seen}").into());
    }
    let reading = read(operator, started.elapsed()).await?;
    Ok((reading, bytes))
}

/// The address of pod `i` of the pods no policy selects: 127.2.x.y, loopback, and nothing
/// probes it.
pub(super) fn unprobed_address(i: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 2, (i / 250) as u8, (i % 250 + 1) as u8)
}

pub(super) async fn read(mut operator: Operator, startup: Duration) -> Result<Reading> {
    tokio::time::sleep(SETTLE).await;
    operator.process.check_running()?;
    let memory = operator.memory()?;
    operator.process.stop();
    Ok(Reading { memory, startup })
}
