//! The real API server: the figures that depend most on it measured on a local Kubernetes control
//! plane built from Kubernetes' own code (apphealth-cluster: etcd, kube-apiserver and, where pods
//! must really be made and run, kube-controller-manager, kube-scheduler and kwok), each beside the
//! API test server's figure of the same, measured in the same run:
//!
//! - `pods-N`: memory per cached realistic pod, with the `managedFields` a real cluster writes;
//! - `policies-N`: startup with thousands of policies;
//! - `requests`: the API requests of a healthy hour and of one remediation, counted by
//!   kube-apiserver itself.

mod compare;
mod plane;
mod pods;
mod requests;
mod startup;
mod tally;

use std::fmt::Write as _;

use super::{Ctx, memory::GOAL_PER_POD_KIB};
use crate::{
    process::Memory,
    report::{Outcome, Row, Section, mib, num},
};

/// Realistic pods made by the real control plane: 10,000 took 419 s and 399 s to make and run in
/// two trials on the 2 shared cores (kube-scheduler-bound: its rate fell from about 43 to 18 pods/s
/// as the pods, whose template asks for anti-affinity and spreading, accumulated), over the 6
/// minutes allowed; 7,000 were running after about 300 s.
pub const PODS: usize = 7_000;
pub const POLICY_COUNTS: [usize; 2] = [1_000, 10_000];

pub async fn run(ctx: &Ctx, only: Option<&str>) -> Section {
    let mut section = Section {
        title: "Real API server".into(),
        ..Section::default()
    };
    let mut details = String::new();
    let wanted = |id: &str| only.is_none_or(|o| o == id);
    let mut found = compare::Found::default();
    // --quick: 1,000 pods, 1,000 policies, a minute's window.
    let pod_count = if ctx.quick { 1_000 } else { PODS };
    let pods_id = format!("pods-{pod_count}");
    if wanted(&pods_id) {
        eprintln!("bench: realapi {pods_id}");
        let real = pods::real(ctx, pod_count).await;
        let test = pods::test_server(ctx, pod_count).await;
        pods_rows(
            ctx,
            &mut section.rows,
            &mut details,
            &pods_id,
            pod_count,
            &real,
            &test,
        );
        if let (Ok(r), Ok(t)) = (real, test) {
            found.pods = Some((r, t));
        }
    }
    let mut startup_lines = String::new();
    for count in POLICY_COUNTS {
        let id = format!("policies-{count}");
        if !wanted(&id) || (ctx.quick && count > 1_000) {
            continue;
        }
        eprintln!("bench: realapi {id}");
        let real = startup::real(ctx, count).await;
        let test = startup::test_server(ctx, count).await;
        startup_row(
            ctx,
            &mut section.rows,
            &mut startup_lines,
            &id,
            count,
            &real,
            &test,
        );
        if let (Ok(r), Ok(t)) = (real, test) {
            found.startups.push((count, r, t));
        }
    }
    if !startup_lines.is_empty() {
        let _ = write!(
            details,
            "\n**Startup with thousands of policies**\n\n\
             | Policies | API server | Creating them | Every policy Ready after | Operator CPU | kube-apiserver and etcd CPU | RSS then | Peak RSS |\n\
             |---|---|---|---|---|---|---|---|\n{startup_lines}"
        );
    }
    if wanted("requests") {
        eprintln!(
            "bench: realapi requests: {} policies, a {} s steady window and one remediation, on kube-apiserver and on the test server at once",
            requests::POLICIES,
            requests::window(ctx).as_secs()
        );
        let (real, test) = tokio::join!(requests::real(ctx), requests::test_server(ctx));
        requests_rows(ctx, &mut section.rows, &mut details, &real, &test);
        if let (Ok(r), Ok(t)) = (real, test) {
            found.requests = Some((r, t));
        }
    }
    section.details = details.trim_start().to_string();
    section.notes = notes(ctx);
    section.notes.extend(compare::notes(&found));
    section
}

