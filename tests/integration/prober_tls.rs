//! The HTTPS prober against real TLS servers on 127.0.0.1: the policy's CA, server names, IP
//! addresses in certificates, untrusted, self-signed, expired and mismatched certificates, skipped
//! verification, and a TLS client talking to a plain HTTP server.

use std::time::Duration;

use apphealth_operator::observe::request::{ProbeRequest, TlsOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    prober::{http, probe, request},
    support::{Answer, AnsweringServer, EXPIRED, ServerIdentity, TestCa, VALID},
};

pub(crate) fn https(url: String, tls: TlsOptions) -> ProbeRequest {
    let mut req = request(url, Duration::from_secs(5), &["200"]);
    http(&mut req).tls = Some(tls);
    req
}

pub(crate) fn trusting(ca: &TestCa, server_name: Option<&str>) -> TlsOptions {
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
