//! TLS for HTTPS probes: trust roots (system or a CA bundle from the policy), a server name to
//! verify against instead of the probed IP, an explicit opt-out of verification, and reading the
//! served certificate's expiry.
//!
//! System roots come from `rustls-platform-verifier` (the platform's store and WebPKI), so a probe
//! run locally with `check`, and a Notify webhook, trust what the machine trusts. The crypto
//! provider is always ring, whatever provider the process installed.

use std::{fmt, sync::Arc};

use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};

use super::{error::TlsError, request::TlsOptions};

/// A rustls client configuration for `options`.
pub fn client_config(options: &TlsOptions) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = if options.insecure_skip_verify {
        Arc::new(AcceptAnyCertificate {
            provider: provider.clone(),
        })
    } else {
        let trusted: Arc<dyn ServerCertVerifier> = match &options.ca_pem {
            Some(pem) => {
                WebPkiServerVerifier::builder_with_provider(Arc::new(ca_roots(pem)?), provider.clone())
                    .build()
                    .map_err(|e| TlsError::Ca(e.to_string()))?
            }
            None => Arc::new(
                rustls_platform_verifier::Verifier::new(provider.clone())
                    .map_err(|e| TlsError::SystemRoots(e.to_string()))?,
            ),
        };
        match &options.server_name {
            Some(name) => Arc::new(VerifyAsName {
                name: ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName(name.clone()))?,
                inner: trusted,
            }),
            None => trusted,
        }
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Settings(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // The prober speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The trust anchors in a PEM bundle. Certificates that cannot serve as anchors are skipped, as
/// system bundles do; a bundle with none left is an error.
fn ca_roots(pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsError::CaPem(e.to_string()))?;
        let _ = roots.add_parsable_certificates([cert]);
    }
    if roots.is_empty() {
        return Err(TlsError::CaEmpty);
    }
    Ok(roots)
}

/// The `notAfter` time of a DER certificate.
pub fn certificate_not_after(der: &[u8]) -> Option<jiff::Timestamp> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    jiff::Timestamp::from_second(cert.validity().not_after.timestamp()).ok()
}

/// A short description of a TLS failure for a sample's detail: "certificate expired at
/// 2021-01-01T00:00:00Z", "certificate is not valid for name \"web.example\"".
pub fn describe(e: &rustls::Error) -> String {
    let cert = match e {
        rustls::Error::InvalidCertificate(cert) => cert,
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            return "the server did not answer in TLS (plain HTTP?)".into();
        }
        other => return other.to_string(),
    };
    match cert {
        CertificateError::Expired => "certificate expired".into(),
        CertificateError::ExpiredContext { not_after, .. } => {
            format!("certificate expired at {}", unix(*not_after))
        }
        CertificateError::NotValidYet => "certificate is not valid yet".into(),
        CertificateError::NotValidYetContext { not_before, .. } => {
            format!("certificate is not valid before {}", unix(*not_before))
        }
        CertificateError::UnknownIssuer => "certificate is not trusted (unknown issuer)".into(),
        CertificateError::NotValidForName => "certificate name mismatch".into(),
        CertificateError::NotValidForNameContext { expected, presented } => {
            let mut s = format!("certificate name mismatch: not valid for {:?}", expected.to_str());
            if !presented.is_empty() {
                let names: Vec<&str> = presented.iter().map(|n| presented_name(n)).collect();
                s.push_str(&format!(", only for {}", names.join(", ")));
            }
            s
        }
        CertificateError::BadSignature => "certificate signature is invalid".into(),
        CertificateError::Revoked => "certificate is revoked".into(),
        other => format!("invalid certificate: {other}"),
    }
}

/// `web.example` for webpki's `DnsName("web.example")`, `10.0.0.1` for `IpAddress(10.0.0.1)`.
fn presented_name(name: &str) -> &str {
    name.strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| name.strip_prefix("IpAddress(").and_then(|n| n.strip_suffix(')')))
        .unwrap_or(name)
}

fn unix(t: UnixTime) -> String {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| format!("{} (UNIX)", t.as_secs()), |ts| ts.to_string())
}

