//! The local control plane these tests run on: the one `make test-cluster` (or `make cluster`)
//! started, found through its directory, and the tools the tests drive it with (helm, kubectl).

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use apphealth_cluster::LocalCluster;
use kube::Client;
use tokio::sync::{Mutex, OnceCell};

/// How long a scenario waits for the cluster or the operator before failing: generous, as the
/// control plane shares 2 cores with the operator, the tests and each other.
pub const PATIENCE: Duration = Duration::from_secs(90);

pub struct Env {
    pub cluster: LocalCluster,
}

impl Env {
    /// A client with the administrator's identity, on the calling test's runtime (a client's
    /// connection pool lives on the runtime that made it, and each test has its own).
    pub async fn client(&self) -> Client {
        self.cluster
            .client()
            .await
            .expect("a client for the local control plane")
    }
}

static ENV: OnceCell<Env> = OnceCell::const_new();

/// The running cluster. Fails the test with what to do when none runs.
pub async fn env() -> &'static Env {
    ENV.get_or_init(|| async {
        let dir = std::env::var_os("APPHEALTH_CLUSTER_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target/kube"));
        let cluster = match LocalCluster::attach(&dir) {
            Ok(Some(c)) => c,
            Ok(None) => panic!(
                "no local control plane runs in {}: `make test-cluster` starts one for these tests \
                 (or run `make cluster` and then `cargo test --test cluster -- --ignored`)",
                dir.display()
            ),
            Err(e) => panic!("the local control plane in {}: {e}", dir.display()),
        };
        Env { cluster }
    })
    .await
}

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool `make tools` installs (helm, kubectl).
pub fn tool(name: &str) -> PathBuf {
    let path = workspace().join("target/tools/bin").join(name);
    assert!(path.is_file(), "{} is missing: run `make tools`", path.display());
    path
}

/// A name no other test uses, in this run or an earlier one on the same cluster (whose namespaces
/// may still be terminating): `prefix-<pid>-N`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!(
        "{prefix}-{}-{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// One helm at a time: the first install creates the CRD, and two at once would race for it.
static HELM: Mutex<()> = Mutex::const_new(());

/// Runs helm against the cluster of `kubeconfig`; returns its output, or fails the test with what
/// it said.
pub async fn helm(kubeconfig: &Path, args: &[&str]) -> String {
    let _one = HELM.lock().await;
    let (ok, out) = command(kubeconfig, &tool("helm"), args, None).await;
    assert!(ok, "helm {} failed:\n{out}", args.join(" "));
    out
}

/// Runs kubectl with `stdin`; fails the test if it fails.
pub async fn kubectl_ok(kubeconfig: &Path, args: &[&str], stdin: &str) -> String {
    let (ok, out) = command(kubeconfig, &tool("kubectl"), args, Some(stdin)).await;
    assert!(ok, "kubectl {} failed:\n{out}", args.join(" "));
    out
}

/// Runs kubectl and returns (success, stdout + stderr), for commands expected to fail.
pub async fn kubectl_result(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    command(kubeconfig, &tool("kubectl"), args, stdin).await
}

async fn command(kubeconfig: &Path, program: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env(
            "HELM_CACHE_HOME",
            workspace().join("target/cluster-tests/helm/cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            workspace().join("target/cluster-tests/helm/config"),
        )
        .env(
            "HELM_DATA_HOME",
            workspace().join("target/cluster-tests/helm/data"),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.expect("write stdin");
    }
    drop(input);
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{} {} took over {PATIENCE:?}", program.display(), args.join(" ")))
        .expect("wait");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
