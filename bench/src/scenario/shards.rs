//! Work sharing across replicas (`--shards 3`): three operator processes over 1,000 pods in 100
//! Deployments, one policy each at a 10 s period. Each replica's share of the probes and the due
//! probes kept; then one replica is killed (SIGKILL) and the longest any target of its shard goes
//! without a probe until a survivor has taken the shard over.

mod report;

use std::time::{Duration, Instant};

use apphealth_operator::fleet::shard::shard_of;
use serde_json::json;

use super::{Ctx, Layout, Over, PERIOD};
use crate::{
    Result,
    cluster::{Cluster, NS},
    operator::Operator,
    report::{Outcome, Section},
};

use self::report::{check_counts, failover_details, failover_row, notes, row, share_details, share_rows};

const SHARDS: u32 = 3;
const IDENTITIES: [&str; SHARDS as usize] = ["op-a", "op-b", "op-c"];
/// Where the shard Leases live (the chart's release namespace).
const LEASE_NS: &str = "apphealth-system";
/// The operator's default lease duration (the chart's), passed explicitly so the goal follows it.
const LEASE: Duration = Duration::from_secs(15);
const HELD: &str = "apphealth_shard_held";
/// How often the farm's counts are read around the kill: the failover gap's resolution.
const POLL: Duration = Duration::from_millis(50);
/// The survivors' /metrics are read every this many polls until one holds the dead shard.
const SCRAPE_EVERY: u32 = 5;
/// Each replica's share of the probes within this fraction of one third; due probes kept.
pub const GOAL_SHARE_DEVIATION: f64 = 0.10;
pub const GOAL_KEPT: f64 = 0.99;

/// Pods and Deployments, and the measurement window.
fn plan(quick: bool) -> (Layout, Duration) {
    let (pods, policies, window) = if quick { (300, 30, 20) } else { (1_000, 100, 60) };
    let over = Over::Each;
    (Layout { pods, policies, over }, Duration::from_secs(window))
}

/// The shard of each farm target `0..pods`: its Deployment's (`app-NNNNN`, as
/// [`Layout::create`] names and fills them).
fn target_shards(layout: Layout) -> Vec<u32> {
    let per = (layout.pods / layout.policies.max(1)).max(1);
    (0..layout.pods)
        .map(|t| shard_of(NS, "Deployment", &format!("app-{:05}", t / per), SHARDS))
        .collect()
}

struct Replica {
    name: &'static str,
    operator: Operator,
}

impl Replica {
    /// The shards it says it holds (`apphealth_shard_held{shard="N"} 1`).
    async fn held(&self) -> Result<Vec<u32>> {
        let metrics = self.operator.metrics().await?;
        let shard =
            |s: &crate::exposition::Sample| s.labels.iter().find(|(k, _)| k == "shard")?.1.parse().ok();
        Ok(metrics
            .samples(HELD)
            .filter(|s| s.value > 0.5)
            .filter_map(shard)
            .collect())
    }

    /// Its own count of the probes it sent.
    async fn counted(&self) -> Result<f64> {
        let metrics = self.operator.metrics().await?;
        Ok(metrics.sum("apphealth_probes_total", &[]).unwrap_or(0.0))
    }
}

/// Three replicas over the layout (dropping it stops them and the API server).
struct Fleet {
    cluster: Cluster,
    replicas: Vec<Replica>,
    target_shard: Vec<u32>,
}

impl Fleet {
    /// What each replica holds (an unreadable /metrics: nothing).
    async fn held(&self) -> Vec<Vec<u32>> {
        let mut out = Vec::new();
        for r in &self.replicas {
            out.push(r.held().await.unwrap_or_default());
        }
        out
    }

    fn targets_of(&self, shard: u32) -> Vec<usize> {
        (0..self.target_shard.len())
            .filter(|t| self.target_shard[*t] == shard)
            .collect()
    }

    /// The farm's counts of the layout's targets.
    async fn counts(&self, ctx: &Ctx) -> Result<Vec<u64>> {
        let mut counts = ctx.farm.counts().await?.requests;
        counts.resize(self.target_shard.len(), 0);
        Ok(counts)
    }
}

