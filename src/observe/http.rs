//! One HTTP exchange over a connection of its own, as the kubelet probes: connect, TLS for https,
//! one request with `Connection: close`, a bounded read of the body, and the connection dropped.
//! A reused connection would hide an application that no longer accepts new ones. Driven by
//! hyper's connection-level client: no pool, no proxy, redirects are answers like any other. The
//! connection is opened by [`Reach::connect`], which refuses what the operator must never reach.

use std::sync::Arc;

use bytes::Bytes;
use http::{
    HeaderValue, Request, Uri,
    header::{CONNECTION, HOST, USER_AGENT},
};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, pki_types::ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{
    error::ExchangeError,
    reach::Reach,
    request::{HttpRequest, Sensitive},
};
use crate::api::Method;

/// Bytes of a response body read at most; the rest is discarded with the connection.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

const AGENT: &str = concat!("apphealth-operator/", env!("CARGO_PKG_VERSION"));

/// What an exchange produced, before judging.
pub struct Exchange {
    pub code: u16,
    pub body: Vec<u8>,
    pub certificate_not_after: Option<jiff::Timestamp>,
}

/// What one exchange sends: a probe's request, or a webhook's.
pub struct Outgoing<'a> {
    pub url: &'a str,
    pub method: Method,
    /// Values are never shown: they may come from Secrets.
    pub headers: &'a [(String, Sensitive)],
    pub body: Option<&'a str>,
}

impl<'a> From<&'a HttpRequest> for Outgoing<'a> {
    fn from(req: &'a HttpRequest) -> Self {
        Self {
            url: &req.url,
            method: req.method,
            headers: &req.headers,
            body: req.body.as_deref(),
        }
    }
}

/// Where a URL points.
pub struct Destination {
    pub https: bool,
    /// The host without IPv6 brackets.
    pub host: String,
    pub port: u16,
    authority: String,
    path: String,
}

/// Where `url` points. Errors do not repeat the URL: a webhook's is kept in a Secret.
pub fn destination(url: &str) -> Result<Destination, ExchangeError> {
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| ExchangeError::InvalidUrl(e.to_string()))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(ExchangeError::Scheme),
    };
    let authority = uri.authority().ok_or(ExchangeError::NoHost)?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(Destination {
        https,
        port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
        authority: authority.as_str().to_owned(),
        path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        host,
    })
}

fn request(req: &Outgoing<'_>, to: &Destination) -> Result<Request<Full<Bytes>>, ExchangeError> {
    let method = http::Method::from_bytes(req.method.as_str().as_bytes()).unwrap_or(http::Method::GET);
    let mut builder = Request::builder()
        .method(method)
        .uri(to.path.as_str())
        .header(HOST, to.authority.as_str())
        .header(USER_AGENT, AGENT)
        .header(CONNECTION, "close");
    for (name, value) in req.headers {
        // The value is never part of an error: it may come from a Secret.
        let mut value =
            HeaderValue::from_str(value.expose()).map_err(|_| ExchangeError::HeaderValue(name.clone()))?;
        value.set_sensitive(true);
        builder = builder.header(name.as_str(), value);
    }
    let body = req
        .body
        .map(|b| Bytes::copy_from_slice(b.as_bytes()))
        .unwrap_or_default();
    builder
        .body(Full::new(body))
        .map_err(|e| ExchangeError::Request(e.to_string()))
}

/// Sends `req` over a new connection, if `reach` allows its address; `tls` is the client
/// configuration for https URLs. Errors never contain the URL.
pub async fn exchange(
    reach: &Reach,
    req: &Outgoing<'_>,
    tls: Option<Arc<ClientConfig>>,
) -> Result<Exchange, ExchangeError> {
    let to = destination(req.url)?;
    let request = request(req, &to)?;
    let tcp = reach.connect(&to.host, to.port).await?;
    let _ = tcp.set_nodelay(true);
    if !to.https {
        return over(tcp, request, None).await;
    }
    let config = tls.ok_or(ExchangeError::NoTls)?;
    let name = ServerName::try_from(to.host.clone()).map_err(|_| ExchangeError::ServerName)?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| ExchangeError::Transport(describe(&e)))?;
    let not_after = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| super::tls::certificate_not_after(cert.as_ref()));
    over(stream, request, not_after).await
}

/// The exchange proper, on a connected stream.
async fn over<S>(
    stream: S,
    request: Request<Full<Bytes>>,
    certificate_not_after: Option<jiff::Timestamp>,
) -> Result<Exchange, ExchangeError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ExchangeError::Transport(describe(&e)))?;
    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ExchangeError::Transport(describe(&e)))?;
        let code = response.status().as_u16();
        // Read a bounded prefix of the body; a larger body is cut off (the connection is
        // dropped, not read to the end).
        let mut body = Vec::new();
        let mut incoming = response.into_body();
        while body.len() < MAX_BODY_BYTES {
            match incoming.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        body.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(ExchangeError::Body(describe(&e))),
                None => break,
            }
        }
        body.truncate(MAX_BODY_BYTES);
        Ok(Exchange {
            code,
            body,
            certificate_not_after,
        })
    };
    // The connection is driven beside the exchange, in this task: no task per probe.
    tokio::pin!(exchange, connection);
    tokio::select! {
        biased;
        done = &mut exchange => done,
        ended = &mut connection => match ended {
            Err(e) => Err(ExchangeError::Transport(describe(&e))),
            Ok(()) => exchange.await,
        },
    }
}

/// A short, human description of a transport error: "connection refused", "connection reset",
/// "TLS handshake failed: certificate expired at 2021-01-01T00:00:00Z", "invalid HTTP response".
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost: &dyn std::error::Error = e;
    let mut io = None;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return format!("TLS handshake failed: {}", super::tls::describe(tls));
        }
        innermost = err;
        // An I/O error's `source()` skips the error it wraps (rustls reports certificate
        // problems that way, sometimes wrapped twice), so step into it explicitly.
        next = match err.downcast_ref::<std::io::Error>() {
            Some(e) => {
                io = Some(e);
                e.get_ref()
                    .map(|inner| inner as &(dyn std::error::Error + 'static))
            }
            None => err.source(),
        };
    }
    if let Some(io) = io {
        return super::reach::describe_io(io);
    }
    if let Some(h) = e.downcast_ref::<hyper::Error>() {
        if h.is_incomplete_message() {
            return "connection closed before a response".into();
        }
        if h.is_parse() || h.is_parse_status() {
            return format!("invalid HTTP response: {h}");
        }
    }
    format!("request failed: {innermost}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_read_from_urls() {
        let cases = [
            (
                "http://10.0.0.1:8080/healthz?x=1",
                Ok((false, "10.0.0.1", 8080, "/healthz?x=1")),
            ),
            ("https://[fd00::1]/ready", Ok((true, "fd00::1", 443, "/ready"))),
            ("http://web.shop.svc", Ok((false, "web.shop.svc", 80, "/"))),
            ("ftp://10.0.0.1/", Err("neither http nor https")),
            ("http://", Err("invalid URL")),
        ];
        for (url, expected) in cases {
            let got = destination(url).map(|d| (d.https, d.host.clone(), d.port, d.path.clone()));
            match (got, expected) {
                (Ok(got), Ok((https, host, port, path))) => {
                    assert_eq!(got, (https, host.to_owned(), port, path.to_owned()), "{url}")
                }
                (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{url}: {e}"),
                (got, expected) => panic!("{url}: {:?} vs {expected:?}", got.map(|_| ())),
            }
        }
    }
}
