//! The HTTP prober against real servers on 127.0.0.1 that misbehave on command.

use std::time::Duration;

use apphealth_operator::{
    api::{
        Method,
        validate::{BodyChecks, Pattern, SuccessCodes},
    },
    clock::SystemClock,
    observation::Sample,
    observe::{
        prober::HttpProber,
        reach::Reach,
        request::{HttpRequest, ProbeRequest, ProbeTarget, Sensitive},
    },
};

use crate::prober_tls::{https, trusting};
use crate::support::{Answer, AnsweringServer, BadServer, Behaviour, TestCa, VALID};

pub(crate) fn request(url: String, timeout: Duration, codes: &[&str]) -> ProbeRequest {
    let codes: Vec<String> = codes.iter().map(|s| s.to_string()).collect();
    ProbeRequest {
        endpoint: "web-1".into(),
        path: "/".into(),
        timeout,
        target: ProbeTarget::Http(Box::new(HttpRequest {
            url,
            method: Method::Get,
            headers: vec![("X-Probe".into(), Sensitive::new("apphealth"))],
            body: None,
            success_codes: SuccessCodes::parse("successCodes", &codes).unwrap(),
            checks: Default::default(),
            tls: None,
        })),
    }
}

pub(crate) fn http(req: &mut ProbeRequest) -> &mut HttpRequest {
    match &mut req.target {
        ProbeTarget::Http(h) => h,
        ProbeTarget::Tcp { .. } => unreachable!("built as HTTP"),
    }
}

pub(crate) async fn probe(req: &ProbeRequest) -> Sample {
    HttpProber::new(Reach::with_loopback())
        .unwrap()
        .probe(req, &SystemClock)
        .await
}

#[tokio::test]
async fn bad_gateway_and_unavailable_fail_and_say_so() {
    for code in [502u16, 503] {
        let server = BadServer::start(Behaviour::Status(code)).await;
        let sample = probe(&request(
            server.url("/healthz"),
            Duration::from_secs(2),
            &["200-399"],
        ))
        .await;
        assert!(!sample.ok, "{code}");
        assert_eq!(sample.code, Some(code));
        assert_eq!(sample.detail, format!("HTTP {code}"));
        assert_eq!(sample.reason, "HTTPStatus");
        assert_eq!(sample.endpoint, "web-1");
    }
}

#[tokio::test]
async fn success_codes_accept_single_codes_and_ranges() {
    let server = BadServer::start(Behaviour::Status(204)).await;
    assert!(
        probe(&request(server.url("/"), Duration::from_secs(2), &["204"]))
            .await
            .ok
    );
    assert!(
        probe(&request(server.url("/"), Duration::from_secs(2), &["200-299"]))
            .await
            .ok
    );
    assert!(
        !probe(&request(
            server.url("/"),
            Duration::from_secs(2),
            &["200", "300-399"]
        ))
        .await
        .ok
    );
}

#[tokio::test]
async fn a_slow_answer_within_the_timeout_succeeds_and_its_latency_is_recorded() {
    let server = BadServer::start(Behaviour::Slow(Duration::from_millis(150))).await;
    let sample = probe(&request(server.url("/"), Duration::from_secs(5), &["200"])).await;
    assert!(sample.ok, "{sample:?}");
    assert!(
        sample.latency >= Duration::from_millis(150),
        "{:?}",
        sample.latency
    );
}

#[tokio::test]
async fn a_slow_answer_past_the_timeout_fails() {
    let server = BadServer::start(Behaviour::Slow(Duration::from_secs(30))).await;
    let sample = probe(&request(server.url("/"), Duration::from_millis(200), &["200"])).await;
    assert!(!sample.ok);
    assert_eq!(sample.code, None);
    assert_eq!(sample.detail, "timed out after 200ms");
    assert_eq!(sample.reason, "Timeout");
}

#[tokio::test]
async fn a_hanging_server_times_out() {
    let server = BadServer::start(Behaviour::Hang).await;
    let sample = probe(&request(server.url("/"), Duration::from_millis(300), &["200"])).await;
    assert!(!sample.ok);
    assert_eq!(sample.detail, "timed out after 300ms");
    assert_eq!(server.hits(), 1, "the request reached the server");
}

