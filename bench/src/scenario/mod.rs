//! The scenarios, and what they share: a run of the operator over a set of probed workloads, and
//! the figures of a measurement window between two snapshots.

pub mod capacity;
pub mod latency;
pub mod memory;
pub mod peer;
pub mod realapi;
pub mod reconcile;
pub mod shards;
pub mod soak;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    Result,
    cluster::Cluster,
    exposition::Histogram,
    farm::{self, Farm},
    operator::{Operator, Snapshot},
    process::Memory,
    report::num,
};

/// The probe period of every scenario.
pub const PERIOD: Duration = Duration::from_secs(10);

/// The lag histogram and the overload counters the rewritten scheduler exports.
pub const LAG_HISTOGRAM: &str = "apphealth_probe_lag_seconds";
pub const LATENCY_HISTOGRAM: &str = "apphealth_probe_latency_seconds";
pub const DELAYED: &str = "apphealth_probes_delayed_total";
pub const SKIPPED: &str = "apphealth_probes_skipped_total";

/// What every scenario needs.
pub struct Ctx {
    pub farm: Farm,
    pub operator: PathBuf,
    pub blackbox: PathBuf,
    /// The operator's CRDs (`apphealth-operator crd`): AppHealthPolicy's, then
    /// ClusterAppHealthPolicy's.
    pub crds: Vec<Value>,
    pub work: PathBuf,
    pub ticks_per_second: f64,
    /// Warm-up after the operator is ready and probing.
    pub warmup: Duration,
    /// The measurement window.
    pub window: Duration,
    /// How long a start (every policy reconciled and probing; without policies, /readyz) may take.
    pub patience: Duration,
    /// How the suite was started, for the commands in the report (`target/release/apphealth-bench`).
    pub bench_command: String,
    /// What went wrong on the way (a /readyz that lagged behind a started operator), for the report.
    pub incidents: std::sync::Mutex<Vec<String>>,
    /// `--quick`: shorter windows, fewer trials.
    pub quick: bool,
    /// The local control plane's binaries (`--kube-bin`; else `tools/kube/build.sh` says where).
    pub kube_bin: Option<PathBuf>,
}

impl Ctx {
    /// A fresh directory for one case's kubeconfig, configs and logs.
    pub fn case_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.work.join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    pub fn incident(&self, text: String) {
        eprintln!("bench: {text}");
        self.incidents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(text);
    }

    pub fn command(&self, args: &str) -> String {
        format!("{} {args}", self.bench_command)
    }
}

/// Workloads to probe: `policies` Deployments of `pods / policies` ready pods each (at farm
/// targets 0..pods), one policy over each, probing every [`PERIOD`].
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub pods: usize,
    /// Deployments (one policy each unless `over` says otherwise).
    pub policies: usize,
    /// What covers the Deployments.
    pub over: Over,
}

/// What covers a case's Deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// One AppHealthPolicy each.
    Each,
    /// One AppHealthPolicy over them all, by targetSelector.
    Selector,
    /// One ClusterAppHealthPolicy over them all (targetSelector and namespaceSelector).
    Cluster,
}

impl Layout {
    pub fn id(&self) -> String {
        match self.over {
            Over::Each => format!("{}x{}", self.pods, self.policies),
            Over::Selector => format!("{}x{}-selector", self.pods, self.policies),
            Over::Cluster => format!("{}x{}-cluster", self.pods, self.policies),
        }
    }

    /// The policies the case creates.
    pub fn policy_objects(&self) -> usize {
        match self.over {
            Over::Each => self.policies,
            Over::Selector | Over::Cluster => 1.min(self.policies),
        }
    }

