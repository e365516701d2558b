//! Which endpoints a policy probes: the ready pods of its target (at their pod IPs) or its Service
//! (at its cluster IP). Pure functions over Kubernetes objects; probes never leave the policy's
//! namespace because only the target's own pods and the named Service are ever resolved. An
//! address the deny-list refuses ([`Reach`]) is left out here, with the reason, so the policy's
//! status says why; the prober checks again on every connect.

use std::collections::BTreeMap;

use k8s_openapi::{api::core::v1::Service, apimachinery::pkg::apis::meta::v1::LabelSelector};
use kube::core::{Selector, SelectorExt};

use super::{
    pod::CachedPod,
    reach::Reach,
    request::{ProbeRequest, RequestTemplate},
};
use crate::api::validate::PortRef;

/// The result of resolving endpoints: what to probe, and why some pods were left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    pub requests: Vec<ProbeRequest>,
    /// Sentences naming pods that could not be probed and why.
    pub problems: Vec<String>,
    /// Sentences naming endpoints whose address the deny-list refuses, and why.
    pub refused: Vec<String>,
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

fn is_ready(pod: &CachedPod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && pod.ready
}

fn container_port(pod: &CachedPod, name: &str) -> Option<u16> {
    pod.containers
        .iter()
        .flat_map(|c| c.ports.iter())
        .find_map(|(port_name, port)| {
            (**port_name == *name)
                .then(|| u16::try_from(*port).ok())
                .flatten()
        })
}

/// Probe requests for each ready pod selected by `selector` whose address `reach` allows, sorted
/// by pod name.
pub fn for_pods<'a>(
    template: &RequestTemplate,
    selector: &LabelSelector,
    pods: impl IntoIterator<Item = &'a CachedPod>,
    reach: &Reach,
) -> Resolved {
    let mut resolved = Resolved::default();
    let mut selected: Vec<&CachedPod> = pods
        .into_iter()
        .filter(|p| selects(selector, p.metadata.labels.as_ref()))
        .collect();
    selected.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for pod in selected {
        let name = pod.metadata.name.clone().unwrap_or_default();
        if !is_ready(pod) {
            continue;
        }
        let Some(ip) = pod.pod_ip.as_deref().filter(|ip| !ip.is_empty()) else {
            continue;
        };
        let port = match &template.probe.port {
            PortRef::Number(n) => *n,
            PortRef::Name(port_name) => match container_port(pod, port_name) {
                Some(n) => n,
                None => {
                    resolved.problems.push(format!(
                        "pod {name} has no container port named {port_name:?} (spec.probe port)"
                    ));
                    continue;
                }
            },
        };
        if let Some(Err(refused)) = reach.check_literal(ip, port) {
            resolved.refused.push(format!("pod {name}: {refused}"));
            continue;
        }
        resolved.requests.extend(template.requests(&name, ip, port));
    }
    resolved
}

/// The probe requests for a Service, at its cluster IP if `reach` allows it.
pub fn for_service(template: &RequestTemplate, service: &Service, reach: &Reach) -> Resolved {
    let name = service.metadata.name.clone().unwrap_or_default();
    match service_address(template, service) {
        Err(problem) => Resolved {
            problems: vec![problem.to_string()],
            ..Resolved::default()
        },
        Ok((ip, port)) => match reach.check_literal(ip, port) {
            Some(Err(refused)) => Resolved {
                refused: vec![format!("Service {name}: {refused}")],
                ..Resolved::default()
            },
            _ => Resolved {
                requests: template.requests(&format!("service/{name}"), ip, port),
                ..Resolved::default()
            },
        },
    }
}

/// Why a Service cannot be probed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceProblem {
    #[error("Service {0} has no spec")]
    NoSpec(String),
    #[error("Service {0} has no cluster IP (headless Services cannot be probed via Service)")]
    NoClusterIp(String),
    /// The port as the policy names it: `8080` or `named "http"`.
    #[error("Service {service} has no port {port} (spec.probe port)")]
    NoPort { service: String, port: String },
}

