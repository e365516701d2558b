//! The hostile-input matrix (issue 9, item 5): malformed and hostile policies, what the API server's
//! admission says about each (the CRD's schema, then its CEL rules) and what the operator does with
//! each when it is stored all the same (a server that skips validation, an old CRD, a restore).

use serde_json::{Value, json};

use crate::harness::merge;

/// The workload the refused policies name: nothing may ever probe or touch it.
pub const VICTIM: &str = "victim";
/// The workload the policies the operator tolerates name: probed, never remediated (it is healthy).
pub const TOLERATED: &str = "tolerated";
/// The Deployment that "runs the operator" in the scenario (its pod is the operator's own).
pub const OPERATOR: &str = "apphealth-operator";

/// What `kubectl apply` would meet.
#[derive(Clone, Copy, Debug)]
pub enum Admission {
    Admits,
    /// An error at this JSON pointer (schema) or for this field (CEL) containing the text.
    Rejects(&'static str, &'static str),
}

/// What the operator makes of the policy once it is stored.
#[derive(Clone, Copy, Debug)]
pub enum Verdict {
    /// Ready=True and Healthy=True: odd, but harmless and meant.
    Probed,
    /// Ready=False with this reason, and a message naming the field (containing the text).
    Refused(&'static str, &'static str),
}

pub struct Case {
    pub name: &'static str,
    /// The whole `spec` (any JSON at all).
    pub spec: Value,
    pub admission: Admission,
    pub verdict: Verdict,
}

const UNREADABLE: &str = "UnreadablePolicy";
const INVALID: &str = "InvalidSpec";

/// A valid spec for Deployment `victim`, probing every second, with `patch` merged in (null removes).
pub fn spec(patch: Value) -> Value {
    let mut base = json!({
        "targetRef": {"kind": "Deployment", "name": VICTIM},
        "probe": {"http": {"port": "http", "path": "/healthz", "timeoutSeconds": 1}, "periodSeconds": 1},
        "triggers": [{"consecutiveFailures": {"threshold": 2}}],
        "remediation": {"steps": [{"action": "RolloutRestart", "timeout": "1h"}], "cooldown": "1h"}
    });
    merge(&mut base, patch);
    base
}

fn tolerated(patch: Value) -> Value {
    let mut s = spec(patch);
    s["targetRef"]["name"] = json!(TOLERATED);
    s
}

fn case(name: &'static str, spec: Value, admission: Admission, verdict: Verdict) -> Case {
    Case {
        name,
        spec,
        admission,
        verdict,
    }
}

use Admission::{Admits, Rejects};
use Verdict::{Probed, Refused};

const MIB: usize = 1 << 20;

fn wrong_types() -> Vec<Case> {
    vec![
        case(
            "period-is-a-string",
            spec(json!({"probe": {"periodSeconds": "ten"}})),
            Rejects("/spec/probe/periodSeconds", "is not of type"),
            Refused(
                UNREADABLE,
                "spec.probe.periodSeconds: invalid type: string \"ten\"",
            ),
        ),
        case(
            "triggers-is-an-object",
            spec(json!({"triggers": {"consecutiveFailures": {"threshold": 2}}})),
            Rejects("/spec/triggers", "is not of type"),
            Refused(UNREADABLE, "spec.triggers: invalid type: map"),
        ),
        case(
            "suspend-is-a-string",
            spec(json!({"suspend": "yes"})),
            Rejects("/spec/suspend", "is not of type"),
            Refused(UNREADABLE, "spec.suspend: invalid type: string \"yes\""),
        ),
        case(
            "spec-is-a-number",
            json!(42),
            Rejects("/spec", "is not of type"),
            Refused(UNREADABLE, "spec: invalid type: integer `42`"),
        ),
        case(
            "threshold-is-a-fraction",
            spec(json!({"triggers": [{"consecutiveFailures": {"threshold": 2.5}}]})),
            Rejects("/spec/triggers/0/consecutiveFailures/threshold", "is not of type"),
            Refused(
                UNREADABLE,
                "spec.triggers[0].consecutiveFailures.threshold: invalid type: floating point",
            ),
        ),
        case(
            "header-is-a-number",
            spec(json!({"probe": {"http": {"headers": [42]}}})),
            Rejects("/spec/probe/http/headers/0", "is not of type"),
            Refused(
                UNREADABLE,
                "spec.probe.http.headers[0]: invalid type: integer `42`",
            ),
        ),
        case(
            "megabyte-string-of-the-wrong-type",
            spec(json!({"probe": {"periodSeconds": "9".repeat(MIB)}})),
            Rejects("/spec/probe/periodSeconds", "is not of type"),
            Refused(
                UNREADABLE,
                "spec.probe.periodSeconds: invalid type: string \"9999",
            ),
        ),
    ]
}

