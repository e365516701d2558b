//! The test server refereed by the real one: a table of request sequences, each run against a fresh
//! in-process `TestServer` (the CRD installed) and against kube-apiserver on the local control
//! plane (in a namespace of its own), with the relevant parts of the answers compared: HTTP status
//! codes, the `reason`, message and causes of `Status` errors, the fields the operator reads,
//! `metadata.managedFields` (manager, operation, subresource, fieldsV1) and watch event sequences.
//! What must differ (uids, resourceVersions, times, namespace names) is normalised away; what
//! differs on purpose is named per case in an allow-list, with why (and listed in
//! testserver/README.md, "Differences from kube-apiserver (refereed)"). Every case runs; a mismatch
//! prints a diff per case and the test fails naming every mismatching case.

mod policies;
mod side;
mod watches;
mod workloads;

use std::{panic::AssertUnwindSafe, time::Duration};

use apphealth_testserver::TestServer;
use futures::{FutureExt, future::BoxFuture};
use serde_json::{Value, json};

use crate::env::{env, unique};
use policies::*;
use side::*;
use watches::*;
use workloads::*;

/// One case's requests, run on one side.
type Steps = fn(&mut Side) -> BoxFuture<'_, ()>;

/// A difference kept on purpose: record paths matching `path` (`*` matches anything) are left out
/// of the comparison.
struct Allow {
    path: &'static str,
    why: &'static str,
}

struct Case {
    name: &'static str,
    steps: Steps,
    /// The deliberate differences of this case (each listed in testserver/README.md).
    allow: &'static [Allow],
}

/// A case's steps as a table entry.
macro_rules! steps {
    ($f:ident) => {{
        fn run(s: &mut Side) -> BoxFuture<'_, ()> {
            Box::pin($f(s))
        }
        run as Steps
    }};
}

// --- The table. ---

// The deliberate differences, each listed in testserver/README.md ("Differences from
// kube-apiserver (refereed)") with why it is kept. A pattern names record paths (`*` for any run
// of characters); a difference outside every pattern of its case fails it.

/// `Update` entries: the test server tracks what appliers own, not what updates set, so their
/// `fieldsV1` is `{}`.
const UPDATE_FIELDS: Allow = Allow {
    path: "*.managedFields.*|Update|*.fieldsV1*",
    why: "the fieldsV1 of Update entries is {} (only appliers' ownership is tracked)",
};
/// No controllers run: nothing writes a Deployment's or an autoscaler's status. Whether the real
/// controller has written it when a case reads the object is a matter of timing.
const CONTROLLER_STATUS: Allow = Allow {
    path: "*.managedFields.kube-controller-manager|Update|status",
    why: "no controllers: kube-controller-manager writes the status on the real cluster",
};
/// The root CA publisher puts a ConfigMap in every namespace.
const KUBE_ROOT_CA: Allow = Allow {
    path: "* list /api/v1/namespaces/{ns}/configmaps.items",
    why: "no controllers: kube-root-ca.crt is in every namespace of the real cluster",
};
/// Pods are made Running and Ready by kwok on the real cluster, by the test on the test server.
const KWOK_STATUS: Allow = Allow {
    path: "*.managedFields.kwok|Update|status",
    why: "no kubelet: kwok writes pod status on the real cluster",
};
const TEST_STATUS: Allow = Allow {
    path: "*.managedFields.testserver|Update|status",
    why: "no kubelet: the test writes pod status on the test server (TestServer::patch_status)",
};
/// The CRD schema's `default`s, applied by the API server (the operator applies the same ones
/// through serde, from the code the CRD is generated from).
const CRD_DEFAULTS: &[Allow] = &[
    Allow {
        path: "* create./spec.probe.http.method",
        why: "no defaulting",
    },
    Allow {
        path: "* create./spec.probe.http.scheme",
        why: "no defaulting",
    },
    Allow {
        path: "* create./spec.probe.http.successCodes",
        why: "no defaulting",
    },
    Allow {
        path: "* create./spec.probe.via",
        why: "no defaulting",
    },
    Allow {
        path: "* create./spec.recovery",
        why: "no defaulting",
    },
    Allow {
        path: "* create./spec.remediation.diagnosticsRetention",
        why: "no defaulting",
    },
    Allow {
        path: "* create./spec.remediation.minPodAge",
        why: "no defaulting",
    },
];
/// Defaults of built-in kinds (containers).
const CONTAINER_DEFAULTS: &[Allow] = &[
    Allow {
        path: "*containers[*].imagePullPolicy",
        why: "no defaulting of built-ins",
    },
    Allow {
        path: "*containers[*].terminationMessagePath",
        why: "no defaulting of built-ins",
    },
    Allow {
        path: "*containers[*].terminationMessagePolicy",
        why: "no defaulting of built-ins",
    },
    Allow {
        path: "*containers[*].ports[*].protocol",
        why: "no defaulting of built-ins",
    },
    Allow {
        path: "*containers[1].resources",
        why: "no defaulting of built-ins ({} for none)",
    },
];

