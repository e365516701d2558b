//! Cluster signals about a target's pods: restarts, CrashLoopBackOff, OOM kills, configuration
//! changes, and resource use against limits from the metrics.k8s.io API.

use std::{future::Future, pin::Pin};

use crate::{
    api::quantity,
    observation::{ContainerLimits, PodSignals, Usage},
    observe::pod::CachedPod,
};

/// Where resource use comes from (the metrics.k8s.io API in production; fixed data in tests).
pub trait UsageSource: Send + Sync {
    fn pod_usage<'a>(&'a self, namespace: &'a str) -> Pin<Box<dyn Future<Output = Usage> + Send + 'a>>;
}

/// Reads the signals of one pod from its spec and status. `config_changed` is filled by the caller,
/// which knows the ConfigMaps and Secrets.
pub fn pod_signals(pod: &CachedPod) -> PodSignals {
    let mut signals = PodSignals {
        pod: pod.metadata.name.clone().unwrap_or_default(),
        ..PodSignals::default()
    };
    signals.limits = pod
        .containers
        .iter()
        .map(|c| ContainerLimits {
            container: c.name.to_string(),
            memory_bytes: c.memory_limit.as_deref().and_then(quantity::bytes),
            cpu_millis: c.cpu_limit.as_deref().and_then(quantity::millicores),
        })
        .collect();
    for status in &pod.container_statuses {
        signals.restart_count = signals
            .restart_count
            .saturating_add(u32::try_from(status.restart_count).unwrap_or(0));
        if status.state.waiting.as_deref() == Some("CrashLoopBackOff") {
            signals.crash_looping.push(status.name.to_string());
        }
        for terminated in [&status.last_state.terminated, &status.state.terminated]
            .into_iter()
            .flatten()
        {
            if terminated.reason.as_deref() == Some("OOMKilled")
                && let Some(at) = terminated.finished_at
            {
                signals.oom_killed.push((status.name.to_string(), at));
            }
        }
    }
    signals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_restarts_crash_loops_oom_kills_and_limits() {
        let pod: CachedPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-a"},
            "spec": {"containers": [
                {"name": "app", "resources": {"limits": {"memory": "512Mi", "cpu": "500m"}}},
                {"name": "sidecar"}
            ]},
            "status": {"containerStatuses": [
                {"name": "app", "restartCount": 4, "ready": false, "image": "x", "imageID": "",
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2026-01-01T00:00:00Z"}}},
                {"name": "sidecar", "restartCount": 1, "ready": true, "image": "x", "imageID": "",
                 "state": {"running": {}}}
            ]}
        }))
        .unwrap();
        let s = pod_signals(&pod);
        assert_eq!(s.pod, "web-a");
        assert_eq!(s.restart_count, 5);
        assert_eq!(s.crash_looping, ["app"]);
        assert_eq!(
            s.oom_killed,
            [("app".to_owned(), "2026-01-01T00:00:00Z".parse().unwrap())]
        );
        assert_eq!(
            s.limits[0],
            ContainerLimits {
                container: "app".into(),
                memory_bytes: Some(536_870_912),
                cpu_millis: Some(500)
            }
        );
        assert_eq!(
            s.limits[1],
            ContainerLimits {
                container: "sidecar".into(),
                memory_bytes: None,
                cpu_millis: None
            }
        );
    }
}
