//! The schema's bounds, checked again by the operator before anything else is parsed: a policy
//! that reached it without the API server's validation (a server or an old CRD that skips the
//! schema or its CEL rules, a restored backup) is refused with the same limits, so no list, string
//! or count a policy gives is unbounded in the engine, and a policy with ten thousand triggers costs
//! one length check.

use super::{InvalidSpec, invalid};
use crate::api::{AppHealthPolicySpec, Trigger};

/// Items in a list, as the schema's `maxItems`.
pub fn items<T>(field: &str, list: &[T], max: usize) -> Result<(), InvalidSpec> {
    if list.len() > max {
        return Err(invalid(
            field,
            format!("lists {} items; at most {max} are allowed", list.len()),
        ));
    }
    Ok(())
}

/// Characters of a string, as the schema's `maxLength` counts them (code points).
pub fn chars(field: &str, s: &str, max: usize) -> Result<(), InvalidSpec> {
    // Bytes bound characters from above: only a long string is counted.
    if s.len() > max && s.chars().count() > max {
        return Err(invalid(
            field,
            format!(
                "is {} characters long; at most {max} are allowed",
                s.chars().count()
            ),
        ));
    }
    Ok(())
}

pub fn optional_chars(field: &str, s: Option<&String>, max: usize) -> Result<(), InvalidSpec> {
    s.map_or(Ok(()), |s| chars(field, s, max))
}

/// A number, as the schema's `maximum` (lower bounds have their own messages in validation).
pub fn at_most(field: &str, n: u32, max: u32) -> Result<(), InvalidSpec> {
    if n > max {
        return Err(invalid(field, format!("must be at most {max}, not {n}")));
    }
    Ok(())
}

pub fn optional_at_most(field: &str, n: Option<u32>, max: u32) -> Result<(), InvalidSpec> {
    n.map_or(Ok(()), |n| at_most(field, n, max))
}

/// Checks every bound of the schema that serde's types do not already enforce.
pub(super) fn within_limits(spec: &AppHealthPolicySpec) -> Result<(), InvalidSpec> {
    let probe = &spec.probe;
    optional_chars("spec.probe.service", probe.service.as_ref(), 63)?;
    at_most("spec.probe.periodSeconds", probe.period_seconds, 3600)?;
    if let Some(tcp) = &probe.tcp {
        at_most("spec.probe.tcp.timeoutSeconds", tcp.timeout_seconds, 60)?;
    }
    if let Some(http) = &probe.http {
        let f = |name: &str| format!("spec.probe.http.{name}");
        chars(&f("path"), &http.path, 2048)?;
        items(&f("headers"), &http.headers, 16)?;
        for (i, h) in http.headers.iter().enumerate() {
            chars(&f(&format!("headers[{i}].name")), &h.name, 256)?;
            optional_chars(&f(&format!("headers[{i}].value")), h.value.as_ref(), 4096)?;
            if let Some(from) = &h.value_from {
                let key = &from.secret_key_ref.key;
                chars(&f(&format!("headers[{i}].valueFrom.secretKeyRef.key")), key, 253)?;
            }
        }
        optional_chars(&f("body"), http.body.as_ref(), 4096)?;
        at_most(&f("timeoutSeconds"), http.timeout_seconds, 60)?;
        items(&f("successCodes"), &http.success_codes, 16)?;
        if let Some(r) = &http.response {
            optional_chars(&f("response.bodyMatches"), r.body_matches.as_ref(), 1024)?;
            optional_chars(&f("response.bodyNotMatches"), r.body_not_matches.as_ref(), 1024)?;
            items(&f("response.json"), &r.json, 8)?;
            for (i, j) in r.json.iter().enumerate() {
                chars(&f(&format!("response.json[{i}].pointer")), &j.pointer, 512)?;
                chars(&f(&format!("response.json[{i}].equals")), &j.equals, 1024)?;
            }
        }
        if let Some(tls) = &http.tls {
            optional_chars(&f("tls.serverName"), tls.server_name.as_ref(), 253)?;
            if let Some(ca) = &tls.ca {
                let keys = [
                    ("secretKeyRef", ca.secret_key_ref.as_ref()),
                    ("configMapKeyRef", ca.config_map_key_ref.as_ref()),
                ];
                for (name, key) in keys {
                    optional_chars(&f(&format!("tls.ca.{name}.key")), key.map(|k| &k.key), 253)?;
                }
            }
        }
    }
    items("spec.triggers", &spec.triggers, 16)?;
    for (i, t) in spec.triggers.iter().enumerate() {
        trigger(&format!("spec.triggers[{i}]"), t)?;
    }
    at_most(
        "spec.recovery.consecutiveSuccesses",
        spec.recovery.consecutive_successes,
        100,
    )?;
    Ok(())
}