fn case(name: &'static str, steps: Steps, allow: &'static [Allow]) -> Case {
    Case { name, steps, allow }
}

fn cases() -> Vec<Case> {
    vec![
        // The slowest first (see `Side::expire`), while the others run.
        case("watch-gone", steps!(watch_gone), &[]),
        case("policy-crud", steps!(policy_crud), &[UPDATE_FIELDS]),
        case(
            "policy-status-apply",
            steps!(policy_status_apply),
            &[UPDATE_FIELDS],
        ),
        case(
            "policy-status-appliers",
            steps!(policy_status_appliers),
            &[UPDATE_FIELDS],
        ),
        case(
            "policy-status-merge",
            steps!(policy_status_merge),
            &[UPDATE_FIELDS],
        ),
        case("policy-generation", steps!(policy_generation), &[UPDATE_FIELDS]),
        case("policy-replace", steps!(policy_replace), &[UPDATE_FIELDS]),
        case("policy-admission", steps!(policy_admission), &[]),
        case("policy-defaults", steps!(policy_defaults), CRD_DEFAULTS),
        case("unknown-fields", steps!(unknown_fields), &[UPDATE_FIELDS]),
        case("policy-apply-conflict", steps!(policy_apply_conflict), &[]),
        case("kinds", steps!(kinds), &[KUBE_ROOT_CA]),
        case("scale", steps!(scale), &[UPDATE_FIELDS, CONTROLLER_STATUS]),
        case(
            "rollout-restart",
            steps!(rollout_restart),
            &[UPDATE_FIELDS, CONTROLLER_STATUS],
        ),
        case(
            "template-containers",
            steps!(template_containers),
            &[UPDATE_FIELDS, CONTROLLER_STATUS],
        ),
        case(
            "template-containers-defaults",
            steps!(template_container_defaults),
            CONTAINER_DEFAULTS,
        ),
        case(
            "template-containers-merge",
            steps!(template_containers_merge),
            &[Allow {
                path: "01 merge replaces the list.*",
                why: "no validation of built-in kinds: the API server refuses a container without an image",
            }],
        ),
        case(
            "rollback-replace",
            steps!(rollback_replace),
            &[UPDATE_FIELDS, CONTROLLER_STATUS],
        ),
        case(
            "selectors",
            steps!(selectors),
            &[
                Allow {
                    path: "* pods labelSelector=app%20in%20web.message",
                    why: "malformed label selectors are refused (400 BadRequest) in other words",
                },
                Allow {
                    path: "* pods fieldSelector=spec.restartPolicy%3DAlways.items",
                    why: "no defaulting of built-ins: restartPolicy is not set to Always",
                },
            ],
        ),
        case("evict", steps!(evict), &[]),
        case("evict-budget", steps!(evict_budget), &[UPDATE_FIELDS]),
        case(
            "resize",
            steps!(resize),
            &[UPDATE_FIELDS, KWOK_STATUS, TEST_STATUS],
        ),
        case(
            "events",
            steps!(events_api),
            &[
                UPDATE_FIELDS,
                Allow {
                    path: "* without reportingController.*",
                    why: "no validation of built-in kinds: events.k8s.io events need reportingController",
                },
            ],
        ),
        case(
            "configmaps-secrets",
            steps!(configmaps_and_secrets),
            &[
                UPDATE_FIELDS,
                Allow {
                    path: "* secret./type",
                    why: "no defaulting of built-ins: a Secret's type Opaque",
                },
            ],
        ),
        case(
            "lease",
            steps!(lease),
            &[
                UPDATE_FIELDS,
                Allow {
                    path: "00 create./spec",
                    why: "no defaulting of built-ins: an empty Lease spec is {} as Go serialises it",
                },
                Allow {
                    path: "*.managedFields.unknown|Update|",
                    why: "an Update entry that owns nothing is dropped by the API server, kept here",
                },
                Allow {
                    path: "04 a releases.managedFields.lease-a|Update|",
                    why: "an Update entry that owns nothing is dropped by the API server, kept here",
                },
                Allow {
                    path: "05 b locks.managedFields.lease-a|Update|",
                    why: "an Update entry that owns nothing is dropped by the API server, kept here",
                },
            ],
        ),
        case(
            "autoscaler",
            steps!(autoscaler),
            &[UPDATE_FIELDS, CONTROLLER_STATUS],
        ),
        case(
            "forbidden",
            steps!(forbidden),
            &[
                Allow {
                    path: "00 evict without the right.message",
                    why: "no authorization: the test's fault hook words the 403 (only the code is read)",
                },
                Allow {
                    path: "00 evict without the right.details",
                    why: "no authorization: a fault hook's Status has no details",
                },
            ],
        ),
        case("watch-order", steps!(watch_order), &[]),
        case("watch-selectors", steps!(watch_selectors), &[]),
        case("watch-bookmarks", steps!(watch_bookmarks), &[]),
        case("watch-list", steps!(watch_list), &[]),
    ]
}

