//! API requests counted by verb and resource: from kube-apiserver's `/metrics` (its
//! `apiserver_request_total`, and API Priority and Fairness' count per FlowSchema, which tells whose
//! requests they were), and from the API test server's request log.

use std::{collections::BTreeMap, fmt::Write as _};

use apphealth_testserver::RecordedRequest;

use crate::{exposition::Exposition, report::num};

/// kube-apiserver's count of the requests it served, every client's (counted when a request ends:
/// a watch when it closes).
pub const REQUEST_TOTAL: &str = "apiserver_request_total";
/// API Priority and Fairness' count of the requests it let through, by FlowSchema (counted when a
/// request starts: a watch when it opens).
pub const DISPATCHED: &str = "apiserver_flowcontrol_dispatched_requests_total";

/// What a request did, as RBAC names it: `get`, `list`, `watch`, `create`, `update`, `patch`
/// (server-side apply included), `delete`, `deletecollection`; and to what: the resource (with
/// its subresource) and its API group ("" for the core group; a non-resource request, such as
/// discovery, has the resource `non-resource`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub verb: String,
    pub group: String,
    pub resource: String,
}

impl Key {
    pub fn new(verb: &str, group: &str, resource: &str) -> Key {
        Key {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
        }
    }

    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }

    pub fn is_watch(&self) -> bool {
        self.verb == "watch"
    }

    /// `pods/eviction`, `deployments (apps)`, `apphealthpolicies/status (apphealth.io)`.
    pub fn resource_text(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{} ({})", self.resource, self.group)
        }
    }
}

/// Requests by [`Key`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally(pub BTreeMap<Key, f64>);

impl Tally {
    pub fn add(&mut self, key: Key, n: f64) {
        if n != 0.0 {
            *self.0.entry(key).or_insert(0.0) += n;
        }
    }

    pub fn total(&self) -> f64 {
        self.0.values().sum()
    }

    pub fn writes(&self) -> f64 {
        self.0.iter().filter(|(k, _)| k.is_write()).map(|(_, n)| n).sum()
    }

    pub fn watches(&self) -> f64 {
        self.0.iter().filter(|(k, _)| k.is_watch()).map(|(_, n)| n).sum()
    }

    /// Without the watches (re-opened on their own schedule, whatever else happens).
    pub fn without_watches(&self) -> Tally {
        Tally(
            self.0
                .iter()
                .filter(|(k, _)| !k.is_watch())
                .map(|(k, n)| (k.clone(), *n))
                .collect(),
        )
    }

    pub fn get(&self, key: &Key) -> f64 {
        self.0.get(key).copied().unwrap_or(0.0)
    }

