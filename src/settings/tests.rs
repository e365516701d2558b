use std::time::Duration as StdDuration;

use super::*;
use crate::fixtures::{PolicyExt, policy};
use crate::{
    act::{RolloutRestartSettings, StepParams},
    api::validate::{Check, MAX_PROBLEM_BYTES, MAX_SAMPLES_PER_ENDPOINT, PortRef, SuccessCodes},
    plan::StepSettings,
};

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
            params: StepParams::RolloutRestart(RolloutRestartSettings),
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
            serde_json::json!({"targetRef": {"apiVersion": "argoproj.io/v1alpha1"}}),
            "spec.targetRef.apiVersion: \"argoproj.io/v1alpha1\" is not supported: the operator targets Deployment and StatefulSet in apps/v1",
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

/// `(a+)+$` takes a backtracking engine exponential time on "aaa…a!"; Rust's regex engine is
/// linear, so the check finishes and answers right (no timing asserted: finishing is the point).
#[test]
fn a_catastrophic_pattern_finishes_and_answers_right() {
    use crate::observe::prober::check_body;
    let s = policy()
        .with_spec(serde_json::json!({"probe": {"http": {"response": {"bodyMatches": "^(a+)+$"}}}}))
        .settings();
    let Check::Http(http) = &s.probe.check else {
        panic!("probes HTTP")
    };
    let almost = format!("{}!", "a".repeat(64 * 1024));
    assert_eq!(
        check_body(&http.response, almost.as_bytes()),
        Err(crate::observe::error::BodyMismatch::NoMatch("^(a+)+$".to_owned()))
    );
    assert_eq!(
        check_body(&http.response, "a".repeat(64 * 1024).as_bytes()),
        Ok(())
    );
}

/// A pattern that compiles to more than the size limit is an error naming the field, not memory.
#[test]
fn patterns_beyond_the_size_limit_are_refused() {
    for (field, pattern) in [
        ("bodyMatches", r"\w{500}{500}"),
        ("bodyNotMatches", r"(\pL{100}){100}"),
    ] {
        let spec = policy()
            .with_spec(serde_json::json!({"probe": {"http": {"response": {field: pattern}}}}))
            .spec;
        let err = validate(&spec).expect_err(pattern);
        assert_eq!(err.field, format!("spec.probe.http.response.{field}"));
        assert!(
            err.problem.starts_with("is not a valid regular expression: ")
                && err.problem.contains("size limit"),
            "{err}"
        );
    }
}

#[test]
fn paths_must_be_paths_an_http_request_can_carry() {
    for (path, ok) in [
        ("/healthz?verbose=1", true),
        ("/a%20b", true),
        ("/a b", false),
        ("/healthz HTTP/1.1\r\nHost: evil", false),
        ("/x#fragment", false),
        ("/nul\u{0}", false),
    ] {
        let spec = policy()
            .with_spec(serde_json::json!({"probe": {"http": {"path": path}}}))
            .spec;
        assert_eq!(validate(&spec).is_ok(), ok, "{path:?}");
    }
}

/// u16's parser takes "+200", which the schema's pattern refuses: the operator accepts what the
/// schema does and no more (a property `fuzz/fuzz_targets/status_codes.rs` checks too).
#[test]
fn status_codes_are_three_digits() {
    let codes = |c: &[&str]| SuccessCodes::parse("f", &c.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    for bad in ["+200", "200-+399", "0200", " 200", "2e2", "٢٠٠"] {
        assert!(codes(&[bad]).is_err(), "{bad:?}");
    }
    assert!(codes(&["200-399", "503"]).is_ok());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Whatever the codes, parsing returns; what parses is shown in a form that parses back to the
    /// same codes, and contains exactly the codes listed.
    #[test]
    fn status_codes_round_trip(codes in proptest::collection::vec("[0-9+-]{0,8}|[1-5][0-9]{2}(-[1-5][0-9]{2})?", 0..5)) {
        if let Ok(parsed) = SuccessCodes::parse("f", &codes) {
            let shown: Vec<String> = parsed.to_string().split(", ").map(str::to_owned).collect();
            proptest::prop_assert_eq!(SuccessCodes::parse("f", &shown), Ok(parsed.clone()));
            for code in [99u16, 100, 200, 399, 503, 599, 600] {
                let listed = codes.iter().any(|c| match c.split_once('-') {
                    Some((lo, hi)) => (lo.parse::<u16>().unwrap_or(0)..=hi.parse::<u16>().unwrap_or(0)).contains(&code),
                    None => c.parse::<u16>() == Ok(code),
                });
                proptest::prop_assert_eq!(parsed.contains(code), listed);
            }
        }
    }

    /// Any merge patch over a valid policy: validation returns (never panics), and an error names a
    /// field of the spec with a bounded problem.
    #[test]
    fn validation_never_panics_on_odd_values(
        period in proptest::num::u32::ANY,
        timeout in proptest::num::u32::ANY,
        window in "[0-9]{1,25}(ms|s|m|h)|\\PC{0,12}",
        pattern in "\\PC{0,40}",
        triggers in 0usize..40,
    ) {
        let spec = policy().with_spec(serde_json::json!({
            "probe": {"periodSeconds": period, "http": {"timeoutSeconds": timeout,
                      "response": {"bodyMatches": pattern}}},
            "triggers": vec![serde_json::json!({"errorRate": {"percent": 50, "window": window}}); triggers],
            "remediation": {"cooldown": window},
        })).spec;
        if let Err(e) = validate(&spec) {
            proptest::prop_assert!(e.field.starts_with("spec."));
            proptest::prop_assert!(e.problem.len() <= MAX_PROBLEM_BYTES + 3);
        }
    }
}
