//! kubectl, the real client, against the in-process API test server.
//!
//! The test runs the server on its own tokio runtime and drives `kubectl` with blocking
//! `std::process` calls from the test thread, so no async worker is ever blocked.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use apphealth_testserver::TestServer;
use serde_json::Value;

const CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/apphealthpolicies.apphealth.io.yaml"
);
const CLUSTER_CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/clusterapphealthpolicies.apphealth.io.yaml"
);

const CLUSTER_POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/policies/web-services-cluster.yaml"
);

const DEADLINE: Duration = Duration::from_secs(20);

const POLICY: &str = r#"apiVersion: apphealth.io/v1alpha1
kind: AppHealthPolicy
metadata:
  name: web
  namespace: default
spec:
  targetRef:
    kind: Deployment
    name: web
  probe:
    http:
      port: 8080
      path: /healthz
    periodSeconds: 10
  triggers:
    - consecutiveFailures:
        threshold: 3
  remediation:
    steps:
      - action: RolloutRestart
"#;

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: example/web:1
          ports:
            - containerPort: 8080
"#;

/// A scratch directory with the kubeconfig and kubectl's discovery cache; removed on drop.
pub struct Scratch {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Scratch {
    pub fn new(server: &TestServer) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("apphealth-kubectl-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig()).expect("write kubeconfig");
        Scratch { dir, kubeconfig }
    }

    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, content).expect("write manifest");
        p
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .arg("--request-timeout=20s")
            .args(args)
            .env_remove("KUBECONFIG");
        cmd
    }

    /// Run kubectl to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run `kubectl` (it must be on PATH for this test): {e}"))
    }

    /// Applies the CRD in `file` (server-side) and waits until `crd` is established; returns
    /// what the apply said.
    pub fn install_crd(&self, file: &str, crd: &str) -> String {
        let out = self.ok(&["apply", "--server-side", "-f", file]);
        self.ok(&[
            "wait",
            "--for=condition=established",
            "--timeout=20s",
            &format!("crd/{crd}"),
        ]);
        out
    }

    /// Run kubectl and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A long-running kubectl whose stdout lines arrive on a channel; killed on drop.
struct Streaming {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Streaming {
    fn spawn(scratch: &Scratch, args: &[&str]) -> Streaming {
        let mut child = scratch
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `kubectl` (it must be on PATH for this test): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Streaming { child, lines }
    }

