//! `apphealth-bench`: the benchmark suite of apphealth-operator (issue 8). Runs the release
//! operator binary as its own process against the in-process API test server, probing a farm of
//! HTTP targets on loopback addresses, measures it from /proc and its /metrics, and writes
//! BENCHMARKS.md.
//!
//! ```text
//! apphealth-bench [capacity|peer|memory|...|shards] [--only CASE] [--quick] [--out PATH]
//! ```
//! Every address it binds or connects to is in 127.0.0.0/8.

#![forbid(unsafe_code)]

mod client;
mod cluster;
mod exposition;
mod farm;
mod operator;
mod process;
mod report;
mod scenario;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use clap::{Parser, ValueEnum};

use crate::{
    farm::Farm,
    report::{Machine, Section},
    scenario::Ctx,
};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Farm targets: the most any scenario probes.
const TARGETS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// 100, 1,000 and 10,000 pods at a 10 s period, in one policy and spread over many.
    Capacity,
    /// blackbox_exporter probing the same targets at 200 and 1,000 probes/s.
    Peer,
    /// RSS idle, with 1,000 and 10,000 policies, and with 10,000 realistic pods cached.
    Memory,
    /// One pod of a 1,000-pod (and a 10-pod) Deployment turns 503: detection and reaction times.
    Latency,
    /// No-op reconciles per second with 10,000 policies.
    Reconcile,
    /// 1,000 policies over pods failing at random for 10 minutes: RSS, missed rounds, ladders,
    /// repeated actions.
    Soak,
    /// On a real kube-apiserver (a local control plane): memory per realistic pod with real
    /// managedFields, startup with thousands of policies, the API requests of a healthy hour and
    /// of one remediation.
    Realapi,
    /// Three replicas with `--shards 3` over 1,000 pods in 100 Deployments: each one's share of
    /// the probes, and the failover gap after one is killed.
    Shards,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Capacity => "capacity",
            Scenario::Peer => "peer",
            Scenario::Memory => "memory",
            Scenario::Latency => "latency",
            Scenario::Reconcile => "reconcile",
            Scenario::Soak => "soak",
            Scenario::Realapi => "realapi",
            Scenario::Shards => "shards",
        }
    }
}