/// The layout in a fresh test server and three replicas over it, each started with
/// `--shards 3 --lease-namespace apphealth-system --lease-duration-seconds 15 --instance NAME`,
/// settled.
async fn start(ctx: &Ctx, layout: Layout) -> Result<Fleet> {
    let dir = ctx.case_dir("shards-3")?;
    ctx.farm.heal_all().await?;
    let cluster = Cluster::start(&ctx.crds, &dir).await?;
    layout.create(&cluster, &ctx.farm)?;
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LEASE_NS}});
    cluster
        .server
        .create(namespace)
        .map_err(|e| format!("create namespace {LEASE_NS}: {e}"))?;
    let mut replicas = Vec::new();
    for name in IDENTITIES {
        let args = format!(
            "--shards {SHARDS} --lease-namespace {LEASE_NS} --lease-duration-seconds {} --instance {name}",
            LEASE.as_secs()
        );
        let args: Vec<&str> = args.split(' ').collect();
        let log = dir.join(format!("{name}.log"));
        let (binary, tps) = (&ctx.operator, ctx.ticks_per_second);
        let operator = Operator::start_with_args(binary, &cluster.kubeconfig, &log, tps, &[], &args)?;
        replicas.push(Replica { name, operator });
    }
    let mut fleet = Fleet {
        cluster,
        replicas,
        target_shard: target_shards(layout),
    };
    settle(ctx, &mut fleet, layout.policies)
        .await
        .map_err(|e| format!("{e} (logs in {})", dir.display()))?;
    Ok(fleet)
}