    /// Wait (bounded) for a line satisfying `pred`; returns it.
    fn expect_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(line) => seen.push(line),
                Err(e) => panic!("no line with {what} from kubectl ({e}); saw: {seen:#?}"),
            }
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll the server state until `check` holds (bounded).
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A runtime and a test server on it, for a test that drives kubectl (the server lives while the
/// runtime does).
pub fn started() -> (tokio::runtime::Runtime, TestServer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = rt.block_on(TestServer::start()).expect("start test server");
    (rt, server)
}

/// The cells of a table's first row (after the header), split on whitespace.
fn first_row(table: &str) -> Vec<&str> {
    table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect()
}

fn columns(table: &str) -> Vec<String> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn kubectl_lists_cluster_policies_with_their_columns() {
    let (_rt, server) = started();
    let scratch = Scratch::new(&server);
    let out = scratch.install_crd(CLUSTER_CRD, "clusterapphealthpolicies.apphealth.io");
    assert!(
        out.contains("clusterapphealthpolicies.apphealth.io serverside-applied"),
        "{out}"
    );
    // The README's example, as a platform team applies it (no namespace: cluster-scoped).
    let out = scratch.ok(&["apply", "--server-side", "-f", CLUSTER_POLICY]);
    assert!(out.contains("serverside-applied"), "{out}");
    let status = r#"{"status":{"conditions":[{"type":"Ready","status":"True"}],"fleet":{"selected":212,"unhealthy":1,"remediating":1,"ownedElsewhere":3,"blocked":0}}}"#;
    scratch.ok(&[
        "patch",
        "cahp",
        "web-services",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        status,
    ]);
    let table = scratch.ok(&["get", "cahp"]);
    assert_eq!(
        columns(&table),
        ["NAME", "TARGETS", "UNHEALTHY", "REMEDIATING", "READY", "AGE"],
        "{table}"
    );
    let row = first_row(&table);
    assert_eq!(
        row.get(..5),
        Some(&["web-services", "212", "1", "1", "True"][..]),
        "{table}"
    );
    let wide = scratch.ok(&["get", "cahp", "-o", "wide"]);
    for column in ["OWNED ELSEWHERE", "BLOCKED"] {
        assert!(
            columns(&wide).contains(&column.to_string()),
            "priority-1 column {column} in -o wide: {wide}"
        );
    }
    // By the category too, beside the namespaced kind's.
    let all = scratch.ok(&["get", "apphealth"]);
    assert!(all.contains("web-services"), "{all}");
}

#[test]
fn kubectl_drives_the_test_server() {
    let (rt, server) = started();
    let scratch = Scratch::new(&server);
    assert!(Path::new(CRD).exists(), "{CRD} is missing");

    // CRD, then a custom resource of it and a Deployment, all by server-side apply.
    let out = scratch.install_crd(CRD, "apphealthpolicies.apphealth.io");
    assert!(
        out.contains("apphealthpolicies.apphealth.io serverside-applied"),
        "{out}"
    );
    let policy = scratch.file("policy.yaml", POLICY);
    let deployment = scratch.file("deployment.yaml", DEPLOYMENT);
    for f in [&policy, &deployment] {
        let out = scratch.ok(&["apply", "--server-side", "-f", f.to_str().expect("utf-8 path")]);
        assert!(out.contains("serverside-applied"), "{out}");
    }
    let ahp = server
        .get("apphealth.io/v1alpha1", "AppHealthPolicy", Some("default"), "web")
        .expect("policy stored");
    assert_eq!(ahp["spec"]["targetRef"]["name"], "web");
    assert_eq!(ahp["metadata"]["generation"], 1);

    // Printer columns, by short name.
    let table = scratch.ok(&["get", "ahp"]);
    assert_eq!(
        columns(&table),
        [
            "NAME",
            "TARGET",
            "TARGETS",
            "UNHEALTHY",
            "READY",
            "HEALTHY",
            "STEP",
            "LAST ACTION",
            "AGE"
        ],
        "{table}"
    );
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|row| row.starts_with("web") && row.contains("web")),
        "{table}"
    );
    let wide = scratch.ok(&["get", "ahp", "-o", "wide"]);
    for column in ["KIND", "PROBED", "HEALTHY PODS", "BLOCKED BY"] {
        assert!(
            columns(&wide).contains(&column.to_string()),
            "priority-1 column {column} in -o wide: {wide}"
        );
    }

    // Status subresource: the printed columns follow; spec and generation do not move.
    let status = r#"{"status":{"conditions":[{"type":"Ready","status":"True"},{"type":"Healthy","status":"False"},{"type":"RemediationBlocked","status":"True","reason":"Cooldown"}],"ladder":{"step":2},"targets":{"probed":3,"healthy":1},"history":[{"action":"RolloutRestart"}]}}"#;
    scratch.ok(&[
        "patch",
        "ahp",
        "web",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        status,
    ]);
    let table = scratch.ok(&["get", "ahp", "web"]);
    let row = first_row(&table);
    assert_eq!(
        row.get(..4),
        Some(&["web", "web", "True", "False"][..]),
        "{table}"
    );
    assert!(row.contains(&"RolloutRestart"), "{table}");
    assert_eq!(row.get(4), Some(&"2"), "the ladder step: {table}");
    let wide = scratch.ok(&["get", "ahp", "web", "-o", "wide"]);
    let row: Vec<&str> = wide
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert!(
        row.ends_with(&["3", "1", "Cooldown"]) || row.windows(3).any(|w| w == ["3", "1", "Cooldown"]),
        "probed, healthy pods, blocked by: {wide}"
    );
    let json: Value =
        serde_json::from_str(&scratch.ok(&["get", "ahp", "web", "-o", "json"])).expect("-o json");
    assert_eq!(json["kind"], "AppHealthPolicy");
    assert_eq!(json["metadata"]["generation"], 1);
    assert_eq!(json["status"]["conditions"][1]["type"], "Healthy");

