//! kwok's side of the cluster: its configuration (the Stages that give nodes and pods their
//! lifecycle, and the log file every container "writes"), and the fake Nodes it keeps Ready.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
};
use serde_json::json;

use crate::{Error, write_file};

/// Nodes with this annotation (value `fake`) are kwok's.
pub const NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// This project's own Stages (in addition to kwok's, which `tools/kube/build.sh` copies out of its
/// module): containers that crash, are OOM-killed or wait in CrashLoopBackOff, on request; and
/// containers that report the resources they run with, so that pods can be resized in place.
const STAGES: &[(&str, &str)] = &[
    (
        "apphealth-container-crash.yaml",
        include_str!("../stages/container-crash.yaml"),
    ),
    (
        "apphealth-pod-resources.yaml",
        include_str!("../stages/pod-resources.yaml"),
    ),
];

/// The log lines every container of every pod has written (CRI log format, which kwok serves for
/// `kubectl logs` and the API's pods/log).
pub const POD_LOG_LINES: &[&str] = &[
    "stdout F flaky-app: listening on :8080",
    "stdout F flaky-app: GET /healthz 200",
    "stderr F flaky-app: upstream answered 503 Service Unavailable",
];

/// Writes the configuration files and returns every `--config` for kwok: kwok's Stages from the
/// binaries' directory, then ours, then the logs configuration.
pub fn configure(bin: &Path, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut configs = Vec::new();
    let upstream = bin.join("stages");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&upstream)
        .map_err(|e| Error::io(&upstream, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::MissingBinary {
            name: "kwok's Stage files".into(),
            bin: upstream,
        });
    }
    configs.extend(files);
    for (name, text) in STAGES {
        let path = dir.join(name);
        write_file(&path, *text)?;
        configs.push(path);
    }

    let now = jiff::Timestamp::now();
    let log = dir.join("pod.log");
    let lines: String = POD_LOG_LINES
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let at = now + jiff::SignedDuration::from_millis(i as i64);
            format!("{} {l}\n", at.strftime("%Y-%m-%dT%H:%M:%S%.9fZ"))
        })
        .collect();
    write_file(&log, lines)?;
    let logs = dir.join("logs.yaml");
    write_file(
        &logs,
        format!(
            "apiVersion: kwok.x-k8s.io/v1alpha1\n\
             kind: ClusterLogs\n\
             metadata:\n  name: every-pod\n\
             spec:\n  selector: {{}}\n  logs:\n  - logsFile: {log}\n    previousLogsFile: {log}\n",
            log = log.display()
        ),
    )?;
    configs.push(logs);
    Ok(configs)
}

/// Creates `count` fake nodes, `kwok-node-0` …, each with a pod network of its own on loopback
/// (127.10.0.0/16, 127.11.0.0/16, …), so that every pod's IP is a loopback address a test can
/// serve.
pub async fn create_nodes(client: &Client, count: u32) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..count {
        let name = format!("kwok-node-{i}");
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "spec": {"podCIDR": pod_cidr(i), "podCIDRs": [pod_cidr(i)]},
        }))
        .map_err(|e| Error::Setup(format!("node {name}: {e}")))?;
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(Error::Kube(format!("creating node {name}"), e)),
        }
    }
    Ok(())
}

/// Node `i`'s pod network.
pub fn pod_cidr(i: u32) -> String {
    format!("127.{}.0.0/16", 10 + i)
}

/// Whether a pod can be scheduled and run: creates one in `default`, returns its IP once it runs,
/// and deletes it. None while it cannot yet (the `default` ServiceAccount not made yet, no Ready
/// node, not scheduled or not running yet).
pub async fn run_a_pod(client: &Client) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let name = "apphealth-cluster-check";
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "check", "image": "registry.k8s.io/pause:3.10"}],
                 "terminationGracePeriodSeconds": 0},
    }))
    .ok()?;
    match pods.create(&PostParams::default(), &pod).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(_) => return None,
    }
    let running = pods.get(name).await.ok()?;
    let status = running.status?;
    let ip = status
        .pod_ip
        .filter(|_| status.phase.as_deref() == Some("Running"))?;
    pods.delete(name, &DeleteParams::default().grace_period(0))
        .await
        .ok()?;
    Some(ip)
}
