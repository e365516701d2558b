//! Peer, same run: Prometheus blackbox_exporter probing the same farm targets at the same rate as
//! the operator (200 and 1,000 probes/s), driven by a scrape loop; CPU per probe of each.

use std::{
    fmt::Write as _,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;

use super::{Ctx, Layout, PERIOD, Window, measure, write_file};
use crate::{
    Result,
    client::Client,
    farm,
    operator::free_port,
    process::{Child, wait_for},
    report::{Outcome, Row, Section, num},
};

/// Probes per second of the two cases.
pub const RATES: [usize; 2] = [200, 1_000];
/// Pods per Deployment (and policy) on the operator's side.
const PODS_PER_POLICY: usize = 10;
/// Scrapes in flight at once; a tick finding none free is counted as dropped.
const MAX_IN_FLIGHT: usize = 256;
/// The ratio of CPU per probe the operator should beat blackbox_exporter by.
const GOAL_RATIO: f64 = 10.0;

const CONFIG: &str =
    "modules:\n  http_2xx:\n    prober: http\n    timeout: 2s\n    http:\n      preferred_ip_protocol: ip4\n";

#[derive(Debug, Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

struct PeerWindow {
    seconds: f64,
    ok: u64,
    failed: u64,
    dropped: u64,
    farm_requests: u64,
    cpu_seconds: f64,
}

impl PeerWindow {
    fn probes(&self) -> f64 {
        (self.ok + self.failed) as f64
    }

    fn cpu_per_probe(&self) -> f64 {
        self.cpu_seconds / self.probes()
    }
}

fn cpu_per_probe(w: &Window) -> f64 {
    w.cpu_seconds / w.probes
}

pub async fn run(ctx: &Ctx, only: Option<&str>) -> Section {
    let mut section = Section {
        title: "Peer: blackbox_exporter".into(),
        ..Section::default()
    };
    let version = Command::new(&ctx.blackbox)
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
            text.lines().next().unwrap_or_default().trim().to_string()
        })
        .filter(|v| !v.is_empty());
    let mut details = String::from(
        "| Rate | Side | Targets | Achieved/s | CPU-s | Probes/CPU-s | CPU per probe | Failed / dropped |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for rate in RATES {
        if only.is_some_and(|o| o != rate.to_string()) {
            continue;
        }
        let command = ctx.command(&format!("peer --only {rate}"));
        let targets = rate * PERIOD.as_secs() as usize;
        let layout = Layout {
            pods: targets,
            policies: targets / PODS_PER_POLICY,
            over: super::Over::Each,
        };
        eprintln!("bench: peer {rate}/s: the operator over {}", layout.describe());
        let operator = measure(ctx, &format!("peer-{rate}-operator"), layout).await;
        let peer = match &version {
            Some(_) => {
                eprintln!("bench: peer {rate}/s: blackbox_exporter over {targets} targets");
                blackbox(ctx, rate, targets).await
            }
            None => Err(format!(
                "blackbox_exporter not found at {} (make bench installs it with tools/install-blackbox.sh)",
                ctx.blackbox.display()
            )
            .into()),
        };
        section.rows.push(row(rate, &operator, &peer, command));
        write_details(&mut details, rate, targets, layout, &operator, &peer);
    }
    section.details = details;
    section.notes = notes(ctx, version.as_deref());
    section
}