fn trigger(field: &str, t: &Trigger) -> Result<(), InvalidSpec> {
    let f = |name: &str| format!("{field}.{name}");
    if let Some(c) = &t.consecutive_failures {
        at_most(&f("consecutiveFailures.threshold"), c.threshold, 100)?;
    }
    if let Some(s) = &t.status_codes {
        items(&f("statusCodes.codes"), &s.codes, 16)?;
        at_most(&f("statusCodes.count"), s.count, 1000)?;
        optional_chars(&f("statusCodes.path"), s.path.as_ref(), 2048)?;
    }
    if let Some(s) = &t.slow_responses {
        at_most(&f("slowResponses.count"), s.count, 1000)?;
    }
    if let Some(e) = &t.error_rate {
        at_most(&f("errorRate.minSamples"), e.min_samples, 1000)?;
    }
    if let Some(m) = &t.memory {
        optional_chars(&f("memory.bytes"), m.bytes.as_ref(), 32)?;
    }
    if let Some(r) = &t.restarts {
        at_most(&f("restarts.count"), r.count, 1000)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{PolicyExt, policy};

    /// The whole policy's validation: the ladder's bounds are checked by `plan` and each action.
    fn check(spec: &crate::api::AppHealthPolicySpec) -> Result<(), InvalidSpec> {
        crate::settings::validate(spec).map(|_| ())
    }

    fn problem(patch: serde_json::Value) -> String {
        check(&policy().with_spec(patch).spec)
            .expect_err("beyond the schema's bounds")
            .to_string()
    }

    #[test]
    fn the_fixture_is_within_limits() {
        check(&policy().spec).unwrap();
    }

    /// Each bound is the schema's: the CRD's `maxItems`, `maxLength` and `maximum` for the field.
    #[test]
    fn every_bound_names_the_field_and_the_limit() {
        let trigger = serde_json::json!({"consecutiveFailures": {"threshold": 1}});
        let cases = [
            (
                serde_json::json!({"triggers": vec![trigger; 5000]}),
                "spec.triggers: lists 5000 items; at most 16 are allowed",
            ),
            (
                serde_json::json!({"probe": {"periodSeconds": 86400}}),
                "spec.probe.periodSeconds: must be at most 3600, not 86400",
            ),
            (
                serde_json::json!({"probe": {"http": {"body": "x".repeat(1 << 20)}}}),
                "spec.probe.http.body: is 1048576 characters long; at most 4096 are allowed",
            ),
            (
                serde_json::json!({"probe": {"http": {"body": "é".repeat(4096)}}}),
                "",
            ),
            (
                serde_json::json!({"triggers": [{"statusCodes": {"codes": ["503"], "count": 4_000_000_000u32, "window": "1m"}}]}),
                "spec.triggers[0].statusCodes.count: must be at most 1000, not 4000000000",
            ),
            (
                serde_json::json!({"remediation": {"steps": [{"action": "ScaleOut", "scaleOut": {"to": 5, "maxReplicas": 4_294_967_295u32}}]}}),
                "spec.remediation.steps[0].scaleOut.maxReplicas: must be at most 10000, not 4294967295",
            ),
            (
                serde_json::json!({"remediation": {"steps": vec![serde_json::json!({"action": "Notify", "notify": {"urlSecretRef": {"name": "hook", "key": "url"}}}); 9]}}),
                "spec.remediation.steps: lists 9 items; at most 8 are allowed",
            ),
            (
                serde_json::json!({"recovery": {"consecutiveSuccesses": 101}}),
                "spec.recovery.consecutiveSuccesses: must be at most 100, not 101",
            ),
            (
                serde_json::json!({"remediation": {"steps": [{"action": "CollectDiagnostics", "collectDiagnostics": {"exec": {"command": vec!["x"; 33]}}}]}}),
                "spec.remediation.steps[0].collectDiagnostics.exec.command: lists 33 items; at most 32 are allowed",
            ),
        ];
        for (patch, expected) in cases {
            let spec = policy().with_spec(patch.clone()).spec;
            match check(&spec) {
                Ok(()) => assert_eq!(expected, "", "{patch}"),
                Err(e) => assert_eq!(e.to_string(), expected),
            }
        }
        assert!(
            problem(serde_json::json!({"probe": {"http": {"timeoutSeconds": 61}}})).contains("at most 60")
        );
    }
}
