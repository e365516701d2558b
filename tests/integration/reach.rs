//! Probing cannot be abused: the deny-list holds on every connect, in every spelling of an address,
//! for probes and webhooks alike; redirects are answers, never followed. Only loopback is ever
//! connected to here: the refusals of other ranges are tested on addresses (`observe::reach`).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use apphealth_operator::{
    act::Notifier,
    api::{Method, validate::SuccessCodes},
    clock::SystemClock,
    controller,
    observation::Sample,
    observe::{
        prober::HttpProber,
        reach::Reach,
        request::{HttpRequest, ProbeRequest, ProbeTarget, Sensitive},
    },
};
use serde_json::json;

use crate::{
    harness::{Harness, NS, condition, restarted_at},
    support::{BadServer, Behaviour, CountingListener, reconciles, wait_until},
};

fn http(url: String, codes: &str) -> ProbeRequest {
    ProbeRequest {
        endpoint: "web-a".into(),
        path: "/healthz".into(),
        timeout: Duration::from_secs(2),
        target: ProbeTarget::Http(Box::new(HttpRequest {
            url,
            method: Method::Get,
            headers: Vec::new(),
            body: None,
            success_codes: SuccessCodes::parse("successCodes", &[codes.to_owned()]).unwrap(),
            checks: Default::default(),
            tls: None,
        })),
    }
}

fn tcp(addr: String) -> ProbeRequest {
    ProbeRequest {
        endpoint: "web-a".into(),
        path: String::new(),
        timeout: Duration::from_secs(2),
        target: ProbeTarget::Tcp { addr },
    }
}

async fn probe(reach: Reach, req: &ProbeRequest) -> Sample {
    HttpProber::new(reach).unwrap().probe(req, &SystemClock).await
}

const LOOPBACK_REFUSED: &str =
    "refused: 127.0.0.1 is loopback; the operator connects to it only with --allow-loopback";

#[tokio::test]
async fn probes_to_loopback_are_refused_before_connecting_in_every_spelling() {
    let listener = CountingListener::start().await;
    let port = listener.addr.port();
    for host in [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "017700000001",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
    ] {
        let sample = probe(
            Reach::default(),
            &http(format!("http://{host}:{port}/healthz"), "200"),
        )
        .await;
        assert!(!sample.ok, "{host}");
        assert_eq!(sample.detail, LOOPBACK_REFUSED, "{host}");
        assert_eq!(sample.code, None, "{host}");
        let sample = probe(Reach::default(), &tcp(format!("{host}:{port}"))).await;
        assert!(!sample.ok, "{host}");
        assert_eq!(sample.detail, LOOPBACK_REFUSED, "{host}");
    }
    let sample = probe(Reach::default(), &tcp(format!("[::1]:{port}"))).await;
    assert_eq!(
        sample.detail,
        "refused: ::1 is loopback; the operator connects to it only with --allow-loopback"
    );
    assert_eq!(listener.accepted(), 0, "nothing ever connected");
}

