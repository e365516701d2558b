use super::*;
use crate::fixtures::{PolicyExt, policy};

fn problem(patch: serde_json::Value) -> String {
    validate(&policy().with_spec(patch).spec)
        .expect_err("should be invalid")
        .to_string()
}

#[test]
fn the_fixture_is_valid_and_parsed() {
    let s = policy().settings();
    assert_eq!(s.probe.port, PortRef::Name("http".into()));
    assert_eq!(s.probe.period, StdDuration::from_secs(10));
    assert_eq!(s.remediation.cooldown, StdDuration::from_secs(300));
    assert_eq!(
        s.remediation.steps,
        vec![StepSettings {
            params: StepParams::RolloutRestart,
            timeout: StdDuration::from_secs(120)
        }]
    );
    let Check::Http(http) = &s.probe.check else {
        panic!("fixture probes HTTP")
    };
    assert!(http.success_codes.contains(200) && http.success_codes.contains(399));
    assert!(!http.success_codes.contains(400));
    assert_eq!(s.probe.paths(), ["/healthz"]);
}

#[test]
fn errors_name_the_field_and_the_problem() {
    let cases = [
        (
            serde_json::json!({"targetRef": {"name": ""}}),
            "spec.targetRef.name: must name a workload",
        ),
        (
            serde_json::json!({"probe": {"via": "Service"}}),
            "spec.probe.service: is required when spec.probe.via is Service",
        ),
        (
            serde_json::json!({"probe": {"periodSeconds": 2, "http": {"timeoutSeconds": 3}}}),
            "spec.probe.http.timeoutSeconds: must be at most spec.probe.periodSeconds (3 > 2)",
        ),
        (
            serde_json::json!({"probe": {"http": {"port": 70000}}}),
            "spec.probe.http.port: 70000 is not a port number (1-65535)",
        ),
        (
            serde_json::json!({"probe": {"http": {"path": "healthz"}}}),
            "spec.probe.http.path: \"healthz\" must start with /",
        ),
        (
            serde_json::json!({"probe": {"http": {"headers": [{"name": "Bad Header", "value": "x"}]}}}),
            "spec.probe.http.headers[0].name: \"Bad Header\" is not a valid header name",
        ),
        (
            serde_json::json!({"probe": {"http": {"successCodes": ["200", "abc"]}}}),
            "spec.probe.http.successCodes[1]: \"abc\" is not a status code or range such as 200-399",
        ),
        (
            serde_json::json!({"triggers": [{}]}),
            "spec.triggers[0]: must set exactly one of: consecutiveFailures, statusCodes, slowResponses, \
             errorRate, memory, cpu, restarts, oomKilled, certificateExpiresWithin, configChanged",
        ),
        (
            serde_json::json!({"triggers": [{"consecutiveFailures": {"threshold": 0}}]}),
            "spec.triggers[0].consecutiveFailures.threshold: must be at least 1",
        ),
        (
            serde_json::json!({"remediation": {"cooldown": "soon"}}),
            "spec.remediation.cooldown: \"soon\" is not a duration such as 90s, 5m or 1h30m",
        ),
        (
            serde_json::json!({"remediation": {"steps": [{"action": "RolloutRestart", "timeout": "soon"}]}}),
            "spec.remediation.steps[0].timeout: \"soon\" is not a duration such as 90s, 5m or 1h30m",
        ),
        (
            serde_json::json!({"remediation": {"steps": [{"action": "RestartPods", "scaleOut": {"by": 1, "maxReplicas": 3}}]}}),
            "spec.remediation.steps[0].scaleOut: may only be set when action is ScaleOut",
        ),
        (
            serde_json::json!({"remediation": {"steps": [{"action": "ScaleOut", "scaleOut": {"by": 4, "maxReplicas": 3}}]}}),
            "spec.remediation.steps[0].scaleOut.maxReplicas: must be at least scaleOut.by (3 < 4)",
        ),
        (
            serde_json::json!({"remediation": {"steps": [{"action": "ScaleOut"}]}}),
            "spec.remediation.steps[0].scaleOut: is required when action is ScaleOut",
        ),
        (
            serde_json::json!({"remediation": {"steps": [{"action": "Notify"}]}}),
            "spec.remediation.steps[0].notify: is required when action is Notify",
        ),
        (
            serde_json::json!({"remediation": {"maxRemediations": {"count": 0, "window": "1h"}}}),
            "spec.remediation.maxRemediations.count: must be at least 1",
        ),
    ];
    for (patch, expected) in cases {
        assert_eq!(problem(patch.clone()), expected, "{patch}");
    }
}