    // get -w: the initial row, then a change made meanwhile.
    {
        let watch = Streaming::spawn(&scratch, &["get", "ahp", "web", "-w"]);
        watch.expect_line("the initial row", |l| l.starts_with("web") && l.contains("False"));
        let healthy = r#"{"status":{"conditions":[{"type":"Ready","status":"True"},{"type":"Healthy","status":"True"}]}}"#;
        scratch.ok(&[
            "patch",
            "ahp",
            "web",
            "--subresource",
            "status",
            "--type",
            "merge",
            "-p",
            healthy,
        ]);
        let line = watch.expect_line("the Healthy=True row", |l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.get(..4) == Some(&["web", "web", "True", "True"][..])
        });
        assert!(line.contains("RolloutRestart"), "{line}");
    }

    // Merge patch of the spec bumps generation; strategic merge is refused for custom resources.
    scratch.ok(&[
        "patch",
        "ahp",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"targetRef":{"name":"web2"}}}"#,
    ]);
    let ahp = server
        .get("apphealth.io/v1alpha1", "AppHealthPolicy", Some("default"), "web")
        .expect("policy");
    assert_eq!(ahp["metadata"]["generation"], 2);
    assert_eq!(ahp["spec"]["targetRef"]["name"], "web2");
    assert_eq!(
        ahp["status"]["conditions"][1]["status"], "True",
        "spec patch keeps status"
    );
    let out = scratch.run(&[
        "patch",
        "ahp",
        "web",
        "-p",
        r#"{"spec":{"targetRef":{"name":"x"}}}"#,
    ]);
    assert!(
        !out.status.success(),
        "strategic merge patch on a custom resource must fail"
    );

    // Strategic merge patch of a Deployment merges containers by name (ports kept).
    scratch.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"example/web:2"}]}}}}"#,
    ]);
    let dep = server
        .get("apps/v1", "Deployment", Some("default"), "web")
        .expect("deployment");
    let containers = &dep["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().map(Vec::len), Some(1), "{containers}");
    assert_eq!(containers[0]["image"], "example/web:2");
    assert_eq!(containers[0]["ports"][0]["containerPort"], 8080);

    // rollout restart sets the restartedAt annotation on the pod template; scale goes through /scale.
    let out = scratch.ok(&["rollout", "restart", "deployment/web"]);
    assert!(out.contains("restarted"), "{out}");
    wait_for("the restartedAt annotation", || {
        server
            .get("apps/v1", "Deployment", Some("default"), "web")
            .is_some_and(|d| {
                d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
                    .is_string()
            })
    });
    scratch.ok(&["scale", "deployment/web", "--replicas=3"]);
    let dep = server
        .get("apps/v1", "Deployment", Some("default"), "web")
        .expect("deployment");
    assert_eq!(dep["spec"]["replicas"], 3);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.method == "PATCH" && r.path.ends_with("/deployments/web/scale")),
        "kubectl scale uses the scale subresource"
    );

    // Server-side apply conflicts: another field manager setting a field kubectl applied gets
    // kubectl's conflict error from the 409; --force-conflicts takes the field over.
    let mine = scratch.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n  k: one\n",
    );
    let theirs = scratch.file(
        "cm2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n  k: two\n",
    );
    scratch.ok(&["apply", "--server-side", "-f", mine.to_str().expect("utf-8 path")]);
    let theirs = theirs.to_str().expect("utf-8 path");
    let out = scratch.run(&["apply", "--server-side", "--field-manager=other", "-f", theirs]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"Apply failed with 1 conflict: conflict with "kubectl": .data.k"#),
        "{stderr}"
    );
    scratch.ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        theirs,
    ]);
    let cm = server
        .get("v1", "ConfigMap", Some("default"), "shared")
        .expect("configmap stored");
    assert_eq!(cm["data"]["k"], "two");

    // delete (kubectl waits for the deletion), then get of the missing object fails with NotFound.
    let out = scratch.ok(&["delete", "ahp", "web"]);
    assert!(out.contains("deleted"), "{out}");
    assert!(
        server
            .get("apphealth.io/v1alpha1", "AppHealthPolicy", Some("default"), "web")
            .is_none()
    );
    let out = scratch.run(&["get", "ahp", "web"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("NotFound"), "{stderr}");

    drop(scratch);
    server.shutdown();
    rt.shutdown_timeout(Duration::from_secs(5));
}

/// An object reference for a stored object (what `Resource::object_ref` gives for typed objects).
fn object_ref(obj: &Value) -> k8s_openapi::api::core::v1::ObjectReference {
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).map(str::to_string);
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: s("/apiVersion"),
        kind: s("/kind"),
        name: s("/metadata/name"),
        namespace: s("/metadata/namespace"),
        uid: s("/metadata/uid"),
        resource_version: s("/metadata/resourceVersion"),
        ..Default::default()
    }
}

