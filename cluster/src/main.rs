//! `apphealth-cluster`: starts, shows and stops a local control plane (see the library).
//!
//! ```text
//! apphealth-cluster up     --dir target/kube --bin <binaries> [--nodes 2]
//! apphealth-cluster status --dir target/kube
//! apphealth-cluster down   --dir target/kube
//! ```

#![forbid(unsafe_code)]

use std::{path::PathBuf, process::ExitCode};

use apphealth_cluster::{Error, LocalCluster, Options};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "A local Kubernetes control plane as plain processes on loopback")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start one and leave it running; says so when one runs already.
    Up {
        #[arg(long, default_value = "target/kube")]
        dir: PathBuf,
        /// The binaries (tools/kube/build.sh prints where they are).
        #[arg(long)]
        bin: PathBuf,
        /// kwok Nodes.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=50))]
        nodes: u32,
    },
    /// Say whether one runs, and where.
    Status {
        #[arg(long, default_value = "target/kube")]
        dir: PathBuf,
    },
    /// Stop everything it started.
    Down {
        #[arg(long, default_value = "target/kube")]
        dir: PathBuf,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Up { dir, bin, nodes } => up(dir, bin, nodes).await,
        Command::Status { dir } => match LocalCluster::attach(&absolute(&dir)) {
            Ok(Some(c)) => {
                describe(&c);
                ExitCode::SUCCESS
            }
            Ok(None) => {
                println!("no local control plane runs in {}", dir.display());
                ExitCode::from(3)
            }
            Err(e) => fail(&e),
        },
        Command::Down { dir } => match LocalCluster::stop(&absolute(&dir)) {
            Ok(stopped) if stopped.is_empty() => {
                println!("no local control plane runs in {}", dir.display());
                ExitCode::SUCCESS
            }
            Ok(stopped) => {
                println!("stopped {}", stopped.join(", "));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}

async fn up(dir: PathBuf, bin: PathBuf, nodes: u32) -> ExitCode {
    let mut opts = Options::new(absolute(&dir), absolute(&bin));
    opts.nodes = nodes;
    // Ctrl-C while starting drops the half-started cluster, which stops what it started.
    let started = tokio::select! {
        started = LocalCluster::start(opts) => started,
        _ = tokio::signal::ctrl_c() => Err(Error::Setup("interrupted; stopped what had started".into())),
    };
    match started {
        Ok(cluster) => {
            describe(&cluster);
            cluster.detach();
            ExitCode::SUCCESS
        }
        Err(Error::AlreadyRunning { dir, api, kubeconfig }) => {
            println!(
                "a local control plane already runs in {} (API {api}); not starting another\n  export KUBECONFIG={}\n  make cluster-down stops it",
                dir.display(),
                kubeconfig.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn describe(cluster: &LocalCluster) {
    println!(
        "a local control plane runs in {}: API {}, {} kwok nodes (pods on 127.10.0.0/16, 127.11.0.0/16, …), started {}\n  export KUBECONFIG={}\n  logs: {}\n  make cluster-down stops it",
        cluster.layout.dir.display(),
        cluster.state.api,
        cluster.state.nodes,
        cluster.state.started,
        cluster.layout.kubeconfig.display(),
        cluster.layout.logs.display(),
    );
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("make cluster: {e}");
    ExitCode::FAILURE
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