/// Runs the benchmark suite of apphealth-operator and writes BENCHMARKS.md.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Scenarios to run (all when none is named).
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,
    /// Only this case of the scenario: capacity 100x1, 1000x1, 10000x1, 100x100, 1000x1000,
    /// 10000x1000 (pods x policies); peer 200 or 1000 (probes/s); memory idle, policies-1000,
    /// policies-10000, policies-10000-shared, pods-10000; latency 1000 or 10 (pods); reconcile 10000 (policies); soak 1000 (policies);
    /// realapi pods-7000, policies-1000, policies-10000, requests; shards 3 (replicas and shards).
    #[arg(long)]
    only: Option<String>,
    /// Short warm-up (3 s) and window (10 s), and at most 5 latency trials, to try the harness
    /// out; figures are rougher.
    #[arg(long)]
    quick: bool,
    /// Where the report goes [default: BENCHMARKS.md for the whole suite, else
    /// target/bench/BENCHMARKS.partial.md].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The directory holding the apphealth-operator binary [default: this program's own].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The blackbox_exporter binary (unpacked by tools/install-blackbox.sh).
    #[arg(
        long,
        default_value = "target/tools/blackbox/usr/bin/prometheus-blackbox-exporter"
    )]
    blackbox: PathBuf,
    /// Working directory for kubeconfigs, configs, logs and the copy of the operator binary.
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// The local control plane's binaries, for realapi [default: the directory
    /// `tools/kube/build.sh` prints, building them the first time].
    #[arg(long)]
    kube_bin: Option<PathBuf>,
    /// Internal: serve this many farm targets (the farm's child process).
    #[arg(long, hide = true)]
    serve_farm: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = process::raise_open_files_limit(TARGETS as u64 + 2_000) {
        eprintln!("bench: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // On Ctrl-C or SIGTERM the run is dropped, and with it every child process (killed on drop).
    let interrupted = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    };
    if let Some(count) = cli.serve_farm {
        return match runtime.block_on(farm::serve_child(count)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench farm: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = run(cli) => result,
            _ = interrupted => Err("interrupted; the processes it started are stopped".into()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Copies the operator binary into the work directory, so that a build running meanwhile cannot
/// swap it between scenarios.
fn snapshot_operator(cli: &Cli) -> Result<PathBuf> {
    let dir = match &cli.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .ok_or("cannot tell this program's directory")?,
    };
    let source = dir.join("apphealth-operator");
    if !source.is_file() {
        return Err(format!(
            "no operator binary at {}: build it with `cargo build --release --bin apphealth-operator` (make bench does)",
            source.display()
        )
        .into());
    }
    let bin = cli.work_dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    let copy = bin.join("apphealth-operator");
    std::fs::copy(&source, &copy).map_err(|e| format!("copy {}: {e}", source.display()))?;
    Ok(copy)
}

/// The operator's CRDs: the documents `apphealth-operator crd` prints.
fn operator_crds(operator: &Path) -> Result<Vec<serde_json::Value>> {
    let output = Command::new(operator).arg("crd").output()?;
    if !output.status.success() {
        return Err(format!("`{} crd` failed", operator.display()).into());
    }
    let yaml = String::from_utf8(output.stdout)?;
    let mut crds = Vec::new();
    for document in yaml.split("\n---\n") {
        crds.push(serde_saphyr::from_str(document)?);
    }
    Ok(crds)
}

async fn run(cli: Cli) -> Result<()> {
    let began = Instant::now();
    let scenarios = if cli.scenarios.is_empty() {
        vec![
            Scenario::Capacity,
            Scenario::Peer,
            Scenario::Memory,
            Scenario::Latency,
            Scenario::Reconcile,
            Scenario::Soak,
            Scenario::Realapi,
            Scenario::Shards,
        ]
    } else {
        cli.scenarios.clone()
    };
    let whole = cli.scenarios.is_empty() && cli.only.is_none();
    let out = cli.out.clone().unwrap_or_else(|| {
        if whole && !cli.quick {
            PathBuf::from("BENCHMARKS.md")
        } else {
            cli.work_dir.join("BENCHMARKS.partial.md")
        }
    });
    std::fs::create_dir_all(&cli.work_dir)?;
    let operator = snapshot_operator(&cli)?;
    let crds = operator_crds(&operator)?;
    let ticks_per_second = process::ticks_per_second();
    let farm = Farm::start(TARGETS).await?;
    eprintln!(
        "bench: farm of {TARGETS} targets on 127.1.0.1-127.1.{}.{}:{}",
        (TARGETS - 1) / 250,
        (TARGETS - 1) % 250 + 1,
        farm.port()
    );
    let (window, warmup) = if cli.quick {
        (Duration::from_secs(10), Duration::from_secs(3))
    } else {
        (Duration::from_secs(30), scenario::PERIOD)
    };
    let machine = machine(&operator, &cli, warmup, window, ticks_per_second);
    let ctx = Ctx {
        farm,
        operator,
        blackbox: cli.blackbox.clone(),
        crds,
        work: cli.work_dir.clone(),
        ticks_per_second,
        warmup,
        window,
        patience: Duration::from_secs(180),
        bench_command: "target/release/apphealth-bench".into(),
        incidents: std::sync::Mutex::default(),
        quick: cli.quick,
        kube_bin: cli.kube_bin.clone(),
    };
    let only = cli.only.as_deref();
    let mut sections = run_scenarios(&ctx, &scenarios, only, &machine, &out).await?;
    sections.push(Section {
        title: "Where a goal is missed: profiles and reasons".into(),
        details: include_str!("../MISSED.md").into(),
        ..Section::default()
    });
    sections.push(harness_section());
    let incidents = ctx
        .incidents
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let closing = closing(began, &incidents);
    let text = report::render(&machine, &sections, &closing);
    scenario::write_file(&out, &text)?;
    println!("{text}");
    eprintln!("bench: wrote {}", out.display());
    Ok(())
}

/// What the report says about the machine and the setup.
fn machine(operator: &Path, cli: &Cli, warmup: Duration, window: Duration, ticks_per_second: f64) -> Machine {
    let operator_version = Command::new(operator)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let limits = process::open_files_limits().map_or("unknown".into(), |(s, h)| format!("{s} (hard {h})"));
    Machine::gather(vec![
        format!(
            "Operator under test: {operator_version}, the release binary, run as `apphealth-operator run \
             --api-qps {} --api-burst {}` (the client-side API rate limit raised from its defaults of 5/s, \
             burst 10, which would make starting with thousands of policies take minutes; steady-state \
             probing makes no API requests)",
            operator::API_QPS,
            operator::API_BURST
        ),
        format!(
            "Bench: the API test server in the bench process, the target farm ({TARGETS} hyper HTTP/1 \
             listeners on 127.1.x.y, one port) in a child process of its own; open-files limit {limits} \
             each; CLK_TCK {ticks_per_second}"
        ),
        format!(
            "Windows: {} s warm-up, {} s measurement{}",
            warmup.as_secs(),
            window.as_secs(),
            if cli.quick { " (--quick)" } else { "" }
        ),
        "The machine is shared: other work may run meanwhile. CPU figures are the measured process's own \
         CPU time and are little affected; lag and achieved rates can be."
            .into(),
    ])
}

/// The section on what the harness reads from the operator.
fn harness_section() -> Section {
    Section {
        title: "What the harness reads from the operator".into(),
        notes: vec![
            "`apphealth_probes_total{result=\"ok\"|\"fail\"}` (counter): the false failures (`fail`) and \
             the operator's own count beside the farm's."
                .into(),
            "`apphealth_probe_latency_seconds` (histogram): how long probes took to answer.".into(),
            format!(
                "`{}` (histogram, seconds from an endpoint's due time to its probe's start; series summed \
                 over any labels but `le`): the p50/p99 lag. Shown as n/a while the operator does not \
                 export it.",
                scenario::LAG_HISTOGRAM
            ),
            format!(
                "`{}` and `{}` (counters, summed over any labels): probes started late, and probes not sent \
                 because the operator-wide bound was reached. n/a while absent.",
                scenario::DELAYED,
                scenario::SKIPPED
            ),
            "`apphealth_shard_held{shard=\"N\"}` (gauge, 1 for each shard a replica holds): which \
             replica probes which shard, and when a survivor took a killed replica's shard over (the \
             shards scenario)."
                .into(),
            "`/readyz` (200 once caches are synced and probing started) and each policy's `Ready` \
             condition in the API (every policy reconciled). CPU and memory come from /proc, probes sent \
             from the farm's own counts."
                .into(),
        ],
        ..Section::default()
    }
}

/// The report's closing lines: load, duration, incidents, how to reproduce.
fn closing(began: Instant, incidents: &[String]) -> Vec<String> {
    vec![
        format!(
            "Load average at the end: {}; the run took {} s",
            report::load_average(),
            began.elapsed().as_secs()
        ),
        if incidents.is_empty() {
            "Incidents: none".to_string()
        } else {
            format!("Incidents: {}", incidents.join("; "))
        },
        "Reproduce: `make bench` (everything), `make bench SCENARIO=capacity` (one scenario), or the \
         command in a row (after `make bench` built the binaries)"
            .into(),
    ]
}

/// Runs each scenario in turn; after each, the report so far is written to `out`.
async fn run_scenarios(
    ctx: &Ctx,
    scenarios: &[Scenario],
    only: Option<&str>,
    machine: &Machine,
    out: &Path,
) -> Result<Vec<Section>> {
    let mut sections: Vec<Section> = Vec::new();
    for s in scenarios {
        let started = Instant::now();
        eprintln!("bench: scenario {}", s.name());
        let mut section = match s {
            Scenario::Capacity => scenario::capacity::run(ctx, only).await,
            Scenario::Peer => scenario::peer::run(ctx, only).await,
            Scenario::Memory => scenario::memory::run(ctx, only).await,
            Scenario::Latency => scenario::latency::run(ctx, only).await,
            Scenario::Reconcile => scenario::reconcile::run(ctx, only).await,
            Scenario::Soak => scenario::soak::run(ctx, only).await,
            Scenario::Realapi => scenario::realapi::run(ctx, only).await,
            Scenario::Shards => scenario::shards::run(ctx, only).await,
        };
        section.notes.push(format!(
            "This scenario took {} s; `make bench SCENARIO={}` runs it alone.",
            started.elapsed().as_secs(),
            s.name()
        ));
        sections.push(section);
        // What is done so far, in case the run is cut short; the complete report replaces it.
        if sections.len() < scenarios.len() {
            let partial = vec![format!(
                "Incomplete: {} of {} scenarios ran (the run was cut short, or is still going)",
                sections.len(),
                scenarios.len()
            )];
            scenario::write_file(out, &report::render(machine, &sections, &partial))?;
        }
    }
    Ok(sections)
}
