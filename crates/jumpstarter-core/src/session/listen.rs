//! Serving gRPC connections, the one mechanism behind every listener of the project: the
//! exporter's unix sockets (session and hook socket), its TCP port (plain or TLS), the router
//! tunnels of controller mode, and the controller's TLS port.
//!
//! [`serve`] accepts connections from any stream of byte streams and serves each one with HTTP/2
//! under the limits of its [`Listener`]:
//!
//! * **Handshake timeout**: the TLS handshake (if any), the HTTP/2 preface and the first request
//!   must all arrive within `handshake_timeout` of the accept, else the connection is closed.
//! * **Idle timeout**: a connection with no request in flight for `idle_timeout` is told to go
//!   away (GOAWAY) and closed. A request is in flight until its response has ended, so a
//!   connection holding a long-lived stream (LogStream, a console, a router stream) is never
//!   idle.
//! * **Connection cap**: at most `max_connections` connections (handshakes included) at once;
//!   past it new connections are closed at once, existing ones keep working, and a slot is
//!   free again as soon as a connection ends.
//! * **Streams per connection**: HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`.
//!
//! Events that an attacker can repeat (refused connections, silent connections, failed TLS
//! handshakes, failed accepts) are logged once when a burst starts and once, summarised, when
//! it ends; never once per connection.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use jumpstarter_protocol::wire::{CONNECTION_WINDOW, MAX_FRAME_SIZE, STREAM_WINDOW};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::limits::Limits;

/// Keepalive pings on TCP listeners: every minute, give up after 20 s without an answer.
pub const SERVER_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
pub const SERVER_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A burst of repeated events ends after this long without one (then its summary is logged).
const BURST_QUIET: Duration = Duration::from_secs(2);

/// Options of one listener of a session.
#[derive(Debug, Clone, Default)]
pub struct ListenOptions {
    /// Require this passphrase on every call.
    pub passphrase: Option<String>,
    /// Send HTTP/2 keepalive pings, so connections of clients that vanished without closing
    /// (network gone, host down) are dropped. For TCP listeners.
    pub keepalive: bool,
    /// Serve TLS with this configuration (the handshake runs under the handshake timeout,
    /// inside the connection cap).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The connection limits of one listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnLimits {
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// The [`Limits`] field `max_connections` comes from (for the message naming its variable).
    pub max_connections_field: &'static str,
    pub max_streams: u32,
}

impl ConnLimits {
    /// The limits of an exporter listener (unix socket, TCP port, router tunnels).
    pub fn exporter(limits: &Limits) -> ConnLimits {
        ConnLimits {
            handshake_timeout: limits.handshake_timeout,
            idle_timeout: limits.idle_timeout,
            max_connections: limits.max_connections,
            max_connections_field: "max_connections",
            max_streams: limits.max_streams_per_connection,
        }
    }

    /// The limits of the controller's port.
    pub fn controller(limits: &Limits) -> ConnLimits {
        ConnLimits {
            max_connections: limits.controller_max_connections,
            max_connections_field: "controller_max_connections",
            ..ConnLimits::exporter(limits)
        }
    }
}

/// How one listener serves its connections.
#[derive(Clone)]
pub struct Listener {
    /// What the listener is, for log lines ("TCP listener 0.0.0.0:1234").
    pub name: String,
    pub limits: ConnLimits,
    /// Run a TLS handshake (ALPN h2) on every connection first.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// HTTP/2 keepalive pings: interval and how long to wait for the answer.
    pub keepalive: Option<(Duration, Duration)>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .field("tls", &self.tls.is_some())
            .field("keepalive", &self.keepalive)
            .finish()
    }
}

impl Listener {
    pub fn new(name: impl Into<String>, limits: ConnLimits) -> Listener {
        Listener {
            name: name.into(),
            limits,
            tls: None,
            keepalive: None,
        }
    }

    pub fn with_tls(mut self, tls: Option<Arc<rustls::ServerConfig>>) -> Listener {
        self.tls = tls;
        self
    }

    /// Keepalive pings every [`SERVER_KEEPALIVE_INTERVAL`] (when `on`).
    pub fn with_keepalive(mut self, on: bool) -> Listener {
        self.keepalive = on.then_some((SERVER_KEEPALIVE_INTERVAL, SERVER_KEEPALIVE_TIMEOUT));
        self
    }
}

/// Accepted TCP connections of `listener`, with Nagle off (gRPC messages are small). The
/// listening socket closes when the stream is dropped.
pub fn tcp_incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = io::Result<tokio::net::TcpStream>> + Send + 'static {
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|r| {
        r.inspect(|tcp| {
            let _ = tcp.set_nodelay(true);
        })
    })
}

