//! The Argo CD health check shipped with the chart, run by a real Lua 5.4 interpreter on sample
//! policies, as Argo CD runs it (the object as the global `obj`).

use mlua::{Lua, LuaSerdeExt};
use serde_json::{Value, json};

const SCRIPT: &str = include_str!("../../charts/apphealth-operator/argocd/health.lua");

fn health(policy: Value) -> (String, String) {
    let lua = Lua::new();
    lua.globals().set("obj", lua.to_value(&policy).unwrap()).unwrap();
    let hs: mlua::Table = lua.load(SCRIPT).eval().unwrap();
    (hs.get("status").unwrap(), hs.get("message").unwrap_or_default())
}

fn policy(conditions: Value) -> Value {
    json!({
        "apiVersion": "apphealth.io/v1alpha1", "kind": "AppHealthPolicy",
        "metadata": {"name": "web", "generation": 2},
        "spec": {"targetRef": {"kind": "Deployment", "name": "web"}},
        "status": {"observedGeneration": 2, "conditions": conditions}
    })
}

fn c(kind: &str, status: &str, reason: &str) -> Value {
    json!({"type": kind, "status": status, "reason": reason, "message": format!("{kind} {reason}")})
}

#[test]
fn argocd_health_follows_the_conditions() {
    let cases = [
        (
            policy(json!([
                c("Ready", "True", "Probing"),
                c("Healthy", "True", "ProbesSucceeding")
            ])),
            "Healthy",
        ),
        (
            policy(json!([
                c("Ready", "True", "Probing"),
                c("Healthy", "Unknown", "AwaitingVerdict")
            ])),
            "Progressing",
        ),
        (
            policy(json!([
                c("Ready", "True", "Probing"),
                c("Healthy", "False", "TriggerFired"),
                c("Remediating", "True", "LadderInProgress"),
                c("RemediationBlocked", "False", "NotBlocked")
            ])),
            "Progressing",
        ),
        (
            policy(json!([
                c("Ready", "True", "Probing"),
                c("Healthy", "False", "TriggerFired"),
                c("Remediating", "True", "LadderInProgress"),
                c("RemediationBlocked", "True", "LadderExhausted")
            ])),
            "Degraded",
        ),
        (
            policy(json!([
                c("Ready", "True", "Probing"),
                c("Healthy", "False", "TriggerFired"),
                c("Remediating", "False", "Idle"),
                c("RemediationBlocked", "True", "NoRemediation")
            ])),
            "Degraded",
        ),
        (policy(json!([c("Ready", "False", "InvalidSpec")])), "Degraded"),
        (policy(json!([c("Ready", "False", "Suspended")])), "Suspended"),
        (json!({"metadata": {"name": "new"}, "spec": {}}), "Progressing"),
        (
            json!({"metadata": {"name": "s"}, "spec": {"suspend": true}}),
            "Suspended",
        ),
    ];
    for (policy, expected) in cases {
        let (status, message) = health(policy.clone());
        assert_eq!(status, expected, "{policy} → {message}");
    }
    // A spec the operator has not seen yet is Progressing, whatever the conditions say.
    let mut stale = policy(json!([
        c("Ready", "True", "Probing"),
        c("Healthy", "True", "ProbesSucceeding")
    ]));
    stale["metadata"]["generation"] = json!(3);
    assert_eq!(health(stale).0, "Progressing");
    let (_, message) = health(policy(json!([c("Ready", "False", "TargetNotFound")])));
    assert_eq!(message, "Ready TargetNotFound", "the operator's own sentence");
}
