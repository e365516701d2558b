//! The resource metrics API, `metrics.k8s.io/v1beta1`, as metrics-server serves it: read-only
//! `PodMetrics` (`pods`) and `NodeMetrics` (`nodes`, always empty), get and list, no watch.
//!
//! Off until enabled: then the group is absent from discovery and its paths answer 404, like a cluster
//! without metrics-server.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Filter, Store, rfc3339};
use crate::table;

/// The group.
pub const GROUP: &str = "metrics.k8s.io";
/// The only version served.
pub const VERSION: &str = "v1beta1";
/// `window` of every sample.
pub const WINDOW: &str = "30s";

#[derive(Debug, Clone)]
struct ContainerUsage {
    name: String,
    cpu: String,
    memory: String,
}

/// Switch and the usage reported per pod.
#[derive(Debug, Default)]
pub struct Metrics {
    enabled: AtomicBool,
    pods: Mutex<BTreeMap<(String, String), Vec<ContainerUsage>>>,
}

fn group_version() -> String {
    format!("{GROUP}/{VERSION}")
}

fn not_found_path() -> ApiError {
    ApiError::not_found_message("the server could not find the requested resource")
}

impl Metrics {
    /// Whether the API is served.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// Serve the API from now on.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }

    fn pods(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Vec<ContainerUsage>>> {
        self.pods.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Set (replace) the usage of a pod: (container, cpu quantity, memory quantity).
    pub fn set_pod(&self, namespace: &str, pod: &str, containers: &[(&str, &str, &str)]) {
        let usage = containers
            .iter()
            .map(|(name, cpu, memory)| ContainerUsage {
                name: (*name).to_string(),
                cpu: (*cpu).to_string(),
                memory: (*memory).to_string(),
            })
            .collect();
        self.pods()
            .insert((namespace.to_string(), pod.to_string()), usage);
    }

    /// Forget the usage of a pod.
    pub fn clear_pod(&self, namespace: &str, pod: &str) {
        self.pods().remove(&(namespace.to_string(), pod.to_string()));
    }

    /// The `/apis` entry for the group.
    pub fn group_entry() -> Value {
        let gv = json!({"groupVersion": group_version(), "version": VERSION});
        json!({"name": GROUP, "versions": [gv.clone()], "preferredVersion": gv})
    }

    /// `/apis/metrics.k8s.io`.
    pub fn api_group() -> Value {
        let mut g = Self::group_entry();
        if let Value::Object(m) = &mut g {
            m.insert("kind".into(), json!("APIGroup"));
            m.insert("apiVersion".into(), json!("v1"));
        }
        g
    }

    /// `/apis/metrics.k8s.io/v1beta1`.
    pub fn api_resource_list() -> Value {
        json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version(),
            "resources": [
                {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics",
                 "verbs": ["get", "list"]},
                {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics",
                 "verbs": ["get", "list"]},
            ],
        })
    }

    fn pod_metrics(store: &Store, namespace: &str, pod: &str, usage: &[ContainerUsage], now: &str) -> Value {
        let labels = store
            .resolve("", "v1", "pods")
            .and_then(|rt| store.get(&rt, Some(namespace), pod).ok())
            .and_then(|p| p.pointer("/metadata/labels").cloned());
        let mut metadata = json!({"name": pod, "namespace": namespace, "creationTimestamp": now});
        if let (Some(labels), Value::Object(m)) = (labels, &mut metadata) {
            m.insert("labels".into(), labels);
        }
        let containers: Vec<Value> = usage
            .iter()
            .map(|c| json!({"name": c.name, "usage": {"cpu": c.cpu, "memory": c.memory}}))
            .collect();
        json!({
            "kind": "PodMetrics", "apiVersion": group_version(), "metadata": metadata,
            "timestamp": now, "window": WINDOW, "containers": containers,
        })
    }