fn failed(figure: String, e: &crate::Error, command: String) -> Row {
    eprintln!("bench: realapi: {figure} failed: {e}");
    Row {
        figure,
        goal: "completes".into(),
        measured: format!("failed: {e}"),
        peer: String::new(),
        outcome: Outcome::Missed,
        command,
    }
}

/// The test server's figure beside kube-apiserver's: `text` of it, or why there is none.
fn peer<T>(test: &crate::Result<T>, text: impl FnOnce(&T) -> String) -> String {
    test.as_ref()
        .map_or_else(|e| format!("test server: failed: {e}"), text)
}

/// `e` in a Markdown table's cell.
fn cell(e: &crate::Error) -> String {
    e.to_string().replace('|', "\\|")
}

fn memory_text(m: &Memory) -> String {
    format!("RSS {}, peak {}", mib(m.rss_kib), mib(m.peak_kib))
}

fn pods_rows(
    ctx: &Ctx,
    rows: &mut Vec<Row>,
    details: &mut String,
    id: &str,
    count: usize,
    real: &crate::Result<pods::Figures>,
    test: &crate::Result<pods::Figures>,
) {
    let command = ctx.command(&format!("realapi --only {id}"));
    let count = num(count as f64, 0);
    let what = format!(
        "{count} realistic pods made by Deployments on a real control plane ({})",
        plane::version()
    );
    match real {
        Ok(f) => {
            rows.push(Row {
                figure: format!("RSS per cached pod, {what}"),
                goal: format!("≤ {GOAL_PER_POD_KIB} KiB per pod"),
                measured: format!(
                    "{} KiB ({} over idle; {})",
                    num(f.per_pod_kib(), 1),
                    mib(f.over_idle_kib()),
                    memory_text(&f.loaded)
                ),
                peer: peer(test, |t| {
                    format!(
                        "test server, the same pods: {} KiB per pod",
                        num(t.per_pod_kib(), 1)
                    )
                }),
                outcome: Outcome::from(f.per_pod_kib() <= GOAL_PER_POD_KIB),
                command: command.clone(),
            });
            rows.push(Row {
                figure: format!("Size of a pod as kube-apiserver serves it, {what}"),
                goal: "—".into(),
                measured: format!(
                    "{}; written by {}",
                    pods::describe_size(&f.sizes),
                    f.sizes.managers.join(", ")
                ),
                peer: peer(test, |t| {
                    format!(
                        "test server, the same pods: {}; the memory scenario's pods: 14,463 bytes",
                        pods::describe_size(&t.sizes)
                    )
                }),
                outcome: Outcome::NotJudged,
                command: command.clone(),
            });
        }
        Err(e) => rows.push(failed(format!("RSS per cached pod, {what}"), e, command.clone())),
    }
    let _ = write!(
        details,
        "\n**Memory per cached realistic pod** ({count} pods, no policies)\n\n\
         | API server | Pods cached | Made and running after | JSON per pod | `managedFields` per pod | Operator ready after | Idle RSS | RSS | Peak RSS | Over idle | Per pod |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for (name, result) in [(plane::version(), real), ("API test server".into(), test)] {
        match result {
            Ok(f) => {
                let _ = writeln!(
                    details,
                    "| {name} | {} | {} | {} B | {} B ({} entries) | {:.1} s | {} | {} | {} | {} | {} KiB |",
                    num(f.sizes.pods as f64, 0),
                    f.setup.map_or("—".into(), |s| format!("{} s", s.as_secs())),
                    num(f.sizes.bytes, 0),
                    num(f.sizes.managed_fields_bytes, 0),
                    num(f.sizes.managed_fields_entries, 1),
                    f.startup.as_secs_f64(),
                    mib(f.idle.rss_kib),
                    mib(f.loaded.rss_kib),
                    mib(f.loaded.peak_kib),
                    mib(f.over_idle_kib()),
                    num(f.per_pod_kib(), 1)
                );
                let (over, per) = f.fixed_threshold_kib();
                let _ = writeln!(
                    details,
                    "| {name}, operator run with `{}={}` | {} | | | | | {} | {} | {} | {} | {} KiB |",
                    pods::FIXED_MMAP_THRESHOLD.0,
                    pods::FIXED_MMAP_THRESHOLD.1,
                    num(f.sizes.pods as f64, 0),
                    mib(f.idle.rss_kib),
                    mib(f.fixed_threshold.rss_kib),
                    mib(f.fixed_threshold.peak_kib),
                    mib(over),
                    num(per, 1)
                );
            }
            Err(e) => {
                let _ = writeln!(details, "| {name} | failed: {} ||||||||||", cell(e));
            }
        }
    }
}

