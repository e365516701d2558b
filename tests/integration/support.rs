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
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
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
