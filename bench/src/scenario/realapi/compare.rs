//! Where kube-apiserver's figures differ from the test server's, and why, said from what was
//! measured.

use super::{pods, requests, startup, tally::Tally};
use crate::report::{mib, num};

/// The pairs (kube-apiserver, test server) of the cases that completed.
#[derive(Default)]
pub struct Found {
    pub pods: Option<(pods::Figures, pods::Figures)>,
    pub startups: Vec<(usize, startup::Startup, startup::Startup)>,
    pub requests: Option<(requests::Figures, requests::Figures)>,
}

/// The operator's list page size (its watches ask for `limit=500`).
const PAGE: f64 = 500.0;

pub fn notes(found: &Found) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some((r, t)) = &found.pods {
        notes.push(pods_note(r, t));
    }
    if !found.startups.is_empty() {
        notes.push(startup_note(&found.startups));
    }
    if let Some((r, t)) = &found.requests {
        notes.push(requests_note(r, t));
    }
    notes
}

fn pods_note(r: &pods::Figures, t: &pods::Figures) -> String {
    let (_, real_fixed) = r.fixed_threshold_kib();
    let (_, test_fixed) = t.fixed_threshold_kib();
    let pages = (r.sizes.pods as f64 / PAGE).ceil();
    format!(
        "Where it differs, memory per pod. kube-apiserver serves the pod at {} bytes against the test server's {} for the same pod: \
         its `managedFields` are {} bytes ({}: kube-controller-manager's entry lists every field it created the pod with, kwok's every status field it wrote) \
         where the test server writes {}; the rest differs by what admission adds (the ServiceAccount token volume, defaults) and kwok's status against the fixture's. \
         The operator decodes only the fields it keeps (no `managedFields`), so the bytes cost it while a list or an event is decoded, not in its cache. \
         It kept {} KiB per pod over idle on kube-apiserver against {} KiB on the test server; run with glibc's mmap threshold fixed \
         (`{}={}`), {} KiB against {} KiB. The rest of the difference is memory glibc keeps: kube-apiserver honours the `limit=500` of the operator's \
         lists, so the pods come in {} pages of about {} each; glibc maps the first page's buffer and unmaps it when freed, then raises its mmap threshold \
         to that size, so the later pages' buffers come from the heap, which keeps what is freed (its peak is its RSS: {} and {}). \
         The test server ignores `limit` and answers in one page of {}, above glibc's ceiling for that threshold (32 MiB), mapped and given back: \
         a higher peak ({}), a lower RSS after ({}).",
        num(r.sizes.bytes, 0),
        num(t.sizes.bytes, 0),
        num(r.sizes.managed_fields_bytes, 0),
        r.sizes.managers.join(", "),
        num(t.sizes.managed_fields_bytes, 0),
        num(r.per_pod_kib(), 1),
        num(t.per_pod_kib(), 1),
        pods::FIXED_MMAP_THRESHOLD.0,
        pods::FIXED_MMAP_THRESHOLD.1,
        num(real_fixed, 1),
        num(test_fixed, 1),
        num(pages, 0),
        mib((r.sizes.bytes * PAGE / 1024.0) as u64),
        mib(r.loaded.peak_kib),
        mib(r.loaded.rss_kib),
        mib((t.sizes.bytes * t.sizes.pods as f64 / 1024.0) as u64),
        mib(t.loaded.peak_kib),
        mib(t.loaded.rss_kib),
    )
}

fn startup_note(startups: &[(usize, startup::Startup, startup::Startup)]) -> String {
    let cases: Vec<String> = startups
        .iter()
        .map(|(n, r, t)| {
            format!(
                "{} policies {:.1} s against {:.1} s ({:.1}×), the operator using {:.1} CPU-s against {:.1}, kube-apiserver and etcd {}",
                num(*n as f64, 0),
                r.startup.as_secs_f64(),
                t.startup.as_secs_f64(),
                r.startup.as_secs_f64() / t.startup.as_secs_f64().max(0.001),
                r.operator_cpu,
                t.operator_cpu,
                r.server_cpu
                    .map_or("n/a".into(), |c| format!("{c:.1} CPU-s"))
            )
        })
        .collect();
    format!(
        "Where it differs, startup: {}. Every policy's first status is a write (a server-side apply, `PATCH …/status?fieldManager=apphealth-operator&force=true`) \
         that kube-apiserver authenticates (the token) and authorizes (RBAC), merges into `managedFields`, validates against the CRD's schema and its CEL rules and \
         stores in etcd, then sends to every watch of the policies (the operator's and the bench's); the test server keeps its objects in memory, \
         in the bench's process, with no etcd behind it. On 2 cores the operator and kube-apiserver take turns: the operator's client allows 1,000 requests/s, so \
         a start is bounded by what kube-apiserver and etcd get through.",
        cases.join("; ")
    )
}

fn requests_note(r: &requests::Figures, t: &requests::Figures) -> String {
    let steady = format!(
        "in steady state the operator made {} requests on kube-apiserver ({} of them watches re-opened, {} writes) and {} on the test server ({} watches, {} writes) in the window",
        num(r.steady.total(), 0),
        num(r.steady.watches(), 0),
        num(r.steady.writes(), 0),
        num(t.steady.total(), 0),
        num(t.steady.watches(), 0),
        num(t.steady.writes(), 0)
    );
    let remediation = if r.remediation == t.remediation {
        format!(
            "the remediation made the same requests on both ({})",
            r.remediation.summary()
        )
    } else {
        format!(
            "the remediation differs: kube-apiserver {} against the test server {} — the ladder reacts to what its watches show, and the two servers \
             deliver the evicted pod's deletion and its replacement at different moments",
            difference(&r.remediation, &t.remediation),
            difference(&t.remediation, &r.remediation)
        )
    };
    format!(
        "Where it differs, requests: {steady} ({} and {} an hour); {remediation}. Every status write is a server-side apply (kube-apiserver \
         counted {} `APPLY` requests, every client's, in the remediation).",
        num(r.per_hour().total(), 0),
        num(t.per_hour().total(), 0),
        r.applies.map_or("n/a".into(), |a| num(a, 0))
    )
}

/// What `a` has more of than `b`, as `2 more patch apphealthpolicies/status (apphealth.io)`.
fn difference(a: &Tally, b: &Tally) -> String {
    let more: Vec<String> =
        a.0.iter()
            .filter(|(k, n)| **n > b.get(k))
            .map(|(k, n)| format!("{} more {} {}", num(n - b.get(k), 0), k.verb, k.resource_text()))
            .collect();
    if more.is_empty() {
        "nothing more".into()
    } else {
        more.join(", ")
    }
}