#[tokio::test]
async fn an_answer_trickled_a_byte_at_a_time_times_out_as_a_whole() {
    // Every byte comes well within the timeout; the whole answer does not.
    let server = BadServer::start(Behaviour::Trickle(Duration::from_millis(50))).await;
    let sample = probe(&request(server.url("/"), Duration::from_millis(500), &["200"])).await;
    assert!(!sample.ok);
    assert_eq!(sample.detail, "timed out after 500ms");
}

#[tokio::test]
async fn an_answer_that_is_not_http_fails_and_says_so() {
    let server = BadServer::start(Behaviour::Garbage).await;
    let sample = probe(&request(server.url("/"), Duration::from_secs(2), &["200"])).await;
    assert!(!sample.ok);
    assert!(
        sample.detail.to_lowercase().contains("invalid") || sample.detail.contains("parse"),
        "detail should say the answer was not HTTP: {}",
        sample.detail
    );
}

/// A prober whose names resolve from a table: `web.shop.svc` is 127.0.0.1, nothing else
/// resolves, and no DNS query leaves the machine.
async fn probe_with_hosts(req: &ProbeRequest) -> Sample {
    let reach =
        Reach::with_loopback().with_hosts([("web.shop.svc", vec![std::net::Ipv4Addr::LOCALHOST.into()])]);
    HttpProber::new(reach).unwrap().probe(req, &SystemClock).await
}

#[tokio::test]
async fn a_name_that_does_not_resolve_fails_and_says_so() {
    let server = BadServer::start(Behaviour::Status(200)).await;
    let known = format!("http://web.shop.svc:{}/", server.addr.port());
    let sample = probe_with_hosts(&request(known, Duration::from_secs(2), &["200"])).await;
    assert!(sample.ok, "a name in the table resolves: {}", sample.detail);

    let unknown = format!("http://gone.shop.svc:{}/", server.addr.port());
    let sample = probe_with_hosts(&request(unknown, Duration::from_secs(2), &["200"])).await;
    assert!(!sample.ok);
    assert!(
        sample.detail.contains("name resolution failed") && sample.reason == "NameNotResolved",
        "{}",
        sample.detail
    );
    assert!(
        !sample.detail.contains("gone.shop.svc"),
        "the name is not repeated: {}",
        sample.detail
    );
    assert_eq!(server.hits(), 1, "only the name that resolved was probed");
}

#[tokio::test]
async fn a_reset_connection_fails_with_a_clear_detail() {
    let server = BadServer::start(Behaviour::Reset).await;
    let sample = probe(&request(server.url("/"), Duration::from_secs(2), &["200"])).await;
    assert!(!sample.ok);
    assert!(
        sample.detail.contains("reset") || sample.detail.contains("closed"),
        "detail should say the connection broke: {}",
        sample.detail
    );
}

#[tokio::test]
async fn a_refused_connection_fails() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let sample = probe(&request(
        format!("http://{addr}/"),
        Duration::from_secs(2),
        &["200"],
    ))
    .await;
    assert!(!sample.ok);
    assert_eq!(sample.detail, "connection refused");
    assert_eq!(sample.reason, "ConnectFailed");
}

#[tokio::test]
async fn an_endless_body_is_read_only_up_to_the_bound() {
    let server = BadServer::start(Behaviour::EndlessBody).await;
    // Without the bound this would run into the timeout; with it the probe returns promptly.
    let sample = probe(&request(server.url("/"), Duration::from_secs(5), &["200"])).await;
    assert!(sample.ok, "{sample:?}");
    assert_eq!(sample.code, Some(200));
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let elsewhere = BadServer::start(Behaviour::Status(200)).await;
    let location: &'static str = Box::leak(elsewhere.url("/landing").into_boxed_str());
    let server = BadServer::start(Behaviour::Redirect(location)).await;
    let sample = probe(&request(server.url("/"), Duration::from_secs(2), &["200-299"])).await;
    assert!(!sample.ok);
    assert_eq!(sample.code, Some(302));
    assert_eq!(elsewhere.hits(), 0, "the redirect target must never be contacted");
}