/// The operator's and blackbox_exporter's CPU per probe at one rate, side by side.
fn row(
    rate: usize,
    operator: &Result<(Window, Duration)>,
    peer: &Result<PeerWindow>,
    command: String,
) -> Row {
    let op_text = |w: &Window| {
        format!(
            "operator: {} µs CPU per probe ({} probes/CPU-s) at {}/s",
            num(cpu_per_probe(w) * 1e6, 0),
            num(w.probes_per_cpu_second(), 0),
            num(w.probes_per_second(), 0)
        )
    };
    let peer_text = |p: &PeerWindow| {
        format!(
            "blackbox_exporter: {} µs CPU per probe ({} probes/CPU-s) at {}/s",
            num(p.cpu_per_probe() * 1e6, 0),
            num(p.probes() / p.cpu_seconds, 0),
            num(p.probes() / p.seconds, 0)
        )
    };
    let figure = format!("CPU per probe at {rate} probes/s, operator vs blackbox_exporter");
    let goal = "operator ≥ 10× less".to_string();
    match (operator, peer) {
        (Ok((w, _)), Ok(p)) => {
            let ratio = p.cpu_per_probe() / cpu_per_probe(w);
            Row {
                figure,
                goal,
                measured: if ratio >= 1.0 {
                    format!("{}; {}× less CPU per probe", op_text(w), num(ratio, 1))
                } else {
                    format!("{}; {}× more CPU per probe", op_text(w), num(1.0 / ratio, 1))
                },
                peer: peer_text(p),
                outcome: Outcome::from(ratio >= GOAL_RATIO && w.probes > 0.0),
                command,
            }
        }
        (Ok((w, _)), Err(e)) => Row {
            figure,
            goal,
            measured: op_text(w),
            peer: format!("n/a: {e}"),
            outcome: Outcome::NotJudged,
            command,
        },
        (Err(e), peer) => Row {
            figure,
            goal,
            measured: format!("failed: {e}"),
            peer: peer.as_ref().map_or_else(|e| format!("n/a: {e}"), peer_text),
            outcome: Outcome::Missed,
            command,
        },
    }
}

/// Each side's line in the details table.
fn write_details(
    details: &mut String,
    rate: usize,
    targets: usize,
    layout: Layout,
    operator: &Result<(Window, Duration)>,
    peer: &Result<PeerWindow>,
) {
    if let Ok((w, _)) = operator {
        let _ = writeln!(
            details,
            "| {rate}/s | operator ({}) | {} | {} | {} | {} | {} µs | {} / — |",
            layout.describe(),
            num(targets as f64, 0),
            num(w.probes_per_second(), 1),
            num(w.cpu_seconds, 2),
            num(w.probes_per_cpu_second(), 0),
            num(cpu_per_probe(w) * 1e6, 0),
            num(w.failed, 0)
        );
    }
    if let Ok(p) = peer {
        let _ = writeln!(
            details,
            "| {rate}/s | blackbox_exporter | {} | {} | {} | {} | {} µs | {} / {} |",
            num(targets as f64, 0),
            num(p.probes() / p.seconds, 1),
            num(p.cpu_seconds, 2),
            num(p.probes() / p.cpu_seconds, 0),
            num(p.cpu_per_probe() * 1e6, 0),
            num(p.failed as f64, 0),
            num(p.dropped as f64, 0)
        );
        if p.farm_requests != p.ok + p.failed {
            eprintln!(
                "bench: peer {rate}/s: the farm answered {} requests for {} probes",
                p.farm_requests,
                p.ok + p.failed
            );
        }
    }
}

/// How each side is run and measured.
fn notes(ctx: &Ctx, version: Option<&str>) -> Vec<String> {
    vec![
        format!(
            "blackbox_exporter: {} (the Debian package `prometheus-blackbox-exporter`, unpacked into \
             target/tools/blackbox by tools/install-blackbox.sh, not installed), listening on 127.0.0.1, \
             module `http_2xx` (prober http, timeout 2s, preferred_ip_protocol ip4); it opens a new \
             connection per probe.",
            version.unwrap_or("not found")
        ),
        format!(
            "The scrape loop sends `GET /probe?module=http_2xx&target=http://127.1.x.y:PORT/healthz` at \
             the rate, spread evenly, cycling over the targets, over keep-alive connections (as Prometheus \
             scrapes), at most {MAX_IN_FLIGHT} in flight (\"dropped\": ticks that found none free); a probe \
             counts when the exporter answered, failed unless its body says `probe_success 1`. The \
             exporter's CPU includes serving those scrapes, as it would for Prometheus."
        ),
        format!(
            "The operator side of each rate is a separate run in the same suite: the same number of farm \
             targets as ready pods, {PODS_PER_POLICY} per Deployment with one policy each, probed every \
             {} s; its CPU is the whole process's (watches and reconciles included). Both sides get {} s \
             of warm-up and a {} s window.",
            PERIOD.as_secs(),
            ctx.warmup.as_secs(),
            ctx.window.as_secs()
        ),
    ]
}

