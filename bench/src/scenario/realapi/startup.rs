//! Startup with thousands of policies on a real API server: an API-only control plane (etcd and
//! kube-apiserver) with N policies over one shared Deployment of one ready pod at a farm address
//! (its status written by the bench, as a kubelet would), as the test server's
//! `policies-10000-shared` and reconcile cases are; how long until every policy has a Ready
//! condition, and the operator's peak RSS. Beside it the same on the API test server.

use std::time::{Duration, Instant};

use super::plane::{Plane, PolicyWatch};
use crate::{
    Result,
    cluster::{self, dry_run_policy_spec},
    farm,
    operator::Operator,
    process::Memory,
    report::num,
    scenario::{
        Ctx, PERIOD,
        memory::{SHARED_TARGET as TARGET, start_shared},
    },
};

/// Policies created this many at a time.
const CONCURRENCY: usize = 16;

#[derive(Debug, Clone)]
pub struct Startup {
    /// From the operator's start until every policy had a Ready condition and the pod had been
    /// probed.
    pub startup: Duration,
    /// RSS and peak RSS then.
    pub memory: Memory,
    /// How long creating the policies took (real API server only).
    pub created: Option<Duration>,
    /// CPU seconds the operator used until then.
    pub operator_cpu: f64,
    /// CPU seconds kube-apiserver and etcd used meanwhile (real API server only).
    pub server_cpu: Option<f64>,
}

/// Policy `i`: the test server's `add_policy` (probe every 10 s, dry-run remediation).
fn policy(i: usize) -> serde_json::Value {
    cluster::policy(
        &format!("p-{i:05}"),
        dry_run_policy_spec(TARGET, PERIOD.as_secs()),
    )
}

/// `count` policies on a fresh API-only control plane.
pub async fn real(ctx: &Ctx, count: usize) -> Result<Startup> {
    let plane = Plane::start(ctx, &format!("realapi-policies-{count}"), false).await?;
    plane.add_deployment(TARGET, 1, ctx.farm.port()).await?;
    plane
        .add_pod(&format!("{TARGET}-0"), TARGET, farm::address(0)?, ctx.farm.port())
        .await?;
    let began = Instant::now();
    plane
        .create_all((0..count).map(policy).collect(), CONCURRENCY)
        .await?;
    let created = began.elapsed();
    eprintln!(
        "bench: realapi policies-{count}: {count} policies created in {:.1} s",
        created.as_secs_f64()
    );
    let kubeconfig = plane.operator_kubeconfig().await?;
    let watch = PolicyWatch::start(&plane);
    let seen = Instant::now();
    while watch.seen() < count {
        if seen.elapsed() > Duration::from_secs(120) {
            return Err(format!("the bench's watch saw {} of {count} policies", watch.seen()).into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ctx.farm.heal_all().await?;
    let sent_before = ctx.farm.counts().await?.total(1);
    let server_cpu = plane.server_cpu_seconds(ctx.ticks_per_second);
    let started = Instant::now();
    let mut operator = Operator::start(
        &ctx.operator,
        &kubeconfig,
        &plane.dir.join("operator.log"),
        ctx.ticks_per_second,
    )?;
    let patience = ctx.patience * 3;
    loop {
        operator.process.check_running()?;
        let probed = ctx.farm.counts().await.is_ok_and(|c| c.total(1) > sent_before);
        let ready = watch.ready();
        if ready >= count && probed {
            break;
        }
        if started.elapsed() > patience {
            return Err(format!(
                "{} of {count} policies had a Ready condition after {} s{}",
                num(ready as f64, 0),
                patience.as_secs(),
                if probed {
                    ""
                } else {
                    "; no probe had reached the farm"
                }
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let startup = started.elapsed();
    let memory = operator.memory()?;
    let operator_cpu = operator.process.cpu_seconds()?;
    let server_cpu = plane.server_cpu_seconds(ctx.ticks_per_second) - server_cpu;
    operator.process.stop();
    Ok(Startup {
        startup,
        memory,
        created: Some(created),
        operator_cpu,
        server_cpu: Some(server_cpu),
    })
}

/// The same on the API test server: the memory scenario's `policies-N-shared` layout, started as
/// every test-server case is.
pub async fn test_server(ctx: &Ctx, count: usize) -> Result<Startup> {
    let running = start_shared(ctx, &format!("realapi-policies-{count}-testserver"), count).await?;
    let memory = running.operator.memory()?;
    let operator_cpu = running.operator.process.cpu_seconds()?;
    let startup = running.startup;
    running.operator.process.stop();
    Ok(Startup {
        startup,
        memory,
        created: None,
        operator_cpu,
        server_cpu: None,
    })
}
