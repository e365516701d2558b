//! Response-body conditions: a pattern and a JSON pointer from the input go through validation
//! (compiled with its size limits), then the body is checked; nothing panics, and a body that
//! passes really matches the pattern and holds the value.
#![no_main]

use apphealth_operator::{
    api::{AppHealthPolicySpec, validate::Check},
    observe::prober::check_body,
    settings::validate,
};
use serde_json::json;

fn checks(response: serde_json::Value) -> Option<apphealth_operator::api::validate::BodyChecks> {
    let spec: AppHealthPolicySpec = serde_json::from_value(json!({
        "targetRef": {"kind": "Deployment", "name": "web"},
        "probe": {"http": {"port": 8080, "response": response}}
    }))
    .ok()?;
    match validate(&spec).ok()?.probe.check {
        Check::Http(http) => Some(http.response),
        Check::Tcp => None,
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let (Some(pattern), Some(pointer), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let (pattern, pointer) = (String::from_utf8_lossy(pattern), String::from_utf8_lossy(pointer));
    let text = String::from_utf8_lossy(body);
    if let Some(c) = checks(json!({"bodyMatches": pattern})) {
        let matched = c.must_match.as_ref().expect("set").0.is_match(&text);
        assert_eq!(check_body(&c, body).is_ok(), matched, "{pattern:?}");
    }
    if let Some(c) = checks(json!({"bodyNotMatches": pattern})) {
        let matched = c.must_not_match.as_ref().expect("set").0.is_match(&text);
        assert_eq!(check_body(&c, body).is_ok(), !matched, "{pattern:?}");
    }
    let pointer = format!("/{pointer}");
    if let Some(c) = checks(json!({"json": [{"pointer": pointer, "equals": "x"}]})) {
        let holds = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.pointer(&pointer).cloned())
            .is_some_and(|v| v == json!("x"));
        assert_eq!(check_body(&c, body).is_ok(), holds, "{pointer:?}");
    }
});