#[test]
fn kubectl_describe_shows_events_and_top_reads_metrics() {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};

    let (rt, server) = started();
    let scratch = Scratch::new(&server);

    // A custom resource, and Events about it published the way the operator does.
    scratch.install_crd(CRD, "apphealthpolicies.apphealth.io");
    let policy = scratch.file("policy.yaml", POLICY);
    scratch.ok(&[
        "apply",
        "--server-side",
        "-f",
        policy.to_str().expect("utf-8 path"),
    ]);
    let ahp = server
        .get("apphealth.io/v1alpha1", "AppHealthPolicy", Some("default"), "web")
        .expect("policy stored");
    rt.block_on(async {
        let config = kube::Config::new(server.url().parse().expect("server url"));
        let client = kube::Client::try_from(config).expect("kube client");
        let recorder = Recorder::new(
            client,
            Reporter {
                controller: "apphealth-operator".into(),
                instance: None,
            },
        );
        let reference = object_ref(&ahp);
        let failing = Event {
            type_: EventType::Warning,
            reason: "ProbeFailed".into(),
            note: Some("GET http://web:8080/healthz: connection refused".into()),
            action: "Probe".into(),
            secondary: None,
        };
        // Twice: the second publish patches the first into a series of 2.
        for _ in 0..2 {
            recorder.publish(&failing, &reference).await.expect("publish");
        }
        let restarted = Event {
            type_: EventType::Normal,
            reason: "RolloutRestart".into(),
            note: Some("restarted deployment/web".into()),
            action: "Remediate".into(),
            secondary: None,
        };
        recorder.publish(&restarted, &reference).await.expect("publish");
    });

    let out = scratch.ok(&["describe", "ahp", "web"]);
    let events = out
        .split_once("\nEvents:")
        .map(|(_, e)| e)
        .unwrap_or_else(|| panic!("no Events section: {out}"));
    let line = |reason: &str| {
        events
            .lines()
            .find(|l| l.contains(reason))
            .unwrap_or_else(|| panic!("no {reason} event in: {events}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let failed = line("ProbeFailed");
    assert!(failed.starts_with("Warning ProbeFailed"), "{failed}");
    assert!(failed.contains("(x2 over"), "a series shows its count: {failed}");
    assert!(
        failed.ends_with("apphealth-operator GET http://web:8080/healthz: connection refused"),
        "{failed}"
    );
    let restarted = line("RolloutRestart");
    assert!(
        restarted.starts_with("Normal RolloutRestart")
            && restarted.ends_with("apphealth-operator restarted deployment/web"),
        "{restarted}"
    );
    assert!(
        server.requests().iter().any(|r| r.method == "GET"
            && r.path == "/api/v1/namespaces/default/events"
            && r.query.contains("involvedObject.kind%3DAppHealthPolicy")),
        "kubectl describe reads events through core v1"
    );

    let table = scratch.ok(&["get", "events"]);
    assert_eq!(
        columns(&table),
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("ProbeFailed") && l.contains("apphealthpolicy/web")),
        "{table}"
    );

    // The metrics API: absent (like a cluster without metrics-server), then served.
    let out = scratch.run(&["top", "pod", "-n", "shop"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Metrics API not available"), "{stderr}");

    server.enable_metrics_api();
    for (name, app) in [("web-0", "web"), ("db-0", "db")] {
        server
            .create(serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
                "spec": {"containers": [{"name": "main", "image": "x"}]}
            }))
            .expect("create pod");
    }
    server.set_pod_metrics(
        "shop",
        "web-0",
        &[("main", "250m", "128Mi"), ("sidecar", "5m", "16Mi")],
    );
    server.set_pod_metrics("shop", "db-0", &[("main", "1", "1Gi")]);
    // A fresh discovery cache: kubectl caches the group list.
    let fresh = Scratch::new(&server);
    let top = fresh.ok(&["top", "pod", "-n", "shop"]);
    let rows: Vec<Vec<&str>> = top.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [
            vec!["NAME", "CPU(cores)", "MEMORY(bytes)"],
            vec!["db-0", "1000m", "1024Mi"],
            vec!["web-0", "255m", "144Mi"],
        ],
        "{top}"
    );
    let top = fresh.ok(&["top", "pod", "-n", "shop", "-l", "app=web", "--containers"]);
    assert!(
        top.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["web-0", "sidecar", "5m", "16Mi"]),
        "{top}"
    );
    assert!(!top.contains("db-0"), "{top}");
    let raw: Value = serde_json::from_str(&fresh.ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods/web-0",
    ]))
    .expect("PodMetrics JSON");
    assert_eq!(raw["kind"], "PodMetrics");
    assert_eq!(raw["containers"][0]["usage"]["cpu"], "250m");

    drop(fresh);
    drop(scratch);
    server.shutdown();
    rt.shutdown_timeout(Duration::from_secs(5));
}
