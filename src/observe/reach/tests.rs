//! The deny-list is tested on addresses, never by sending anything: only loopback is ever
//! connected to, in the integration tests.

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn addresses_are_classified() {
    use Refusal::*;
    let cases: &[(&str, Option<Refusal>)] = &[
        // Cloud metadata and the link-local ranges it lives in.
        ("169.254.169.254", Some(LinkLocal)),
        ("169.254.0.1", Some(LinkLocal)),
        ("fe80::1", Some(LinkLocal)),
        ("febf:ffff::1", Some(LinkLocal)),
        ("::ffff:169.254.169.254", Some(LinkLocal)),
        ("::ffff:a9fe:a9fe", Some(LinkLocal)),
        ("64:ff9b::169.254.169.254", Some(LinkLocal)),
        ("fd00:ec2::254", Some(CloudMetadata)),
        ("100.100.100.200", Some(CloudMetadata)),
        // Loopback, in every form.
        ("127.0.0.1", Some(Loopback)),
        ("127.255.255.254", Some(Loopback)),
        ("::1", Some(Loopback)),
        ("::ffff:127.0.0.1", Some(Loopback)),
        // Addresses that reach this host.
        ("0.0.0.0", Some(Unspecified)),
        ("0.1.2.3", Some(Unspecified)),
        ("::", Some(Unspecified)),
        ("::ffff:0.0.0.0", Some(Unspecified)),
        // Many receivers at once.
        ("224.0.0.1", Some(Multicast)),
        ("239.255.255.250", Some(Multicast)),
        ("ff02::1", Some(Multicast)),
        ("::ffff:224.0.0.251", Some(Multicast)),
        ("255.255.255.255", Some(Broadcast)),
        // Pod, Service and node addresses are ordinary.
        ("10.0.0.1", None),
        ("10.96.0.1", None),
        ("172.16.0.1", None),
        ("192.168.1.1", None),
        ("100.64.0.1", None),
        ("8.8.8.8", None),
        ("169.253.255.255", None),
        ("169.255.0.1", None),
        ("fd00::1", None),
        ("fec0::1", None),
        ("2001:db8::1", None),
        ("::ffff:10.0.0.1", None),
    ];
    for (addr, expected) in cases {
        assert_eq!(classify(ip(addr)), *expected, "{addr}");
    }
}

#[test]
fn ipv4_addresses_are_read_in_every_spelling_inet_aton_accepts() {
    let metadata = Some(Ipv4Addr::new(169, 254, 169, 254));
    let localhost = Some(Ipv4Addr::new(127, 0, 0, 1));
    let cases: &[(&str, Option<Ipv4Addr>)] = &[
        ("169.254.169.254", metadata),
        ("169.254.169.254.", metadata),
        ("2852039166", metadata),
        ("0251.0376.0251.0376", metadata),
        ("0xa9fea9fe", metadata),
        ("0XA9FEA9FE", metadata),
        ("0xa9.0xfe.0xa9.0xfe", metadata),
        ("0251.254.0xa9.254", metadata),
        ("169.254.43518", metadata),
        ("169.16689662", metadata),
        ("025177524776", metadata),
        ("127.1", localhost),
        ("127.0.1", localhost),
        ("2130706433", localhost),
        ("0x7f000001", localhost),
        ("017700000001", localhost),
        ("0177.0.0.01", localhost),
        ("0", Some(Ipv4Addr::UNSPECIFIED)),
        ("0x", Some(Ipv4Addr::UNSPECIFIED)),
        ("255.255.255.255", Some(Ipv4Addr::BROADCAST)),
        ("4294967295", Some(Ipv4Addr::BROADCAST)),
        // Not addresses: out of range, too many parts, bad digits, names.
        ("", None),
        (".", None),
        ("256.0.0.1", None),
        ("1.2.3.256", None),
        ("1.2.65536", None),
        ("1.16777216", None),
        ("4294967296", None),
        ("0x100000000", None),
        ("1.2.3.4.5", None),
        ("08.0.0.1", None),
        ("0x1g.0.0.1", None),
        ("1..2", None),
        ("1.2.3.4..", None),
        ("-1", None),
        ("+1", None),
        ("1e3", None),
        ("web.shop.svc", None),
        ("metadata.google.internal", None),
        ("::1", None),
    ];
    for (host, expected) in cases {
        assert_eq!(parse_ipv4(host), *expected, "{host:?}");
    }
}

#[test]
fn every_spelling_of_the_metadata_address_is_refused_before_any_connect() {
    let reach = Reach::default();
    for host in [
        "169.254.169.254",
        "2852039166",
        "0251.0376.0251.0376",
        "0xa9fea9fe",
        "169.254.43518",
        "169.16689662",
        "[::ffff:169.254.169.254]",
        "::ffff:a9fe:a9fe",
        "[fe80::1]",
        "[64:ff9b::a9fe:a9fe]",
    ] {
        assert_eq!(
            literal(host).and_then(classify),
            Some(Refusal::LinkLocal),
            "{host}"
        );
        let refused = reach.check_literal(host, 80).unwrap().unwrap_err();
        assert_eq!(refused.why, Refusal::LinkLocal, "{host}");
    }
    // Even with loopback allowed.
    let refused = Reach::with_loopback().check_literal("2852039166", 80).unwrap();
    assert_eq!(refused.unwrap_err().why, Refusal::LinkLocal);
}

