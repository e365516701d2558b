//! Probe capacity: 100, 1,000 and 10,000 ready pods probed every 10 s, in one Deployment with one
//! policy and spread over many policies; probes/s achieved against due, CPU, memory, lag, false
//! failures.

use std::fmt::Write as _;

use super::{Ctx, Layout, Over, PERIOD, Window, measure};
use crate::report::{Outcome, Row, Section, mib, num};

pub const LAYOUTS: [Layout; 8] = [
    Layout {
        pods: 100,
        policies: 1,
        over: Over::Each,
    },
    Layout {
        pods: 1_000,
        policies: 1,
        over: Over::Each,
    },
    Layout {
        pods: 10_000,
        policies: 1,
        over: Over::Each,
    },
    Layout {
        pods: 100,
        policies: 100,
        over: Over::Each,
    },
    Layout {
        pods: 1_000,
        policies: 1_000,
        over: Over::Each,
    },
    Layout {
        pods: 10_000,
        policies: 1_000,
        over: Over::Each,
    },
    // The same 1,000 Deployments of 10 pods under one targetSelector policy (issue 18).
    Layout {
        pods: 10_000,
        policies: 1_000,
        over: Over::Selector,
    },
    // And under one ClusterAppHealthPolicy (issue 18).
    Layout {
        pods: 10_000,
        policies: 1_000,
        over: Over::Cluster,
    },
];

/// The goals of issue 8.
pub const GOAL_CORES_AT_10K: f64 = 0.125;
pub const GOAL_PROBES_PER_CPU_SECOND: f64 = 8_000.0;
pub const GOAL_PEAK_RSS_KIB: u64 = 128 * 1024;
pub const GOAL_P99_LAG_MS: f64 = 100.0;
/// Achieved probes/s count as "on schedule" from this share of the due rate.
pub const ON_SCHEDULE: f64 = 0.99;