    /// `3 watch deployments (apps), 1 patch apphealthpolicies/status (apphealth.io)`, or `none`.
    pub fn summary(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0
            .iter()
            .map(|(k, n)| format!("{} {} {}", num(*n, 0), k.verb, k.resource_text()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The increase of `apiserver_request_total` from `before` to `after`, every client's, by verb
    /// and resource. Its verbs are the API server's (`LIST`, `WATCH`, `POST`, `APPLY`, ...), here
    /// mapped to RBAC's; non-resource requests are left out (health checks, OpenAPI).
    pub fn request_total(before: &Exposition, after: &Exposition) -> Tally {
        let read = |e: &Exposition| {
            let mut t = Tally::default();
            for s in e.samples(REQUEST_TOTAL) {
                let resource = label(&s.labels, "resource");
                if resource.is_empty() {
                    continue;
                }
                let verb = match label(&s.labels, "verb") {
                    "GET" => "get",
                    "LIST" => "list",
                    "WATCH" => "watch",
                    "POST" => "create",
                    "PUT" => "update",
                    "PATCH" | "APPLY" => "patch",
                    "DELETE" => "delete",
                    "DELETECOLLECTION" => "deletecollection",
                    other => other,
                }
                .to_ascii_lowercase();
                let sub = label(&s.labels, "subresource");
                let resource = if sub.is_empty() {
                    resource.to_string()
                } else {
                    format!("{resource}/{sub}")
                };
                t.add(Key::new(&verb, label(&s.labels, "group"), &resource), s.value);
            }
            t
        };
        read(after).since(&read(before))
    }

    /// How many `APPLY` (server-side apply) requests `apiserver_request_total` counted between
    /// `before` and `after`, every client's.
    pub fn applies(before: &Exposition, after: &Exposition) -> f64 {
        let count = |e: &Exposition| e.sum(REQUEST_TOTAL, &[("verb", "APPLY")]).unwrap_or(0.0);
        count(after) - count(before)
    }

    /// The requests of the FlowSchemas in `flows` (name → what it matches) between `before` and
    /// `after`, from API Priority and Fairness.
    pub fn dispatched(before: &Exposition, after: &Exposition, flows: &BTreeMap<String, Key>) -> Tally {
        let read = |e: &Exposition| {
            let mut t = Tally::default();
            for s in e.samples(DISPATCHED) {
                if let Some(key) = flows.get(label(&s.labels, "flow_schema")) {
                    t.add(key.clone(), s.value);
                }
            }
            t
        };
        read(after).since(&read(before))
    }

    /// The requests in the test server's log, by verb and resource.
    pub fn recorded(requests: &[RecordedRequest]) -> Tally {
        let mut t = Tally::default();
        for r in requests {
            t.add(classify(r), 1.0);
        }
        t
    }

    /// What was added since `earlier`.
    pub fn since(&self, earlier: &Tally) -> Tally {
        let mut t = Tally::default();
        for (k, n) in &self.0 {
            t.add(k.clone(), n - earlier.get(k));
        }
        t
    }

    pub fn scaled(&self, by: f64) -> Tally {
        Tally(self.0.iter().map(|(k, n)| (k.clone(), n * by)).collect())
    }
}

fn label<'a>(labels: &'a [(String, String)], key: &str) -> &'a str {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

/// A request of the test server's log as kube-apiserver would count it.
pub fn classify(r: &RecordedRequest) -> Key {
    let segments: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    // /api/v1/... or /apis/GROUP/VERSION/...
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => ("", &[][..]),
    };
    // namespaces/NS/RESOURCE/... (a namespaced resource), or RESOURCE/... (a cluster-scoped one,
    // a namespace itself, or a namespaced one across all namespaces).
    let rest = match rest {
        ["namespaces", _ns, resource, tail @ ..] => {
            let mut parts = vec![*resource];
            parts.extend(tail);
            parts
        }
        other => other.to_vec(),
    };
    let (resource, name, sub) = match rest.as_slice() {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub, ..] => (*resource, Some(*name), Some(*sub)),
        [] => ("", None, None),
    };
    if resource.is_empty() {
        return Key::new(&r.method.to_ascii_lowercase(), "", "non-resource");
    }
    let verb = match (r.method.as_str(), name) {
        ("GET", _) if r.is_watch() => "watch",
        ("GET", Some(_)) => "get",
        ("GET", None) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", Some(_)) => "delete",
        ("DELETE", None) => "deletecollection",
        (other, _) => return Key::new(&other.to_ascii_lowercase(), group, resource),
    };
    let resource = match sub {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_string(),
    };
    Key::new(verb, group, &resource)
}

