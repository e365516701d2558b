//! An API server that cannot be reached: while [`crate::TestServer::set_reachable`] is off, every
//! open connection is cut (its next read or write fails with a reset) and new connections are
//! closed as soon as they are accepted, so clients see transport errors, not HTTP answers.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A listener whose connections end while the server is unreachable.
pub struct Switched {
    listener: TcpListener,
    reachable: watch::Receiver<bool>,
}

impl Switched {
    pub fn new(listener: TcpListener, reachable: watch::Receiver<bool>) -> Self {
        Self { listener, reachable }
    }
}

impl axum::serve::Listener for Switched {
    type Io = Line;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                // Unreachable: the connection is dropped at once (the client reads end of file).
                Ok(_) if !*self.reachable.borrow() => {}
                Ok((stream, addr)) => return (Line::new(stream, self.reachable.clone()), addr),
                // Out of file descriptors and the like: wait a moment, as axum's own listener does.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// One connection; it fails from the moment the server becomes unreachable.
pub struct Line {
    stream: TcpStream,
    cut: Pin<Box<dyn Future<Output = ()> + Send>>,
    dead: bool,
}

impl Line {
    fn new(stream: TcpStream, mut reachable: watch::Receiver<bool>) -> Self {
        let cut = Box::pin(async move {
            // Also ends when the server is dropped (the sender is gone).
            let _ = reachable.wait_for(|up| !*up).await;
        });
        Self {
            stream,
            cut,
            dead: false,
        }
    }

    /// Whether the line has been cut (registers for the wake-up otherwise).
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.dead && self.cut.as_mut().poll(cx).is_ready() {
            self.dead = true;
        }
        if self.dead {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the API server is unreachable",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for Line {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Line {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