fn startup_row(
    ctx: &Ctx,
    rows: &mut Vec<Row>,
    lines: &mut String,
    id: &str,
    count: usize,
    real: &crate::Result<startup::Startup>,
    test: &crate::Result<startup::Startup>,
) {
    let command = ctx.command(&format!("realapi --only {id}"));
    let figure = format!(
        "Startup with {} policies over one Deployment, real kube-apiserver (API-only control plane): every policy Ready after",
        num(count as f64, 0)
    );
    let text = |s: &startup::Startup| {
        format!(
            "{:.1} s (peak RSS {})",
            s.startup.as_secs_f64(),
            mib(s.memory.peak_kib)
        )
    };
    match real {
        Ok(s) => rows.push(Row {
            figure,
            goal: "—".into(),
            measured: text(s),
            peer: peer(test, |t| format!("test server: {}", text(t))),
            outcome: Outcome::NotJudged,
            command,
        }),
        Err(e) => rows.push(failed(figure, e, command)),
    }
    for (name, result) in [(plane::version(), real), ("API test server".into(), test)] {
        let _ = match result {
            Ok(s) => writeln!(
                lines,
                "| {} | {name} | {} | {:.1} s | {:.1} CPU-s | {} | {} | {} |",
                num(count as f64, 0),
                s.created
                    .map_or("—".into(), |c| format!("{:.1} s", c.as_secs_f64())),
                s.startup.as_secs_f64(),
                s.operator_cpu,
                s.server_cpu
                    .map_or("— (in the bench's process)".into(), |c| format!("{c:.1} CPU-s")),
                mib(s.memory.rss_kib),
                mib(s.memory.peak_kib)
            ),
            Err(e) => writeln!(
                lines,
                "| {} | {name} | failed: {} ||||||",
                num(count as f64, 0),
                cell(e)
            ),
        };
    }
}

