//! What the shards scenario reports: its rows, the details and the notes.

use std::{fmt::Write as _, time::Duration};

use super::{
    Failover, GOAL_KEPT, GOAL_SHARE_DEVIATION, HELD, LEASE, LEASE_NS, POLL, SCRAPE_EVERY, SHARDS, Shares,
};
use crate::{
    report::{Outcome, Row, num},
    scenario::{Ctx, Layout, PERIOD},
};

pub fn row(figure: &str, goal: &str, measured: String, outcome: Outcome, command: &str) -> Row {
    Row {
        figure: format!("three shards: {figure}"),
        goal: goal.into(),
        measured,
        peer: String::new(),
        outcome,
        command: command.into(),
    }
}

/// The farm's count of each shard's targets (by the bench's copy of the hash) against the
/// replica's own: far apart, the copy no longer matches the operator's, or a replica probes
/// targets of a shard it does not hold.
pub fn check_counts(ctx: &Ctx, s: &Shares) {
    for share in &s.shares {
        let (farm, own) = (share.probes as f64, share.counted);
        if (farm - own).abs() > 0.05 * farm.max(own) + 10.0 {
            ctx.incident(format!(
                "shards: {} counted {own:.0} probes, the farm {farm:.0} for its shard {}'s targets",
                share.name, share.shard
            ));
        }
    }
}

pub fn share_rows(s: &Shares, command: &str) -> Vec<Row> {
    let listed: Vec<String> = (s.shares.iter().zip(s.fractions()))
        .map(|(x, f)| format!("{} (shard {}) {} %", x.name, x.shard, num(f * 100.0, 1)))
        .collect();
    let (deviation, kept) = (s.max_deviation(), s.total() as f64 / s.due);
    let moved = if s.steady {
        ""
    } else {
        " (shards moved during the window)"
    };
    vec![
        row(
            "each replica's share of the probes",
            "each within ±10 % of one third",
            format!(
                "{}; max deviation {} %{moved}",
                listed.join(", "),
                num(deviation * 100.0, 1)
            ),
            Outcome::from(deviation <= GOAL_SHARE_DEVIATION && s.steady),
            command,
        ),
        row(
            "due probes kept",
            "≥ 99 %",
            format!(
                "{} of {} ({} %)",
                num(s.total() as f64, 0),
                num(s.due, 0),
                num(kept * 100.0, 1)
            ),
            Outcome::from(kept >= GOAL_KEPT),
            command,
        ),
    ]
}

pub fn share_details(s: &Shares, startup: Duration) -> String {
    let mut details = format!(
        "Settled (each replica holding one shard, every target probed since) {:.1} s after the start; \
         window {:.1} s.\n\n\
         | Replica | Shard | Targets | Probes (farm) | Counted by the replica | Share | Targets' share |\n\
         |---|---|---|---|---|---|---|\n",
        startup.as_secs_f64(),
        s.seconds
    );
    let pods: usize = s.shares.iter().map(|x| x.targets).sum();
    for (x, f) in s.shares.iter().zip(s.fractions()) {
        let _ = writeln!(
            details,
            "| {} | {} | {} | {} | {} | {} % | {} % |",
            x.name,
            x.shard,
            x.targets,
            num(x.probes as f64, 0),
            num(x.counted, 0),
            num(f * 100.0, 1),
            num(x.targets as f64 / pods.max(1) as f64 * 100.0, 1)
        );
    }
    details
}

pub fn failover_row(f: &Failover, command: &str) -> Row {
    // A target's probes stop at the kill (its last up to a period before) and resume once a
    // survivor has taken the shard (the lease running out, then its next keeper round: a fifth of
    // the lease) and probed it, within the lag the operator tolerates (a takeover's first round is
    // spread over a tenth of the period).
    let goal = PERIOD + LEASE + LEASE / 5 + PERIOD / 10;
    let (max, median) = (f.gaps.last().copied(), f.gaps.get(f.gaps.len() / 2).copied());
    let show = |v: Option<f64>| v.map_or("n/a".to_string(), |v| num(v, 1));
    row(
        "failover gap after a replica is killed",
        &format!(
            "≤ {} s (one period, the lease of {} s and a keeper round, a tenth of a period)",
            goal.as_secs(),
            LEASE.as_secs()
        ),
        format!(
            "{} s, the longest of {} targets of {}'s shard {} (median {} s); {} showed it held {} s after \
             the kill; the survivors then held {} of {SHARDS} shards",
            show(max),
            f.gaps.len(),
            f.killed,
            f.shard,
            show(median),
            f.taken_by,
            num(f.held_after, 1),
            f.survivors_hold
        ),
        Outcome::from(max.is_some_and(|m| m <= goal.as_secs_f64())),
        command,
    )
}

pub fn failover_details(details: &mut String, f: &Failover) {
    let show = |v: Option<&f64>| v.map_or("n/a".to_string(), |v| format!("{} s", num(*v, 1)));
    let _ = writeln!(
        details,
        "\nFailover: {} (shard {}, {} targets) killed. Gaps, last probe before the kill → first after: \
         min {}, median {}, max {}. First probes after the kill {}–{} s after it; the shard was seen held \
         by {} {} s after it.",
        f.killed,
        f.shard,
        f.gaps.len(),
        show(f.gaps.first()),
        show(f.gaps.get(f.gaps.len() / 2)),
        show(f.gaps.last()),
        num(f.first_after.0, 1),
        num(f.first_after.1, 1),
        f.taken_by,
        num(f.held_after, 1)
    );
}

pub fn notes(ctx: &Ctx, layout: Layout, window: Duration) -> Vec<String> {
    vec![
        format!(
            "{} (`periodSeconds: {}`, dry-run remediation); three `apphealth-operator run` with `--shards \
             {SHARDS} --lease-namespace {LEASE_NS} --lease-duration-seconds {} --instance op-a|op-b|op-c`, \
             started together and waited for (\"settled\", at most {} s) until each holds one shard, every \
             policy has a Ready condition and every target was probed since; {} s of warm-up, a {} s window. \
             Shares: the farm's per-target counts, each target counted for the replica holding its \
             Deployment's shard (the operator's own `fleet::shard::shard_of`; the replica's own \
             `apphealth_probes_total` beside it); the probes can be no more even \
             than the hash's split (\"Targets' share\"). Due: every target once per period.",
            layout.describe(),
            PERIOD.as_secs(),
            LEASE.as_secs(),
            ctx.patience.as_secs(),
            ctx.warmup.as_secs(),
            window.as_secs()
        ),
        format!(
            "Failover: op-c is killed (SIGKILL); the farm's counts are read every {} ms from a period \
             before the kill until every target of its shard has answered a probe again. A target's gap \
             runs from the reading that first showed its last probe before the kill to the one that first \
             showed a probe after (± {} ms); the survivors' `{HELD}` is read every {} ms.",
            POLL.as_millis(),
            POLL.as_millis(),
            POLL.as_millis() * u128::from(SCRAPE_EVERY)
        ),
    ]
}
