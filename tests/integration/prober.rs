//! The HTTP prober against real servers on 127.0.0.1 that misbehave on command.

use std::time::Duration;

use apphealth_operator::{
    api::{Method, validate::SuccessCodes},
    clock::SystemClock,
    observe::{
        Sample,
        prober::HttpProber,
        request::{HttpRequest, ProbeRequest, ProbeTarget, Sensitive},
    },
};

use crate::support::{BadServer, Behaviour};

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
    HttpProber::new().unwrap().probe(req, &SystemClock).await
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
