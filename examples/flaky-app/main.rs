//! The flaky demo app. Run: `cargo run --example flaky-app -- --listen 127.0.0.1:8080`
//! Switch modes: `curl -X PUT localhost:8080/mode/503` (healthy, 502, 503, slow, hang).
//! `--script healthy:5s,503:10s,healthy` switches on its own, for unattended demos.
//! `--pods-of NAMESPACE` serves every running pod of that namespace at its IP instead (kwok's pods
//! on the local control plane; the kubeconfig comes from KUBECONFIG): see `pods.rs`. With
//! `--control ADDR`, `PUT ADDR/mode/503` switches every pod, present and future (a dependency down).

#[path = "app.rs"]
mod flaky;
#[allow(dead_code)] // Pods::app and Pods::served are for the tests, which share the file.
mod pods;

use std::time::Duration;

use flaky::{Flaky, Mode};

fn usage() -> ! {
    eprintln!(
        "usage: flaky-app [--listen ADDR | --pods-of NAMESPACE [--control ADDR]] [--slow-delay 3s] [--script MODE:DURATION,...,MODE] [--require-header NAME=VALUE]"
    );
    std::process::exit(2)
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        _ => None,
    }
}

fn parse_script(s: &str) -> Option<Vec<(Mode, Option<Duration>)>> {
    s.split(',')
        .map(|step| match step.split_once(':') {
            Some((mode, d)) => Some((mode.parse().ok()?, Some(parse_duration(d)?))),
            None => Some((step.parse().ok()?, None)),
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let mut listen = "127.0.0.1:8080".to_owned();
    let mut slow_delay = Duration::from_secs(3);
    let mut script = Vec::new();
    let mut required_header = None;
    let mut pods_of = None;
    let mut control = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--listen" => listen = value,
            "--pods-of" => pods_of = Some(value),
            "--control" => control = Some(value),
            "--slow-delay" => slow_delay = parse_duration(&value).unwrap_or_else(|| usage()),
            "--script" => script = parse_script(&value).unwrap_or_else(|| usage()),
            "--require-header" => {
                let (name, v) = value.split_once('=').unwrap_or_else(|| usage());
                required_header = Some((name.to_owned(), v.to_owned()));
            }
            _ => usage(),
        }
    }
    if let Some(namespace) = pods_of {
        return serve_pods(&namespace, control.as_deref(), slow_delay).await;
    }
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("flaky-app: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    let app = Flaky::new(slow_delay);
    if let Some((name, value)) = &required_header {
        app.require_header(name, value);
    }
    eprintln!(
        "flaky-app: serving on http://{listen}/healthz (PUT /mode/{{healthy|502|503|slow|hang}} to switch)"
    );
    let server = app.serve(listener);
    for (mode, hold) in script {
        app.set(mode);
        eprintln!("flaky-app: mode is now {mode}");
        match hold {
            Some(d) => tokio::time::sleep(d).await,
            None => break,
        }
    }
    let _ = server.await;
}

/// Serves every running pod of `namespace` until stopped; the control endpoint on `control`.
async fn serve_pods(namespace: &str, control: Option<&str>, slow_delay: Duration) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flaky-app: no cluster to serve pods of: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("flaky-app: serving the running pods of namespace {namespace} at their IPs");
    let pods = pods::Pods::new(slow_delay);
    if let Some(addr) = control {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("flaky-app: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        };
        eprintln!("flaky-app: PUT http://{addr}/mode/{{healthy|503|...}} switches every pod");
        let router = pods.control();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
    }
    pods.run(kube::Api::namespaced(client, namespace)).await;
}