fn unknown_values() -> Vec<Case> {
    vec![
        case(
            "unknown-action",
            spec(json!({"remediation": {"steps": [{"action": "Reboot"}]}})),
            Rejects("/spec/remediation/steps/0/action", "is not one of"),
            Refused(
                UNREADABLE,
                "spec.remediation.steps[0].action: unknown variant `Reboot`",
            ),
        ),
        case(
            "shell-as-an-action",
            spec(json!({"remediation": {"steps": [{"action": "sh -c 'kubectl delete ns --all'"}]}})),
            Rejects("/spec/remediation/steps/0/action", "is not one of"),
            Refused(UNREADABLE, "spec.remediation.steps[0].action: unknown variant"),
        ),
        case(
            "target-kind-pod",
            spec(json!({"targetRef": {"kind": "Pod"}})),
            Rejects("/spec/targetRef/kind", "is not one of"),
            Refused(UNREADABLE, "spec.targetRef.kind: unknown variant `Pod`"),
        ),
        case(
            "target-of-another-api",
            spec(json!({"targetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Deployment"}})),
            Rejects("/spec/targetRef/apiVersion", "is not one of"),
            Refused(
                INVALID,
                "spec.targetRef.apiVersion: \"argoproj.io/v1alpha1\" is not supported",
            ),
        ),
        case(
            "lowercase-method",
            spec(json!({"probe": {"http": {"method": "get"}}})),
            Rejects("/spec/probe/http/method", "is not one of"),
            Refused(UNREADABLE, "spec.probe.http.method: unknown variant `get`"),
        ),
        case(
            "step-without-action",
            spec(json!({"remediation": {"steps": [{}]}})),
            Rejects("/spec/remediation/steps/0", "\"action\" is a required property"),
            Refused(UNREADABLE, "spec.remediation.steps[0]: missing field `action`"),
        ),
    ]
}