#[tokio::test]
async fn with_allow_loopback_every_spelling_reaches_the_address_it_spells() {
    let listener = CountingListener::start().await;
    let port = listener.addr.port();
    let spellings = ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1"];
    for host in spellings {
        let sample = probe(Reach::with_loopback(), &tcp(format!("{host}:{port}"))).await;
        assert!(sample.ok, "{host}: {sample:?}");
    }
    wait_until("every connection accepted", Duration::from_secs(5), || async {
        (listener.accepted() == spellings.len()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_api_servers_address_and_port_are_refused_even_with_loopback_allowed() {
    let api_server = CountingListener::start().await;
    let app = CountingListener::start().await;
    let reach = Reach::new(true, [api_server.addr]);
    let expected = format!(
        "refused: {} is the Kubernetes API server; the operator never connects to it",
        api_server.addr
    );
    let port = api_server.addr.port();
    for target in [
        http(format!("http://127.0.0.1:{port}/api"), "200"),
        http(format!("https://[::ffff:127.0.0.1]:{port}/api"), "200"),
        tcp(format!("2130706433:{port}")),
    ] {
        assert_eq!(probe(reach.clone(), &target).await.detail, expected);
    }
    // Another port of the same address is another service.
    assert!(probe(reach, &tcp(app.addr.to_string())).await.ok);
    assert_eq!(api_server.accepted(), 0);
}

#[tokio::test]
async fn a_redirect_is_an_answer_judged_by_success_codes_and_never_followed() {
    let elsewhere = CountingListener::start().await;
    let location: &'static str = Box::leak(format!("http://{}/landing", elsewhere.addr).into_boxed_str());
    let server = BadServer::start(Behaviour::Redirect(location)).await;
    let failed = probe(Reach::with_loopback(), &http(server.url("/healthz"), "200-299")).await;
    assert!(!failed.ok);
    assert_eq!((failed.code, failed.detail.as_str()), (Some(302), "HTTP 302"));
    let passed = probe(Reach::with_loopback(), &http(server.url("/healthz"), "200-399")).await;
    assert!(passed.ok, "{passed:?}");
    assert_eq!(passed.code, Some(302));
    assert_eq!(server.hits(), 2);
    assert_eq!(
        elsewhere.accepted(),
        0,
        "the redirect's target is never connected to"
    );
}

fn notifier(reach: Reach) -> Notifier {
    Notifier::new(reach, Duration::from_secs(2), 3, Duration::from_millis(10)).unwrap()
}

async fn post(notifier: &Notifier, url: &str) -> Result<u16, String> {
    notifier
        .post(&Sensitive::new(url), "id-1", &json!({"text": "hello"}))
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn webhooks_pass_the_same_deny_list_and_their_url_never_shows() {
    let listener = CountingListener::start().await;
    let port = listener.addr.port();
    for host in ["127.0.0.1", "2130706433", "[::ffff:127.0.0.1]"] {
        let url = format!("http://{host}:{port}/hooks/T0/s3cr3t-path");
        assert_eq!(
            post(&notifier(Reach::default()), &url).await,
            Err(LOOPBACK_REFUSED.into())
        );
    }
    let url = format!("http://127.0.0.1:{port}/hooks/T0/s3cr3t-path");
    let as_api_server = post(&notifier(Reach::new(true, [listener.addr])), &url).await;
    assert_eq!(
        as_api_server.unwrap_err(),
        format!(
            "refused: {} is the Kubernetes API server; the operator never connects to it",
            listener.addr
        )
    );
    assert_eq!(listener.accepted(), 0, "a refused webhook is never connected to");

    // Failures say what happened, never where.
    let closed: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let failing = BadServer::start(Behaviour::Status(500)).await;
    for (url, expected) in [
        (
            failing.url("/hooks/T0/s3cr3t-path"),
            "3 attempts failed, the last with: HTTP 500",
        ),
        (
            format!("http://{closed}/hooks/T0/s3cr3t-path"),
            "3 attempts failed, the last with: connection refused",
        ),
        (
            "ftp://127.0.0.1/s3cr3t-path".to_owned(),
            "the URL is neither http nor https",
        ),
        ("http://127.0.0.1:80:80/s3cr3t-path".to_owned(), "invalid URL"),
    ] {
        let error = post(&notifier(Reach::with_loopback()), &url).await.unwrap_err();
        assert!(error.starts_with(expected), "{url}: {error}");
        assert!(
            !error.contains("s3cr3t") && !error.contains("127.0.0.1"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn webhook_redirects_are_not_followed() {
    let elsewhere = CountingListener::start().await;
    let location: &'static str = Box::leak(format!("http://{}/landing", elsewhere.addr).into_boxed_str());
    let server = BadServer::start(Behaviour::Redirect(location)).await;
    let answer = post(&notifier(Reach::with_loopback()), &server.url("/hook")).await;
    assert_eq!(answer, Err("the webhook answered HTTP 302".into()));
    assert_eq!(server.hits(), 1, "a redirect is not retried");
    assert_eq!(elsewhere.accepted(), 0);
}

/// End to end: without `--allow-loopback` the operator leaves loopback pods out, says why in the
/// policy's Ready condition, judges nothing, remediates nothing, and never connects to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_pods_are_refused_without_allow_loopback_and_never_connected_to() {
    let mut h = Harness::new(1).await;
    let counting = CountingListener::bind(SocketAddr::new(h.address(9), h.port)).await;
    h.add_pod("web-b", counting.addr.ip(), "web");
    h.create_policy("web", json!({}));
    let metrics = Arc::new(apphealth_operator::metrics::Metrics::default());
    h.start_operator_with(controller::Config {
        namespaces: vec![NS.into()],
        metrics: metrics.clone(),
        reach: Reach::new(false, [h.server.addr()]),
        ..h.config()
    });
    let policy = h
        .wait_condition("web", "Ready", "False", Some("AddressRefused"))
        .await;
    let message = condition(&policy, "Ready").unwrap()["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!(
            "No ready pod of Deployment web is at an address the operator may probe. \
             Not probed: pod web-a: refused: {a} is loopback; the operator connects to it only with --allow-loopback. \
             Not probed: pod web-b: refused: {b} is loopback; the operator connects to it only with --allow-loopback.",
            a = h.address(1),
            b = h.address(9)
        )
    );
    // Another look (a reconcile more) changes nothing.
    let seen = reconciles(&metrics);
    h.touch_policy("web");
    wait_until("another reconcile", Duration::from_secs(30), || async {
        (reconciles(&metrics) > seen).then_some(())
    })
    .await;
    let policy = h.policy("web");
    assert_eq!(condition(&policy, "Ready").unwrap()["reason"], "AddressRefused");
    assert_ne!(condition(&policy, "Healthy").unwrap()["status"], "False");
    assert!(policy["status"]["history"].as_array().is_none_or(Vec::is_empty));
    assert_eq!(restarted_at(&h.deployment()), None);
    assert_eq!(h.pod("web-a").app.hits(), 0);
    assert_eq!(counting.accepted(), 0, "no connection to a refused pod");
    h.stop_operator().await;
}
