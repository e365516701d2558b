#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use apphealth_operator::{
    check::{self, CheckOptions},
    clock::SystemClock,
    controller,
    fleet::keeper::ShardConfig,
    leader::LeaderElection,
    metrics::Metrics,
    observe::{
        prober::install_crypto_provider,
        reach::{self, Reach},
    },
    server::{self, Readyz},
    telemetry::{self, LogFormat},
};
use clap::{Parser, Subcommand};

/// Keeps applications healthy: probes the workloads named by AppHealthPolicy objects and
/// remediates them with guardrails.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the cluster of the current kube context (or in-cluster config).
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML: AppHealthPolicy and ClusterAppHealthPolicy
    /// (two documents, for `kubectl apply -f -`), or the one named.
    Crd {
        /// `apphealthpolicies` or `clusterapphealthpolicies`: print only that one.
        #[arg(value_parser = ["apphealthpolicies", "clusterapphealthpolicies"])]
        plural: Option<String>,
    },
    /// Validate AppHealthPolicy files offline, as `kubectl apply` and the operator would: the CRD's
    /// schema, its CEL rules, unknown fields, and the operator's own checks. Prints
    /// `file:line: field: problem`; exits 1 on any problem. Other kinds are skipped.
    Lint {
        /// YAML files or directories (searched for .yaml and .yml files).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Probe a URL the way a policy would, printing each probe, the verdict and the remediation the
    /// operator would take. Never touches a cluster.
    Check {
        /// The AppHealthPolicy YAML file.
        #[arg(long)]
        policy: PathBuf,
        /// The URL to probe in place of the policy's target, e.g. http://127.0.0.1:8080/healthz.
        #[arg(long)]
        url: String,
        /// Stop after this many probes (default: until Ctrl-C).
        #[arg(long)]
        probes: Option<u32>,
        /// Probe this often instead of spec.probe.periodSeconds, e.g. 500ms.
        #[arg(long)]
        period: Option<String>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only these namespaces, comma-separated (needs no cluster-wide rights); all
    /// namespaces when omitted.
    #[arg(long, env = "APPHEALTH_NAMESPACE", value_delimiter = ',')]
    namespace: Vec<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text", env = "APPHEALTH_LOG_FORMAT")]
    log_format: LogFormat,
    /// Identity of this replica in Events (defaults to the pod name when set).
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,
    /// Average Kubernetes API requests per second (client-side limit).
    #[arg(long, default_value_t = 5.0, env = "APPHEALTH_API_QPS")]
    api_qps: f64,
    /// Most Kubernetes API requests at once before the limit applies.
    #[arg(long, default_value_t = 10, env = "APPHEALTH_API_BURST")]
    api_burst: u64,
    /// Most remediation ladders acting on their targets at once, operator-wide (0: no cap), so a
    /// cluster-wide incident does not make the operator restart everything at once.
    #[arg(long, default_value_t = 10, env = "APPHEALTH_MAX_CONCURRENT_REMEDIATIONS")]
    max_concurrent_remediations: u32,
    /// Most probes in flight at once, operator-wide. A probe due while all are taken waits for
    /// one; the wait is counted (apphealth_probes_delayed_total) and shown on the policies' Ready
    /// condition.
    #[arg(long, default_value_t = apphealth_operator::probing::DEFAULT_MAX_CONCURRENT_PROBES, value_parser = clap::value_parser!(u32).range(1..), env = "APPHEALTH_MAX_CONCURRENT_PROBES")]
    max_concurrent_probes: u32,
    /// Most policies reconciled at once (per watched namespace, or cluster-wide).
    #[arg(long, default_value_t = controller::DEFAULT_MAX_CONCURRENT_RECONCILES, value_parser = clap::value_parser!(u16).range(1..), env = "APPHEALTH_MAX_CONCURRENT_RECONCILES")]
    max_concurrent_reconciles: u16,
    /// Lead through a Lease in this namespace, so that of several replicas only one probes, acts and
    /// writes status (the others stand by). In a cluster, POD_NAMESPACE from the downward API; no
    /// leader election when unset.
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, default_value = "apphealth-operator", env = "APPHEALTH_LEASE_NAME")]
    lease_name: String,
    /// Seconds a lease holds without renewal: a standby takes over within this.
    #[arg(long, default_value_t = 15, env = "APPHEALTH_LEASE_DURATION_SECONDS")]
    lease_duration_seconds: u64,
    /// Share the work across replicas: each holds some of N shard Leases (named
    /// `<lease-name>-shard-<n>`, in --lease-namespace) and probes, acts and writes status only for
    /// the workloads that hash to its shards; a dead replica's shards are taken over within the
    /// lease duration. 1: one replica leads (leader election), as without it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024), env = "APPHEALTH_SHARDS")]
    shards: u32,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:8080", env = "APPHEALTH_HTTP_ADDR")]
    http_addr: std::net::SocketAddr,
    /// Probe (and post webhooks to) loopback addresses, 127.0.0.0/8 and ::1: for tests and demos
    /// whose "pods" run on this machine. Off in a cluster, where a pod IP is never loopback and a
    /// loopback probe would reach the operator's own pod.
    #[arg(long, env = "APPHEALTH_ALLOW_LOOPBACK")]
    allow_loopback: bool,
}

