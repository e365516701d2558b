//! Hostile input (issue 9, item 5): every case of [`cases`] is refused by admission with a message
//! naming the field, and — stored all the same, as a server that skips validation would — refused
//! by the operator (`Ready=False`, the field named) without probing or touching anything, while the
//! healthy policies beside them keep their schedule and their verdicts, the operator does not panic,
//! and what it keeps stays bounded.

mod cases;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Once,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use apphealth_operator::{api::watched::Watched, controller, metrics::Metrics, settings::validate};
use serde_json::{Value, json};

use self::cases::{Admission, Case, OPERATOR, TOLERATED, VICTIM, Verdict};
use crate::{
    crd::{admission_errors, schema},
    harness::{Harness, NS, PATIENCE, condition},
    support::{gauge, wait_until},
};

/// Longest Ready message the operator may write for a policy, whatever the policy says.
const MAX_MESSAGE: usize = 2048;

fn policy(name: &str, spec: &Value) -> Value {
    json!({
        "apiVersion": "apphealth.io/v1alpha1", "kind": "AppHealthPolicy",
        "metadata": {"name": name, "namespace": NS, "generation": 1}, "spec": spec
    })
}

/// What the operator's own checks say, without a server: decoding (the watch's deserialize guard),
/// then validation. The target-is-the-operator case needs the operator's pods: it passes both.
fn offline_verdict(object: Value) -> Result<(), (&'static str, String)> {
    let watched: Watched = Watched::from_value(object).expect("metadata decodes");
    let policy = watched.decoded.map_err(|e| ("UnreadablePolicy", e.problem))?;
    validate(&policy.spec).map_err(|e| ("InvalidSpec", e.to_string()))?;
    Ok(())
}

#[test]
fn the_matrix_has_forty_cases_or_more_each_named_once() {
    let cases = cases::all();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names repeat");
}

/// Admission (the checked-in CRD's schema and CEL rules, as `kubectl apply` meets them) and the
/// operator's own checks, case by case. Where admission refuses, the operator refuses too: defence
/// in depth for a server that evaluates neither.
#[test]
fn every_case_is_refused_by_admission_or_by_the_operator_naming_the_field() {
    let schema = schema();
    for case in cases::all() {
        let object = policy(case.name, &case.spec);
        let errors = admission_errors(&schema, &object);
        match case.admission {
            Admission::Admits => assert!(
                errors.is_empty(),
                "{}: admission refuses: {errors:.300?}",
                case.name
            ),
            Admission::Rejects(at, what) => assert!(
                errors.iter().any(|e| e.starts_with(at) && e.contains(what)),
                "{}: expected an admission error at {at:?} with {what:?}, got {errors:.600?}",
                case.name
            ),
        }
        match (case.verdict, offline_verdict(object)) {
            (Verdict::Probed, Ok(())) => {}
            (Verdict::Refused("TargetIsOperator", _), Ok(())) => {}
            (Verdict::Refused(reason, text), Err((found, problem))) => {
                assert_eq!(reason, found, "{}: {problem:.300}", case.name);
                assert!(
                    problem.contains(text),
                    "{}: expected {text:?} in {problem:.600}",
                    case.name
                );
                assert!(
                    problem.len() <= MAX_MESSAGE,
                    "{}: {} bytes",
                    case.name,
                    problem.len()
                );
            }
            (expected, found) => panic!("{}: expected {expected:?}, found {found:.300?}", case.name),
        }
    }
}

/// Panics raised in the operator's own code (`src/`), from any thread, since the hook was set.
fn operator_panics() -> &'static AtomicUsize {
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.location().is_some_and(|l| l.file().starts_with("src/")) {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
    &PANICS
}

/// `apphealth_policies{reason=…}`: policies by the reason of their Ready condition.
fn policies_by_reason(metrics: &Metrics) -> BTreeMap<String, i64> {
    metrics
        .render()
        .lines()
        .filter_map(|l| l.strip_prefix("apphealth_policies{reason=\""))
        .filter_map(|l| l.split_once("\"} "))
        .filter_map(|(reason, n)| Some((reason.to_owned(), n.trim().parse().ok()?)))
        .filter(|(_, n)| *n != 0)
        .collect()
}