fn numbers() -> Vec<Case> {
    vec![
        case(
            "negative-period",
            spec(json!({"probe": {"periodSeconds": -5}})),
            Rejects("/spec/probe/periodSeconds", "less than the minimum"),
            Refused(
                UNREADABLE,
                "spec.probe.periodSeconds: invalid value: integer `-5`",
            ),
        ),
        case(
            "period-beyond-u32",
            spec(json!({"probe": {"periodSeconds": 1u64 << 40}})),
            Rejects("/spec/probe/periodSeconds", "greater than the maximum"),
            Refused(
                UNREADABLE,
                "spec.probe.periodSeconds: invalid value: integer `1099511627776`",
            ),
        ),
        case(
            "period-of-a-day",
            spec(json!({"probe": {"periodSeconds": 86400}})),
            Rejects("/spec/probe/periodSeconds", "greater than the maximum"),
            Refused(
                INVALID,
                "spec.probe.periodSeconds: must be at most 3600, not 86400",
            ),
        ),
        case(
            "period-zero",
            spec(json!({"probe": {"periodSeconds": 0}})),
            Rejects("/spec/probe/periodSeconds", "less than the minimum"),
            Refused(INVALID, "spec.probe.periodSeconds: must be at least 1"),
        ),
        case(
            "negative-threshold",
            spec(json!({"triggers": [{"consecutiveFailures": {"threshold": -1}}]})),
            Rejects(
                "/spec/triggers/0/consecutiveFailures/threshold",
                "less than the minimum",
            ),
            Refused(
                UNREADABLE,
                "spec.triggers[0].consecutiveFailures.threshold: invalid value",
            ),
        ),
        case(
            "count-of-four-billion",
            spec(
                json!({"triggers": [{"statusCodes": {"codes": ["503"], "count": 4_000_000_000u32, "window": "1m"}}]}),
            ),
            Rejects("/spec/triggers/0/statusCodes/count", "greater than the maximum"),
            Refused(
                INVALID,
                "spec.triggers[0].statusCodes.count: must be at most 1000, not 4000000000",
            ),
        ),
        case(
            "zero-restarts",
            spec(json!({"triggers": [{"restarts": {"count": 0, "window": "1h"}}]})),
            Rejects("/spec/triggers/0/restarts/count", "less than the minimum"),
            Refused(INVALID, "spec.triggers[0].restarts.count: must be at least 1"),
        ),
        case(
            "max-replicas-of-u32-max",
            spec(
                json!({"remediation": {"steps": [{"action": "ScaleOut", "scaleOut": {"to": 5, "maxReplicas": 4_294_967_295u32}}]}}),
            ),
            Rejects(
                "/spec/remediation/steps/0/scaleOut/maxReplicas",
                "greater than the maximum",
            ),
            Refused(
                INVALID,
                "spec.remediation.steps[0].scaleOut.maxReplicas: must be at most 10000",
            ),
        ),
        case(
            "error-rate-of-250-percent",
            spec(json!({"triggers": [{"errorRate": {"percent": 250, "window": "1m"}}]})),
            Rejects("/spec/triggers/0/errorRate/percent", "greater than the maximum"),
            Refused(
                INVALID,
                "spec.triggers[0].errorRate.percent: must be between 1 and 100",
            ),
        ),
        case(
            "timeout-above-period",
            spec(json!({"probe": {"http": {"timeoutSeconds": 5}}})),
            Rejects("", "timeoutSeconds must be at most probe.periodSeconds"),
            Refused(
                INVALID,
                "spec.probe.http.timeoutSeconds: must be at most spec.probe.periodSeconds (5 > 1)",
            ),
        ),
        case(
            "port-zero",
            spec(json!({"probe": {"http": {"port": 0}}})),
            Admits,
            Refused(INVALID, "spec.probe.http.port: 0 is not a port number (1-65535)"),
        ),
        case(
            "port-beyond-u16",
            spec(json!({"probe": {"http": {"port": 70000}}})),
            Admits,
            Refused(
                INVALID,
                "spec.probe.http.port: 70000 is not a port number (1-65535)",
            ),
        ),
    ]
}

fn durations() -> Vec<Case> {
    vec![
        case(
            "negative-cooldown",
            spec(json!({"remediation": {"cooldown": "-5m"}})),
            Rejects("/spec/remediation/cooldown", "does not match"),
            Refused(INVALID, "spec.remediation.cooldown: \"-5m\" is not a duration"),
        ),
        case(
            "cooldown-in-words",
            spec(json!({"remediation": {"cooldown": "5 minutes"}})),
            Rejects("/spec/remediation/cooldown", "does not match"),
            Refused(
                INVALID,
                "spec.remediation.cooldown: \"5 minutes\" is not a duration",
            ),
        ),
        // Fits the schema's pattern and length: only the operator can refuse it (kube's parser
        // panicked on it).
        case(
            "cooldown-beyond-any-clock",
            spec(json!({"remediation": {"cooldown": "99999999999999999999h"}})),
            Admits,
            Refused(
                INVALID,
                "spec.remediation.cooldown: \"99999999999999999999h\" is longer than 87600h",
            ),
        ),
        case(
            "forty-character-delay",
            spec(json!({"recovery": {"healthyDelay": format!("{}s", "1".repeat(40))}})),
            Rejects("/spec/recovery/healthyDelay", "is longer than 32 characters"),
            Refused(
                INVALID,
                "spec.recovery.healthyDelay: is 41 characters long; a duration has at most 32",
            ),
        ),
        case(
            "window-of-two-days",
            spec(json!({"triggers": [{"statusCodes": {"codes": ["503"], "count": 3, "window": "48h"}}]})),
            Rejects("", "window must be at most 1h"),
            Refused(INVALID, "spec.triggers[0].statusCodes.window: must be at most 1h"),
        ),
        case(
            "zero-window",
            spec(json!({"triggers": [{"errorRate": {"percent": 50, "window": "0s"}}]})),
            Admits,
            Refused(
                INVALID,
                "spec.triggers[0].errorRate.window: must be longer than zero",
            ),
        ),
        case(
            "circuit-window-of-a-year",
            spec(json!({"remediation": {"maxRemediations": {"count": 3, "window": "8760h"}}})),
            Rejects("", "window must be at most 168h"),
            Refused(
                INVALID,
                "spec.remediation.maxRemediations.window: must be at most 168h",
            ),
        ),
    ]
}

