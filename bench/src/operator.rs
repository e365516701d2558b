//! The operator under test: the release `apphealth-operator run` binary as a separate process,
//! pointed at the test server by KUBECONFIG, serving /metrics on a loopback port.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use crate::{
    Result,
    client::Client,
    exposition::Exposition,
    farm::{Counts, Farm},
    process::{Child, Memory},
};

/// Client-side API rate limit for the bench (the defaults, 5/s with a burst of 10, would make a
/// start with thousands of policies take many minutes: every policy's first status write goes
/// through it).
pub const API_QPS: u32 = 1000;
pub const API_BURST: u32 = 2000;

pub struct Operator {
    pub process: Child,
    metrics_url: String,
    ready_url: String,
    client: Client,
}

/// What is read at one instant: CPU, the farm's counts and the operator's metrics.
pub struct Snapshot {
    pub at: Instant,
    pub cpu_seconds: f64,
    /// CPU seconds of the bench's processes (the API test server's and the farm's).
    pub bench_cpu_seconds: f64,
    pub farm_requests: Vec<u64>,
    pub farm_connections: u64,
    pub metrics: Exposition,
}

impl Operator {
    pub fn start(binary: &Path, kubeconfig: &Path, log: &Path, ticks_per_second: f64) -> Result<Operator> {
        Self::start_with_env(binary, kubeconfig, log, ticks_per_second, &[])
    }

    /// [`Operator::start`] with more environment variables.
    pub fn start_with_env(
        binary: &Path,
        kubeconfig: &Path,
        log: &Path,
        ticks_per_second: f64,
        env: &[(&str, &str)],
    ) -> Result<Operator> {
        Self::start_with_args(binary, kubeconfig, log, ticks_per_second, env, &[])
    }

    /// [`Operator::start_with_env`] with more arguments after `run`'s own (flags such as
    /// `--lease-namespace`, whose environment variables, POD_NAMESPACE among them, are removed).
    pub fn start_with_args(
        binary: &Path,
        kubeconfig: &Path,
        log: &Path,
        ticks_per_second: f64,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Result<Operator> {
        let port = free_port()?;
        let mut command = Command::new(binary);
        command.envs(env.iter().copied());
        command
            .arg("run")
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--api-qps")
            .arg(API_QPS.to_string())
            .arg("--api-burst")
            .arg(API_BURST.to_string())
            // The farm's "pods" listen on 127.0.0.0/8.
            .arg("--allow-loopback")
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("POD_NAMESPACE")
            .env_remove("APPHEALTH_NAMESPACE");
        let process = Child::spawn("apphealth-operator", command, log, ticks_per_second)?;
        Ok(Operator {
            process,
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
            ready_url: format!("http://127.0.0.1:{port}/readyz"),
            client: Client::new(),
        })
    }

    /// Waits until /readyz answers 200 (caches synced, probing started).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            self.process.check_running()?;
            let last = match self.client.get(&self.ready_url, Duration::from_secs(5)).await {
                Ok((200, _)) => return Ok(started.elapsed()),
                Ok((status, body)) => format!("{status} {}", body.trim()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(
                    format!("the operator was not ready within {timeout:?} (/readyz: {last})").into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What /readyz answers now, as text.
    pub async fn readyz(&self) -> String {
        match self.client.get(&self.ready_url, Duration::from_secs(5)).await {
            Ok((status, body)) => format!("{status} {}", body.trim()),
            Err(e) => e.to_string(),
        }
    }

    pub async fn metrics_text(&self) -> Result<String> {
        let (status, body) = self
            .client
            .get(&self.metrics_url, Duration::from_secs(10))
            .await?;
        if status != 200 {
            return Err(format!("GET {}: {status}", self.metrics_url).into());
        }
        Ok(body)
    }

    pub async fn metrics(&self) -> Result<Exposition> {
        Ok(Exposition::parse(&self.metrics_text().await?))
    }

    pub async fn snapshot(&mut self, farm: Option<&Farm>) -> Result<Snapshot> {
        self.process.check_running()?;
        let metrics = self.metrics().await?;
        let counts = match farm {
            Some(f) => f.counts().await?,
            None => Counts::default(),
        };
        let tps = self.process.ticks_per_second();
        let farm_cpu = farm.map_or(0.0, |f| {
            crate::process::cpu_seconds_of(f.pid(), tps).unwrap_or(0.0)
        });
        Ok(Snapshot {
            at: Instant::now(),
            cpu_seconds: self.process.cpu_seconds()?,
            bench_cpu_seconds: crate::process::own_cpu_seconds(tps) + farm_cpu,
            farm_requests: counts.requests,
            farm_connections: counts.connections,
            metrics,
        })
    }

    pub fn memory(&self) -> Result<Memory> {
        self.process.memory()
    }
}

/// A free port on 127.0.0.1 (bound, then released for the child to take).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