/// Waits until each replica holds exactly one shard (all three held), every policy has a Ready
/// condition, and every target has been probed since the shards were last seen so.
async fn settle(ctx: &Ctx, fleet: &mut Fleet, policies: usize) -> Result<()> {
    let started = Instant::now();
    let mut since: Option<(Vec<Vec<u32>>, Vec<u64>)> = None;
    loop {
        for r in &mut fleet.replicas {
            r.operator.process.check_running()?;
        }
        let held = fleet.held().await;
        let mut all: Vec<u32> = held.iter().flatten().copied().collect();
        all.sort_unstable();
        let one_each = held.iter().all(|h| h.len() == 1) && all == (0..SHARDS).collect::<Vec<_>>();
        let counts = fleet.counts(ctx).await?;
        let unprobed = match &since {
            Some((was, base)) if one_each && *was == held => {
                counts.iter().zip(base).filter(|(c, b)| c <= b).count()
            }
            _ => counts.len(),
        };
        if !one_each {
            since = None;
        } else if since.as_ref().is_none_or(|(was, _)| *was != held) {
            since = Some((held.clone(), counts));
        }
        let ready = fleet.cluster.policies_with_ready();
        if unprobed == 0 && ready >= policies {
            return Ok(());
        }
        if started.elapsed() >= ctx.patience {
            return Err(format!(
                "not settled within {} s: shards held {held:?}, {ready} of {policies} policies with a \
                 Ready condition, {unprobed} targets not probed since the shards were last one each",
                ctx.patience.as_secs()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One replica's part of the window: its shard, the shard's targets, the probes they answered
/// (the farm's count) and the probes the replica counted itself (`apphealth_probes_total`).
struct Share {
    name: &'static str,
    shard: u32,
    targets: usize,
    probes: u64,
    counted: f64,
}

/// The window: each replica's part, its length, the probes due (every target once per period),
/// and whether each replica held the same one shard at its end.
struct Shares {
    shares: Vec<Share>,
    seconds: f64,
    due: f64,
    steady: bool,
}

impl Shares {
    fn total(&self) -> u64 {
        self.shares.iter().map(|s| s.probes).sum()
    }

    fn fractions(&self) -> Vec<f64> {
        let total = self.total().max(1) as f64;
        self.shares.iter().map(|s| s.probes as f64 / total).collect()
    }

    /// The largest relative distance of a share from one third.
    fn max_deviation(&self) -> f64 {
        let fair = 1.0 / f64::from(SHARDS);
        let off = |f: &f64| (f - fair).abs() / fair;
        self.fractions().iter().map(off).fold(0.0, f64::max)
    }
}

async fn measure_shares(ctx: &Ctx, fleet: &Fleet, window: Duration) -> Result<Shares> {
    let held = fleet.held().await;
    let mut counted = Vec::new();
    for r in &fleet.replicas {
        counted.push(r.counted().await?);
    }
    let (a, at) = (fleet.counts(ctx).await?, Instant::now());
    tokio::time::sleep(window).await;
    let (b, seconds) = (fleet.counts(ctx).await?, at.elapsed().as_secs_f64());
    let mut shares = Vec::new();
    for ((r, held), before) in fleet.replicas.iter().zip(&held).zip(counted) {
        let [shard] = held[..] else {
            return Err(format!("{} held {held:?} at the window's start", r.name).into());
        };
        let targets = fleet.targets_of(shard);
        let probes = targets.iter().map(|t| b[*t].saturating_sub(a[*t])).sum();
        let counted = r.counted().await? - before;
        let (name, targets) = (r.name, targets.len());
        shares.push(Share {
            name,
            shard,
            targets,
            probes,
            counted,
        });
    }
    Ok(Shares {
        shares,
        seconds,
        due: a.len() as f64 * seconds / PERIOD.as_secs_f64(),
        steady: fleet.held().await == held,
    })
}

/// The kill: the killed replica and its shard; per target of that shard, the gap from the reading
/// that first showed its last probe before the kill to the one that showed its first after
/// (seconds, sorted); the first probes after the kill (seconds after it, earliest and latest);
/// when a survivor's /metrics first showed the shard held, and which one; the shards the
/// survivors hold at the end.
struct Failover {
    killed: &'static str,
    shard: u32,
    gaps: Vec<f64>,
    first_after: (f64, f64),
    held_after: f64,
    taken_by: &'static str,
    survivors_hold: usize,
}

/// Kills the last replica (SIGKILL), having read the farm every [`POLL`] for a period and a bit
/// (so each target's last probe before the kill is seen), and watches the takeover.
async fn failover(ctx: &Ctx, fleet: &mut Fleet) -> Result<Failover> {
    let victim = fleet.replicas.pop().ok_or("no replica to kill")?;
    let [shard] = victim.held().await?[..] else {
        return Err(format!("{} does not hold exactly one shard", victim.name).into());
    };
    let dead = fleet.targets_of(shard);
    let (mut counts, mut last) = (fleet.counts(ctx).await?, vec![Instant::now(); dead.len()]);
    let watching = Instant::now();
    while watching.elapsed() < PERIOD + Duration::from_secs(1) {
        let (now, rose) = poll(ctx, fleet, &mut counts, &dead).await?;
        rose.into_iter().for_each(|k| last[k] = now);
    }
    let killed = victim.name;
    victim.operator.process.stop();
    let at = Instant::now();
    let (after, held_after, taken_by) = watch_takeover(ctx, fleet, counts, &dead, shard)
        .await
        .map_err(|e| format!("after {killed} was killed: {e}"))?;
    let gap = |(a, b): (&Instant, &Instant)| a.saturating_duration_since(*b).as_secs_f64();
    let mut gaps: Vec<f64> = after.iter().zip(&last).map(gap).collect();
    gaps.sort_by(f64::total_cmp);
    let since = |a: &Instant| a.saturating_duration_since(at).as_secs_f64();
    let first_after = after
        .iter()
        .map(since)
        .fold((f64::INFINITY, 0.0_f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let survivors_hold = fleet.held().await.iter().map(Vec::len).sum();
    Ok(Failover {
        killed,
        shard,
        gaps,
        first_after,
        held_after,
        taken_by,
        survivors_hold,
    })
}

/// Waits a [`POLL`] and reads the farm: when, and which of the `watched` targets (by position)
/// answered a probe since `counts`, which it updates.
async fn poll(
    ctx: &Ctx,
    fleet: &Fleet,
    counts: &mut Vec<u64>,
    watched: &[usize],
) -> Result<(Instant, Vec<usize>)> {
    tokio::time::sleep(POLL).await;
    let (now, read) = (Instant::now(), fleet.counts(ctx).await?);
    let rose = (0..watched.len())
        .filter(|k| read[watched[*k]] > counts[watched[*k]])
        .collect();
    *counts = read;
    Ok((now, rose))
}

/// From the kill on: reads the farm every [`POLL`] until each `dead` target has been probed again
/// and a survivor's /metrics shows `shard` held (at most the patience). Returns when each target
/// was first seen probed, the seconds until the shard was seen held, and by whom.
async fn watch_takeover(
    ctx: &Ctx,
    fleet: &Fleet,
    mut counts: Vec<u64>,
    dead: &[usize],
    shard: u32,
) -> Result<(Vec<Instant>, f64, &'static str)> {
    let killed = Instant::now();
    let mut after: Vec<Option<Instant>> = vec![None; dead.len()];
    let mut taken: Option<(f64, &'static str)> = None;
    for polls in 1u32.. {
        let (now, rose) = poll(ctx, fleet, &mut counts, dead).await?;
        rose.into_iter().for_each(|k| after[k] = after[k].or(Some(now)));
        if taken.is_none() && polls % SCRAPE_EVERY == 0 {
            for r in &fleet.replicas {
                if r.held().await.is_ok_and(|h| h.contains(&shard)) {
                    taken = Some((killed.elapsed().as_secs_f64(), r.name));
                }
            }
        }
        let waiting = after.iter().filter(|a| a.is_none()).count();
        if let (0, Some((held_after, by))) = (waiting, taken) {
            return Ok((after.into_iter().flatten().collect(), held_after, by));
        }
        if killed.elapsed() >= ctx.patience {
            let holder = taken.map_or("no survivor holds the shard".into(), |(_, by)| {
                format!("{by} holds it")
            });
            return Err(format!(
                "{waiting} of {} targets of shard {shard} not probed again within {} s; {holder}",
                dead.len(),
                ctx.patience.as_secs()
            )
            .into());
        }
    }
    Err("the watch ran out of polls".into())
}

pub async fn run(ctx: &Ctx, only: Option<&str>) -> Section {
    let mut section = Section {
        title: "Shards".into(),
        ..Section::default()
    };
    let id = SHARDS.to_string();
    if only.is_some_and(|o| o != id) {
        return section;
    }
    let command = ctx.command(&format!("shards --only {id}"));
    let (layout, window) = plan(ctx.quick);
    eprintln!("bench: shards {id}: three replicas over {}", layout.describe());
    let failed = |figure: &str, e: crate::Error| {
        eprintln!("bench: shards, {figure}: {e}");
        row(
            figure,
            "completes",
            format!("failed: {e}"),
            Outcome::Missed,
            &command,
        )
    };
    let started = Instant::now();
    let mut fleet = match start(ctx, layout).await {
        Ok(fleet) => fleet,
        Err(e) => {
            return Section {
                rows: vec![failed("the start", e)],
                ..section
            };
        }
    };
    let startup = started.elapsed();
    tokio::time::sleep(ctx.warmup).await;
    match measure_shares(ctx, &fleet, window).await {
        Ok(s) => {
            check_counts(ctx, &s);
            section.rows.extend(share_rows(&s, &command));
            section.details = share_details(&s, startup);
        }
        Err(e) => section.rows.push(failed("each replica's share of the probes", e)),
    }
    match failover(ctx, &mut fleet).await {
        Ok(f) => {
            section.rows.push(failover_row(&f, &command));
            failover_details(&mut section.details, &f);
        }
        Err(e) => section
            .rows
            .push(failed("failover gap after a replica is killed", e)),
    }
    section.notes = notes(ctx, layout, window);
    section
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_their_deployments() {
        let shards = target_shards(plan(true).0);
        assert_eq!(shards.len(), 300);
        assert!(shards.chunks(10).all(|d| d.iter().all(|s| *s == d[0])));
        // 33, 31 and 36 of the full layout's 100 Deployments: within the goal's ±10 %.
        let full = target_shards(plan(false).0);
        let per: Vec<usize> = (0..SHARDS)
            .map(|s| full.iter().filter(|x| **x == s).count())
            .collect();
        assert_eq!(per, [330, 310, 360]);
    }
}