    pub fn describe(&self) -> String {
        if self.over != Over::Each {
            let per = self.pods / self.policies.max(1);
            return format!(
                "{} pods in {} Deployments of {per} pods, one {} over them",
                num(self.pods as f64, 0),
                num(self.policies as f64, 0),
                if self.over == Over::Cluster {
                    "ClusterAppHealthPolicy"
                } else {
                    "targetSelector policy"
                }
            );
        }
        format!(
            "{} pods in {} {}",
            num(self.pods as f64, 0),
            num(self.policies as f64, 0),
            if self.policies == 1 {
                "Deployment with one policy".to_string()
            } else {
                let per = self.pods / self.policies.max(1);
                format!(
                    "Deployments of {per} pod{}, one policy each",
                    if per == 1 { "" } else { "s" }
                )
            }
        )
    }

    /// Probes due per second.
    pub fn due_per_second(&self) -> f64 {
        self.pods as f64 / PERIOD.as_secs_f64()
    }

    /// Creates the Deployments, pods and policies.
    pub fn create(&self, cluster: &Cluster, farm: &Farm) -> Result<()> {
        if self.pods > farm.len() {
            return Err(format!("{} pods but the farm has {} targets", self.pods, farm.len()).into());
        }
        let per = self.pods / self.policies.max(1);
        let mut target = 0;
        for i in 0..self.policies {
            let app = format!("app-{i:05}");
            if self.over != Over::Each {
                cluster.add_labelled_deployment(&app, per, farm.port(), "tier", "bench")?;
            } else {
                cluster.add_deployment(&app, per, farm.port())?;
            }
            for j in 0..per {
                cluster.add_pod(
                    &format!("{app}-{j:05}"),
                    &app,
                    farm::address(target)?,
                    farm.port(),
                )?;
                target += 1;
            }
            if self.over == Over::Each {
                cluster.add_policy(&app, &app, PERIOD.as_secs())?;
            }
        }
        let spec = crate::cluster::selector_policy_spec("tier", "bench", PERIOD.as_secs());
        match self.over {
            _ if self.policies == 0 => {}
            Over::Each => {}
            Over::Selector => cluster.add_policy_with("fleet", spec)?,
            Over::Cluster => cluster.add_cluster_policy("fleet", spec)?,
        }
        Ok(())
    }
}

/// An operator started over a [`Layout`], ready, every policy reconciled, probing.
pub struct Running {
    /// The API server the operator talks to (dropping it stops the server).
    pub cluster: Cluster,
    pub operator: Operator,
    /// From the operator's start until every policy had a Ready condition and probes flowed.
    pub startup: Duration,
}

/// Why a start did not finish.
struct StartError {
    error: crate::Error,
    /// The operator was mostly idle while it waited: stuck rather than slow.
    stalled: bool,
}

/// Creates `layout` in a fresh test server and starts the operator over it; waits until every
/// policy has a Ready condition and the farm has answered a first probe (without policies: until
/// `/readyz` answers 200). A start that does not finish within the patience fails with what was
/// seen (and its diagnostics saved in the case's directory); one that stalled (the operator used
/// less than half a core meanwhile) is tried once more, as an incident.
pub async fn start(ctx: &Ctx, case: &str, layout: Layout) -> Result<Running> {
    let setup = Setup {
        pods: layout.pods,
        policies: layout.policy_objects(),
        create: &|cluster, farm| layout.create(cluster, farm),
    };
    start_over(ctx, case, &setup).await
}

/// What a case creates in a fresh test server before the operator starts: `pods` ready pods at
/// farm targets `0..pods` and `policies` policies, by `create`.
pub struct Setup<'a> {
    pub pods: usize,
    pub policies: usize,
    pub create: &'a (dyn Fn(&Cluster, &Farm) -> Result<()> + Sync),
}

/// [`start`] over any [`Setup`].
pub async fn start_over(ctx: &Ctx, case: &str, setup: &Setup<'_>) -> Result<Running> {
    let layout = setup;
    match start_once(ctx, case, layout).await {
        Ok(running) => Ok(running),
        Err(StartError { error, stalled: true }) => {
            ctx.incident(format!(
                "{case}: the operator stalled while starting ({error}; diagnostics in {}); started again",
                ctx.work.join(case).display()
            ));
            start_once(ctx, &format!("{case}-retry"), layout)
                .await
                .map_err(|e| e.error)
        }
        Err(e) => Err(e.error),
    }
}