// --- Running and comparing. ---

/// The CRD of the preserve-unknown-fields case (and the quiet resource of `watch-gone`).
fn widget_crd() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.referee.apphealth.io"},
        "spec": {"group": "referee.apphealth.io", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "integer"},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}})
}

fn policy_crd() -> Value {
    serde_json::to_value(apphealth_operator::api::crd()).unwrap()
}

/// A client that does not retry 429s and 5xx (kube's default does): every answer is seen as is.
async fn client_without_retries(kubeconfig: &std::path::Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

/// Installs the policies' CRD in the real cluster if absent (server-side apply; a concurrent
/// install is fine) and the widgets' CRD, and waits until both are established.
async fn install(real: &Side) {
    let policies = format!("{CRDS}/apphealthpolicies.apphealth.io");
    if real.get(&policies).await.code == 404 {
        let r = real.apply(&policies, "referee", false, &policy_crd()).await;
        assert!(r.code < 300 || r.code == 409, "installing the CRD: {}", r.body);
    }
    let widgets = format!("{CRDS}/widgets.referee.apphealth.io");
    let r = real.apply(&widgets, "referee", true, &widget_crd()).await;
    assert!(r.code < 300, "installing the widgets' CRD: {}", r.body);
    for crd in [policies, widgets] {
        real.wait_true("the CRD established", &crd, "Established").await;
    }
}

/// Runs one side of a case in a new namespace; a panic or a timeout fails the case, saying why.
async fn run_side(case: &Case, s: &mut Side) -> Result<(), String> {
    let created = s
        .post(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "{ns}"}}),
        )
        .await;
    if created.code != 201 {
        return Err(format!("creating the namespace: {}", created.body));
    }
    let outcome = tokio::time::timeout(
        Duration::from_secs(600),
        AssertUnwindSafe((case.steps)(s)).catch_unwind(),
    )
    .await;
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(panic)) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// Strings with the namespace and uids replaced; resourceVersions, uids and creation times as
/// `<set>`.
fn normalise(v: Value, ns: &str, uid: &regex::Regex) -> Value {
    match v {
        Value::String(s) => Value::String(uid.replace_all(&s.replace(ns, "{ns}"), "{uid}").into_owned()),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| normalise(v, ns, uid)).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "resourceVersion" | "uid" | "creationTimestamp" if !v.is_null() => json!("<set>"),
                        _ => normalise(v, ns, uid),
                    };
                    (k, v)
                })
                .collect(),
        ),
        v => v,
    }
}

/// The record as one object: `NN label` → what was noted.
fn record(s: &Side, uid: &regex::Regex) -> Value {
    let mut out = serde_json::Map::new();
    for (i, (label, value)) in s.record.iter().enumerate() {
        out.insert(format!("{i:02} {label}"), normalise(value.clone(), &s.ns, uid));
    }
    Value::Object(out)
}

