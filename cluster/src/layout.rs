//! Where one cluster keeps everything, what it records about what runs, and how to start one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Component, Ports, pki, process};

/// Where everything of one cluster lives.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
    pub pki: pki::Pki,
    pub data: PathBuf,
    pub logs: PathBuf,
    pub kwok: PathBuf,
    pub state: PathBuf,
    /// The administrator's kubeconfig.
    pub kubeconfig: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            pki: pki::Pki { dir: dir.join("pki") },
            data: dir.join("data"),
            logs: dir.join("logs"),
            kwok: dir.join("kwok"),
            state: dir.join("cluster.json"),
            kubeconfig: dir.join("kubeconfig"),
        }
    }

    /// The kubeconfig of one of the control plane's own identities.
    pub fn kubeconfig_for(&self, id: pki::Identity) -> PathBuf {
        if id.file == pki::ADMIN.file {
            return self.kubeconfig.clone();
        }
        self.dir
            .join("kubeconfigs")
            .join(format!("{}.kubeconfig", id.file))
    }

    pub fn log(&self, component: &str) -> PathBuf {
        self.logs.join(format!("{component}.log"))
    }
}

/// What runs, written once the cluster is up.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// The API server's URL.
    pub api: String,
    /// etcd's client URL (plain HTTP on loopback).
    pub etcd: String,
    pub ports: Ports,
    pub bin: PathBuf,
    pub nodes: u32,
    pub started: String,
    pub processes: Vec<process::Spec>,
}

/// How to start a cluster.
#[derive(Clone, Debug)]
pub struct Options {
    /// Its directory (created; a stopped cluster's files in it are replaced).
    pub dir: PathBuf,
    /// The binaries (`tools/kube/build.sh` prints where).
    pub bin: PathBuf,
    /// kwok Nodes, each Ready and schedulable.
    pub nodes: u32,
    /// Which components run. Without kube-scheduler and kwok no pod ever runs: a control plane for
    /// API-only tests, as envtest starts.
    pub components: Vec<Component>,
}

impl Options {
    pub fn new(dir: impl Into<PathBuf>, bin: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            bin: bin.into(),
            nodes: 2,
            components: Component::ALL.to_vec(),
        }
    }
}