fn requests_rows(
    ctx: &Ctx,
    rows: &mut Vec<Row>,
    details: &mut String,
    real: &crate::Result<requests::Figures>,
    test: &crate::Result<requests::Figures>,
) {
    let command = ctx.command("realapi --only requests");
    let policies = requests::POLICIES;
    let steady_text = |f: &requests::Figures| {
        let per_hour = f.per_hour();
        format!(
            "{} per hour ({} writes; {} in {:.0} s: {})",
            num(per_hour.total(), 0),
            num(per_hour.writes(), 0),
            num(f.steady.total(), 0),
            f.steady_seconds,
            f.steady.summary()
        )
    };
    let remediation_text = |f: &requests::Figures| {
        format!(
            "{} ({} writes) in {:.0} s: {}",
            num(f.remediation.total(), 0),
            num(f.remediation.writes(), 0),
            f.remediation_seconds,
            f.remediation.summary()
        )
    };
    let steady_figure = format!(
        "API requests of a healthy hour, {policies} policies each over a 1-pod Deployment, probing every 10 s, real kube-apiserver (its own count)"
    );
    let remediation_figure = "API requests of one remediation (a pod turns 503; ladder RestartPods), from the pod turning 503 until the ladder is closed, real kube-apiserver (its own count)".to_string();
    match real {
        Ok(f) => {
            let reads_only_watches = f.steady.0.keys().all(|k| k.is_watch());
            rows.push(Row {
                figure: steady_figure,
                goal: "0 writes; reads only from watches".into(),
                measured: steady_text(f),
                peer: peer(test, |t| format!("test server: {}", steady_text(t))),
                outcome: Outcome::from(f.steady.writes() == 0.0 && reads_only_watches),
                command: command.clone(),
            });
            rows.push(Row {
                figure: remediation_figure,
                goal: "—".into(),
                measured: remediation_text(f),
                peer: peer(test, |t| format!("test server: {}", remediation_text(t))),
                outcome: Outcome::NotJudged,
                command,
            });
        }
        Err(e) => rows.push(failed(steady_figure, e, command)),
    }
    let empty = requests::Figures::default();
    let r = real.as_ref().unwrap_or(&empty);
    let t = test.as_ref().unwrap_or(&empty);
    let all = r.all.clone().unwrap_or_default();
    let _ = write!(
        details,
        "\n**API requests of a healthy hour** ({policies} policies; a window of {:.0} s on kube-apiserver, {:.0} s on the test server, scaled to an hour)\n\n{}",
        r.steady_seconds,
        t.steady_seconds,
        tally::table(&[
            ("operator, kube-apiserver: in the window", &r.steady),
            ("per hour", &r.per_hour()),
            ("every client, kube-apiserver: in the window", &all.0),
            ("operator, test server: in the window", &t.steady),
            ("per hour", &t.per_hour()),
        ])
    );
    let _ = write!(
        details,
        "\n**API requests of one remediation** (from the pod turning 503 until the ladder is closed: {:.0} s on kube-apiserver, evicted after {:.1} s; {:.0} s on the test server, evicted after {:.1} s)\n\n{}",
        r.remediation_seconds,
        r.evicted_after,
        t.remediation_seconds,
        t.evicted_after,
        tally::table(&[
            ("operator, kube-apiserver", &r.remediation),
            ("every client, kube-apiserver", &all.1),
            ("operator, test server", &t.remediation),
        ])
    );
    let _ = writeln!(
        details,
        "\nThe operator's own count of its API requests (`apphealth_kubernetes_api_requests_total`): {} and {} in the two windows on kube-apiserver, {} and {} on the test server. \
         Watches re-opened during the remediation, left out of it: {} on kube-apiserver, {} on the test server. \
         Server-side applies among every client's requests in the remediation (`apiserver_request_total{{verb=\"APPLY\"}}`): {}. \
         The bench's own requests in it on kube-apiserver: {} (reads of the failing pod, the replacement pod and its status).",
        num(r.counted.0, 0),
        num(r.counted.1, 0),
        num(t.counted.0, 0),
        num(t.counted.1, 0),
        num(r.remediation_watches, 0),
        num(t.remediation_watches, 0),
        r.applies.map_or("n/a".into(), |a| num(a, 0)),
        r.bench_requests
    );
    if let Err(e) = test {
        let _ = writeln!(details, "\nThe test server's run failed: {e}");
    }
}