async fn blackbox(ctx: &Ctx, rate: usize, targets: usize) -> Result<PeerWindow> {
    let dir = ctx.case_dir(&format!("peer-{rate}-blackbox"))?;
    let config = dir.join("blackbox.yml");
    write_file(&config, CONFIG)?;
    let port = free_port()?;
    let mut command = Command::new(&ctx.blackbox);
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn");
    let mut exporter = Child::spawn(
        "blackbox_exporter",
        command,
        &dir.join("blackbox.log"),
        ctx.ticks_per_second,
    )?;
    let client = Client::new();
    let healthy = format!("http://127.0.0.1:{port}/-/healthy");
    wait_for("blackbox_exporter to start", Duration::from_secs(30), || async {
        matches!(client.get(&healthy, Duration::from_secs(2)).await, Ok((200, _))).then_some(())
    })
    .await?;

    let urls: Arc<Vec<String>> = Arc::new(
        (0..targets)
            .map(|i| {
                farm::address(i).map(|ip| {
                    format!(
                        "http://127.0.0.1:{port}/probe?module=http_2xx&target=http://{ip}:{}/healthz",
                        ctx.farm.port()
                    )
                })
            })
            .collect::<Result<_>>()?,
    );
    let counters = Arc::new(Counters::default());
    let scrapes = tokio::spawn(scrape_loop(client, urls, rate, counters.clone()));
    let result = async {
        tokio::time::sleep(ctx.warmup).await;
        exporter.check_running()?;
        let (t0, cpu0, c0, f0) = (
            Instant::now(),
            exporter.cpu_seconds()?,
            snapshot(&counters),
            ctx.farm.counts().await?.total(usize::MAX),
        );
        tokio::time::sleep(ctx.window).await;
        exporter.check_running()?;
        let (t1, cpu1, c1, f1) = (
            Instant::now(),
            exporter.cpu_seconds()?,
            snapshot(&counters),
            ctx.farm.counts().await?.total(usize::MAX),
        );
        Ok::<_, crate::Error>(PeerWindow {
            seconds: (t1 - t0).as_secs_f64(),
            ok: c1.0 - c0.0,
            failed: c1.1 - c0.1,
            dropped: c1.2 - c0.2,
            farm_requests: f1 - f0,
            cpu_seconds: cpu1 - cpu0,
        })
    }
    .await;
    scrapes.abort();
    exporter.stop();
    let window = result?;
    if window.probes() == 0.0 {
        return Err("blackbox_exporter answered no probe".into());
    }
    Ok(window)
}

fn snapshot(c: &Counters) -> (u64, u64, u64) {
    (
        c.ok.load(Ordering::Relaxed),
        c.failed.load(Ordering::Relaxed),
        c.dropped.load(Ordering::Relaxed),
    )
}

/// Sends scrape `k` at `start + k / rate` to target `k mod targets`, until aborted.
async fn scrape_loop(client: Client, urls: Arc<Vec<String>>, rate: usize, counters: Arc<Counters>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let start = tokio::time::Instant::now();
    let interval = Duration::from_secs(1).div_f64(rate as f64);
    for k in 0u64.. {
        tokio::time::sleep_until(start + interval.mul_f64(k as f64)).await;
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Some(url) = urls.get((k % urls.len().max(1) as u64) as usize).cloned() else {
            return;
        };
        let (client, counters) = (client.clone(), counters.clone());
        tokio::spawn(async move {
            let ok = matches!(
                client.get(&url, Duration::from_secs(5)).await,
                Ok((200, body)) if body.lines().any(|l| l.trim() == "probe_success 1")
            );
            let counter = if ok { &counters.ok } else { &counters.failed };
            counter.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}
