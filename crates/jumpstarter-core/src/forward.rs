//! A local unix socket that relays every gRPC call to a remote session.
//!
//! `jmp shell --tls-grpc` reaches its exporter over TCP, possibly through TLS and with a
//! passphrase. `j` (ours and upstream's) and Python clients inside the shell get a plain unix
//! socket instead, which works for all of them whatever the exporter's transport (upstream
//! hands `j` the TCP address, which fails with TLS, bug B7, and cannot carry a passphrase over
//! unix sockets).
//!
//! The relay works at the HTTP/2 level: each request (any method: unary, server streaming, the
//! bidirectional `RouterService.Stream`) is sent on the shell's channel with its headers and
//! metadata (`request`, ...), its body streamed as it comes, and the response (headers such as
//! `resource` / `x_jmp_accept_encoding`, messages, trailers) streamed back. The channel adds
//! the passphrase. One HTTP/2 connection to the exporter carries every relayed call; when it
//! breaks, the next call dials again.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::transport::{DialError, H2Channel};
use jumpstarter_protocol::wire::{CONNECTION_WINDOW, MAX_FRAME_SIZE, STREAM_WINDOW};

/// Makes a new channel to the remote session.
pub type Connect = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<H2Channel, DialError>> + Send>> + Send + Sync,
>;

struct Upstream {
    connect: Connect,
    channel: tokio::sync::Mutex<Option<H2Channel>>,
}

impl Upstream {
    async fn channel(&self) -> Result<H2Channel, DialError> {
        let mut slot = self.channel.lock().await;
        if let Some(ch) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(ch.clone());
        }
        let ch = (self.connect)().await?;
        *slot = Some(ch.clone());
        Ok(ch)
    }
}

/// A running relay. Dropping it stops it and removes the socket file.
pub struct Forwarder {
    path: PathBuf,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// Listens on a new unix socket at `path`. `channel` is the connection to use first (the
    /// one the shell already checked); `connect` makes new ones.
    pub fn serve(path: &Path, channel: Option<H2Channel>, connect: Connect) -> io::Result<Self> {
        let listener = tokio::net::UnixListener::bind(path)?;
        let upstream = Arc::new(Upstream {
            connect,
            channel: tokio::sync::Mutex::new(channel),
        });
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = listener.accept() => match a {
                        Ok((s, _)) => s,
                        Err(e) => {
                            tracing::warn!("local socket: accept failed: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let upstream = upstream.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let upstream = upstream.clone();
                        async move { Ok::<_, std::convert::Infallible>(relay(&upstream, req).await) }
                    });
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .initial_stream_window_size(STREAM_WINDOW)
                        .initial_connection_window_size(CONNECTION_WINDOW)
                        .max_frame_size(MAX_FRAME_SIZE)
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        r = conn => if let Err(e) = r {
                            tracing::debug!("local socket connection ended: {e}");
                        },
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
        Ok(Forwarder {
            path: path.to_owned(),
            cancel,
            task: Some(task),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, ends relayed calls and removes the socket file.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sends one call on the remote channel and hands back its response (or a gRPC error).
async fn relay(
    upstream: &Upstream,
    req: http::Request<Incoming>,
) -> http::Response<tonic::body::Body> {
    let channel = match upstream.channel().await {
        Ok(c) => c,
        Err(e) => {
            return tonic::Status::unavailable(format!("cannot reach the exporter: {e}"))
                .into_http();
        }
    };
    let (mut parts, body) = req.into_parts();
    let origin = channel.origin().into_parts();
    let mut uri = http::uri::Parts::default();
    uri.scheme = origin.scheme;
    uri.authority = origin.authority;
    uri.path_and_query = parts.uri.path_and_query().cloned();
    parts.uri = match http::Uri::from_parts(uri) {
        Ok(u) => u,
        Err(e) => {
            return tonic::Status::internal(format!("cannot relay {}: {e}", parts.uri)).into_http();
        }
    };
    let request = http::Request::from_parts(parts, tonic::body::Body::new(body));
    match channel.oneshot(request).await {
        Ok(resp) => resp.map(tonic::body::Body::new),
        Err(e) => {
            tonic::Status::unavailable(format!("exporter connection failed: {e}")).into_http()
        }
    }
}