fn lists() -> Vec<Case> {
    let notify = json!({"action": "Notify", "notify": {"urlSecretRef": {"name": "hook", "key": "url"}}});
    vec![
        case(
            "ten-thousand-triggers",
            spec(json!({"triggers": vec![json!({"consecutiveFailures": {"threshold": 2}}); 10_000]})),
            Rejects("/spec/triggers", "has more than 16 items"),
            Refused(
                INVALID,
                "spec.triggers: lists 10000 items; at most 16 are allowed",
            ),
        ),
        case(
            "five-thousand-status-codes",
            spec(
                json!({"triggers": [{"statusCodes": {"codes": vec!["503"; 5000], "count": 3, "window": "1m"}}]}),
            ),
            Rejects("/spec/triggers/0/statusCodes/codes", "has more than 16 items"),
            Refused(
                INVALID,
                "spec.triggers[0].statusCodes.codes: lists 5000 items; at most 16 are allowed",
            ),
        ),
        case(
            "empty-trigger",
            spec(json!({"triggers": [{}]})),
            Rejects("", "each trigger must set exactly one of"),
            Refused(INVALID, "spec.triggers[0]: must set exactly one of"),
        ),
        case(
            "trigger-of-two-kinds",
            spec(json!({"triggers": [{"consecutiveFailures": {"threshold": 2}, "oomKilled": {}}]})),
            Rejects("", "each trigger must set exactly one of"),
            Refused(INVALID, "spec.triggers[0]: must set exactly one of"),
        ),
        case(
            "ladder-of-nine",
            spec(json!({"remediation": {"steps": vec![notify; 9]}})),
            Rejects("/spec/remediation/steps", "has more than 8 items"),
            Refused(
                INVALID,
                "spec.remediation.steps: lists 9 items; at most 8 are allowed",
            ),
        ),
        case(
            "scale-out-without-parameters",
            spec(json!({"remediation": {"steps": [{"action": "ScaleOut"}]}})),
            Rejects("", "action ScaleOut needs a scaleOut block"),
            Refused(
                INVALID,
                "spec.remediation.steps[0].scaleOut: is required when action is ScaleOut",
            ),
        ),
        case(
            "target-ref-and-selector",
            spec(json!({"targetSelector": {"matchLabels": {"tier": "web"}}})),
            Rejects(
                "",
                "exactly one of spec.targetRef and spec.targetSelector must be set",
            ),
            Refused(
                INVALID,
                "spec.targetSelector: cannot be set together with spec.targetRef",
            ),
        ),
        case(
            "selector-exists-with-values",
            spec(json!({"targetRef": null, "targetSelector": {"matchExpressions": [
                {"key": "tier", "operator": "Exists", "values": ["web"]}
            ]}})),
            Rejects(
                "",
                "values must be non-empty for In and NotIn, and absent for Exists",
            ),
            Refused(
                INVALID,
                "spec.targetSelector.matchExpressions[0].values: must be empty for Exists",
            ),
        ),
        case(
            "http-and-tcp",
            spec(json!({"probe": {"tcp": {"port": 8080}}})),
            Rejects("", "probe must set exactly one of: http, tcp"),
            Refused(INVALID, "spec.probe: must set exactly one of: http, tcp"),
        ),
        case(
            "reversed-status-range",
            spec(json!({"probe": {"http": {"successCodes": ["399-200"]}}})),
            Admits,
            Refused(
                INVALID,
                "spec.probe.http.successCodes[0]: range \"399-200\" is empty",
            ),
        ),
        // A ladder may try a step again: the same action twice is allowed by design.
        case(
            "duplicate-steps",
            tolerated(json!({"remediation": {"steps": [
                {"action": "RolloutRestart", "timeout": "1h"}, {"action": "RolloutRestart", "timeout": "1h"}]}})),
            Admits,
            Probed,
        ),
    ]
}

