//! Shared test support: bounded waits and misbehaving HTTP servers on loopback.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Polls `check` until it returns Some, or fails the test after `limit` (real time).
pub async fn wait_until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Checks `check` now and after each change the test server reports, until it returns Some, or
/// fails the test after `limit` (real time): a wait on the server's state that ends on the change
/// it waits for, not on the next poll.
pub async fn wait_on_changes<T>(
    what: &str,
    limit: Duration,
    mut changes: apphealth_testserver::Changes,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        tokio::select! {
            () = changes.next() => {}
            () = tokio::time::sleep_until(deadline) => {
                return check().unwrap_or_else(|| panic!("timed out after {limit:?} waiting for {what}"));
            }
        }
    }
}

/// GET `path` from `addr` over plain HTTP/1.1: the status code and the body (None if nothing
/// answered).
pub async fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

/// A listener on loopback that only counts the connections it accepts (and drops them): for
/// asserting that nothing ever connected.
pub struct CountingListener {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CountingListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CountingListener {
    /// On 127.0.0.1, at a free port.
    pub async fn start() -> Self {
        Self::bind("127.0.0.1:0".parse().unwrap()).await
    }

    /// On `addr`, which must be a loopback address.
    pub async fn bind(addr: SocketAddr) -> Self {
        assert!(addr.ip().is_loopback(), "tests listen on loopback only: {addr}");
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self { addr, accepted, task }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// How a test server answers.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    Status(u16),
    /// 200 after a delay.
    Slow(Duration),
    /// Accept, read the request, never answer.
    Hang,
    /// Accept, read the request, reset the connection.
    Reset,
    /// 200 with a body that never ends.
    EndlessBody,
    /// 302 to `location`.
    Redirect(&'static str),
    /// 200 echoing the request head in the body... and recording it.
    Echo,
    /// A 200 answer sent one byte at a time, this long apart.
    Trickle(Duration),
    /// Bytes that are not HTTP.
    Garbage,
}

/// A raw HTTP/1.1 server on 127.0.0.1 that misbehaves on purpose.
pub struct BadServer {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub last_request: Arc<std::sync::Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BadServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BadServer {
    pub async fn start(behaviour: Behaviour) -> Self {
        Self::bind("127.0.0.1:0".parse().unwrap(), behaviour).await
    }

    /// On `addr`, which must be a loopback address.
    pub async fn bind(addr: SocketAddr, behaviour: Behaviour) -> Self {
        assert!(addr.ip().is_loopback(), "tests listen on loopback only: {addr}");
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let last_request = Arc::new(std::sync::Mutex::new(String::new()));
        let (h, l) = (hits.clone(), last_request.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (h, l) = (h.clone(), l.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, behaviour, h, l).await;
                });
            }
        });
        Self {
            addr,
            hits,
            last_request,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&byte[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

async fn serve(
    mut stream: TcpStream,
    behaviour: Behaviour,
    hits: Arc<AtomicUsize>,
    last: Arc<std::sync::Mutex<String>>,
) -> std::io::Result<()> {
    let head = read_head(&mut stream).await?;
    hits.fetch_add(1, Ordering::SeqCst);
    *last.lock().unwrap() = head.clone();
    match behaviour {
        Behaviour::Status(code) => {
            let resp =
                format!("HTTP/1.1 {code} Whatever\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello");
            stream.write_all(resp.as_bytes()).await?;
        }
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await?;
        }
        Behaviour::Hang => {
            std::future::pending::<()>().await;
        }
        Behaviour::Trickle(gap) => {
            for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok" {
                stream.write_all(&[*byte]).await?;
                tokio::time::sleep(gap).await;
            }
        }
        Behaviour::Garbage => {
            stream
                .write_all(b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02 not http at all\r\n\r\n")
                .await?;
        }
        Behaviour::Reset => {
            // A zero linger makes the close a TCP reset, which is the point of this behaviour.
            #[allow(deprecated)]
            stream.set_linger(Some(Duration::ZERO))?;
            drop(stream);
        }
        Behaviour::EndlessBody => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .await?;
            let chunk = format!("{:x}\r\n{}\r\n", 8192, "x".repeat(8192));
            loop {
                stream.write_all(chunk.as_bytes()).await?;
            }
        }
        Behaviour::Redirect(location) => {
            let resp = format!(
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            stream.write_all(resp.as_bytes()).await?;
        }
        Behaviour::Echo => {
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{head}",
                head.len()
            );
            stream.write_all(resp.as_bytes()).await?;
        }
    }
    Ok(())
}

/// A test certificate authority on the fly; its PEM goes into `TlsOptions::ca_pem`.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A certificate chain and its key, for a TLS server.
pub struct ServerIdentity {
    pub chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub key: rustls::pki_types::PrivateKeyDer<'static>,
}

/// Validity of a test certificate: (year, month, day) of notBefore and notAfter, at midnight UTC.
pub type Validity = ((i32, u8, u8), (i32, u8, u8));

/// Valid from 2020 until 2100: good for as long as these tests will run.
pub const VALID: Validity = ((2020, 1, 1), (2100, 1, 1));
/// Expired at the start of 2021.
pub const EXPIRED: Validity = ((2020, 1, 1), (2021, 1, 1));

fn leaf_params(names: &[&str], validity: Validity) -> rcgen::CertificateParams {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    let ((by, bm, bd), (ay, am, ad)) = validity;
    params.not_before = rcgen::date_time_ymd(by, bm, bd);
    params.not_after = rcgen::date_time_ymd(ay, am, ad);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "apphealth test server");
    params
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "apphealth test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        Self {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (DNS names or IPs), signed by this CA.
    pub fn issue(&self, names: &[&str], validity: Validity) -> ServerIdentity {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = leaf_params(names, validity)
            .signed_by(&key, &self.issuer)
            .unwrap();
        ServerIdentity {
            chain: vec![cert.der().clone()],
            key: rustls::pki_types::PrivatePkcs8KeyDer::from(key).into(),
        }
    }
}

impl ServerIdentity {
    /// A certificate that signs itself: trusted by nobody.
    pub fn self_signed(names: &[&str], validity: Validity) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = leaf_params(names, validity).self_signed(&key).unwrap();
        Self {
            chain: vec![cert.der().clone()],
            key: rustls::pki_types::PrivatePkcs8KeyDer::from(key).into(),
        }
    }
}