/// Serves every connection of `incoming` with `service` until `shutdown` completes; then stops
/// accepting (dropping `incoming` closes a listening socket), asks every connection to go away,
/// and returns once all of them are closed.
///
/// `IO::ConnectInfo` is put into every request's extensions, as tonic's server does (so
/// `tonic::Request::remote_addr` works for TCP).
pub async fn serve<I, IO, E, S, B, F>(listener: Listener, incoming: I, service: S, shutdown: F)
where
    I: futures::Stream<Item = Result<IO, E>> + Send,
    IO: AsyncRead + AsyncWrite + tonic::transport::server::Connected + Send + Unpin + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
    E: std::fmt::Display,
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: Future<Output = ()>,
{
    let shared = Arc::new(Shared::new(listener));
    let slots = Arc::new(Semaphore::new(shared.limits.max_connections));
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    {
        let incoming = incoming.fuse();
        tokio::pin!(incoming);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => shared.end_quiet_bursts(BURST_QUIET),
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                next = incoming.next() => match next {
                    None => break,
                    Some(Err(e)) => {
                        // Out of descriptors and the like: say so (once per burst), do not spin.
                        if shared.accept_failed.hit() {
                            tracing::warn!("{}: accepting a connection failed: {e}", shared.name);
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Some(Ok(io)) => {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            if shared.refused.hit() {
                                tracing::warn!(
                                    "{}: {}; new connections are closed at once until some end",
                                    shared.name,
                                    Limits::exceeded(
                                        shared.limits.max_connections_field,
                                        shared.limits.max_connections
                                    )
                                );
                            }
                            drop(io);
                            continue;
                        };
                        let info = io.connect_info();
                        let peer = peer_of(&info);
                        let conn = connection(io, info, peer, shared.clone(), service.clone(), stop.clone());
                        tasks.spawn(async move {
                            conn.await;
                            drop(permit);
                        });
                    }
                },
            }
        }
    }
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    shared.end_quiet_bursts(Duration::ZERO);
}

/// The peer address in a connection's info, when it has one (TCP).
fn peer_of(info: &dyn Any) -> Option<SocketAddr> {
    if let Some(tcp) = info.downcast_ref::<tonic::transport::server::TcpConnectInfo>() {
        return tcp.remote_addr();
    }
    info.downcast_ref::<Option<SocketAddr>>().copied().flatten()
}

fn shown(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "a local peer".to_string(), |p| p.to_string())
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

struct Shared {
    name: String,
    limits: ConnLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    http: hyper::server::conn::http2::Builder<TokioExecutor>,
    refused: Burst,
    silent: Burst,
    tls_failed: Burst,
    accept_failed: Burst,
}

impl Shared {
    fn new(listener: Listener) -> Shared {
        let mut http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http.timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME_SIZE)
            .max_concurrent_streams(listener.limits.max_streams);
        if let Some((interval, timeout)) = listener.keepalive {
            http.keep_alive_interval(interval)
                .keep_alive_timeout(timeout);
        }
        Shared {
            name: listener.name,
            limits: listener.limits,
            tls: listener.tls.map(tokio_rustls::TlsAcceptor::from),
            http,
            refused: Burst::default(),
            silent: Burst::default(),
            tls_failed: Burst::default(),
            accept_failed: Burst::default(),
        }
    }

    /// Logs the summary of every burst that saw no event for `quiet`.
    fn end_quiet_bursts(&self, quiet: Duration) {
        let name = &self.name;
        if let Some((n, took)) = self.refused.end_if_quiet(quiet) {
            tracing::warn!(
                "{name}: {n} connections refused at the connection limit in {:.1} s",
                took.as_secs_f64()
            );
        }
        if let Some((n, took)) = self.silent.end_if_quiet(quiet) {
            tracing::warn!(
                "{name}: {n} connections closed for sending no request within {} s ({}) in {:.1} s",
                self.limits.handshake_timeout.as_secs_f64(),
                var("handshake_timeout"),
                took.as_secs_f64()
            );
        }
        if let Some((n, took)) = self.tls_failed.end_if_quiet(quiet) {
            tracing::warn!(
                "{name}: {n} TLS handshakes failed in {:.1} s",
                took.as_secs_f64()
            );
        }
        if let Some((n, took)) = self.accept_failed.end_if_quiet(quiet) {
            tracing::warn!(
                "{name}: accepting connections failed {n} times in {:.1} s",
                took.as_secs_f64()
            );
        }
    }

    fn silent_connection(&self, peer: Option<SocketAddr>) {
        if self.silent.hit() {
            tracing::warn!(
                "{}: closed the connection of {} for sending no request within {} s ({})",
                self.name,
                shown(peer),
                self.limits.handshake_timeout.as_secs_f64(),
                var("handshake_timeout"),
            );
        } else {
            tracing::debug!(
                "{}: closed a silent connection of {}",
                self.name,
                shown(peer)
            );
        }
    }
}

