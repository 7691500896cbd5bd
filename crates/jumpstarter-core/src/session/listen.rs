//! Listener plumbing for sessions reached over TCP (direct mode): accepted connections with
//! optional TLS, and the passphrase check.
//!
//! * [`tcp_incoming`] turns a bound TCP listener into a stream of connections for
//!   [`Session::serve_incoming_with`](super::Session::serve_incoming_with). TLS handshakes run
//!   off the accept loop with a deadline: a peer that never finishes one, or offers the wrong
//!   certificate or protocol, costs one warning and nothing else.
//! * [`PassphraseLayer`] rejects every call without the right `x-jumpstarter-passphrase`
//!   metadata with UNAUTHENTICATED `invalid or missing passphrase` (upstream's status and text;
//!   the comparison takes the same time wherever the values differ). A session can be served on
//!   several listeners with different options: the exporter's hook socket skips the check so
//!   hooks can use `j` (upstream guards it too, bug B6).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// How long a TLS handshake may take before the connection is dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of one listener of a session.
#[derive(Debug, Clone, Default)]
pub struct ListenOptions {
    /// Require this passphrase on every call.
    pub passphrase: Option<String>,
    /// Send HTTP/2 keepalive pings, so connections of clients that vanished without closing
    /// (network gone, host down) are dropped. For TCP listeners.
    pub keepalive: bool,
}

/// Keepalive pings on TCP listeners: every minute, give up after 20 s without an answer.
pub const SERVER_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
pub const SERVER_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// An accepted connection (plain TCP or TLS over TCP).
pub struct ServerConn {
    io: Box<dyn Io>,
    peer: Option<SocketAddr>,
}

impl std::fmt::Debug for ServerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConn")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl ServerConn {
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }
}

impl tonic::transport::server::Connected for ServerConn {
    type ConnectInfo = Option<SocketAddr>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.peer
    }
}

impl AsyncRead for ServerConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServerConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Accepted connections of `listener`, through TLS when `tls` is given. The accept loop stops
/// (and the listening socket closes) when the returned stream is dropped.
pub fn tcp_incoming(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> ReceiverStream<Result<ServerConn, io::Error>> {
    let (tx, rx) = mpsc::channel::<Result<ServerConn, io::Error>>(16);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: say so, and do not spin.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            match &acceptor {
                None => {
                    tracing::debug!("connection from {peer}");
                    let conn = ServerConn {
                        io: Box::new(tcp),
                        peer: Some(peer),
                    };
                    if tx.send(Ok(conn)).await.is_err() {
                        return;
                    }
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let handshake =
                            tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                        match handshake.await {
                            Ok(Ok(tls)) => {
                                tracing::debug!("TLS connection from {peer}");
                                let conn = ServerConn {
                                    io: Box::new(tls),
                                    peer: Some(peer),
                                };
                                let _ = tx.send(Ok(conn)).await;
                            }
                            Ok(Err(e)) => {
                                tracing::warn!("TLS handshake with {peer} failed: {e}")
                            }
                            Err(_) => tracing::warn!(
                                "TLS handshake with {peer} timed out after {} s",
                                TLS_HANDSHAKE_TIMEOUT.as_secs()
                            ),
                        }
                    });
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// A tower layer checking the passphrase (or nothing, when it has none).
#[derive(Debug, Clone, Default)]
pub struct PassphraseLayer {
    passphrase: Option<Arc<str>>,
}

impl PassphraseLayer {
    pub fn new(passphrase: Option<&str>) -> Self {
        PassphraseLayer {
            passphrase: passphrase.map(Arc::from),
        }
    }
}

impl<S> tower::Layer<S> for PassphraseLayer {
    type Service = PassphraseGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PassphraseGuard {
            inner,
            passphrase: self.passphrase.clone(),
        }
    }
}

/// See [`PassphraseLayer`].
#[derive(Debug, Clone)]
pub struct PassphraseGuard<S> {
    inner: S,
    passphrase: Option<Arc<str>>,
}

impl<S, B, R> tower::Service<http::Request<B>> for PassphraseGuard<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = futures::future::Either<
        S::Future,
        futures::future::Ready<Result<Self::Response, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if let Some(expected) = &self.passphrase {
            let given = req
                .headers()
                .get(jumpstarter_protocol::metadata::PASSPHRASE)
                .map(|v| v.as_bytes());
            if !given.is_some_and(|g| constant_time_eq(g, expected.as_bytes())) {
                tracing::warn!(
                    "authentication failed: invalid or missing passphrase for method {}",
                    req.uri().path()
                );
                let response = tonic::Status::unauthenticated("invalid or missing passphrase")
                    .into_http::<R>();
                return futures::future::Either::Right(futures::future::ready(Ok(response)));
            }
        }
        futures::future::Either::Left(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
