//! Why observing failed, typed. Each error's text is for people (a sample's detail, a Ready
//! remark, a webhook's failure); [`reason`](ExchangeError::reason) is stable, for metric labels
//! and Events. No error repeats a URL or a header value: either may come from a Secret.

use super::reach::Unreachable;

/// Why a request (a probe, a webhook's POST) got no answer to judge.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("the URL is neither http nor https")]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
    #[error("{0:?} is not host:port")]
    NotHostPort(String),
    /// The header's name (never its value).
    #[error("the value of header {0} is not a valid header value")]
    HeaderValue(String),
    #[error("the request cannot be built: {0}")]
    Request(String),
    #[error("{0}")]
    Unreachable(#[from] Unreachable),
    #[error("an https URL without TLS settings")]
    NoTls,
    #[error("the URL's host is not a valid TLS server name")]
    ServerName,
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// The connection, the TLS handshake or HTTP failed: described for people.
    #[error("{0}")]
    Transport(String),
    #[error("response body could not be read: {0}")]
    Body(String),
}

impl ExchangeError {
    /// A stable name for the kind of failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidUrl(_) | Self::Scheme | Self::NoHost | Self::NotHostPort(_) => "InvalidURL",
            Self::HeaderValue(_) | Self::Request(_) => "InvalidRequest",
            Self::Unreachable(Unreachable::Refused(_)) => "AddressRefused",
            Self::Unreachable(Unreachable::Unresolved(_)) => "NameNotResolved",
            Self::Unreachable(Unreachable::Connect(_)) => "ConnectFailed",
            Self::NoTls | Self::ServerName | Self::Tls(_) => "TLSConfig",
            Self::Transport(_) => "Transport",
            Self::Body(_) => "BodyUnreadable",
        }
    }
}

/// Why a TLS client configuration cannot be built from a policy's settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("tls.ca cannot be used: {0}")]
    Ca(String),
    #[error("tls.ca is not valid PEM: {0}")]
    CaPem(String),
    #[error("tls.ca holds no usable certificate")]
    CaEmpty,
    #[error("system trust roots could not be loaded: {0}")]
    SystemRoots(String),
    #[error("tls.serverName {0:?} is not a valid DNS name or IP address")]
    ServerName(String),
    #[error("TLS settings cannot be used: {0}")]
    Settings(String),
}

/// Which of a policy's response conditions a body failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyMismatch {
    #[error("body does not match {0:?}")]
    NoMatch(String),
    #[error("body matches {0:?}")]
    Matches(String),
    #[error("body is not JSON ({0})")]
    NotJson(String),
    #[error("JSON field {0} is missing")]
    Missing(String),
    #[error("JSON field {pointer} is {actual:?}, expected {expected:?}")]
    Differs {
        pointer: String,
        actual: String,
        expected: String,
    },
}

impl BodyMismatch {
    /// A stable name for the kind of mismatch.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoMatch(_) => "BodyNotMatched",
            Self::Matches(_) => "BodyMatched",
            Self::NotJson(_) => "BodyNotJSON",
            Self::Missing(_) | Self::Differs { .. } => "JSONFieldDiffers",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_stable_and_texts_name_no_secret() {
        let cases: [(ExchangeError, &str, &str); 6] = [
            (
                ExchangeError::Scheme,
                "InvalidURL",
                "the URL is neither http nor https",
            ),
            (
                ExchangeError::HeaderValue("Authorization".into()),
                "InvalidRequest",
                "the value of header Authorization is not a valid header value",
            ),
            (
                ExchangeError::Unreachable(Unreachable::Connect(
                    std::io::ErrorKind::ConnectionRefused.into(),
                )),
                "ConnectFailed",
                "connection refused",
            ),
            (
                TlsError::CaEmpty.into(),
                "TLSConfig",
                "tls.ca holds no usable certificate",
            ),
            (
                ExchangeError::Transport("connection reset".into()),
                "Transport",
                "connection reset",
            ),
            (
                ExchangeError::Body("connection reset".into()),
                "BodyUnreadable",
                "response body could not be read: connection reset",
            ),
        ];
        for (error, reason, text) in cases {
            assert_eq!(error.reason(), reason, "{error}");
            assert_eq!(error.to_string(), text);
        }
        let differs = BodyMismatch::Differs {
            pointer: "/status".into(),
            actual: "down".into(),
            expected: "up".into(),
        };
        assert_eq!(
            differs.to_string(),
            r#"JSON field /status is "down", expected "up""#
        );
        assert_eq!(differs.reason(), "JSONFieldDiffers");
    }
}
