//! How a client reaches a session: target strings, connections, channels.
//!
//! `JUMPSTARTER_HOST` is either a unix socket path or `host:port` (protocol notes §2.5: TCP
//! when the part after the last `:` is a port number 1..65535).
//!
//! The gRPC channel is a bare HTTP/2 connection ([`H2Channel`]) driven by one task: no
//! connection pool and no request buffer task in between, which keeps a call's round trip to a
//! couple of context switches.
//!
//! [`H2Channel::dial`] reaches TCP targets in plaintext or over TLS ([`crate::tls`]) and can
//! attach the direct-mode passphrase (`x-jumpstarter-passphrase`) to every call. As upstream,
//! the passphrase is only ever sent to TCP targets, never over unix sockets.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use jumpstarter_config::{ChannelOptions, Endpoint, EndpointError};

use crate::tls;
use jumpstarter_protocol::wire::{CONNECTION_WINDOW, MAX_FRAME_SIZE, STREAM_WINDOW};

/// How long connecting (TCP and TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

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

    /// A controller or router endpoint, in grpc's target syntax ([`Endpoint::parse`]: `host`
    /// gets port 443, `dns:///host:port`, `[v6]:port`, `unix:PATH`, a scheme is dropped).
    pub fn endpoint(s: &str) -> Result<Target, EndpointError> {
        Ok(Endpoint::parse(s)?.into())
    }
}

impl From<Endpoint> for Target {
    fn from(e: Endpoint) -> Target {
        match e {
            Endpoint::Tcp { host, port } => Target::Tcp { host, port },
            Endpoint::Unix(path) => Target::Unix(path),
        }
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

/// How to reach a TCP target.
#[derive(Debug, Clone, Default)]
pub struct Dial {
    /// TLS client config; `None` is plaintext h2c.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Sent as `x-jumpstarter-passphrase` on every call (TCP targets only).
    pub passphrase: Option<String>,
}

/// Why a target could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("{0}")]
    Connect(#[source] std::io::Error),
    #[error("connection to {target} timed out after {secs} s", secs = CONNECT_TIMEOUT.as_secs())]
    Timeout { target: String },
    /// `message` is the failure in words ([`tls::explain_io`]).
    #[error("TLS handshake with {target} failed: {message}")]
    Tls {
        target: String,
        message: String,
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed and the server answers plaintext HTTP/2 instead.
    #[error("TLS handshake with {target} failed: the server speaks plaintext gRPC, not TLS")]
    Plaintext {
        target: String,
        message: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    TlsSetup(#[from] tls::TlsError),
    #[error("the passphrase must be printable ASCII text")]
    Passphrase,
    #[error("HTTP/2 handshake failed: {0}")]
    Http2(#[source] hyper::Error),
}

/// A gRPC channel over one HTTP/2 connection.
#[derive(Clone)]
pub struct H2Channel {
    send: http2::SendRequest<tonic::body::Body>,
    origin: http::Uri,
    /// Metadata added to every request (the passphrase).
    headers: Arc<HeaderMap>,
}

impl std::fmt::Debug for H2Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Channel")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl H2Channel {
    /// Runs the HTTP/2 client handshake over `io` and spawns the connection task.
    pub async fn handshake<IO>(io: IO) -> Result<H2Channel, hyper::Error>
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::handshake_with(io, origin(), HeaderMap::new(), None).await
    }

    /// [`H2Channel::handshake`] with the origin put on requests, metadata for every request,
    /// and optionally HTTP/2 keepalive pings (for TCP) as the channel options say.
    pub async fn handshake_with<IO>(
        io: IO,
        origin: http::Uri,
        headers: HeaderMap,
        keepalive: Option<&ChannelOptions>,
    ) -> Result<H2Channel, hyper::Error>
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME_SIZE);
        if let Some(o) = keepalive {
            builder
                .timer(TokioTimer::new())
                .keep_alive_interval(o.keepalive_time)
                .keep_alive_timeout(o.keepalive_timeout)
                .keep_alive_while_idle(o.keepalive_permit_without_calls);
        }
        let (send, conn) = builder.handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("session connection ended: {e}");
            }
        });
        Ok(H2Channel {
            send,
            origin,
            headers: Arc::new(headers),
        })
    }

    /// Connects to a target in plaintext, without a passphrase.
    pub async fn connect(target: &Target) -> std::io::Result<H2Channel> {
        Self::dial(target, &Dial::default())
            .await
            .map_err(|e| match e {
                DialError::Connect(e) => e,
                other => std::io::Error::other(other.to_string()),
            })
    }

    /// Connects to a target: unix sockets in plaintext; TCP targets in plaintext or TLS as
    /// `dial` says, with its passphrase.
    pub async fn dial(target: &Target, dial: &Dial) -> Result<H2Channel, DialError> {
        Self::dial_with_options(target, dial, &ChannelOptions::default()).await
    }

    /// [`H2Channel::dial`] with channel options from a config's `grpcOptions` (keepalive,
    /// TLS name override, authority); they apply to TCP targets only, as upstream's do.
    pub async fn dial_with_options(
        target: &Target,
        dial: &Dial,
        options: &ChannelOptions,
    ) -> Result<H2Channel, DialError> {
        match target {
            Target::Unix(path) => {
                let io = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(DialError::Connect)?;
                Self::handshake(io).await.map_err(DialError::Http2)
            }
            Target::Tcp { host, port } => {
                let mut headers = HeaderMap::new();
                if let Some(p) = &dial.passphrase {
                    let value = HeaderValue::from_str(p).map_err(|_| DialError::Passphrase)?;
                    headers.insert(jumpstarter_protocol::metadata::PASSPHRASE, value);
                }
                let shown = target.to_string();
                let connect = async {
                    let io: Box<dyn Io>;
                    let scheme;
                    let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                        .await
                        .map_err(DialError::Connect)?;
                    tcp.set_nodelay(true).map_err(DialError::Connect)?;
                    match &dial.tls {
                        None => (io, scheme) = (Box::new(tcp) as Box<dyn Io>, "http"),
                        Some(config) => {
                            let name = tls::server_name(
                                options.tls_server_name.as_deref().unwrap_or(host),
                            )?;
                            let tls = match tokio_rustls::TlsConnector::from(config.clone())
                                .connect(name, tcp)
                                .await
                            {
                                Ok(tls) => tls,
                                Err(source) => {
                                    let message = tls::explain_io(&source);
                                    let target = shown.clone();
                                    return Err(
                                        if is_protocol_failure(&source)
                                            && speaks_plaintext_h2(host, *port).await
                                        {
                                            DialError::Plaintext {
                                                target,
                                                message,
                                                source,
                                            }
                                        } else {
                                            DialError::Tls {
                                                target,
                                                message,
                                                source,
                                            }
                                        },
                                    );
                                }
                            };
                            (io, scheme) = (Box::new(tls) as Box<dyn Io>, "https");
                        }
                    }
                    Ok::<_, DialError>((io, scheme))
                };
                let (io, scheme) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                    .await
                    .map_err(|_| DialError::Timeout {
                        target: shown.clone(),
                    })??;
                let authority = options.authority.as_deref().unwrap_or(shown.as_str());
                let origin = http::Uri::builder()
                    .scheme(scheme)
                    .authority(authority)
                    .path_and_query("/")
                    .build()
                    .unwrap_or_else(|_| origin());
                Self::handshake_with(io, origin, headers, Some(options))
                    .await
                    .map_err(DialError::Http2)
            }
        }
    }

    /// The origin requests carry (`scheme://authority`).
    pub fn origin(&self) -> http::Uri {
        self.origin.clone()
    }

    /// Whether the connection is gone (no further request can succeed).
    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }
}