    /// Serve a request under `/apis/metrics.k8s.io/v1beta1/`; `rest` is the path after the version.
    pub fn serve(
        &self,
        store: &Store,
        method: &axum::http::Method,
        rest: &[&str],
        query: &HashMap<String, String>,
        wants_table: bool,
    ) -> Result<Value, ApiError> {
        enum Target<'a> {
            Pods(Option<&'a str>, Option<&'a str>),
            Nodes(Option<&'a str>),
        }
        let target = match rest {
            ["pods"] => Target::Pods(None, None),
            ["namespaces", ns, "pods"] => Target::Pods(Some(ns), None),
            ["namespaces", ns, "pods", name] => Target::Pods(Some(ns), Some(name)),
            ["nodes"] => Target::Nodes(None),
            ["nodes", name] => Target::Nodes(Some(name)),
            _ => return Err(not_found_path()),
        };
        if method != axum::http::Method::GET {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method} {GROUP})"
            )));
        }
        if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource (watch)",
            ));
        }
        let now_ts = store.now();
        let now = rfc3339(now_ts);
        let (kind, items) = match target {
            Target::Nodes(Some(name)) => {
                return Err(ApiError::not_found(&format!("nodes.{GROUP}"), name));
            }
            Target::Nodes(None) => ("NodeMetrics", Vec::new()),
            Target::Pods(Some(ns), Some(name)) => {
                let usage = self
                    .pods()
                    .get(&(ns.to_string(), name.to_string()))
                    .cloned()
                    .ok_or_else(|| ApiError::not_found(&format!("pods.{GROUP}"), name))?;
                let obj = Self::pod_metrics(store, ns, name, &usage, &now);
                return Ok(if wants_table {
                    pod_table(&[obj], now_ts)
                } else {
                    obj
                });
            }
            Target::Pods(ns, _) => {
                let filter = Filter {
                    namespace: ns.map(str::to_string),
                    labels: LabelSelector::parse(
                        query.get("labelSelector").map(String::as_str).unwrap_or_default(),
                    )?,
                    fields: FieldSelector::parse(
                        query.get("fieldSelector").map(String::as_str).unwrap_or_default(),
                    )?,
                };
                let pods: Vec<_> = self
                    .pods()
                    .iter()
                    .filter(|((pns, _), _)| ns.is_none_or(|n| n == pns))
                    .map(|((pns, name), usage)| (pns.clone(), name.clone(), usage.clone()))
                    .collect();
                let items = pods
                    .iter()
                    .map(|(pns, name, usage)| Self::pod_metrics(store, pns, name, usage, &now))
                    .filter(|o| filter.matches(o))
                    .collect();
                ("PodMetrics", items)
            }
        };
        if wants_table && kind == "PodMetrics" {
            return Ok(pod_table(&items, now_ts));
        }
        Ok(json!({
            "kind": format!("{kind}List"), "apiVersion": group_version(),
            "metadata": {}, "items": items,
        }))
    }
}

/// A Table of PodMetrics: Name, CPU and Memory (per container, comma-separated), Window, Age.
fn pod_table(items: &[Value], now: jiff::Timestamp) -> Value {
    let join = |o: &Value, what: &str| -> String {
        o.get("containers")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.pointer(&format!("/usage/{what}")).and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let ts = o
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or_default();
            json!({
                "cells": [o.pointer("/metadata/name").cloned().unwrap_or(Value::Null), join(o, "cpu"),
                          join(o, "memory"), o.get("window").cloned().unwrap_or(Value::Null),
                          table::age(ts, now)],
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": o.get("metadata").cloned().unwrap_or_else(|| Value::Object(Map::new()))},
            })
        })
        .collect();
    let col = |name: &str, format: &str| json!({"name": name, "type": "string", "format": format, "description": "", "priority": 0});
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
        "columnDefinitions": [col("Name", "name"), col("CPU", ""), col("Memory", ""), col("Window", ""), col("Age", "")],
        "rows": rows,
    })
}