fn var(field: &str) -> &'static str {
    Limits::name(field).map_or("", |n| n.var)
}

/// Events of one kind: the first of a burst is logged in full, the rest are counted and
/// summarised when the burst ends.
#[derive(Default)]
struct Burst(Mutex<Option<BurstState>>);

struct BurstState {
    first: Instant,
    last: Instant,
    count: u64,
}

impl Burst {
    /// Counts an event; `true` when it starts a burst (the caller logs it).
    fn hit(&self) -> bool {
        let now = Instant::now();
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match state.as_mut() {
            Some(s) => {
                s.count += 1;
                s.last = now;
                false
            }
            None => {
                *state = Some(BurstState {
                    first: now,
                    last: now,
                    count: 1,
                });
                true
            }
        }
    }

    /// Ends the burst if it saw no event for `quiet`: its count and length, when worth a
    /// summary (more than the one event already logged).
    fn end_if_quiet(&self, quiet: Duration) -> Option<(u64, Duration)> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let s = state.as_ref()?;
        if s.last.elapsed() < quiet {
            return None;
        }
        let summary = (s.count > 1).then(|| (s.count, s.last - s.first));
        *state = None;
        summary
    }
}

/// What a connection is doing: whether a request arrived yet, and how many are in flight.
#[derive(Debug, Clone, Copy, Default)]
struct Activity {
    started: bool,
    in_flight: usize,
}

/// Serves one accepted connection under the listener's limits.
async fn connection<IO, C, S, B>(
    io: IO,
    info: C,
    peer: Option<SocketAddr>,
    shared: Arc<Shared>,
    service: S,
    stop: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    C: Clone + Send + Sync + 'static,
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limits = &shared.limits;
    let deadline = Instant::now() + limits.handshake_timeout;
    let io: Box<dyn Io> = match &shared.tls {
        None => Box::new(io),
        Some(acceptor) => {
            let handshake = tokio::time::timeout_at(deadline, acceptor.accept(io));
            let result = tokio::select! {
                r = handshake => r,
                _ = stop.cancelled() => return,
            };
            match result {
                Ok(Ok(tls)) => Box::new(tls),
                Ok(Err(e)) => {
                    if shared.tls_failed.hit() {
                        tracing::warn!("TLS handshake with {} failed: {e}", shown(peer));
                    } else {
                        tracing::debug!("TLS handshake with {} failed: {e}", shown(peer));
                    }
                    return;
                }
                Err(_) => {
                    shared.silent_connection(peer);
                    return;
                }
            }
        }
    };
    let (activity_tx, mut activity) = watch::channel(Activity::default());
    let svc = ConnService {
        inner: service,
        info,
        activity: Arc::new(activity_tx),
    };
    let conn = shared.http.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    // When closing (GOAWAY sent): how long the peer has to finish and close.
    let mut closing: Option<Instant> = None;
    loop {
        let now = *activity.borrow_and_update();
        let wake = match closing {
            _ if now.in_flight > 0 => None,
            Some(until) => Some(until),
            None if !now.started => Some(deadline),
            None => Some(Instant::now() + limits.idle_timeout),
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("{}: connection of {} ended: {e}", shared.name, shown(peer));
                }
                return;
            }
            changed = activity.changed() => {
                if changed.is_err() {
                    // The service is gone with the connection; let it finish.
                    let _ = tokio::time::timeout(limits.handshake_timeout, conn.as_mut()).await;
                    return;
                }
            }
            _ = sleep_until(wake) => {
                if closing.is_some() {
                    return;
                }
                if !now.started {
                    shared.silent_connection(peer);
                    return;
                }
                tracing::debug!(
                    "{}: closing the connection of {}: no request for {} s",
                    shared.name,
                    shown(peer),
                    limits.idle_timeout.as_secs_f64()
                );
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + limits.handshake_timeout);
            }
            _ = stop.cancelled(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + limits.handshake_timeout);
            }
        }
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => futures::future::pending().await,
    }
}

/// The per-connection service: counts requests in flight and passes the connection's info on.
struct ConnService<S, C> {
    inner: S,
    info: C,
    activity: Arc<watch::Sender<Activity>>,
}

/// One request in flight (until its response body has ended or was dropped).
struct InFlight(Arc<watch::Sender<Activity>>);

