//! The reference readings: how the operator read a full k8s-openapi `Pod` before pods were cached
//! as [`CachedPod`](crate::observe::pod::CachedPod), kept as they were written (they read the
//! fields where the API puts them, with no decoding of ours in between). The tests decode the same
//! JSON both ways and expect the same answers from these and from the readers of the cached pod.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::{
    api::core::v1::Pod,
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};

use crate::{
    api::{quantity, validate::PortRef},
    observation::{ContainerLimits, PodSignals},
    observe::{
        endpoints::{self, Resolved},
        pod::ConfigKind,
        references::changed_at,
        request::RequestTemplate,
    },
};

pub fn pod_signals(pod: &Pod) -> PodSignals {
    let mut signals = PodSignals {
        pod: pod.metadata.name.clone().unwrap_or_default(),
        ..PodSignals::default()
    };
    if let Some(spec) = &pod.spec {
        signals.limits = spec
            .containers
            .iter()
            .map(|c| {
                let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
                ContainerLimits {
                    container: c.name.clone(),
                    memory_bytes: limits
                        .and_then(|l| l.get("memory"))
                        .and_then(|q| quantity::bytes(&q.0)),
                    cpu_millis: limits
                        .and_then(|l| l.get("cpu"))
                        .and_then(|q| quantity::millicores(&q.0)),
                }
            })
            .collect();
    }
    for status in pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
    {
        signals.restart_count = signals
            .restart_count
            .saturating_add(u32::try_from(status.restart_count).unwrap_or(0));
        let waiting = status.state.as_ref().and_then(|s| s.waiting.as_ref());
        if waiting.and_then(|w| w.reason.as_deref()) == Some("CrashLoopBackOff") {
            signals.crash_looping.push(status.name.clone());
        }
        let last = status.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        let current = status.state.as_ref().and_then(|s| s.terminated.as_ref());
        for terminated in [last, current].into_iter().flatten() {
            if terminated.reason.as_deref() == Some("OOMKilled")
                && let Some(at) = &terminated.finished_at
            {
                signals.oom_killed.push((status.name.clone(), at.0));
            }
        }
    }
    signals
}

pub fn referenced(pod: &Pod) -> BTreeSet<(ConfigKind, String)> {
    let mut refs = BTreeSet::new();
    let Some(spec) = &pod.spec else { return refs };
    for v in spec.volumes.iter().flatten() {
        if let Some(name) = v.config_map.as_ref().map(|c| c.name.clone()) {
            refs.insert((ConfigKind::ConfigMap, name));
        }
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            refs.insert((ConfigKind::Secret, name));
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(name) = source.config_map.as_ref().map(|c| c.name.clone()) {
                refs.insert((ConfigKind::ConfigMap, name));
            }
            if let Some(name) = source.secret.as_ref().map(|s| s.name.clone()) {
                refs.insert((ConfigKind::Secret, name));
            }
        }
    }
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for from in c.env_from.iter().flatten() {
            if let Some(name) = from.config_map_ref.as_ref().map(|r| r.name.clone()) {
                refs.insert((ConfigKind::ConfigMap, name));
            }
            if let Some(name) = from.secret_ref.as_ref().map(|r| r.name.clone()) {
                refs.insert((ConfigKind::Secret, name));
            }
        }
        for env in c.env.iter().flatten() {
            let from = env.value_from.as_ref();
            if let Some(name) = from
                .and_then(|f| f.config_map_key_ref.as_ref())
                .map(|r| r.name.clone())
            {
                refs.insert((ConfigKind::ConfigMap, name));
            }
            if let Some(name) = from
                .and_then(|f| f.secret_key_ref.as_ref())
                .map(|r| r.name.clone())
            {
                refs.insert((ConfigKind::Secret, name));
            }
        }
    }
    refs.retain(|(_, name)| !name.is_empty());
    refs
}

pub fn started_at(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(pod.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

pub fn config_changes(pod: &Pod, lookup: impl Fn(ConfigKind, &str) -> Option<ObjectMeta>) -> Vec<String> {
    let Some(started) = started_at(pod) else {
        return Vec::new();
    };
    referenced(pod)
        .into_iter()
        .filter_map(|(kind, name)| {
            let changed = changed_at(&lookup(kind, &name)?)?;
            (changed > started).then(|| {
                format!(
                    "{} {name} changed at {changed}, after the pod started at {started}",
                    kind.as_str()
                )
            })
        })
        .collect()
}

/// The Ready condition says True (`PodFacts::ready`).
pub fn ready_condition(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && ready_condition(pod)
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

pub fn for_pods<'a>(
    template: &RequestTemplate,
    selector: &LabelSelector,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Resolved {
    let mut resolved = Resolved::default();
    let empty = BTreeMap::new();
    let mut selected: Vec<&Pod> = pods
        .into_iter()
        .filter(|p| endpoints::selects(selector, Some(p.metadata.labels.as_ref().unwrap_or(&empty))))
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
        resolved.requests.extend(template.requests(&name, ip, port));
    }
    resolved
}