/// A Service's cluster IP and the probed port.
fn service_address<'a>(
    template: &RequestTemplate,
    service: &'a Service,
) -> Result<(&'a str, u16), ServiceProblem> {
    let name = service.metadata.name.clone().unwrap_or_default();
    let spec = service
        .spec
        .as_ref()
        .ok_or_else(|| ServiceProblem::NoSpec(name.clone()))?;
    let ip = spec
        .cluster_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .ok_or_else(|| ServiceProblem::NoClusterIp(name.clone()))?;
    let ports = spec.ports.iter().flatten();
    let port = match &template.probe.port {
        PortRef::Number(n) => ports
            .clone()
            .find(|p| p.port == i32::from(*n))
            .map(|_| *n)
            .ok_or_else(|| ServiceProblem::NoPort {
                service: name.clone(),
                port: n.to_string(),
            })?,
        PortRef::Name(port_name) => ports
            .clone()
            .find(|p| p.name.as_deref() == Some(port_name.as_str()))
            .and_then(|p| u16::try_from(p.port).ok())
            .ok_or_else(|| ServiceProblem::NoPort {
                service: name.clone(),
                port: format!("named {port_name:?}"),
            })?,
    };
    Ok((ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        fixtures::{PolicyExt, policy},
        observe::request::ProbeTarget,
    };

    /// Everything but the deny-list's fixed refusals: the tests' pods are at ordinary addresses.
    fn open() -> Reach {
        Reach::with_loopback()
    }

    fn template(p: crate::api::AppHealthPolicy) -> RequestTemplate {
        RequestTemplate::literal(&p.settings().probe)
    }

    fn url(r: &ProbeRequest) -> &str {
        match &r.target {
            ProbeTarget::Http(h) => &h.url,
            ProbeTarget::Tcp { addr } => addr,
        }
    }

    fn pod(name: &str, app: &str, ip: Option<&str>, ready: bool) -> CachedPod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap()
    }

    fn selector(app: &str) -> LabelSelector {
        serde_json::from_value(serde_json::json!({"matchLabels": {"app": app}})).unwrap()
    }

    #[test]
    fn only_ready_selected_pods_with_an_ip_are_probed_sorted_by_name() {
        let probe = template(policy());
        let pods = [
            pod("web-b", "web", Some("10.0.0.2"), true),
            pod("web-a", "web", Some("10.0.0.1"), true),
            pod("web-c", "web", Some("10.0.0.3"), false),
            pod("web-d", "web", None, true),
            pod("db-a", "db", Some("10.0.0.9"), true),
        ];
        let resolved = for_pods(&probe, &selector("web"), pods.iter(), &open());
        let urls: Vec<(&str, &str)> = resolved
            .requests
            .iter()
            .map(|r| (r.endpoint.as_str(), url(r)))
            .collect();
        assert_eq!(
            urls,
            [
                ("web-a", "http://10.0.0.1:8080/healthz"),
                ("web-b", "http://10.0.0.2:8080/healthz")
            ]
        );
        assert!(resolved.problems.is_empty());
    }

    #[test]
    fn an_empty_selector_selects_nothing() {
        let probe = template(policy());
        let pods = [pod("web-a", "web", Some("10.0.0.1"), true)];
        assert!(
            for_pods(&probe, &LabelSelector::default(), pods.iter(), &open())
                .requests
                .is_empty()
        );
    }

    #[test]
    fn a_missing_named_port_is_a_problem_naming_the_pod() {
        let probe = template(policy().with_spec(serde_json::json!({"probe": {"http": {"port": "admin"}}})));
        let pods = [pod("web-a", "web", Some("10.0.0.1"), true)];
        let resolved = for_pods(&probe, &selector("web"), pods.iter(), &open());
        assert!(resolved.requests.is_empty());
        assert_eq!(
            resolved.problems,
            ["pod web-a has no container port named \"admin\" (spec.probe port)"]
        );
    }

    #[test]
    fn ipv6_pod_addresses_are_bracketed() {
        let probe = template(policy());
        let pods = [pod("web-a", "web", Some("fd00::1"), true)];
        let resolved = for_pods(&probe, &selector("web"), pods.iter(), &open());
        assert_eq!(url(&resolved.requests[0]), "http://[fd00::1]:8080/healthz");
    }

    #[test]
    fn services_resolve_by_port_name_and_headless_ones_are_refused() {
        let probe = template(policy());
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]}
        }))
        .unwrap();
        assert_eq!(
            url(&for_service(&probe, &svc, &open()).requests[0]),
            "http://10.96.0.10:80/healthz"
        );
        let headless: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"}, "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}
        }))
        .unwrap();
        let resolved = for_service(&probe, &headless, &open());
        assert!(resolved.requests.is_empty());
        assert!(resolved.problems[0].contains("no cluster IP"), "{resolved:?}");
    }

    #[test]
    fn pods_at_refused_addresses_are_left_out_and_named_with_the_reason() {
        let probe = template(policy());
        let pods = [
            pod("web-a", "web", Some("10.0.0.1"), true),
            pod("web-b", "web", Some("169.254.169.254"), true),
            pod("web-c", "web", Some("127.0.0.1"), true),
            pod("web-d", "web", Some("::ffff:169.254.169.254"), true),
            pod("web-e", "web", Some("2852039166"), true),
        ];
        let resolved = for_pods(&probe, &selector("web"), pods.iter(), &Reach::default());
        let probed: Vec<&str> = resolved.requests.iter().map(|r| r.endpoint.as_str()).collect();
        assert_eq!(probed, ["web-a"]);
        assert_eq!(
            resolved.refused,
            [
                "pod web-b: refused: 169.254.169.254 is link-local (cloud metadata services answer there); the operator never connects to it",
                "pod web-c: refused: 127.0.0.1 is loopback; the operator connects to it only with --allow-loopback",
                "pod web-d: refused: 169.254.169.254 is link-local (cloud metadata services answer there); the operator never connects to it",
                "pod web-e: refused: 169.254.169.254 is link-local (cloud metadata services answer there); the operator never connects to it",
            ]
        );
        // Loopback pods are probed only with --allow-loopback.
        let loose = for_pods(&probe, &selector("web"), pods.iter(), &Reach::with_loopback());
        let probed: Vec<&str> = loose.requests.iter().map(|r| r.endpoint.as_str()).collect();
        assert_eq!(probed, ["web-a", "web-c"]);
    }

    #[test]
    fn a_service_at_the_api_servers_address_is_refused() {
        let probe = template(policy());
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kubernetes"},
            "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "http", "port": 443}]}
        }))
        .unwrap();
        let reach = Reach::new(false, ["10.96.0.1:443".parse().unwrap()]);
        let resolved = for_service(&probe, &svc, &reach);
        assert!(resolved.requests.is_empty());
        assert_eq!(
            resolved.refused,
            [
                "Service kubernetes: refused: 10.96.0.1:443 is the Kubernetes API server; the operator never connects to it"
            ]
        );
    }
}