async fn start_once(ctx: &Ctx, case: &str, layout: &Setup<'_>) -> Result<Running, StartError> {
    let plain = |error: crate::Error| StartError {
        error,
        stalled: false,
    };
    let dir = ctx.case_dir(case).map_err(plain)?;
    ctx.farm.heal_all().await.map_err(plain)?;
    let cluster = Cluster::start(&ctx.crds, &dir).await.map_err(plain)?;
    (layout.create)(&cluster, &ctx.farm).map_err(plain)?;
    let sent_before = ctx.farm.counts().await.map_err(plain)?.total(layout.pods);
    let started = Instant::now();
    let mut operator = Operator::start(
        &ctx.operator,
        &cluster.kubeconfig,
        &dir.join("operator.log"),
        ctx.ticks_per_second,
    )
    .map_err(plain)?;
    let waited = if layout.policies == 0 {
        operator.wait_ready(ctx.patience).await.map(|_| ())
    } else {
        loop {
            if let Err(e) = operator.process.check_running() {
                break Err(e);
            }
            let reconciled = cluster.policies_with_ready();
            let probed = ctx
                .farm
                .counts()
                .await
                .is_ok_and(|c| c.total(layout.pods) > sent_before);
            if reconciled >= layout.policies && probed {
                break Ok(());
            }
            if started.elapsed() >= ctx.patience {
                break Err(format!(
                    "the operator had not started within {} s: {} of {} policies had a Ready condition, \
                     {}; /readyz: {}",
                    ctx.patience.as_secs(),
                    num(reconciled as f64, 0),
                    num(layout.policies as f64, 0),
                    if probed {
                        "probing had begun"
                    } else {
                        "no probe had reached the farm"
                    },
                    operator.readyz().await
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    if let Err(e) = waited {
        save_diagnostics(&dir, &cluster, &operator).await;
        let cpu = operator.process.cpu_seconds().ok();
        let seen = match (operator.memory(), cpu) {
            (Ok(m), Some(cpu)) => format!(
                " (RSS then {}, peak {}; {} CPU-s used in {} s)",
                crate::report::mib(m.rss_kib),
                crate::report::mib(m.peak_kib),
                num(cpu, 1),
                started.elapsed().as_secs()
            ),
            _ => String::new(),
        };
        let running = operator.process.check_running().is_ok();
        return Err(StartError {
            error: format!("{e}{seen}").into(),
            stalled: running && cpu.is_some_and(|c| c < 0.5 * started.elapsed().as_secs_f64()),
        });
    }
    let startup = started.elapsed();
    if layout.policies > 0 {
        // Every policy is probing: /readyz should say so.
        let ready = operator.wait_ready(Duration::from_secs(10)).await;
        if let Err(e) = ready {
            ctx.incident(format!(
                "{case}: every policy was reconciled and probing, but {e}; diagnostics in {}",
                dir.display()
            ));
            save_diagnostics(&dir, &cluster, &operator).await;
        }
    }
    Ok(Running {
        cluster,
        operator,
        startup,
    })
}

/// What the API server was asked (method, path, status) and the operator's /metrics, for a start
/// that did not finish.
async fn save_diagnostics(dir: &Path, cluster: &Cluster, operator: &Operator) {
    let requests: String = cluster
        .server
        .requests()
        .iter()
        .map(|r| format!("{} {} {}\n", r.status, r.method, r.path))
        .collect();
    let _ = std::fs::write(dir.join("requests.log"), requests);
    if let Ok(text) = operator.metrics_text().await {
        let _ = std::fs::write(dir.join("metrics.txt"), text);
    }
}

/// The figures of one measurement window.
#[derive(Debug, Clone)]
pub struct Window {
    pub seconds: f64,
    /// Probes sent: the requests the farm's targets of this case answered (nothing else talks to
    /// them meanwhile).
    pub probes: f64,
    /// Probes the operator counted (`apphealth_probes_total`, all results).
    pub counted: f64,
    /// Probes the operator counted with `result="fail"`.
    pub failed: f64,
    /// Requests the farm answered (all targets).
    pub farm_requests: u64,
    /// Of the first `targets` farm targets, how many answered at least one request.
    pub targets_reached: usize,
    pub targets: usize,
    pub connections: u64,
    pub cpu_seconds: f64,
    /// CPU seconds of the bench's processes (API test server and farm) over the window.
    pub bench_cpu_seconds: f64,
    pub lag: Option<Histogram>,
    /// `apphealth_probe_latency_seconds` over the window (how long probes took to answer).
    pub latency: Option<Histogram>,
    pub delayed: Option<f64>,
    pub skipped: Option<f64>,
    pub memory: Memory,
}

impl Window {
    pub fn between(a: &Snapshot, b: &Snapshot, targets: usize, memory: Memory) -> Window {
        let total = |s: &Snapshot, with: &[(&str, &str)]| s.metrics.sum("apphealth_probes_total", with);
        let delta = |name: &str| {
            let before = a.metrics.sum(name, &[]);
            b.metrics
                .sum(name, &[])
                .map(|after| after - before.unwrap_or(0.0))
        };
        let histogram = |name: &str| match (a.metrics.histogram(name), b.metrics.histogram(name)) {
            (Some(before), Some(after)) => Some(after.since(&before)),
            (None, Some(after)) => Some(after),
            _ => None,
        };
        let per_target: Vec<u64> = b
            .farm_requests
            .iter()
            .zip(a.farm_requests.iter().chain(std::iter::repeat(&0)))
            .map(|(after, before)| after.saturating_sub(*before))
            .collect();
        Window {
            seconds: (b.at - a.at).as_secs_f64(),
            probes: per_target.iter().take(targets).sum::<u64>() as f64,
            counted: total(b, &[]).unwrap_or(0.0) - total(a, &[]).unwrap_or(0.0),
            failed: total(b, &[("result", "fail")]).unwrap_or(0.0)
                - total(a, &[("result", "fail")]).unwrap_or(0.0),
            farm_requests: per_target.iter().sum(),
            targets_reached: per_target.iter().take(targets).filter(|n| **n > 0).count(),
            targets,
            connections: b.farm_connections.saturating_sub(a.farm_connections),
            cpu_seconds: b.cpu_seconds - a.cpu_seconds,
            bench_cpu_seconds: b.bench_cpu_seconds - a.bench_cpu_seconds,
            lag: histogram(LAG_HISTOGRAM),
            latency: histogram(LATENCY_HISTOGRAM),
            delayed: delta(DELAYED),
            skipped: delta(SKIPPED),
            memory,
        }
    }

    pub fn probes_per_second(&self) -> f64 {
        self.probes / self.seconds
    }

    pub fn cores(&self) -> f64 {
        self.cpu_seconds / self.seconds
    }

    pub fn probes_per_cpu_second(&self) -> f64 {
        if self.cpu_seconds > 0.0 {
            self.probes / self.cpu_seconds
        } else {
            f64::INFINITY
        }
    }

    pub fn lag_ms(&self, q: f64) -> Option<f64> {
        self.lag.as_ref()?.quantile(q).map(|s| s * 1000.0)
    }

    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        self.latency.as_ref()?.quantile(q).map(|s| s * 1000.0)
    }
}

/// Runs `layout`, warms up, measures one window; the operator is stopped after.
pub async fn measure(ctx: &Ctx, case: &str, layout: Layout) -> Result<(Window, Duration)> {
    let mut running = start(ctx, case, layout).await?;
    tokio::time::sleep(ctx.warmup).await;
    let a = running.operator.snapshot(Some(&ctx.farm)).await?;
    tokio::time::sleep(ctx.window).await;
    let b = running.operator.snapshot(Some(&ctx.farm)).await?;
    let memory = running.operator.memory()?;
    let window = Window::between(&a, &b, layout.pods, memory);
    let startup = running.startup;
    running.operator.process.stop();
    Ok((window, startup))
}

pub fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()).into())
}
