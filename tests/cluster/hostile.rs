//! The hostile-input matrix on a real API server: each case the CRD's schema or CEL rules refuse
//! is refused by kube-apiserver with 422 and the field named; stored all the same (straight into
//! etcd, as a restore or an older CRD would have stored it), the operator refuses it, naming the
//! field, without probing or touching its target; the cases admission lets through get the
//! operator's verdict the matrix names.

use kube::api::{DynamicObject, PostParams};
use serde_json::{Value, json};

use crate::{
    flaky::Mode,
    hostile_cases::{self as cases, Admission, OPERATOR, TOLERATED, VICTIM, Verdict},
    scenario::{Install, Scenario, condition},
};

/// `/spec/triggers/0/x` as the API server names it: `spec.triggers[0].x`.
fn field_path(pointer: &str) -> String {
    let mut path = String::new();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            path += &format!("[{segment}]");
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path += segment;
        }
    }
    path
}

fn object(ns: &str, name: &str, spec: &Value) -> Value {
    json!({
        "apiVersion": "apphealth.io/v1alpha1", "kind": "AppHealthPolicy",
        "metadata": {"name": name, "namespace": ns}, "spec": spec
    })
}

#[test]
fn field_paths_read_as_the_api_server_writes_them() {
    assert_eq!(
        field_path("/spec/triggers/0/consecutiveFailures/threshold"),
        "spec.triggers[0].consecutiveFailures.threshold"
    );
    assert_eq!(field_path("/spec"), "spec");
    assert_eq!(field_path(""), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn hostile_policies_are_refused_by_the_api_server_and_stored_anyway_by_the_operator() {
    let mut s = Scenario::new("hostile", Install::default()).await;
    let victim = s.deploy(VICTIM, 1, json!({})).await.remove(0);
    s.deploy(TOLERATED, 1, json!({})).await;
    s.deploy("web", 1, json!({})).await;
    s.create_policy("healthy-web", "web", json!({})).await;
    s.start_operator().await;
    s.wait_condition("healthy-web", "Healthy", "True", None).await;

    let mut problems = Vec::new();
    let mut judged = Vec::new();
    for case in cases::all() {
        // Needs the operator's own Deployment in the policy's namespace; the test-server matrix
        // covers it (the chart runs the operator in a namespace of its own).
        if case.spec["targetRef"]["name"] == OPERATOR {
            continue;
        }
        match admit(&s, &case, judged.len() + problems.len() + 1).await {
            Ok(()) => judged.push(case),
            Err(problem) => problems.push(problem),
        }
    }
    assert!(
        problems.is_empty(),
        "{} of the cases:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(judged.len() >= 40, "{} cases judged", judged.len());

    let mut event_only = Vec::new();
    for case in &judged {
        if !operator_verdict(&s, case).await {
            event_only.push(case.name);
        }
    }

    assert!(
        event_only.len() < judged.len() / 4,
        "most refusals are in Ready; in an Event only: {event_only:?}"
    );
    eprintln!("refused in an Event only (no status can be written): {event_only:?}");

    // Nothing refused was probed or touched; the healthy policy kept its verdict.
    assert_eq!(s.app(&victim).hits(), 0, "a refused policy probed its target");
    assert_eq!(
        s.deployment(VICTIM).await["metadata"]["generation"],
        1,
        "the victim was changed"
    );
    s.set_all("web", Mode::Healthy).await;
    let healthy = s.policy("healthy-web").await;
    assert_eq!(condition(&healthy, "Healthy").unwrap()["status"], "True");
    assert_eq!(condition(&healthy, "Ready").unwrap()["reason"], "Probing");
    s.finish().await;
}

/// Creates the case's policy through the API server and checks admission's answer against the
/// matrix; a refused one is then stored in etcd all the same (as a restore would: the API server
/// keeps custom resources as JSON there), under uid number `n`.
async fn admit(s: &Scenario, case: &cases::Case, n: usize) -> Result<(), String> {
    let request: DynamicObject = serde_json::from_value(object(&s.ns, case.name, &case.spec))
        .map_err(|e| format!("{}: {e}", case.name))?;
    let created = s.policies().create(&PostParams::default(), &request).await;
    match (case.admission, created) {
        (Admission::Admits, Ok(_)) => Ok(()),
        (Admission::Admits, Err(e)) => Err(format!("{}: the API server refused it: {e}", case.name)),
        (Admission::Rejects(at, what), Ok(_)) => Err(format!(
            "{}: the API server admitted what the schema refuses at {at:?} ({what})",
            case.name
        )),
        (Admission::Rejects(at, what), Err(kube::Error::Api(e))) => {
            let named = if at.is_empty() {
                what.to_owned()
            } else {
                field_path(at)
            };
            if e.code != 422 || e.reason != "Invalid" || !e.message.contains(&named) {
                return Err(format!(
                    "{}: expected 422 Invalid naming {named:?}, got {} {}: {:.400}",
                    case.name, e.code, e.reason, e.message
                ));
            }
            let mut stored = object(&s.ns, case.name, &case.spec);
            stored["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{n:012}"));
            stored["metadata"]["creationTimestamp"] =
                json!(jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
            stored["metadata"]["generation"] = json!(1);
            let key = format!("/registry/apphealth.io/apphealthpolicies/{}/{}", s.ns, case.name);
            crate::etcd::put(&s.access.etcd, &key, &stored).await;
            Ok(())
        }
        (Admission::Rejects(..), Err(e)) => Err(format!("{}: {e}", case.name)),
    }
}

/// Waits for the operator's verdict the matrix names; returns whether a refusal was said in Ready
/// (else in an Event alone: for a policy whose stored spec has types the CRD's CEL rules cannot
/// evaluate, the API server refuses any status write).
async fn operator_verdict(s: &Scenario, case: &cases::Case) -> bool {
    let what = format!("{}: {:?}", case.name, case.verdict);
    match case.verdict {
        Verdict::Refused(reason, text) => {
            let (in_ready, said) = s
                .wait(&what, || async {
                    let p = s.policy(case.name).await;
                    if let Some(ready) = condition(&p, "Ready").filter(|c| c["reason"] == reason) {
                        assert_eq!(ready["status"], "False", "{}", case.name);
                        return Some((true, ready["message"].as_str().unwrap_or_default().to_owned()));
                    }
                    let event = s.events(case.name).await.into_iter().find(|(r, _)| r == reason);
                    event
                        .filter(|_| reason == "UnreadablePolicy")
                        .map(|(_, note)| (false, note))
                })
                .await;
            assert!(
                said.contains(text),
                "{}: expected {text:?} in {said:.600}",
                case.name
            );
            in_ready
        }
        Verdict::Probed => {
            s.wait_condition(case.name, "Healthy", "True", None).await;
            true
        }
    }
}