/// Where `a` and `b` differ: (path, a's value, b's value). A missing field equals null.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<(String, Value, Value)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let sep = if path.is_empty() { "" } else { "." };
                diff(
                    &format!("{path}{sep}{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), x, y, out);
            }
        }
        _ if a != b => out.push((path.to_owned(), a.clone(), b.clone())),
        _ => {}
    }
}

/// Whether `path` matches `pattern`, where `*` matches any run of characters.
fn glob(pattern: &str, path: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == path,
        Some((head, rest)) => {
            let Some(tail) = path.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|i| tail.is_char_boundary(*i))
                .any(|i| glob(rest, &tail[i..]))
        }
    }
}

/// Runs a case on both servers; returns its report and whether it passed.
async fn run(case: &Case, real: &kube::Client, etcd: &str) -> (String, bool) {
    let ns = unique("referee");
    let server = TestServer::start().await.unwrap();
    server.create(policy_crd()).unwrap();
    server.create(widget_crd()).unwrap();
    let mut config = kube::Config::new(server.url().parse().unwrap());
    config.default_retry = false;
    let client = kube::Client::try_from(config).unwrap();
    let mut test = Side::new(Server::Test(server), client, &ns);
    let etcd = etcd.to_owned();
    let mut kube = Side::new(Server::Real { etcd }, real.clone(), &ns);
    let (test_run, kube_run) = tokio::join!(run_side(case, &mut test), run_side(case, &mut kube));
    kube.delete("/api/v1/namespaces/{ns}").await;

    let uid = regex::Regex::new("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    let (a, b) = (record(&test, &uid), record(&kube, &uid));
    let mut differences = Vec::new();
    diff("", &a, &b, &mut differences);
    let mut used = vec![false; case.allow.len()];
    let mut report = String::new();
    let mut mismatches = 0;
    for (path, x, y) in &differences {
        if let Some(i) = case.allow.iter().position(|a| glob(a.path, path)) {
            used[i] = true;
            continue;
        }
        mismatches += 1;
        report.push_str(&format!(
            "    {path}\n      test server:    {x}\n      kube-apiserver: {y}\n"
        ));
    }
    let allowed = differences.len() - mismatches;
    for (side, run) in [("test server", &test_run), ("kube-apiserver", &kube_run)] {
        if let Err(why) = run {
            report.push_str(&format!("    the case failed on the {side}: {why}\n"));
        }
    }
    let passed = mismatches == 0 && test_run.is_ok() && kube_run.is_ok();
    let mut head = format!(
        "{} {}: {} steps, {mismatches} differences, {allowed} allowed\n",
        if passed { "ok  " } else { "FAIL" },
        case.name,
        a.as_object().map_or(0, |o| o.len())
    );
    for (allow, used) in case.allow.iter().zip(used) {
        if !used {
            head.push_str(&format!(
                "    (allowed but not seen: {} — {})\n",
                allow.path, allow.why
            ));
        }
    }
    if std::env::var_os("REFEREE_VERBOSE").is_some() {
        report.push_str(&format!(
            "  test server:\n{}\n  kube-apiserver:\n{}\n",
            serde_json::to_string_pretty(&a).unwrap(),
            serde_json::to_string_pretty(&b).unwrap()
        ));
    }
    (head + &report, passed)
}

/// The table, run against both servers (REFEREE_CASES=a,b runs the cases whose names contain a or
/// b; REFEREE_VERBOSE=1 prints both records).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn the_test_server_answers_as_kube_apiserver_does() {
    use futures::StreamExt;
    let env = env().await;
    let _ = env.client().await; // installs the TLS crypto provider
    let real = client_without_retries(&env.cluster.layout.kubeconfig).await;
    let etcd = env.cluster.state.etcd.clone();
    install(&Side::new(Server::Real { etcd: etcd.clone() }, real.clone(), "")).await;
    let only = std::env::var("REFEREE_CASES").ok();
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|o| c.name.contains(o)))
        })
        .collect();
    let results: Vec<(String, bool)> = futures::stream::iter(cases.iter().map(|c| run(c, &real, &etcd)))
        .buffered(3)
        .collect()
        .await;
    let mut failed = Vec::new();
    for (case, (report, passed)) in cases.iter().zip(&results) {
        eprint!("{report}");
        if !*passed {
            failed.push(case.name);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases differ: {}",
        failed.len(),
        cases.len(),
        failed.join(", ")
    );
}