/// Verifies the certificate for a configured name instead of the host the probe connected to
/// (pods are probed by IP, which certificates rarely name).
struct VerifyAsName {
    name: ServerName<'static>,
    inner: Arc<dyn ServerCertVerifier>,
}

impl fmt::Debug for VerifyAsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyAsName")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for VerifyAsName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// `insecureSkipVerify`: any certificate is accepted, but the handshake signatures are still
/// checked, so the peer must hold the key of the certificate it presents.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_after: (i32, u8, u8)) -> rcgen::CertifiedKey<rcgen::KeyPair> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["web.example".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params.self_signed(&key).unwrap();
        rcgen::CertifiedKey {
            cert,
            signing_key: key,
        }
    }

    #[test]
    fn not_after_is_read_from_the_certificate() {
        let c = cert((2031, 7, 15));
        assert_eq!(
            certificate_not_after(c.cert.der()),
            Some("2031-07-15T00:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn not_after_of_garbage_is_none() {
        assert_eq!(certificate_not_after(b"not a certificate"), None);
        assert_eq!(certificate_not_after(&[]), None);
    }

    #[test]
    fn a_ca_bundle_is_accepted_with_several_certificates_and_other_sections() {
        let (a, b) = (cert((2031, 1, 1)), cert((2032, 1, 1)));
        let pem = format!(
            "{}\n{}\n{}",
            a.cert.pem(),
            a.signing_key.serialize_pem(),
            b.cert.pem()
        );
        assert_eq!(ca_roots(&pem).unwrap().len(), 2);
        let options = TlsOptions {
            ca_pem: Some(pem),
            server_name: Some("web.example".into()),
            insecure_skip_verify: false,
        };
        let config = client_config(&options).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn a_bad_ca_bundle_is_an_error() {
        for pem in [
            "",
            "hello",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let options = TlsOptions {
                ca_pem: Some(pem.into()),
                ..TlsOptions::default()
            };
            assert_eq!(client_config(&options).unwrap_err(), TlsError::CaEmpty, "{pem:?}");
        }
        // A certificate section whose content is not a certificate.
        let garbage = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        assert_eq!(ca_roots(garbage).unwrap_err(), TlsError::CaEmpty);
        // Broken base64 inside a certificate section.
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let err = ca_roots(broken).unwrap_err();
        assert!(matches!(err, TlsError::CaPem(_)), "{err}");
        assert!(err.to_string().starts_with("tls.ca is not valid PEM"), "{err}");
    }

    #[test]
    fn an_invalid_server_name_is_an_error() {
        let options = TlsOptions {
            server_name: Some("not a name!".into()),
            insecure_skip_verify: false,
            ca_pem: Some(cert((2031, 1, 1)).cert.pem()),
        };
        let err = client_config(&options).unwrap_err();
        assert_eq!(err, TlsError::ServerName("not a name!".into()));
        assert!(
            err.to_string().starts_with("tls.serverName \"not a name!\""),
            "{err}"
        );
    }

    #[test]
    fn skipping_verification_needs_no_roots() {
        let options = TlsOptions {
            insecure_skip_verify: true,
            ca_pem: Some("not PEM at all".into()),
            server_name: None,
        };
        assert!(client_config(&options).is_ok());
    }

    #[test]
    fn certificate_errors_read_well() {
        let expired = rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_700_000_000)),
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_609_459_200)),
        });
        assert_eq!(describe(&expired), "certificate expired at 2021-01-01T00:00:00Z");
        assert_eq!(
            describe(&rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            )),
            "certificate is not trusted (unknown issuer)"
        );
        assert_eq!(
            describe(&rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName
            )),
            "certificate name mismatch"
        );
        assert_eq!(
            describe(&rustls::Error::InvalidCertificate(
                CertificateError::NotValidForNameContext {
                    expected: ServerName::try_from("api.example").unwrap(),
                    presented: vec![
                        r#"DnsName("web.example")"#.into(),
                        "IpAddress(10.0.0.1)".into(),
                        "DirectoryName".into(),
                    ],
                }
            )),
            r#"certificate name mismatch: not valid for "api.example", only for web.example, 10.0.0.1, DirectoryName"#
        );
    }
}
