//! The target farm: N HTTP "pods" on distinct loopback addresses (127.1.b.h, one listener each,
//! all on one port; the whole 127.0.0.0/8 routes to `lo`). Each answers any request (the operator
//! and blackbox_exporter ask for `GET /healthz`) with 200 at once, or 503 once switched to failing,
//! and counts its requests; the farm counts accepted connections, so connection reuse shows.
//! Connections are closed after [`KEEP_ALIVE`].
//!
//! The farm runs in a child process of its own ([`Farm`] is the handle; the child serves
//! [`Targets`] and a control endpoint): its 10,000 listeners and their connections then have the
//! child's whole open-files limit, and the API test server's connections (thousands while an
//! operator starts with thousands of policies) the bench's.

use std::{
    convert::Infallible,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{Result, client::Client};

/// How long a connection is kept open (then closed once no request is in flight): a short
/// keep-alive timeout, as servers have. Without it, a prober that keeps idle connections to 10,000
/// targets would make the farm hold 10,000 more sockets than listeners, past the 20,000 open files
/// a process may have here. Each target is probed once per period (10 s), so a probe never finds
/// its previous connection still open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// Targets per /24 block: hosts .1 to .250 of 127.1.b.0.
const PER_BLOCK: usize = 250;

/// The address of target `i`: 127.1.(i / 250).(i % 250 + 1).
pub fn address(i: usize) -> Result<Ipv4Addr> {
    let block =
        u8::try_from(i / PER_BLOCK).map_err(|_| format!("target {i} is past the farm's address range"))?;
    let host = u8::try_from(i % PER_BLOCK + 1).map_err(|_| "host octet out of range")?;
    Ok(Ipv4Addr::new(127, 1, block, host))
}

#[derive(Default)]
struct Target {
    requests: AtomicU64,
    failing: AtomicBool,
}

pub struct Targets {
    port: u16,
    targets: Arc<Vec<Target>>,
    connections: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Targets {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Targets {
    /// Binds `count` targets on one port (found by binding the first on port 0; retried when that
    /// port is taken on another address) and starts serving them.
    pub async fn start(count: usize) -> Result<Targets> {
        let mut last_error = String::new();
        for _ in 0..10 {
            match bind_all(count).await {
                Ok((port, listeners)) => return Ok(Self::serve(port, listeners)),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(format!("cannot bind {count} farm targets on one port: {last_error}").into())
    }

    fn serve(port: u16, listeners: Vec<TcpListener>) -> Targets {
        let targets: Arc<Vec<Target>> = Arc::new(listeners.iter().map(|_| Target::default()).collect());
        let connections = Arc::new(AtomicU64::new(0));
        let tasks = listeners
            .into_iter()
            .enumerate()
            .map(|(i, listener)| tokio::spawn(accept(listener, i, targets.clone(), connections.clone())))
            .collect();
        Targets {
            port,
            targets,
            connections,
            tasks,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Requests answered so far, per target.
    pub fn counts(&self) -> Vec<u64> {
        self.targets
            .iter()
            .map(|t| t.requests.load(Ordering::Relaxed))
            .collect()
    }

    /// Connections accepted so far, all targets together.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Makes target `i` answer 503 (or 200 again).
    pub fn set_failing(&self, i: usize, failing: bool) {
        if let Some(t) = self.targets.get(i) {
            t.failing.store(failing, Ordering::Relaxed);
        }
    }

    /// Every target answers 200.
    pub fn heal_all(&self) {
        for t in self.targets.iter() {
            t.failing.store(false, Ordering::Relaxed);
        }
    }
}

async fn bind_all(count: usize) -> Result<(u16, Vec<TcpListener>)> {
    let first = TcpListener::bind(SocketAddr::new(address(0)?.into(), 0)).await?;
    let port = first.local_addr()?.port();
    let mut listeners = Vec::with_capacity(count);
    listeners.push(first);
    for i in 1..count {
        let addr = SocketAddr::new(address(i)?.into(), port);
        listeners.push(
            TcpListener::bind(addr)
                .await
                .map_err(|e| format!("bind {addr}: {e}"))?,
        );
    }
    Ok((port, listeners))
}

async fn accept(listener: TcpListener, i: usize, targets: Arc<Vec<Target>>, connections: Arc<AtomicU64>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors, say: back off instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        connections.fetch_add(1, Ordering::Relaxed);
        let targets = targets.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req: Request<Incoming>| {
                let failing = targets.get(i).is_some_and(|t| {
                    t.requests.fetch_add(1, Ordering::Relaxed);
                    t.failing.load(Ordering::Relaxed)
                });
                async move {
                    let mut response = Response::new(Full::new(Bytes::from_static(if failing {
                        b"failing\n"
                    } else {
                        b"ok\n"
                    })));
                    if failing {
                        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = tokio::time::sleep(KEEP_ALIVE) => {
                    // Finishes a request in flight, then closes.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
}

/// The child's side: serves `count` targets and a control endpoint on 127.0.0.1, prints
/// `TARGET_PORT CONTROL_PORT` on a line of stdout, and runs until stdin closes (the parent exited).
/// Control: `GET /counts` (requests per target, comma-separated, then a line with the connections
/// accepted), `GET /heal` (every target answers 200), `GET /fail?target=I&on=1|0`.
pub async fn serve_child(count: usize) -> Result<()> {
    let targets = Arc::new(Targets::start(count).await?);
    let control = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    println!("{} {}", targets.port(), control.local_addr()?.port());
    use std::io::Write as _;
    std::io::stdout().flush()?;
    let serve = async move {
        loop {
            let Ok((stream, _)) = control.accept().await else {
                continue;
            };
            let targets = targets.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let body = control_answer(&targets, req.uri().path(), req.uri().query().unwrap_or(""));
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    };
    let parent_gone = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    });
    tokio::select! {
        _ = serve => {}
        _ = parent_gone => {}
    }
    Ok(())
}

fn control_answer(targets: &Targets, path: &str, query: &str) -> String {
    match path {
        "/counts" => {
            let counts: Vec<String> = targets.counts().iter().map(u64::to_string).collect();
            format!("{}\n{}\n", counts.join(","), targets.connections())
        }
        "/heal" => {
            targets.heal_all();
            "ok\n".into()
        }
        "/fail" => {
            let param = |key: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|v| v.parse::<usize>().ok())
            };
            match param("target") {
                Some(i) => {
                    targets.set_failing(i, param("on") != Some(0));
                    "ok\n".into()
                }
                None => "no target\n".into(),
            }
        }
        _ => "unknown\n".into(),
    }
}

/// What the farm has answered so far.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Requests answered, per target.
    pub requests: Vec<u64>,
    /// Connections accepted, all targets together.
    pub connections: u64,
}

impl Counts {
    /// Requests answered by the first `targets` targets.
    pub fn total(&self, targets: usize) -> u64 {
        self.requests.iter().take(targets).sum()
    }
}

/// The farm as seen by the bench: a child process (this same program with `--serve-farm N`),
/// killed when dropped.
pub struct Farm {
    child: std::process::Child,
    port: u16,
    control: String,
    len: usize,
    client: Client,
}

impl Drop for Farm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Farm {
    pub async fn start(count: usize) -> Result<Farm> {
        use std::io::BufRead as _;
        use std::process::{Command, Stdio};
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--serve-farm")
            .arg(count.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the farm: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout from the farm")?;
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await??;
        let mut ports = line.split_whitespace().map(str::parse::<u16>);
        let (Some(Ok(port)), Some(Ok(control))) = (ports.next(), ports.next()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the farm did not start: {:?}", line.trim()).into());
        };
        Ok(Farm {
            child,
            port,
            control: format!("http://127.0.0.1:{control}"),
            len: count,
            client: Client::new(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn control(&self, path: &str) -> Result<String> {
        let (status, body) = self
            .client
            .get(&format!("{}{path}", self.control), Duration::from_secs(10))
            .await?;
        if status != 200 {
            return Err(format!("farm control {path}: {status}").into());
        }
        Ok(body)
    }

    pub async fn counts(&self) -> Result<Counts> {
        let body = self.control("/counts").await?;
        let mut lines = body.lines();
        let requests = lines
            .next()
            .unwrap_or_default()
            .split(',')
            .filter(|v| !v.is_empty())
            .map(str::parse::<u64>)
            .collect::<Result<Vec<_>, _>>()?;
        let connections = lines.next().unwrap_or("0").trim().parse()?;
        Ok(Counts {
            requests,
            connections,
        })
    }

    /// Every target answers 200.
    pub async fn heal_all(&self) -> Result<()> {
        self.control("/heal").await.map(|_| ())
    }

    /// Makes target `i` answer 503 (or 200 again).
    pub async fn set_failing(&self, i: usize, failing: bool) -> Result<()> {
        self.control(&format!("/fail?target={i}&on={}", u8::from(failing)))
            .await
            .map(|_| ())
    }
}