/// A policy reaches only objects of its own namespace: every name it gives is one Kubernetes
/// allows, so none can change the path of the API request that reads it.
#[test]
fn names_cannot_reach_into_another_namespace() {
    let object = "is not an object name (lowercase letters, digits, '-' and '.'); it names an object in the policy's namespace";
    let cases = [
        (
            serde_json::json!({"targetRef": {"name": "../../other/deployments/web"}}),
            format!("spec.targetRef.name: \"../../other/deployments/web\" {object}"),
        ),
        (
            serde_json::json!({"probe": {"via": "Service", "service": "web.other.svc.cluster.local"}}),
            "spec.probe.service: \"web.other.svc.cluster.local\" is not a Service name (lowercase letters, \
             digits and '-', starting with a letter); it names a Service in the policy's namespace"
                .to_owned(),
        ),
        (
            serde_json::json!({"probe": {"via": "Service", "service": "other/web"}}),
            "spec.probe.service: \"other/web\" is not a Service name (lowercase letters, digits and '-', \
             starting with a letter); it names a Service in the policy's namespace"
                .to_owned(),
        ),
        (
            serde_json::json!({"probe": {"http": {"headers": [{"name": "Authorization",
                "valueFrom": {"secretKeyRef": {"name": "../../kube-system/secrets/admin", "key": "token"}}}]}}}),
            format!(
                "spec.probe.http.headers[0].valueFrom.secretKeyRef.name: \"../../kube-system/secrets/admin\" {object}"
            ),
        ),
        (
            serde_json::json!({"probe": {"http": {"scheme": "HTTPS", "tls": {"ca": {"configMapKeyRef": {"name": "ca?watch=1", "key": "ca.crt"}}}}}}),
            format!("spec.probe.http.tls.ca.configMapKeyRef.name: \"ca?watch=1\" {object}"),
        ),
        (
            serde_json::json!({"remediation": {"steps": [{"action": "Notify", "notify": {"urlSecretRef": {"name": "other/hook", "key": "url"}}}]}}),
            format!("spec.remediation.steps[0].notify.urlSecretRef.name: \"other/hook\" {object}"),
        ),
    ];
    for (patch, expected) in cases {
        assert_eq!(problem(patch.clone()), expected, "{patch}");
    }
}

#[test]
fn sample_capacity_follows_the_longest_window_and_is_capped_with_a_note() {
    let s = policy()
        .with_spec(serde_json::json!({"triggers": [{"errorRate": {"percent": 50, "window": "5m"}}]}))
        .settings();
    assert_eq!(s.sample_capacity, 32, "5m at a 10s period: 30 rounds and slack");
    assert!(s.notes.is_empty());
    let s = policy()
        .with_spec(serde_json::json!({
            "probe": {"periodSeconds": 2},
            "triggers": [{"statusCodes": {"codes": ["503"], "count": 5, "window": "1h", "path": "/deep"}}]
        }))
        .settings();
    assert_eq!(s.probe.paths(), ["/healthz", "/deep"]);
    assert_eq!(s.sample_capacity, MAX_SAMPLES_PER_ENDPOINT);
    assert_eq!(
        s.notes,
        ["a window of 1h at a 2s period needs 3604 samples per pod; only the last 2048 are kept"]
    );
}

#[test]
fn numeric_port_strings_are_numbers() {
    let s = policy()
        .with_spec(serde_json::json!({"probe": {"http": {"port": "8080"}}}))
        .settings();
    assert_eq!(s.probe.port, PortRef::Number(8080));
}