/// How long each probe of [`speaks_tls`] and [`speaks_plaintext_h2`] may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether a failed TLS handshake looks like a server that does not speak TLS at all (rather
/// than a certificate problem).
fn is_protocol_failure(e: &std::io::Error) -> bool {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(
            rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. },
        ) => true,
        Some(_) => false,
        None => true,
    }
}

/// Whether `host:port` answers the HTTP/2 connection preface with a SETTINGS frame in
/// plaintext (a `--tls-grpc-insecure` exporter). Used to explain a failed TLS handshake.
pub async fn speaks_plaintext_h2(host: &str, port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut tcp = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        tcp.write_all(&hello).await.ok()?;
        let mut head = [0u8; 9];
        tcp.read_exact(&mut head).await.ok()?;
        // A frame header: 24-bit length, type 4 (SETTINGS), stream 0.
        Some(head[3] == 4 && head[5..9] == [0, 0, 0, 0])
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, probe).await,
        Ok(Some(true))
    )
}

/// Whether `host:port` completes (or answers with an alert) a TLS handshake: a TLS exporter
/// that was dialled in plaintext. Used to explain a failed plaintext call.
pub async fn speaks_tls(host: &str, port: u16) -> bool {
    let probe = async {
        let config = tls::client_config(&tls::ServerTrust::AnyCertificate).ok()?;
        let name = tls::server_name(host).unwrap_or_else(|_| {
            rustls::pki_types::ServerName::from(std::net::IpAddr::from([127, 0, 0, 1]))
        });
        let tcp = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        match tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
        {
            Ok(_) => Some(true),
            Err(e) => Some(matches!(
                e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
                Some(rustls::Error::AlertReceived(_))
            )),
        }
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, probe).await,
        Ok(Some(true))
    )
}

/// A boxed byte stream (TCP or TLS over TCP).
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

impl tower::Service<http::Request<tonic::body::Body>> for H2Channel {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        for (k, v) in self.headers.iter() {
            req.headers_mut().insert(k, v.clone());
        }
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
