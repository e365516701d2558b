//! Policies as the watch delivers them: any JSON, as a whole object and as a patch over a valid
//! policy. Decoding and validation never panic; the watch's guard decodes exactly what serde does;
//! a decoded policy survives a serialize/decode round trip with the same verdict; and what
//! validation accepts stays within the bounds the engine relies on.
#![no_main]

use std::time::Duration;

use apphealth_operator::{
    api::{
        AppHealthPolicy, MAX_DURATION,
        validate::{MAX_PROBLEM_BYTES, MAX_SAMPLES_PER_ENDPOINT},
        watched::Watched,
    },
    settings::validate,
};
use serde_json::{Value, json};

fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}

fn check(object: Value) {
    let Ok(watched) = Watched::from_value(object.clone()) else {
        return;
    };
    let direct = serde_json::from_value::<AppHealthPolicy>(object);
    assert_eq!(
        watched.decoded.is_ok(),
        direct.is_ok(),
        "{:?}",
        watched.decoded.err()
    );
    let Ok(policy) = watched.decoded else {
        return;
    };
    let verdict = validate(&policy.spec);
    let again: AppHealthPolicy = serde_json::from_value(serde_json::to_value(&policy).expect("serializes"))
        .expect("a decoded policy decodes again");
    assert_eq!(again.spec, policy.spec);
    assert_eq!(validate(&again.spec), verdict);
    match verdict {
        Err(e) => {
            assert!(e.field.starts_with("spec"), "{e}");
            assert!(
                e.problem.len() <= MAX_PROBLEM_BYTES + '…'.len_utf8(),
                "{} bytes",
                e.problem.len()
            );
        }
        Ok(s) => {
            assert!(!s.triggers.is_empty());
            assert!(s.triggers.len() <= 16 && s.remediation.steps.len() <= 8);
            assert!(s.probe.timeout <= s.probe.period && s.probe.period <= Duration::from_secs(3600));
            let paths = s.probe.paths().len();
            assert!(paths <= 17);
            assert!(s.sample_capacity <= MAX_SAMPLES_PER_ENDPOINT.max(4 * paths));
            assert!(s.recovery.healthy_delay <= MAX_DURATION && s.remediation.cooldown <= MAX_DURATION);
            assert!(
                s.remediation
                    .steps
                    .iter()
                    .all(|step| step.timeout <= MAX_DURATION)
            );
        }
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    check(value.clone());
    if value.is_object() {
        let mut policy = json!({
            "apiVersion": "apphealth.io/v1alpha1", "kind": "AppHealthPolicy",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "targetRef": {"kind": "Deployment", "name": "web"},
                "probe": {"http": {"port": "http", "path": "/healthz"}, "periodSeconds": 10},
                "triggers": [{"consecutiveFailures": {"threshold": 3}}],
                "remediation": {"steps": [{"action": "RolloutRestart", "timeout": "2m"}], "cooldown": "5m"}
            }
        });
        merge(&mut policy["spec"], value);
        check(policy);
    }
});