#[tokio::test]
async fn method_path_and_headers_are_sent() {
    let server = BadServer::start(Behaviour::Echo).await;
    let mut req = request(server.url("/healthz?deep=1"), Duration::from_secs(2), &["200"]);
    http(&mut req).method = Method::Post;
    let sample = probe(&req).await;
    assert!(sample.ok);
    let head = server.last_request.lock().unwrap().to_lowercase();
    assert!(head.starts_with("post /healthz?deep=1 http/1.1"), "{head}");
    assert!(head.contains("x-probe: apphealth"), "{head}");
    assert!(head.contains("user-agent: apphealth-operator/"), "{head}");
}

// --- HTTPS ---

fn tcp(addr: String, timeout: Duration) -> ProbeRequest {
    ProbeRequest {
        endpoint: "db-0".into(),
        path: String::new(),
        timeout,
        target: ProbeTarget::Tcp { addr },
    }
}

#[tokio::test]
async fn a_tcp_probe_to_an_open_port_connects() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sample = probe(&tcp(addr.to_string(), Duration::from_secs(2))).await;
    assert!(sample.ok, "{sample:?}");
    assert_eq!(sample.detail, "connected");
    assert_eq!(sample.code, None);
    assert_eq!(sample.path, "");
}

#[tokio::test]
async fn a_tcp_probe_to_a_closed_port_is_refused() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let sample = probe(&tcp(addr.to_string(), Duration::from_secs(2))).await;
    assert!(!sample.ok);
    assert!(!sample.timed_out);
    assert_eq!(sample.detail, "connection refused");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_tcp_probe_that_gets_no_answer_times_out() {
    let silent = crate::support::Unanswering::start().await;
    let sample = probe(&tcp(silent.addr.to_string(), Duration::from_millis(300))).await;
    assert!(!sample.ok);
    assert!(sample.timed_out);
    assert_eq!(sample.detail, "timed out after 300ms");
}

// --- Body checks, request body, secrets ---

fn checked(url: String, checks: BodyChecks) -> ProbeRequest {
    let mut req = request(url, Duration::from_secs(2), &["200"]);
    http(&mut req).checks = checks;
    req
}

fn pattern(p: &str) -> Option<Pattern> {
    Some(Pattern(regex::Regex::new(p).unwrap()))
}

fn json_checks(pairs: &[(&str, &str)]) -> BodyChecks {
    BodyChecks {
        json: pairs
            .iter()
            .map(|(p, v)| (p.to_string(), v.to_string()))
            .collect(),
        ..BodyChecks::default()
    }
}