fn strings() -> Vec<Case> {
    let mib = "x".repeat(MIB);
    vec![
        case(
            "megabyte-body",
            spec(json!({"probe": {"http": {"method": "POST", "body": mib}}})),
            Rejects("/spec/probe/http/body", "is longer than 4096 characters"),
            Refused(
                INVALID,
                "spec.probe.http.body: is 1048576 characters long; at most 4096 are allowed",
            ),
        ),
        case(
            "megabyte-target-name",
            spec(json!({"targetRef": {"name": "a".repeat(MIB)}})),
            Rejects("/spec/targetRef/name", "is longer than 253 characters"),
            Refused(
                INVALID,
                "spec.targetRef.name: is 1048576 characters long; at most 253 are allowed",
            ),
        ),
        case(
            "megabyte-header-value",
            spec(json!({"probe": {"http": {"headers": [{"name": "X-Big", "value": mib}]}}})),
            Rejects(
                "/spec/probe/http/headers/0/value",
                "is longer than 4096 characters",
            ),
            Refused(
                INVALID,
                "spec.probe.http.headers[0].value: is 1048576 characters long",
            ),
        ),
        case(
            "megabyte-regex",
            spec(json!({"probe": {"http": {"response": {"bodyMatches": "a".repeat(MIB)}}}})),
            Rejects(
                "/spec/probe/http/response/bodyMatches",
                "is longer than 1024 characters",
            ),
            Refused(
                INVALID,
                "spec.probe.http.response.bodyMatches: is 1048576 characters long",
            ),
        ),
        case(
            "crlf-in-a-header-value",
            spec(
                json!({"probe": {"http": {"headers": [{"name": "X-A", "value": "a\r\nHost: evil.example"}]}}}),
            ),
            Rejects("/spec/probe/http/headers/0/value", "does not match"),
            Refused(
                INVALID,
                "spec.probe.http.headers[0].value: contains characters not allowed",
            ),
        ),
        case(
            "request-smuggled-into-the-path",
            spec(
                json!({"probe": {"http": {"path": "/healthz HTTP/1.1\r\nHost: evil.example\r\n\r\nGET /"}}}),
            ),
            Rejects("/spec/probe/http/path", "does not match"),
            Refused(
                INVALID,
                "spec.probe.http.path: \"/healthz HTTP/1.1\\r\\nHost: evil.example",
            ),
        ),
    ]
}

fn regular_expressions() -> Vec<Case> {
    vec![
        // Catastrophic for a backtracking engine; linear in Rust's: allowed, and it matches nothing
        // the app says.
        case(
            "catastrophic-regex",
            tolerated(json!({"probe": {"http": {"response": {"bodyNotMatches": "^(a+)+$"}}}})),
            Admits,
            Probed,
        ),
        case(
            "regex-beyond-the-size-limit",
            spec(json!({"probe": {"http": {"response": {"bodyMatches": "\\w{500}{500}"}}}})),
            Admits,
            Refused(
                INVALID,
                "spec.probe.http.response.bodyMatches: is not a valid regular expression",
            ),
        ),
        case(
            "unbalanced-regex",
            spec(json!({"probe": {"http": {"response": {"bodyNotMatches": "(unclosed"}}}})),
            Admits,
            Refused(
                INVALID,
                "spec.probe.http.response.bodyNotMatches: is not a valid regular expression",
            ),
        ),
        case(
            "backreference",
            spec(json!({"probe": {"http": {"response": {"bodyMatches": "(a)\\1"}}}})),
            Admits,
            Refused(
                INVALID,
                "spec.probe.http.response.bodyMatches: is not a valid regular expression",
            ),
        ),
    ]
}