pub async fn run(ctx: &Ctx, only: Option<&str>) -> Section {
    let mut section = Section {
        title: "Capacity".into(),
        ..Section::default()
    };
    let mut details = String::from(
        "| Case | Due/s | Achieved/s | Counted/s | Targets reached | Startup | Cores | Probes/CPU-s | CPU-s per 1,000 probes | \
         RSS now / peak | Lag p50 / p99 | Latency p50 / p99 | Failed | Delayed / skipped | Connections per probe | Bench cores |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut measured: Vec<(Layout, Window)> = Vec::new();
    for layout in LAYOUTS {
        let id = layout.id();
        if only.is_some_and(|o| o != id) {
            continue;
        }
        eprintln!("bench: capacity {id}: {}", layout.describe());
        let command = ctx.command(&format!("capacity --only {id}"));
        match measure(ctx, &format!("capacity-{id}"), layout).await {
            Ok((w, startup)) => {
                eprintln!(
                    "bench: capacity {id}: {:.0}/s of {:.0}/s due, {:.3} cores, {:.0} probes/CPU-s",
                    w.probes_per_second(),
                    layout.due_per_second(),
                    w.cores(),
                    w.probes_per_cpu_second()
                );
                rows(&mut section.rows, layout, &w, &command);
                write_details(&mut details, layout, &w, startup);
                measured.push((layout, w));
            }
            Err(e) => {
                eprintln!("bench: capacity {id} failed: {e}");
                section.rows.push(Row {
                    figure: format!("{}: the run", layout.describe()),
                    goal: "completes".into(),
                    measured: format!("failed: {e}"),
                    peer: String::new(),
                    outcome: Outcome::Missed,
                    command,
                });
            }
        }
    }
    for over in [Over::Selector, Over::Cluster] {
        let id = Layout {
            pods: 10_000,
            policies: 1_000,
            over,
        }
        .id();
        if let Some(row) =
            one_against_singles(&measured, over, &ctx.command(&format!("capacity --only {id}")))
        {
            section.rows.push(row);
        }
    }
    section.details = details;
    section.notes = notes(ctx);
    section
}

/// Measured noise allowed when one case must cost no more than another (two runs of the same case
/// differ by a few per cent on these machines).
const NOISE: f64 = 1.05;

/// One targetSelector policy (or one ClusterAppHealthPolicy) over 1,000 Deployments against 1,000
/// single-target policies over the same pods: it may cost no more CPU and memory (issue 18).
fn one_against_singles(measured: &[(Layout, Window)], over: Over, command: &str) -> Option<Row> {
    let find = |over| {
        measured
            .iter()
            .find(|(l, _)| l.pods == 10_000 && l.policies == 1_000 && l.over == over)
            .map(|(_, w)| w)
    };
    let (one, many) = (find(over)?, find(Over::Each)?);
    let what = if over == Over::Cluster {
        "one ClusterAppHealthPolicy"
    } else {
        "one targetSelector policy"
    };
    let cpu_ok = one.cores() <= many.cores() * NOISE;
    let rss_ok = one.memory.peak_kib as f64 <= many.memory.peak_kib as f64 * NOISE;
    Some(Row {
        figure: format!(
            "{what} over 1,000 Deployments of 10 pods vs 1,000 single-target policies: CPU and peak RSS"
        ),
        goal: "no more (within 5 % noise)".into(),
        measured: format!(
            "{} vs {} cores; peak {} vs {}",
            num(one.cores(), 3),
            num(many.cores(), 3),
            mib(one.memory.peak_kib),
            mib(many.memory.peak_kib)
        ),
        peer: String::new(),
        outcome: Outcome::from(cpu_ok && rss_ok),
        command: command.into(),
    })
}

/// One case's line in the details table.
fn write_details(details: &mut String, layout: Layout, w: &Window, startup: std::time::Duration) {
    let _ = writeln!(
        details,
        "| {} | {} | {} | {} | {} of {} | {:.1} s | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} |",
        layout.describe(),
        num(layout.due_per_second(), 0),
        num(w.probes_per_second(), 1),
        num(w.counted / w.seconds, 1),
        num(w.targets_reached as f64, 0),
        num(w.targets as f64, 0),
        startup.as_secs_f64(),
        num(w.cores(), 3),
        num(w.probes_per_cpu_second(), 0),
        num(per_thousand(w), 3),
        mib(w.memory.rss_kib),
        mib(w.memory.peak_kib),
        lag_text(w),
        latency_text(w),
        num(w.failed, 0),
        overload_text(w),
        if w.farm_requests > 0 {
            num(w.connections as f64 / w.farm_requests as f64, 2)
        } else {
            "n/a".into()
        },
        num(w.bench_cpu_seconds / w.seconds, 2)
    );
}

/// How each case is set up and what each column means.
fn notes(ctx: &Ctx) -> Vec<String> {
    vec![
        format!(
            "Each case: a fresh test server holding the Deployments, the ready pods (podIP on the farm's \
             127.1.x.y addresses) and the policies (`periodSeconds: {}`, `consecutiveFailures: 3`, dry-run \
             remediation); the operator is started and waited for until every policy has a Ready condition and the \
             farm has answered a first probe (\"Startup\"; at most {} s; `/readyz` is checked then too, and a \
             503 is listed under incidents), then warmed up for {} s and measured for {} s.",
            PERIOD.as_secs(),
            ctx.patience.as_secs(),
            ctx.warmup.as_secs(),
            ctx.window.as_secs()
        ),
        "Achieved/s counts the probes the farm's targets answered in the window (only the operator talks \
         to them during a case); \"Counted/s\" is the rise of the operator's own `apphealth_probes_total` \
         beside it (an operator that counts a round's probes only when the whole round ends shows less, \
         or 0, over a window shorter than its rounds). CPU per probe uses the farm's count. \"Targets \
         reached\" counts farm targets that answered at least one probe in the window: every one should \
         have been probed about window/period times."
            .into(),
        "CPU is utime+stime of the operator process (/proc/PID/stat) over the window, so it includes \
         watches, reconciles and /metrics scrapes, not only probing; cores = CPU-seconds / wall seconds. \
         RSS is VmRSS at the end of the window and VmHWM (the peak since the process started, startup \
         included)."
            .into(),
        format!(
            "Lag is the p50/p99 of `{}` (due time → probe start) over the window, interpolated within \
             histogram buckets; \"n/a\" when the operator does not export it. \"Delayed / skipped\" are the \
             increases of `{}` and `{}`, n/a when absent.",
            super::LAG_HISTOGRAM,
            super::DELAYED,
            super::SKIPPED
        ),
        format!(
            "Latency is the p50/p99 of `{}` (how long a probe took to answer) over the window. \
             \"Bench cores\" is the CPU of the bench's own processes (the API test server and the farm) over \
             the window: on 2 cores, operator + bench near 2 means the farm and the operator competed for \
             the CPU. CPU time is counted in ticks of 1/CLK_TCK s, so the smallest cases are coarse.",
            super::LATENCY_HISTOGRAM
        ),
        "Failed are probes counted with `result=\"fail\"`: the farm answers every request with 200 at \
         once, so each one is a false failure (the prober's own overload: timeouts, refused or exhausted \
         connections). \"Connections per probe\" is the farm's accepted connections over its answered \
         requests: 1 means a new connection per probe (as the kubelet does), less means reused \
         connections."
            .into(),
        "Goals: on schedule (achieved ≥ 99 % of due) and the per-probe goals in every case; ≤ 0.125 core \
         for the 10,000-pod cases."
            .into(),
    ]
}

fn per_thousand(w: &Window) -> f64 {
    if w.probes > 0.0 {
        w.cpu_seconds / w.probes * 1000.0
    } else {
        f64::INFINITY
    }
}

fn lag_text(w: &Window) -> String {
    match (w.lag_ms(0.5), w.lag_ms(0.99)) {
        (Some(p50), Some(p99)) => format!("{} / {} ms", num(p50, 1), num(p99, 1)),
        _ if w.lag.is_some() => "no probes in the histogram".into(),
        _ => "n/a".into(),
    }
}

fn latency_text(w: &Window) -> String {
    match (w.latency_ms(0.5), w.latency_ms(0.99)) {
        (Some(p50), Some(p99)) => format!("{} / {} ms", num(p50, 1), num(p99, 1)),
        _ => "n/a".into(),
    }
}

fn overload_text(w: &Window) -> String {
    let show = |v: Option<f64>| v.map_or("n/a".to_string(), |v| num(v, 0));
    format!("{} / {}", show(w.delayed), show(w.skipped))
}

fn rows(rows: &mut Vec<Row>, layout: Layout, w: &Window, command: &str) {
    let case = layout.describe();
    let row = |figure: &str, goal: &str, measured: String, outcome: Outcome| Row {
        figure: format!("{case}: {figure}"),
        goal: goal.into(),
        measured,
        peer: String::new(),
        outcome,
        command: command.into(),
    };
    let due = layout.due_per_second();
    let achieved = w.probes_per_second();
    rows.push(row(
        "probes/s achieved vs due",
        "= due (≥ 99 %)",
        format!(
            "{} of {} ({} %); {} of {} targets reached",
            num(achieved, 1),
            num(due, 0),
            num(achieved / due * 100.0, 1),
            num(w.targets_reached as f64, 0),
            num(w.targets as f64, 0)
        ),
        Outcome::from(achieved >= due * ON_SCHEDULE),
    ));
    let at_10k = layout.pods >= 10_000;
    rows.push(row(
        "CPU",
        if at_10k { "≤ 0.125 core" } else { "—" },
        format!(
            "{} cores; {} CPU-s per 1,000 probes{}",
            num(w.cores(), 3),
            num(per_thousand(w), 3),
            if at_10k && achieved < due * ON_SCHEDULE {
                format!(" (but at {} % of the due rate)", num(achieved / due * 100.0, 1))
            } else {
                String::new()
            }
        ),
        if at_10k {
            // Keeping the schedule is part of the goal: idling at a tenth of the rate is not it.
            Outcome::from(w.cores() <= GOAL_CORES_AT_10K && achieved >= due * ON_SCHEDULE)
        } else {
            Outcome::NotJudged
        },
    ));
    rows.push(row(
        "probes per CPU-second",
        "≥ 8,000",
        num(w.probes_per_cpu_second(), 0),
        Outcome::from(w.probes_per_cpu_second() >= GOAL_PROBES_PER_CPU_SECOND),
    ));
    rows.push(row(
        "peak RSS",
        "< 128 MiB",
        format!("{} (now {})", mib(w.memory.peak_kib), mib(w.memory.rss_kib)),
        Outcome::from(w.memory.peak_kib < GOAL_PEAK_RSS_KIB),
    ));
    let lag = w.lag_ms(0.99);
    rows.push(row(
        "p99 lag (due → probe start)",
        "≤ 100 ms",
        match lag {
            Some(_) => format!("p50 / p99: {}", lag_text(w)),
            None => format!("{} (no `{}`)", lag_text(w), super::LAG_HISTOGRAM),
        },
        lag.map_or(Outcome::NotJudged, |p99| Outcome::from(p99 <= GOAL_P99_LAG_MS)),
    ));
    rows.push(row(
        "false failures",
        "0",
        num(w.failed, 0),
        Outcome::from(w.failed == 0.0 && w.probes > 0.0),
    ));
}