impl InFlight {
    fn begin(activity: &Arc<watch::Sender<Activity>>) -> InFlight {
        activity.send_modify(|a| {
            a.started = true;
            a.in_flight += 1;
        });
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .send_modify(|a| a.in_flight = a.in_flight.saturating_sub(1));
    }
}

impl<S, C, B> hyper::service::Service<http::Request<Incoming>> for ConnService<S, C>
where
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    C: Clone + Send + Sync + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
{
    type Response = http::Response<Tracked<B>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut req: http::Request<Incoming>) -> Self::Future {
        let guard = InFlight::begin(&self.activity);
        req.extensions_mut().insert(self.info.clone());
        let svc = self.inner.clone();
        Box::pin(async move {
            let response = svc.oneshot(req).await?;
            Ok(response.map(|body| Tracked {
                body,
                _guard: guard,
            }))
        })
    }
}

/// A response body that keeps its request counted as in flight until it ends.
struct Tracked<B> {
    body: B,
    _guard: InFlight,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Raises the soft limit of open descriptors to the hard limit (as Go does at start), so
/// connection limits, not the descriptor limit, bound what peers can hold open. Returns the
/// soft limit in force afterwards.
pub fn raise_descriptor_limit() -> io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
        return Ok(hard);
    }
    Ok(soft)
}

/// Descriptors kept free for everything that is not a served connection (database, drivers,
/// hooks, logs).
pub const DESCRIPTOR_HEADROOM: u64 = 128;

/// Lowers the connection caps of `limits` so `listeners` listeners at their cap still leave
/// [`DESCRIPTOR_HEADROOM`] descriptors under `descriptors`; returns a warning for each cap
/// lowered.
pub fn fit_to_descriptors(
    limits: &mut Limits,
    descriptors: u64,
    fields: &[(&'static str, u64)],
) -> Vec<String> {
    let mut warnings = Vec::new();
    for &(field, listeners) in fields {
        let room = descriptors.saturating_sub(DESCRIPTOR_HEADROOM) / listeners.max(1);
        let room = usize::try_from(room.max(1)).unwrap_or(usize::MAX);
        let cap = match field {
            "max_connections" => &mut limits.max_connections,
            "controller_max_connections" => &mut limits.controller_max_connections,
            _ => continue,
        };
        if *cap > room {
            warnings.push(format!(
                "{}={} does not fit the descriptor limit ({descriptors} open files); serving at \
                 most {room} connections per listener (raise the limit, e.g. LimitNOFILE=)",
                var(field),
                *cap
            ));
            *cap = room;
        }
    }
    warnings
}

/// What a daemon (`jmp run`, `jmp-controller serve`) does with limits at start: read the
/// `JMP_*` variables (a bad value is the error, for the caller to report as a usage error),
/// raise the descriptor limit, fit the connection caps named in `caps` (field, listeners using
/// it) under it with a warning, and install the result as the process's limits.
pub fn daemon_limits(caps: &[(&'static str, u64)]) -> Result<Limits, crate::limits::LimitError> {
    let mut limits = Limits::from_env()?;
    match raise_descriptor_limit() {
        Ok(descriptors) => {
            for warning in fit_to_descriptors(&mut limits, descriptors, caps) {
                tracing::warn!("{warning}");
            }
        }
        Err(e) => tracing::warn!("cannot read or raise the open-file limit: {e}"),
    }
    crate::limits::set_global(limits.clone());
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_log_once_and_summarise() {
        let b = Burst::default();
        assert!(b.hit());
        assert!(!b.hit());
        assert!(!b.hit());
        assert_eq!(b.end_if_quiet(Duration::from_secs(3600)), None);
        assert_eq!(b.end_if_quiet(Duration::ZERO).map(|s| s.0), Some(3));
        assert!(b.hit());
        // A single event needs no summary.
        assert_eq!(b.end_if_quiet(Duration::ZERO), None);
        assert!(b.hit());
    }

    #[test]
    fn caps_fit_the_descriptor_limit() {
        let mut l = Limits::default();
        let w = fit_to_descriptors(&mut l, 1024, &[("controller_max_connections", 1)]);
        assert_eq!(
            l.controller_max_connections,
            1024 - DESCRIPTOR_HEADROOM as usize
        );
        assert!(
            w[0].contains("JMP_CONTROLLER_MAX_CONNECTIONS=16384"),
            "{w:?}"
        );
        let mut l = Limits::default();
        assert!(fit_to_descriptors(&mut l, 1 << 20, &[("max_connections", 2)]).is_empty());
        assert_eq!(l, Limits::default());
    }
}
