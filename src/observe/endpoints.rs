//! Which endpoints a policy probes: the ready pods of its target (at their pod IPs) or its Service
//! (at its cluster IP). Pure functions over Kubernetes objects; probes never leave the policy's
//! namespace because only the target's own pods and the named Service are ever resolved.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{Pod, Service},
    apimachinery::pkg::apis::meta::v1::LabelSelector,
};
use kube::core::{Selector, SelectorExt};

use super::prober::ProbeRequest;
use crate::api::validate::{PortRef, ProbeSettings};

/// The result of resolving endpoints: what to probe, and why some pods were left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    pub requests: Vec<ProbeRequest>,
    /// Sentences naming pods that could not be probed and why.
    pub problems: Vec<String>,
}

/// Whether a workload's selector selects these labels. An empty or invalid selector selects nothing:
/// probing every pod in the namespace would reach beyond the target.
pub fn selects(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Ok(selector) = Selector::try_from(selector.clone()) else {
        return false;
    };
    if selector.selects_all() {
        return false;
    }
    let empty = BTreeMap::new();
    selector.matches(labels.unwrap_or(&empty))
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
}

fn container_port(pod: &Pod, name: &str) -> Option<u16> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find_map(|p| {
            (p.name.as_deref() == Some(name))
                .then(|| u16::try_from(p.container_port).ok())
                .flatten()
        })
}

fn url(probe: &ProbeSettings, ip: &str, port: u16) -> String {
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    format!("{}://{host}:{port}{}", probe.scheme.as_str(), probe.path)
}

/// Probe requests for each ready pod selected by `selector`, sorted by pod name.
pub fn for_pods<'a>(
    probe: &ProbeSettings,
    selector: &LabelSelector,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Resolved {
    let mut resolved = Resolved::default();
    let mut selected: Vec<&Pod> = pods
        .into_iter()
        .filter(|p| selects(selector, p.metadata.labels.as_ref()))
        .collect();
    selected.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for pod in selected {
        let name = pod.metadata.name.clone().unwrap_or_default();
        if !is_ready(pod) {
            continue;
        }
        let Some(ip) = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .filter(|ip| !ip.is_empty())
        else {
            continue;
        };
        let port = match &probe.port {
            PortRef::Number(n) => *n,
            PortRef::Name(port_name) => match container_port(pod, port_name) {
                Some(n) => n,
                None => {
                    resolved.problems.push(format!(
                        "pod {name} has no container port named {port_name:?} (spec.probe.http.port)"
                    ));
                    continue;
                }
            },
        };
        resolved
            .requests
            .push(ProbeRequest::new(name, url(probe, ip, port), probe));
    }
    resolved
}

/// The probe request for a Service, at its cluster IP.
pub fn for_service(probe: &ProbeSettings, service: &Service) -> Result<ProbeRequest, String> {
    let name = service.metadata.name.clone().unwrap_or_default();
    let spec = service
        .spec
        .as_ref()
        .ok_or_else(|| format!("Service {name} has no spec"))?;
    let ip = spec
        .cluster_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .ok_or_else(|| {
            format!("Service {name} has no cluster IP (headless Services cannot be probed via Service)")
        })?;
    let ports = spec.ports.iter().flatten();
    let port = match &probe.port {
        PortRef::Number(n) => ports
            .clone()
            .find(|p| p.port == i32::from(*n))
            .map(|_| *n)
            .ok_or_else(|| format!("Service {name} has no port {n} (spec.probe.http.port)"))?,
        PortRef::Name(port_name) => ports
            .clone()
            .find(|p| p.name.as_deref() == Some(port_name.as_str()))
            .and_then(|p| u16::try_from(p.port).ok())
            .ok_or_else(|| {
                format!("Service {name} has no port named {port_name:?} (spec.probe.http.port)")
            })?,
    };
    Ok(ProbeRequest::new(
        format!("service/{name}"),
        url(probe, ip, port),
        probe,
    ))
}