/// What an [`AnsweringServer`] answers to every request.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    pub fn ok(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            content_type: "text/plain",
            body: body.into(),
        }
    }

    pub fn json(body: impl Into<String>) -> Self {
        Self {
            content_type: "application/json",
            ..Self::ok(body)
        }
    }
}

/// A well-behaved HTTP/1.1 server on 127.0.0.1, plain or TLS, that gives one fixed answer and
/// records each request in full (head and body, as text).
pub struct AnsweringServer {
    pub addr: SocketAddr,
    pub requests: Arc<std::sync::Mutex<Vec<String>>>,
    /// Connections whose TLS handshake the server completed.
    pub handshakes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AnsweringServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AnsweringServer {
    pub async fn plain(answer: Answer) -> Self {
        Self::start(answer, None).await
    }

    pub async fn tls(answer: Answer, identity: ServerIdentity) -> Self {
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(identity.chain, identity.key)
                .unwrap();
        Self::start(answer, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start(answer: Answer, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let (r, h) = (requests.clone(), handshakes.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (answer, tls, r, h) = (answer.clone(), tls.clone(), r.clone(), h.clone());
                tokio::spawn(async move {
                    // A handshake the client rejects ends here, as it should.
                    let _ = match tls {
                        None => answer_one(stream, &answer, &r).await,
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => {
                                h.fetch_add(1, Ordering::SeqCst);
                                answer_one(stream, &answer, &r).await
                            }
                            Err(e) => Err(e),
                        },
                    };
                });
            }
        });
        Self {
            addr,
            requests,
            handshakes,
            task,
        }
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    pub fn last_request(&self) -> Option<String> {
        self.requests.lock().unwrap().last().cloned()
    }
}

async fn answer_one<S>(
    mut stream: S,
    answer: &Answer,
    requests: &std::sync::Mutex<Vec<String>>,
) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    requests
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&buf).into_owned());
    let resp = format!(
        "HTTP/1.1 {} Whatever\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
        answer.status,
        answer.content_type,
        answer.body.len(),
        answer.body
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}

/// A listener on 127.0.0.1 whose accept queue is full, so a further connection attempt gets no
/// answer at all: its SYN is dropped and it would only be retried after a second. Linux only:
/// the queue length is read from /proc/net/tcp, so the test waits on the fact, not on time.
#[cfg(target_os = "linux")]
pub struct Unanswering {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _queued: TcpStream,
}

#[cfg(target_os = "linux")]
impl Unanswering {
    pub async fn start() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        // A backlog of 0 holds one connection; the next is dropped until that one is accepted.
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let queued = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .expect("the first connection to a backlog-0 listener is queued (needs tcp_syncookies)")
            .unwrap();
        wait_until("the accept queue to fill", Duration::from_secs(5), || async {
            (accept_queue_len(addr) >= 1).then_some(())
        })
        .await;
        Self {
            addr,
            _listener: listener,
            _queued: queued,
        }
    }
}

/// The accept queue length of the IPv4 listener on `addr`: for a listening socket the
/// rx_queue column of /proc/net/tcp counts connections waiting to be accepted.
#[cfg(target_os = "linux")]
fn accept_queue_len(addr: SocketAddr) -> usize {
    let local = format!("0100007F:{:04X}", addr.port());
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 4 && f[1] == local && f[3] == "0A")
        .and_then(|f| f[4].split(':').nth(1).map(str::to_owned))
        .and_then(|rx| usize::from_str_radix(&rx, 16).ok())
        .unwrap_or(0)
}

/// Reconciles the operator has finished, from its metrics.
pub fn reconciles(metrics: &apphealth_operator::metrics::Metrics) -> u64 {
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("apphealth_reconcile_duration_seconds_count "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The value of gauge `name` in the operator's metrics (0 while absent).
pub fn gauge(metrics: &apphealth_operator::metrics::Metrics, name: &str) -> i64 {
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Condition `type_` of a policy (as JSON), if it has one.
pub fn condition<'a>(policy: &'a serde_json::Value, type_: &str) -> Option<&'a serde_json::Value> {
    policy["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// The message of a policy's RemediationBlocked condition (the test fails without one).
pub fn blocked_message(policy: &serde_json::Value) -> String {
    condition(policy, "RemediationBlocked").expect("a RemediationBlocked condition")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Merges `patch` into `target` as a JSON merge patch does: objects key by key, a null removes.
pub fn merge(target: &mut serde_json::Value, patch: serde_json::Value) {
    use serde_json::Value;
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}