#[test]
fn names_are_not_literals_and_are_left_to_resolution() {
    for host in [
        "web.shop.svc",
        "metadata.google.internal",
        "localhost",
        "1.2.3.4.5",
    ] {
        assert_eq!(literal(host), None, "{host}");
        assert!(Reach::default().check_literal(host, 80).is_none(), "{host}");
    }
}

#[test]
fn loopback_is_reached_only_when_allowed() {
    let strict = Reach::default();
    let loose = Reach::with_loopback();
    for addr in [
        "127.0.0.1:8080",
        "127.0.3.1:80",
        "[::1]:80",
        "[::ffff:127.0.0.1]:80",
    ] {
        assert_eq!(
            strict.check(sock(addr)).unwrap_err().why,
            Refusal::Loopback,
            "{addr}"
        );
        assert_eq!(loose.check(sock(addr)), Ok(()), "{addr}");
    }
    assert!(!strict.allows_loopback());
    assert!(loose.allows_loopback());
    // Loopback in any spelling.
    for host in ["127.1", "2130706433", "0x7f000001", "0177.0.0.1"] {
        assert_eq!(
            strict.check_literal(host, 80).unwrap().unwrap_err().why,
            Refusal::Loopback,
            "{host}"
        );
    }
    // What loopback does not excuse.
    for addr in ["0.0.0.0:80", "[::]:80", "169.254.169.254:80", "224.0.0.1:80"] {
        assert!(loose.check(sock(addr)).is_err(), "{addr}");
    }
}

#[test]
fn the_api_servers_own_address_and_port_are_refused_even_on_loopback() {
    let reach = Reach::new(true, [sock("127.0.0.1:6443"), sock("[::ffff:10.96.0.1]:443")]);
    for addr in [
        "127.0.0.1:6443",
        "[::ffff:127.0.0.1]:6443",
        "10.96.0.1:443",
        "[::ffff:10.96.0.1]:443",
    ] {
        assert_eq!(
            reach.check(sock(addr)).unwrap_err().why,
            Refusal::ApiServer,
            "{addr}"
        );
    }
    // Other ports of the same addresses are other services.
    for addr in ["127.0.0.1:8080", "10.96.0.1:80", "10.96.0.2:443"] {
        assert_eq!(reach.check(sock(addr)), Ok(()), "{addr}");
    }
    // Without --allow-loopback, the API server on loopback is refused as the API server.
    let strict = Reach::new(false, [sock("127.0.0.1:6443")]);
    assert_eq!(
        strict.check(sock("127.0.0.1:6443")).unwrap_err().why,
        Refusal::ApiServer
    );
}

#[test]
fn refusals_say_what_the_address_is_and_never_a_host_name() {
    let reach = Reach::new(false, [sock("10.96.0.1:443")]);
    let cases = [
        (
            "169.254.169.254:80",
            "refused: 169.254.169.254 is link-local (cloud metadata services answer there); the operator never connects to it",
        ),
        (
            "[::ffff:169.254.169.254]:80",
            "refused: 169.254.169.254 is link-local (cloud metadata services answer there); the operator never connects to it",
        ),
        (
            "127.0.0.1:8080",
            "refused: 127.0.0.1 is loopback; the operator connects to it only with --allow-loopback",
        ),
        (
            "10.96.0.1:443",
            "refused: 10.96.0.1:443 is the Kubernetes API server; the operator never connects to it",
        ),
        (
            "[fd00:ec2::254]:80",
            "refused: fd00:ec2::254 is a cloud metadata service; the operator never connects to it",
        ),
        (
            "0.0.0.0:80",
            "refused: 0.0.0.0 is the unspecified address (it reaches the operator's own host); the operator never connects to it",
        ),
    ];
    for (addr, expected) in cases {
        assert_eq!(
            reach.check(sock(addr)).unwrap_err().to_string(),
            expected,
            "{addr}"
        );
    }
}

#[test]
fn the_api_server_is_found_in_the_kube_config_and_the_pod_environment() {
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [(&'a str, u16)]);
    let cases: &[Case] = &[
        ("https://10.96.0.1", None, None, &[("10.96.0.1", 443)]),
        ("https://[fd00::1]:6443", None, None, &[("fd00::1", 6443)]),
        ("http://127.0.0.1:8080", None, None, &[("127.0.0.1", 8080)]),
        (
            "https://kubernetes.default.svc",
            Some("10.96.0.1"),
            Some("443"),
            &[("kubernetes.default.svc", 443), ("10.96.0.1", 443)],
        ),
        (
            "https://k8s.example:6443",
            Some("10.96.0.1"),
            Some("https"),
            &[("k8s.example", 6443)],
        ),
    ];
    for (url, host, port, expected) in cases {
        let got = api_server_endpoints(&url.parse().unwrap(), *host, *port);
        let expected: Vec<(String, u16)> = expected.iter().map(|(h, p)| (h.to_string(), *p)).collect();
        assert_eq!(got, expected, "{url}");
    }
}

#[tokio::test]
async fn api_server_addresses_given_as_literals_need_no_resolver() {
    let endpoints = [
        ("10.96.0.1".to_owned(), 443),
        ("127.0.0.1".to_owned(), 6443),
        ("10.96.0.1".to_owned(), 443),
    ];
    assert_eq!(
        api_server_addresses(&endpoints).await,
        [sock("10.96.0.1:443"), sock("127.0.0.1:6443")]
    );
}
