//! `apphealth-operator check`: the local observe → evaluate → plan path against the flaky demo app.

use std::{sync::Arc, time::Duration};

use apphealth_operator::{
    Error,
    api::Health,
    check::{self, CheckOptions},
    clock::SystemClock,
};

use crate::flaky::{Flaky, Mode};

const POLICY: &str = include_str!("../../examples/policies/demo.yaml");

async fn app(mode: Mode) -> (Flaky, String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/healthz", listener.local_addr().unwrap());
    let flaky = Flaky::new(Duration::from_secs(5));
    flaky.set(mode);
    let task = flaky.serve(listener);
    (flaky, url, task)
}

async fn run_check(url: String, probes: u32) -> (check::CheckReport, String) {
    let policy = check::parse_policy("demo.yaml", POLICY).unwrap();
    let options = CheckOptions {
        url,
        probes: Some(probes),
        period: Some(Duration::from_millis(20)),
    };
    let mut out = Vec::new();
    let report = check::run(&policy, &options, Arc::new(SystemClock), &mut out)
        .await
        .unwrap();
    (report, String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn a_failing_app_is_judged_unhealthy_and_the_remediation_is_only_planned() {
    let (_app, url, _task) = app(Mode::Status(503)).await;
    let (report, out) = run_check(url, 5).await;
    assert_eq!(report.probes, 5);
    assert_eq!(report.verdicts, vec![Health::Unhealthy], "{out}");
    assert_eq!(report.decisions.len(), 2, "{out}");
    assert!(
        report.decisions[0].starts_with("would run RolloutRestart (step 1 of 1)"),
        "{out}"
    );
    assert!(
        report.decisions[1].starts_with("waiting for recovery after step 1"),
        "{out}"
    );
    assert!(
        out.contains("3 failed probes in a row (last: HTTP 503), threshold 3"),
        "{out}"
    );
    assert_eq!(out.matches("FAIL HTTP 503").count(), 5, "{out}");
}

#[tokio::test]
async fn a_healthy_app_plans_nothing() {
    let (_app, url, _task) = app(Mode::Healthy).await;
    let (report, out) = run_check(url, 4).await;
    assert_eq!(report.verdicts, vec![Health::Healthy], "{out}");
    assert!(report.decisions.is_empty(), "{out}");
}

#[tokio::test]
async fn an_invalid_policy_is_an_error_naming_the_field() {
    let text = POLICY.replace("timeout: 1m", "timeout: soon");
    let policy = check::parse_policy("demo.yaml", &text).unwrap();
    let options = CheckOptions {
        url: "http://127.0.0.1:9/".into(),
        probes: Some(1),
        period: None,
    };
    let err = check::run(&policy, &options, Arc::new(SystemClock), &mut Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the policy is invalid: spec.remediation.steps[0].timeout: \"soon\" is not a duration such as 90s, 5m or 1h30m"
    );
}

#[test]
fn a_file_that_is_not_a_policy_is_a_clear_error() {
    let err = check::parse_policy("x.yaml", "apiVersion: v1\nkind: AppHealthPolicy\nspec: {}\n").unwrap_err();
    assert!(
        err.to_string().starts_with("x.yaml is not an AppHealthPolicy:"),
        "{err}"
    );
}

#[tokio::test]
async fn what_check_mode_cannot_do_without_a_cluster_is_said_not_hidden() {
    let (_app, url, _task) = app(Mode::Healthy).await;
    let text = include_str!("../../examples/policies/bursts-502-503.yaml");
    let policy = check::parse_policy("bursts.yaml", text).unwrap();
    let options = CheckOptions {
        url,
        probes: Some(1),
        period: Some(Duration::from_millis(20)),
    };
    let mut out = Vec::new();
    check::run(&policy, &options, Arc::new(SystemClock), &mut out)
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("note: header Authorization comes from Secret storefront-probe and is not sent"),
        "{out}"
    );
}