fn names_and_unicode() -> Vec<Case> {
    vec![
        case(
            "accented-target",
            spec(json!({"targetRef": {"name": "wéb"}})),
            Rejects("/spec/targetRef/name", "does not match"),
            Refused(INVALID, "spec.targetRef.name: \"wéb\" is not an object name"),
        ),
        case(
            "zero-width-space-in-service",
            spec(json!({"probe": {"via": "Service", "service": "web\u{200b}"}})),
            Rejects("/spec/probe/service", "does not match"),
            Refused(
                INVALID,
                "spec.probe.service: \"web\\u{200b}\" is not a Service name",
            ),
        ),
        case(
            "right-to-left-override-in-header-name",
            spec(json!({"probe": {"http": {"headers": [{"name": "X-\u{202e}nimda", "value": "1"}]}}})),
            Rejects("/spec/probe/http/headers/0/name", "does not match"),
            Refused(
                INVALID,
                "spec.probe.http.headers[0].name: \"X-\\u{202e}nimda\" is not a valid header name",
            ),
        ),
        case(
            "emoji-header-value",
            spec(json!({"probe": {"http": {"headers": [{"name": "X-Mood", "value": "💥"}]}}})),
            Rejects("/spec/probe/http/headers/0/value", "does not match"),
            Refused(
                INVALID,
                "spec.probe.http.headers[0].value: contains characters not allowed",
            ),
        ),
        case(
            "target-in-another-namespace",
            spec(json!({"targetRef": {"name": "../../kube-system/deployments/coredns"}})),
            Rejects("/spec/targetRef/name", "does not match"),
            Refused(
                INVALID,
                "spec.targetRef.name: \"../../kube-system/deployments/coredns\" is not an object name",
            ),
        ),
        case(
            "service-in-another-namespace",
            spec(json!({"probe": {"via": "Service", "service": "dns.kube-system.svc.cluster.local"}})),
            Rejects("/spec/probe/service", "does not match"),
            Refused(
                INVALID,
                "spec.probe.service: \"dns.kube-system.svc.cluster.local\" is not a Service name",
            ),
        ),
        case(
            "secret-in-another-namespace",
            spec(json!({"probe": {"http": {"headers": [{"name": "Authorization",
                "valueFrom": {"secretKeyRef": {"name": "kube-system/admin-token", "key": "token"}}}]}}})),
            Rejects(
                "/spec/probe/http/headers/0/valueFrom/secretKeyRef/name",
                "does not match",
            ),
            Refused(
                INVALID,
                "spec.probe.http.headers[0].valueFrom.secretKeyRef.name: \"kube-system/admin-token\"",
            ),
        ),
        // The API server prunes a field the schema does not know; the operator ignores it: a policy
        // only ever reaches its own namespace.
        case(
            "namespace-field-on-the-target",
            tolerated(json!({"targetRef": {"namespace": "kube-system"}})),
            Admits,
            Probed,
        ),
        case(
            "target-is-the-operator",
            spec(json!({"targetRef": {"name": OPERATOR}})),
            Admits,
            Refused(
                "TargetIsOperator",
                "runs this operator (pod apphealth-operator-a)",
            ),
        ),
    ]
}

/// Every case, named uniquely.
pub fn all() -> Vec<Case> {
    [
        wrong_types(),
        unknown_values(),
        numbers(),
        durations(),
        lists(),
        strings(),
        regular_expressions(),
        names_and_unicode(),
    ]
    .into_iter()
    .flatten()
    .collect()
}