/// Ready's (reason, message) of policy `name`, once it has one.
fn ready(h: &Harness, name: &str) -> Option<(String, String)> {
    let p = h.policy(name);
    let c = condition(&p, "Ready")?;
    Some((
        c["reason"].as_str()?.to_owned(),
        c["message"].as_str()?.to_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_policies_beside_healthy_ones_change_nothing_for_them() {
    let panics = operator_panics();
    let panics_before = panics.load(Ordering::SeqCst);
    let mut h = Harness::new(1).await;
    let web = h.pods[0].app.clone();
    let api = h.add_workload("api").await;
    let store = h.add_workload("store").await;
    let victim = h.add_workload(VICTIM).await;
    let tolerated = h.add_workload(TOLERATED).await;
    let operator = h.add_workload(OPERATOR).await;
    let healthy = [
        ("healthy-web", "web", &web),
        ("healthy-api", "api", &api),
        ("healthy-store", "store", &store),
    ];
    for (name, target, _) in &healthy {
        h.create_policy(
            name,
            json!({"targetRef": {"name": target}, "probe": {"periodSeconds": 1}}),
        );
    }
    let metrics = Arc::new(Metrics::default());
    h.start_operator_with(controller::Config {
        metrics: metrics.clone(),
        own_pod: Some(controller::OwnPod {
            namespace: NS.into(),
            name: format!("{OPERATOR}-a"),
        }),
        ..h.config()
    });
    for (name, _, _) in &healthy {
        h.wait_condition(name, "Healthy", "True", None).await;
    }

    // Stored directly: the test server validates nothing, as a server without the schema would.
    let cases = cases::all();
    let mut stored: Vec<&Case> = Vec::new();
    for case in &cases {
        match h.server.create(policy(case.name, &case.spec)) {
            Ok(_) => stored.push(case),
            // A server that validates refuses what admission refuses, and nothing else.
            Err(e) => match case.admission {
                Admission::Rejects(_, what) => {
                    assert_eq!(e.code, 422, "{}: {e:?}", case.name);
                    assert!(e.message.contains(what), "{}: {}", case.name, e.message);
                }
                Admission::Admits => panic!("{}: the server refused an admissible policy: {e:?}", case.name),
            },
        }
    }
    for case in &stored {
        let what = format!("{}: {:?}", case.name, case.verdict);
        match case.verdict {
            Verdict::Refused(reason, text) => {
                let (_, message) = wait_until(&what, PATIENCE, || async {
                    ready(&h, case.name).filter(|(r, _)| r == reason)
                })
                .await;
                assert!(
                    message.contains(text),
                    "{}: expected {text:?} in {message:.600}",
                    case.name
                );
                assert!(
                    message.len() <= MAX_MESSAGE,
                    "{}: a message of {} bytes",
                    case.name,
                    message.len()
                );
                let p = h.policy(case.name);
                assert_eq!(
                    condition(&p, "Ready").unwrap()["status"],
                    "False",
                    "{}",
                    case.name
                );
            }
            Verdict::Probed => {
                h.wait_condition(case.name, "Healthy", "True", None).await;
                assert_eq!(ready(&h, case.name).unwrap().0, "Probing", "{}", case.name);
            }
        }
    }

    // The schedule of the healthy policies: each app answers one probe a second, neither fewer
    // (starved by the hostile ones) nor more (probed by them). Rounds are counted, not slept for.
    const ROUNDS: u64 = 5;
    let start: Vec<u64> = healthy.iter().map(|(_, _, app)| app.hits()).collect();
    let began = Instant::now();
    for (i, (name, _, app)) in healthy.iter().enumerate() {
        wait_until(&format!("{ROUNDS} probe rounds of {name}"), PATIENCE, || async {
            (app.hits() >= start[i] + ROUNDS).then_some(())
        })
        .await;
    }
    let elapsed = began.elapsed();
    assert!(
        elapsed < Duration::from_secs(ROUNDS * 4),
        "{ROUNDS} rounds at a 1s period took {elapsed:?}"
    );
    let most = elapsed.as_secs() + 2;
    for (i, (name, _, app)) in healthy.iter().enumerate() {
        let probes = app.hits() - start[i];
        assert!(probes <= most, "{name}: {probes} probes in {elapsed:?}");
        let p = h.policy(name);
        assert_eq!(condition(&p, "Healthy").unwrap()["status"], "True", "{name}");
        assert_eq!(condition(&p, "Ready").unwrap()["reason"], "Probing", "{name}");
    }

    // Nothing refused was probed or touched.
    assert_eq!(victim.hits(), 0, "a refused policy probed its target");
    assert_eq!(operator.hits(), 0, "the operator's own workload was probed");
    assert!(tolerated.hits() > 0);
    for workload in [VICTIM, OPERATOR] {
        let d = h.server.get("apps/v1", "Deployment", Some(NS), workload).unwrap();
        assert!(
            d["spec"]["template"]["metadata"]["annotations"].is_null(),
            "{workload} was changed: {d}"
        );
    }

    // Steady state: the refused policies cost no further writes, whatever they say.
    h.server.clear_requests();
    h.wait_rounds("web-a", 3).await;
    for case in stored
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Refused(..)))
    {
        let writes = h.writes_to(&format!("/apphealthpolicies/{}", case.name));
        assert_eq!(writes, 0, "{}: {writes} writes in steady state", case.name);
    }

    // Bounded: one probing policy per healthy or tolerated one, every refused one counted once, and
    // no more probes in flight than the endpoints probed.
    let refused = stored
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Refused(..)))
        .count();
    let probed = healthy.len()
        + stored
            .iter()
            .filter(|c| matches!(c.verdict, Verdict::Probed))
            .count();
    let by_reason = policies_by_reason(&metrics);
    assert_eq!(
        by_reason.get("Probing").copied(),
        Some(probed as i64),
        "{by_reason:?}"
    );
    let not_ready: i64 = by_reason
        .iter()
        .filter(|(r, _)| *r != "Probing")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(not_ready, refused as i64, "{by_reason:?}");
    assert!(gauge(&metrics, "apphealth_probes_in_flight") <= probed as i64);

    assert!(h.operator_running(), "the operator stopped");
    assert_eq!(
        panics.load(Ordering::SeqCst),
        panics_before,
        "the operator panicked"
    );
    h.stop_operator().await;
}