#[tokio::test]
async fn a_body_must_match_the_pattern() {
    let server = AnsweringServer::plain(Answer::ok("status: green, db: up")).await;
    let passes = BodyChecks {
        must_match: pattern(r"db: (up|degraded)"),
        ..BodyChecks::default()
    };
    let sample = probe(&checked(server.http_url("/"), passes)).await;
    assert!(sample.ok, "{sample:?}");
    assert_eq!(sample.detail, "HTTP 200");
    assert_eq!(sample.reason, "", "no reason when it succeeded");

    let fails = BodyChecks {
        must_match: pattern(r"db: down"),
        ..BodyChecks::default()
    };
    let sample = probe(&checked(server.http_url("/"), fails)).await;
    assert!(!sample.ok);
    assert_eq!(sample.code, Some(200));
    assert_eq!(sample.detail, r#"HTTP 200, body does not match "db: down""#);
    assert_eq!(sample.reason, "BodyNotMatched");
}

#[tokio::test]
async fn a_body_must_not_match_the_pattern() {
    let server = AnsweringServer::plain(Answer::ok("status: red, ERROR in cache")).await;
    let fails = BodyChecks {
        must_not_match: pattern(r"ERROR"),
        ..BodyChecks::default()
    };
    let sample = probe(&checked(server.http_url("/"), fails)).await;
    assert!(!sample.ok);
    assert_eq!(sample.detail, r#"HTTP 200, body matches "ERROR""#);

    let passes = BodyChecks {
        must_not_match: pattern(r"PANIC"),
        ..BodyChecks::default()
    };
    assert!(probe(&checked(server.http_url("/"), passes)).await.ok);
}

#[tokio::test]
async fn json_fields_are_compared_as_text_for_strings_numbers_and_booleans() {
    let server = AnsweringServer::plain(Answer::json(
        r#"{"status":"UP","checks":{"db":{"ok":true,"replicas":3}},"items":["a","b"]}"#,
    ))
    .await;
    let all = json_checks(&[
        ("/status", "UP"),
        ("/checks/db/ok", "true"),
        ("/checks/db/replicas", "3"),
        ("/items/1", "b"),
    ]);
    let sample = probe(&checked(server.http_url("/"), all)).await;
    assert!(sample.ok, "{sample:?}");

    for (pointer, expected, detail) in [
        (
            "/status",
            "DOWN",
            r#"HTTP 200, JSON field /status is "UP", expected "DOWN""#,
        ),
        (
            "/checks/db/ok",
            "false",
            r#"HTTP 200, JSON field /checks/db/ok is "true", expected "false""#,
        ),
        (
            "/checks/db/replicas",
            "2",
            r#"HTTP 200, JSON field /checks/db/replicas is "3", expected "2""#,
        ),
        (
            "/checks/cache",
            "ok",
            "HTTP 200, JSON field /checks/cache is missing",
        ),
    ] {
        let sample = probe(&checked(
            server.http_url("/"),
            json_checks(&[(pointer, expected)]),
        ))
        .await;
        assert!(!sample.ok, "{pointer}");
        assert_eq!(sample.detail, detail);
    }
}

#[tokio::test]
async fn a_json_check_on_a_body_that_is_not_json_fails() {
    let server = AnsweringServer::plain(Answer::ok("<html>fine</html>")).await;
    let sample = probe(&checked(server.http_url("/"), json_checks(&[("/status", "UP")]))).await;
    assert!(!sample.ok);
    assert!(
        sample.detail.starts_with("HTTP 200, body is not JSON"),
        "{}",
        sample.detail
    );
}

#[tokio::test]
async fn body_checks_apply_only_to_success_codes() {
    let server = AnsweringServer::plain(Answer {
        status: 503,
        ..Answer::json(r#"{"status":"UP"}"#)
    })
    .await;
    let sample = probe(&checked(server.http_url("/"), json_checks(&[("/status", "UP")]))).await;
    assert!(!sample.ok);
    assert_eq!(sample.detail, "HTTP 503");
}

#[tokio::test]
async fn the_request_body_is_sent() {
    let server = AnsweringServer::plain(Answer::ok("fine")).await;
    let mut req = request(server.http_url("/check"), Duration::from_secs(2), &["200"]);
    http(&mut req).method = Method::Post;
    http(&mut req).body = Some(r#"{"deep":true}"#.into());
    let sample = probe(&req).await;
    assert!(sample.ok, "{sample:?}");
    let sent = server.last_request().unwrap();
    assert!(sent.to_lowercase().starts_with("post /check http/1.1"), "{sent}");
    assert!(sent.to_lowercase().contains("content-length: 13\r\n"), "{sent}");
    assert!(sent.ends_with("\r\n\r\n{\"deep\":true}"), "{sent}");
}

#[tokio::test]
async fn sensitive_header_values_are_sent_but_never_shown() {
    let secret = "Bearer s3cr3t-t0ken-value";
    let ca = TestCa::new();
    let server = AnsweringServer::tls(Answer::ok("fine"), ca.issue(&["web.example"], VALID)).await;
    let mut req = https(server.https_url("/"), trusting(&ca, Some("web.example")));
    http(&mut req)
        .headers
        .push(("Authorization".into(), Sensitive::new(secret)));
    let sample = probe(&req).await;
    assert!(sample.ok, "{sample:?}");
    let sent = server.last_request().unwrap();
    assert!(sent.contains(&format!("authorization: {secret}\r\n")), "{sent}");

    for shown in [
        format!("{req:?}"),
        format!("{req:#?}"),
        format!("{sample:?}"),
        sample.detail.clone(),
    ] {
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
    assert!(format!("{req:?}").contains("<redacted>"));
}
