//! The HTTP prober against real servers on 127.0.0.1 that misbehave on command.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        request::{HttpRequest, ProbeRequest, ProbeTarget, Sensitive, TlsOptions},
    },
};

use crate::support::{Answer, AnsweringServer, BadServer, Behaviour, EXPIRED, ServerIdentity, TestCa, VALID};

fn request(url: String, timeout: Duration, codes: &[&str]) -> ProbeRequest {
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

fn http(req: &mut ProbeRequest) -> &mut HttpRequest {
    match &mut req.target {
        ProbeTarget::Http(h) => h,
        ProbeTarget::Tcp { .. } => unreachable!("built as HTTP"),
    }
}

async fn probe(req: &ProbeRequest) -> Sample {
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
        sample.detail.contains("name resolution failed"),
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

fn https(url: String, tls: TlsOptions) -> ProbeRequest {
    let mut req = request(url, Duration::from_secs(5), &["200"]);
    http(&mut req).tls = Some(tls);
    req
}

fn trusting(ca: &TestCa, server_name: Option<&str>) -> TlsOptions {
    TlsOptions {
        ca_pem: Some(ca.pem()),
        server_name: server_name.map(str::to_owned),
        insecure_skip_verify: false,
    }
}

fn skipping_verification() -> TlsOptions {
    TlsOptions {
        insecure_skip_verify: true,
        ..TlsOptions::default()
    }
}

fn year_2100() -> jiff::Timestamp {
    "2100-01-01T00:00:00Z".parse().unwrap()
}

fn year_2021() -> jiff::Timestamp {
    "2021-01-01T00:00:00Z".parse().unwrap()
}

#[tokio::test]
async fn https_with_the_policy_ca_and_server_name_succeeds_and_records_the_expiry() {
    let ca = TestCa::new();
    let server = AnsweringServer::tls(Answer::ok("fine"), ca.issue(&["web.example"], VALID)).await;
    // The URL names the IP, the certificate only the DNS name: serverName bridges the two.
    let sample = probe(&https(
        server.https_url("/healthz"),
        trusting(&ca, Some("web.example")),
    ))
    .await;
    assert!(sample.ok, "{sample:?}");
    assert_eq!(sample.code, Some(200));
    assert_eq!(sample.certificate_not_after, Some(year_2100()));
    let head = server.last_request().unwrap().to_lowercase();
    assert!(head.starts_with("get /healthz http/1.1"), "{head}");
}

#[tokio::test]
async fn https_to_an_ip_in_the_certificate_needs_no_server_name() {
    let ca = TestCa::new();
    let server = AnsweringServer::tls(Answer::ok("fine"), ca.issue(&["127.0.0.1"], VALID)).await;
    let sample = probe(&https(server.https_url("/"), trusting(&ca, None))).await;
    assert!(sample.ok, "{sample:?}");
    assert_eq!(sample.certificate_not_after, Some(year_2100()));
}

#[tokio::test]
async fn an_untrusted_certificate_fails_with_a_clear_detail() {
    let server = AnsweringServer::tls(
        Answer::ok("fine"),
        ServerIdentity::self_signed(&["web.example", "127.0.0.1"], VALID),
    )
    .await;
    // Trusting some other CA: the server's self-signed certificate is not among the roots.
    let other = TestCa::new();
    let sample = probe(&https(
        server.https_url("/"),
        trusting(&other, Some("web.example")),
    ))
    .await;
    assert!(!sample.ok);
    assert_eq!(sample.code, None);
    assert_eq!(
        sample.detail,
        "TLS handshake failed: certificate is not trusted (unknown issuer)"
    );
    assert_eq!(server.requests.lock().unwrap().len(), 0);
}

#[tokio::test]
async fn a_self_signed_certificate_is_not_trusted_by_the_system_roots() {
    let server = AnsweringServer::tls(
        Answer::ok("fine"),
        ServerIdentity::self_signed(&["web.example"], VALID),
    )
    .await;
    let sample = probe(&https(
        server.https_url("/"),
        TlsOptions {
            server_name: Some("web.example".into()),
            ..TlsOptions::default()
        },
    ))
    .await;
    assert!(!sample.ok);
    // Either the platform verifier rejects the issuer, or (on a machine without any system
    // roots) the client cannot be built: the probe fails and says why, in both cases.
    assert!(
        sample.detail == "TLS handshake failed: certificate is not trusted (unknown issuer)"
            || sample
                .detail
                .starts_with("system trust roots could not be loaded"),
        "{}",
        sample.detail
    );
}

#[tokio::test]
async fn an_expired_certificate_fails_and_says_when_it_expired() {
    let ca = TestCa::new();
    let server = AnsweringServer::tls(Answer::ok("fine"), ca.issue(&["web.example"], EXPIRED)).await;
    let sample = probe(&https(server.https_url("/"), trusting(&ca, Some("web.example")))).await;
    assert!(!sample.ok);
    assert_eq!(
        sample.detail,
        "TLS handshake failed: certificate expired at 2021-01-01T00:00:00Z"
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_fails() {
    let ca = TestCa::new();
    let server = AnsweringServer::tls(Answer::ok("fine"), ca.issue(&["web.example"], VALID)).await;
    let sample = probe(&https(server.https_url("/"), trusting(&ca, Some("api.example")))).await;
    assert!(!sample.ok);
    assert_eq!(
        sample.detail,
        r#"TLS handshake failed: certificate name mismatch: not valid for "api.example", only for web.example"#
    );

    // Without serverName the probed IP is checked, and the certificate does not name it.
    let sample = probe(&https(server.https_url("/"), trusting(&ca, None))).await;
    assert!(!sample.ok);
    assert_eq!(
        sample.detail,
        r#"TLS handshake failed: certificate name mismatch: not valid for "127.0.0.1", only for web.example"#
    );
}

#[tokio::test]
async fn skipping_verification_accepts_self_signed_and_expired_certificates_and_records_expiry() {
    for (identity, not_after) in [
        (ServerIdentity::self_signed(&["web.example"], VALID), year_2100()),
        (
            ServerIdentity::self_signed(&["web.example"], EXPIRED),
            year_2021(),
        ),
    ] {
        let server = AnsweringServer::tls(Answer::ok("fine"), identity).await;
        let sample = probe(&https(server.https_url("/"), skipping_verification())).await;
        assert!(sample.ok, "{sample:?}");
        assert_eq!(sample.certificate_not_after, Some(not_after));
        assert_eq!(server.handshakes.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}

#[tokio::test]
async fn https_to_a_plain_http_server_fails_cleanly() {
    // A plain HTTP server answers the ClientHello with an HTTP error.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 4096];
        let _ = stream.read(&mut hello).await.unwrap();
        stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        // Close only after the client gave up, so it reads the answer rather than a reset.
        while stream.read(&mut hello).await.is_ok_and(|n| n > 0) {}
    });
    let sample = probe(&https(format!("https://{addr}/"), skipping_verification())).await;
    assert!(!sample.ok);
    assert_eq!(
        sample.detail,
        "TLS handshake failed: the server did not answer in TLS (plain HTTP?)"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn a_ca_bundle_without_certificates_fails_every_probe_and_says_why() {
    let server = AnsweringServer::tls(
        Answer::ok("fine"),
        ServerIdentity::self_signed(&["web.example"], VALID),
    )
    .await;
    let sample = probe(&https(
        server.https_url("/"),
        TlsOptions {
            ca_pem: Some("not a certificate".into()),
            ..TlsOptions::default()
        },
    ))
    .await;
    assert!(!sample.ok);
    assert_eq!(sample.detail, "tls.ca holds no usable certificate");
    assert_eq!(server.handshakes.load(std::sync::atomic::Ordering::SeqCst), 0);
}

// --- TCP ---

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

    let fails = BodyChecks {
        must_match: pattern(r"db: down"),
        ..BodyChecks::default()
    };
    let sample = probe(&checked(server.http_url("/"), fails)).await;
    assert!(!sample.ok);
    assert_eq!(sample.code, Some(200));
    assert_eq!(sample.detail, r#"HTTP 200, body does not match "db: down""#);
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