/// How the figures are taken.
fn notes(ctx: &Ctx) -> Vec<String> {
    vec![
        format!(
            "Each case starts a control plane of its own with apphealth-cluster (the binaries from `tools/kube/build.sh`: {}, etcd, and for the pods kube-controller-manager, kube-scheduler and kwok with two fake nodes), processes on loopback, all stopped after the case. \
             The operator is the same release binary with the same flags as everywhere in this report (`--api-qps 1000 --api-burst 2000`, no leader election), given a kubeconfig with a token of a ServiceAccount of its own (bound to `cluster-admin`), as the chart runs it; the bench's own requests are the administrator's.",
            plane::version()
        ),
        format!("Memory per pod: the pod template of 10 Deployments is the realistic pod of `tests/fixtures/realistic-pod.json` (an app container, an Envoy sidecar and a log shipper, an init container, env from values, fields, Secrets and ConfigMaps, projected and Secret volumes, three kinds of probes, anti-affinity, spread constraints) less what the cluster adds itself (the ServiceAccount token volume, which admission puts back, `nodeName`, priority, `pod-template-hash`), with its resource requests divided by ten and its ephemeral-storage limit dropped so that 10,000 fit on kwok's two nodes. \
         {} \
         kube-controller-manager makes the pods through ReplicaSets, kube-scheduler binds them, kwok marks them running: every one of them writes its part of `managedFields`. \
         The operator is started on the empty control plane first (idle), then again once every pod is ready; RSS is read as in the memory scenario (VmRSS 5 s after /readyz, no policies; per pod = (RSS − idle) / pods cached). \
         Sizes are averaged over every pod, each as a GET serves it, compact (the list's items with `apiVersion` and `kind` put back), measured as the memory scenario measures the test server's. \
         The test server row: the same fixture pods (with the fixture's own status; the test server writes a one-entry `managedFields` of its own) measured the same way, its idle measured again. \
         The second row of each is the operator run once more over the same pods with glibc's mmap threshold fixed at its default (`{}={}`).",
            if ctx.quick {
                "1,000 pods (`--quick`).".to_string()
            } else {
                format!(
                    "{} pods: 10,000 took 419 s and 399 s to make and run in two trials on these 2 shared cores (kube-scheduler-bound, its rate falling from about 43 to 18 pods/s as the pods accumulated), more than the 6 minutes allowed; {} were running after about 300 s.",
                    num(PODS as f64, 0),
                    num(PODS as f64, 0)
                )
            },
            pods::FIXED_MMAP_THRESHOLD.0,
            pods::FIXED_MMAP_THRESHOLD.1
        ),
        "Startup: an API-only control plane (etcd and kube-apiserver, nothing else: the bench writes the pod's status as a kubelet would) holding one Deployment of one ready pod at a farm address and N policies over it (probe every 10 s, dry-run ladder), the layout of the memory scenario's `policies-10000-shared`, created by the bench before the operator starts (16 at a time). \
         Time from the operator's start until every policy has a Ready condition, as the bench's own watch of the policies sees it, and the farm has answered a probe; RSS and peak (VmHWM) then. Each count on a fresh control plane; the test server's rows are the same case started as every test-server case is."
            .into(),
        format!(
            "API requests: an API-only control plane with {} Deployments of one ready pod each at farm addresses and a policy over each (probe every 10 s, `consecutiveFailures: 3`, `consecutiveSuccesses: 2`, one real step `RestartPods`, cooldown 10m). \
             Once every policy is `Healthy=True` and the operator's own count of its requests has stood still for 30 s, the steady-state window starts: {} s, one cycle of the operator's watches (kube-rs' watcher asks kube-apiserver to end each watch after 290 s and opens it again at once, so each watch is counted once per window whatever the phase), scaled to an hour. \
             Then one policy's pod answers 503: the window runs until the ladder is closed (`Healthy=True` and not `Remediating` again), the evicted pod having been replaced by the bench at the same address, answering 200: created as soon as the eviction is seen (the bench looks every 100 ms), as its ReplicaSet would, and made ready 2 s later, as scheduling and a kubelet would take. The test server runs the same at the same time, its pods at other farm addresses.",
            requests::POLICIES,
            requests::window(ctx).as_secs()
        ),
        "How kube-apiserver counts: `apiserver_request_total` (by verb and resource, read from its `/metrics` before and after each window; reading `/metrics` is not counted) counts every client's requests, and on a control plane of its own kube-apiserver is a client too: its lease renewals, OpenAPI aggregation, Service IP repair and the watches of its internal informers (over pods, secrets and configmaps among others) re-opened every 5–10 minutes — the column \"every client\". \
         The operator's share is read from the same `/metrics`: API Priority and Fairness classifies each request by who sent it, and the bench adds a FlowSchema for each verb and resource (200, and a catch-all) matching only the operator's ServiceAccount, at a priority level of its own; `apiserver_flowcontrol_dispatched_requests_total` by FlowSchema is then the operator's requests by verb and resource. It counts a request when it starts (a watch when it opens) where `apiserver_request_total` counts it when it ends (a watch when it closes); the test server's log, which holds only the operator's requests, counts when they arrive. `patch` includes server-side apply."
            .into(),
    ]
}