/// A Markdown table of `columns` (header, tally) by verb and resource, every key any of them has,
/// with a total line.
pub fn table(columns: &[(&str, &Tally)]) -> String {
    let mut keys: Vec<&Key> = columns.iter().flat_map(|(_, t)| t.0.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = String::from("| Verb | Resource |");
    for (header, _) in columns {
        let _ = write!(out, " {header} |");
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(columns.len()));
    out.push('\n');
    let cell = |n: f64| {
        if n == 0.0 {
            "0".to_string()
        } else if (n - n.round()).abs() < 1e-9 {
            num(n, 0)
        } else {
            num(n, 1)
        }
    };
    for key in keys {
        let _ = write!(out, "| {} | {} |", key.verb, key.resource_text());
        for (_, t) in columns {
            let _ = write!(out, " {} |", cell(t.get(key)));
        }
        out.push('\n');
    }
    out.push_str("| all | (writes) |");
    for (_, t) in columns {
        let _ = write!(out, " {} ({}) |", cell(t.total()), cell(t.writes()));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str, query: &str) -> RecordedRequest {
        RecordedRequest {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            content_type: None,
            status: 200,
        }
    }

    #[test]
    fn test_server_requests_are_named_as_kube_apiserver_counts_them() {
        let key = |m: &str, p: &str, q: &str| classify(&request(m, p, q));
        assert_eq!(
            key("GET", "/api/v1/pods", "watch=true&timeoutSeconds=290"),
            Key::new("watch", "", "pods")
        );
        assert_eq!(
            key("GET", "/api/v1/pods", "limit=500"),
            Key::new("list", "", "pods")
        );
        assert_eq!(
            key("GET", "/api/v1/namespaces/bench/pods/web-0", ""),
            Key::new("get", "", "pods")
        );
        assert_eq!(
            key("POST", "/api/v1/namespaces/bench/pods/web-0/eviction", ""),
            Key::new("create", "", "pods/eviction")
        );
        assert_eq!(
            key(
                "PATCH",
                "/apis/apphealth.io/v1alpha1/namespaces/bench/apphealthpolicies/web/status",
                "fieldManager=x"
            ),
            Key::new("patch", "apphealth.io", "apphealthpolicies/status")
        );
        assert_eq!(
            key("GET", "/apis/apps/v1/deployments", ""),
            Key::new("list", "apps", "deployments")
        );
        assert_eq!(
            key("GET", "/api/v1/namespaces/bench", ""),
            Key::new("get", "", "namespaces")
        );
        assert_eq!(key("GET", "/apis", ""), Key::new("get", "", "non-resource"));
        assert_eq!(key("GET", "/version", ""), Key::new("get", "", "non-resource"));
    }

    #[test]
    fn counts_rise_between_two_scrapes() {
        let before = Exposition::parse(
            "apiserver_request_total{code=\"200\",group=\"\",resource=\"pods\",subresource=\"\",verb=\"WATCH\"} 3\n\
             apiserver_request_total{code=\"200\",group=\"\",resource=\"\",subresource=\"/healthz\",verb=\"GET\"} 9\n",
        );
        let after = Exposition::parse(
            "apiserver_request_total{code=\"200\",group=\"\",resource=\"pods\",subresource=\"\",verb=\"WATCH\"} 5\n\
             apiserver_request_total{code=\"201\",group=\"\",resource=\"pods\",subresource=\"eviction\",verb=\"POST\"} 1\n\
             apiserver_request_total{code=\"200\",group=\"apphealth.io\",resource=\"apphealthpolicies\",subresource=\"status\",verb=\"APPLY\"} 2\n\
             apiserver_request_total{code=\"200\",group=\"\",resource=\"\",subresource=\"/healthz\",verb=\"GET\"} 12\n\
             apiserver_flowcontrol_dispatched_requests_total{flow_schema=\"f1\",priority_level=\"p\"} 4\n",
        );
        let t = Tally::request_total(&before, &after);
        assert_eq!(t.get(&Key::new("watch", "", "pods")), 2.0);
        assert_eq!(t.get(&Key::new("create", "", "pods/eviction")), 1.0);
        assert_eq!(
            t.get(&Key::new("patch", "apphealth.io", "apphealthpolicies/status")),
            2.0
        );
        assert_eq!(t.total(), 5.0);
        assert_eq!(t.writes(), 3.0);
        assert_eq!(Tally::applies(&before, &after), 2.0);
        let flows = BTreeMap::from([("f1".to_string(), Key::new("get", "", "pods"))]);
        assert_eq!(Tally::dispatched(&before, &after, &flows).total(), 4.0);
        let text = table(&[("a", &t), ("b", &Tally::default())]);
        assert!(text.contains("| watch | pods | 2 | 0 |"), "{text}");
        assert!(text.contains("| all | (writes) | 5 (3) | 0 (0) |"), "{text}");
    }
}