/// Resolves on SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the operator"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The operator's client, and one without kube's retries for the writes it retries itself;
/// both under the API rate limit.
fn clients(
    config: kube::Config,
    limit: controller::ApiRateLimit,
    metrics: &Arc<Metrics>,
) -> Result<(kube::Client, kube::Client), apphealth_operator::Error> {
    let mut direct = config.clone();
    direct.default_retry = false;
    Ok((
        controller::rate_limited_client(config, limit, Some(metrics.clone()))?,
        controller::rate_limited_client(direct, limit, Some(metrics.clone()))?,
    ))
}

/// Leader election when `--lease-namespace` is given: this instance's identity and the lease's
/// timings.
fn leader_election(args: &RunArgs) -> Option<LeaderElection> {
    args.lease_namespace.clone().map(|namespace| {
        let identity = args
            .instance
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("apphealth-operator-{}", std::process::id()));
        LeaderElection {
            lease_name: args.lease_name.clone(),
            duration: Duration::from_secs(args.lease_duration_seconds.max(2)),
            grace: Duration::from_secs((args.lease_duration_seconds / 3).max(1)),
            ..LeaderElection::new(namespace, identity)
        }
    })
}

async fn run(args: RunArgs) -> ExitCode {
    telemetry::init(args.log_format);
    let config = match kube::Config::infer().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: no Kubernetes configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The API server's own addresses are never probed: read them before the config is consumed.
    let api_server = reach::api_server_addresses(&reach::api_server_endpoints(
        &config.cluster_url,
        std::env::var("KUBERNETES_SERVICE_HOST").ok().as_deref(),
        std::env::var("KUBERNETES_SERVICE_PORT").ok().as_deref(),
    ))
    .await;
    let limit = controller::ApiRateLimit {
        qps: args.api_qps,
        burst: args.api_burst,
    };
    let metrics = Arc::new(Metrics::default());
    let (client, direct_client) = match clients(config, limit, &metrics) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let readiness = Arc::new(Readyz::default());
    let leader_election = leader_election(&args);
    let shards = match (args.shards, &leader_election) {
        (1, _) => None,
        (shards, Some(election)) => Some(ShardConfig {
            shards,
            namespace: election.namespace.clone(),
            prefix: election.lease_name.clone(),
            identity: election.identity.clone(),
            duration: election.duration,
        }),
        (_, None) => {
            eprintln!(
                "error: --shards needs --lease-namespace (POD_NAMESPACE in a cluster): the shard Leases live there"
            );
            return ExitCode::FAILURE;
        }
    };
    let config = controller::Config {
        leader_election,
        shards,
        namespaces: args.namespace,
        instance: args.instance,
        max_concurrent_remediations: (args.max_concurrent_remediations > 0)
            .then_some(args.max_concurrent_remediations),
        max_concurrent_probes: usize::try_from(args.max_concurrent_probes).unwrap_or(usize::MAX),
        max_concurrent_reconciles: args.max_concurrent_reconciles,
        direct_client: Some(direct_client),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        reach: Reach::new(args.allow_loopback, api_server),
        own_pod: controller::OwnPod::new(
            std::env::var("POD_NAMESPACE").ok(),
            std::env::var("POD_NAME").ok(),
        ),
        ..controller::Config::default()
    };
    // One signal stops both the controller (which finishes in-flight reconciles) and the server.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = tokio::spawn(server::serve(
        args.http_addr,
        metrics,
        readiness,
        wait(stopped.clone()),
    ));
    let result = controller::run(client, config, Arc::new(SystemClock), wait(stopped)).await;
    server.abort();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn lint(paths: &[PathBuf]) -> ExitCode {
    let linter = match apphealth_operator::lint::Linter::new() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let report = linter.lint_paths(paths);
    for finding in &report.findings {
        println!("{finding}");
    }
    if report.findings.is_empty() {
        println!("{} policies in {} files are valid", report.policies, report.files);
        ExitCode::SUCCESS
    } else {
        println!(
            "{} problems in {} policies ({} files)",
            report.findings.len(),
            report.policies,
            report.files
        );
        ExitCode::FAILURE
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    install_crypto_provider();
    match cli.command {
        Command::Crd { plural } => {
            use apphealth_operator::api::{cluster_crd, crd};
            let crds = match plural.as_deref() {
                Some("apphealthpolicies") => vec![crd()],
                Some(_) => vec![cluster_crd()],
                None => vec![crd(), cluster_crd()],
            };
            let mut out = Vec::new();
            for crd in &crds {
                match serde_saphyr::to_string(crd) {
                    Ok(yaml) => out.push(yaml),
                    Err(e) => {
                        eprintln!("error: could not render the CRD: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            print!("{}", out.join("---\n"));
            ExitCode::SUCCESS
        }
        Command::Check {
            policy,
            url,
            probes,
            period,
        } => {
            let period = match period
                .map(|p| apphealth_operator::api::Duration::from(p.as_str()).parse())
                .transpose()
            {
                Ok(p) => p.filter(|p: &Duration| !p.is_zero()),
                Err(e) => {
                    eprintln!("error: --period: {e}");
                    return ExitCode::from(2);
                }
            };
            let policy = match check::load_policy(&policy) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let options = CheckOptions { url, probes, period };
            let mut stdout = std::io::stdout();
            tokio::select! {
                result = check::run(&policy, &options, Arc::new(SystemClock), &mut stdout) => match result {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::from(2)
                    }
                },
                _ = shutdown_signal() => ExitCode::SUCCESS,
            }
        }
        Command::Run(args) => run(args).await,
        Command::Lint { paths } => lint(&paths),
    }
}
