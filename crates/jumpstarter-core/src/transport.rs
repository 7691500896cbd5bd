//! How a client reaches a session: target strings, connections, channels.
//!
//! `JUMPSTARTER_HOST` is either a unix socket path or `host:port` (protocol notes §2.5: TCP
//! when the part after the last `:` is a port number 1..65535).
//!
//! The gRPC channel is a bare HTTP/2 connection ([`H2Channel`]) driven by one task: no
//! connection pool and no request buffer task in between, which keeps a call's round trip to a
//! couple of context switches.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::session::{CONNECTION_WINDOW, MAX_FRAME_SIZE, STREAM_WINDOW};

/// Where a session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Tcp { host: String, port: u16 },
}

impl Target {
    /// Parses a `JUMPSTARTER_HOST` value.
    pub fn parse(s: &str) -> Target {
        let s = s.strip_prefix("unix://").unwrap_or(s);
        if let Some((host, port)) = s.rsplit_once(':')
            && let Ok(port) = port.parse::<u16>()
            && port != 0
        {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            return Target::Tcp {
                host: host.to_owned(),
                port,
            };
        }
        Target::Unix(PathBuf::from(s))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "{}", p.display()),
            Target::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Tcp { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// A gRPC channel over one HTTP/2 connection.
#[derive(Clone)]
pub struct H2Channel {
    send: http2::SendRequest<tonic::body::Body>,
}

impl std::fmt::Debug for H2Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Channel").finish_non_exhaustive()
    }
}

impl H2Channel {
    /// Runs the HTTP/2 client handshake over `io` and spawns the connection task.
    pub async fn handshake<IO>(io: IO) -> Result<H2Channel, hyper::Error>
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (send, conn) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME_SIZE)
            .handshake(TokioIo::new(io))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("session connection ended: {e}");
            }
        });
        Ok(H2Channel { send })
    }

    /// Connects to a target (plaintext; TLS targets are handled by the caller's IO).
    pub async fn connect(target: &Target) -> std::io::Result<H2Channel> {
        match target {
            Target::Unix(path) => {
                let io = tokio::net::UnixStream::connect(path).await?;
                Self::handshake(io).await.map_err(std::io::Error::other)
            }
            Target::Tcp { host, port } => {
                let io = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                io.set_nodelay(true)?;
                Self::handshake(io).await.map_err(std::io::Error::other)
            }
        }
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for H2Channel {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.send.send_request(req))
    }
}

/// The origin put on requests (`:authority` has no meaning to a session).
pub fn origin() -> http::Uri {
    http::Uri::from_static("http://localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_parsing_follows_upstream() {
        assert_eq!(
            Target::parse("/tmp/x/socket"),
            Target::Unix("/tmp/x/socket".into())
        );
        assert_eq!(
            Target::parse("127.0.0.1:1909"),
            Target::Tcp {
                host: "127.0.0.1".into(),
                port: 1909
            }
        );
        assert_eq!(
            Target::parse("[::1]:80"),
            Target::Tcp {
                host: "::1".into(),
                port: 80
            }
        );
        // Not a port: a socket path that happens to contain a colon.
        assert_eq!(Target::parse("/tmp/a:b"), Target::Unix("/tmp/a:b".into()));
        assert_eq!(Target::parse("/tmp/a:0"), Target::Unix("/tmp/a:0".into()));
        assert_eq!(
            Target::parse("/tmp/a:70000"),
            Target::Unix("/tmp/a:70000".into())
        );
        assert_eq!(
            Target::parse("unix:///run/s"),
            Target::Unix("/run/s".into())
        );
        assert_eq!(Target::parse("[::1]:80").to_string(), "[::1]:80");
    }
}
