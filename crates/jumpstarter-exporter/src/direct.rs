//! Direct mode (`jmp run --tls-grpc-listener`): one session served on a TCP listener (plain or
//! TLS, optionally behind a passphrase) and on a private unix socket for hooks.
//!
//! The session goes through lease-like cycles, each with the hooks around it:
//!
//! 1. reset the drivers (from the second cycle on), run `beforeLease` (status walk in
//!    [`crate::lease`]); the first cycle starts with the exporter, as upstream's;
//! 2. serve until a client calls `EndSession` or the exporter is told to stop;
//! 3. run `afterLease` (unless `beforeLease` failed with `endLease`). `EndSession` answers once
//!    it is done (upstream answers at once, and in direct mode never runs the hook: bug B5);
//!    a stop runs it on the way out, as upstream does at shutdown;
//! 4. after an `EndSession`, the next cycle starts [`NEXT_SESSION_DELAY`] later (the status
//!    stays AVAILABLE that long, so pollers see it).
//!
//! A `beforeLease` failure with `endLease` belongs to its cycle: the session stays in
//! BEFORE_LEASE_HOOK_FAILED (driver calls refused) for the clients that see it, and the cycle
//! ends when a client calls `EndSession`, or when a client connects after every TCP connection
//! that saw the failure has closed: that client starts a new cycle (the hook runs again), so a
//! fixed cause heals without anyone sending `EndSession` by hand. The status is moved off the
//! failure before the new connection is served, so its client never reads the stale one. An
//! `exit` failure stops the exporter ([`Outcome::HookExit`]): the FAILED status is served for
//! [`FAILURE_LINGER`] so connected clients see it, then OFFLINE, then the listeners close.
//!
//! Stopping ([`Control`]): `stop` ends the current cycle (an interrupted `beforeLease` is
//! killed, `afterLease` still runs), `force` also kills a running `afterLease`, and
//! `stop_after_session` lets the current session run until its `EndSession`.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use jumpstarter_config::Hooks;
use jumpstarter_core::logs::LogHub;
use jumpstarter_core::session::{ListenOptions, ServerHandle, Session, tcp_incoming};
use jumpstarter_core::socket::SocketDir;
use jumpstarter_protocol::v1::{EndSessionResponse, ExporterStatus};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::hooks::{HookEnv, HookKind};
use crate::lease::{HookPhase, after_lease, before_lease};
use crate::{Exporter, ExporterError};

/// How long the status stays AVAILABLE after an `EndSession` before the next session starts.
pub const NEXT_SESSION_DELAY: Duration = Duration::from_secs(1);
/// How long a failed exporter keeps serving its failure status before it stops.
pub const FAILURE_LINGER: Duration = Duration::from_secs(2);
/// How long listeners wait for in-flight calls when the exporter stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long a new connection waits for the lifecycle to leave a stale hook failure.
pub const RESTART_WAIT: Duration = Duration::from_secs(10);
/// `LEASE_NAME` of direct-mode hooks (upstream's value).
pub const DIRECT_LEASE_NAME: &str = "standalone";

/// Where and how to listen.
#[derive(Debug, Clone)]
pub struct DirectOptions {
    /// Host to bind (`0.0.0.0` by default, as upstream).
    pub host: String,
    /// Port; 0 picks a free one (see [`DirectExporter::local_addr`]).
    pub port: u16,
    /// TLS server config; `None` listens in plaintext.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Required from every client on the TCP listener (not on the hook socket).
    pub passphrase: Option<String>,
}

/// What the process tells a running exporter.
#[derive(Debug, Clone, Default)]
pub struct Control {
    pub(crate) stop: CancellationToken,
    pub(crate) force: CancellationToken,
    pub(crate) after_session: CancellationToken,
}

impl Control {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stop gracefully: end the session (running `afterLease`) and exit.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Stop now: also kill a running `afterLease` hook.
    pub fn force(&self) {
        self.stop.cancel();
        self.force.cancel();
    }

    /// Stop once the current session has ended (`EndSession`); at once if none is active.
    pub fn stop_after_session(&self) {
        self.after_session.cancel();
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// Why a direct exporter stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Told to stop ([`Control`]).
    Stopped,
    /// A hook with `onFailure: exit` failed.
    HookExit(HookKind),
}

type EndRequest = oneshot::Sender<EndSessionResponse>;
/// A new connection asking the lifecycle to leave a failed cycle; answered once the status has
/// moved off the failure.
type RestartRequest = oneshot::Sender<()>;

/// The TCP clients of a direct exporter, as far as the lifecycle cares: how many connections
/// are open, and whether a `beforeLease` failure of this cycle was seen by a client that left.
#[derive(Debug, Default)]
struct Clients {
    state: Mutex<ClientState>,
}

#[derive(Debug, Default)]
struct ClientState {
    open: usize,
    /// Set while the current cycle's `beforeLease` failed with `endLease`.
    failure: Option<FailureSeen>,
}

#[derive(Debug, Clone, Copy)]
struct FailureSeen {
    /// A connection was open at some point since the failure.
    seen: bool,
    /// ...and every connection has closed since.
    left: bool,
}

impl Clients {
    fn lock(&self) -> std::sync::MutexGuard<'_, ClientState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cycle's `beforeLease` failed with `endLease`.
    fn failed(&self) {
        let mut s = self.lock();
        s.failure = Some(FailureSeen {
            seen: s.open > 0,
            left: false,
        });
    }

    /// A new cycle starts.
    fn new_cycle(&self) {
        self.lock().failure = None;
    }

    /// A connection arrives: if the failure it would see is stale, asks the lifecycle for a new
    /// cycle first (waiting, boundedly, until the status left the failure).
    async fn admit(self: &Arc<Self>, restart: &mpsc::Sender<RestartRequest>) -> OpenConn {
        let stale = {
            let mut s = self.lock();
            match s.failure {
                Some(f) if f.left => {
                    s.failure = None;
                    true
                }
                _ => false,
            }
        };
        if stale {
            let (tx, rx) = oneshot::channel();
            if restart.send(tx).await.is_ok() {
                let _ = tokio::time::timeout(RESTART_WAIT, rx).await;
            }
        }
        let mut s = self.lock();
        s.open += 1;
        if let Some(f) = &mut s.failure {
            f.seen = true;
        }
        OpenConn(self.clone())
    }
}

/// One open TCP connection; dropping it counts it closed.
#[derive(Debug)]
struct OpenConn(Arc<Clients>);

impl Drop for OpenConn {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.open = s.open.saturating_sub(1);
        if s.open == 0
            && let Some(f) = &mut s.failure
            && f.seen
        {
            f.left = true;
        }
    }
}

/// A connection counted in [`Clients`] while it is open.
struct Tracked<IO> {
    io: IO,
    _open: OpenConn,
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Tracked<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
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

/// A direct-mode exporter: listening, not yet running its lifecycle ([`DirectExporter::run`]).
pub struct DirectExporter {
    session: Session,
    hooks: Hooks,
    motd: Option<String>,
    tcp: Option<ServerHandle>,
    hook_server: Option<ServerHandle>,
    hook_dir: SocketDir,
    local_addr: SocketAddr,
    end_rx: mpsc::Receiver<EndRequest>,
    clients: Arc<Clients>,
    restart_rx: mpsc::Receiver<RestartRequest>,
}

fn end_response(success: bool, message: impl Into<String>) -> EndSessionResponse {
    EndSessionResponse {
        success,
        message: Some(message.into()),
    }
}

impl Exporter {
    /// Binds the TCP listener and the hook socket and serves a new session on both (in
    /// AVAILABLE until [`DirectExporter::run`] starts the lifecycle).
    pub async fn start_direct(
        &self,
        options: DirectOptions,
        logs: LogHub,
    ) -> Result<DirectExporter, ExporterError> {
        let shown = if options.host.contains(':') {
            format!("[{}]:{}", options.host, options.port)
        } else {
            format!("{}:{}", options.host, options.port)
        };
        let listener = tokio::net::TcpListener::bind((options.host.as_str(), options.port))
            .await
            .map_err(|source| ExporterError::Listen {
                path: shown.clone(),
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ExporterError::Listen {
                path: shown.clone(),
                source,
            })?;
        let session = self.new_session(logs).await?;
        session.set_motd(self.config().motd.clone().unwrap_or_default());
        let hook_dir = SocketDir::new().map_err(|source| ExporterError::Listen {
            path: "a temporary socket directory".into(),
            source,
        })?;
        let hook_server =
            session
                .serve_unix(hook_dir.path())
                .map_err(|source| ExporterError::Listen {
                    path: hook_dir.path().display().to_string(),
                    source,
                })?;
        let clients = Arc::new(Clients::default());
        let (restart_tx, restart_rx) = mpsc::channel::<RestartRequest>(4);
        let incoming = {
            let clients = clients.clone();
            tcp_incoming(listener).then(move |conn| {
                let (clients, restart_tx) = (clients.clone(), restart_tx.clone());
                async move {
                    let io = conn?;
                    let open = clients.admit(&restart_tx).await;
                    Ok::<_, io::Error>(Tracked { io, _open: open })
                }
            })
        };
        let tcp = session.serve_incoming_with(
            incoming,
            None,
            &ListenOptions {
                passphrase: options.passphrase.clone(),
                keepalive: true,
                tls: options.tls.clone(),
            },
        );

        let (end_tx, end_rx) = mpsc::channel::<EndRequest>(16);
        session.set_end_session_handler(Arc::new(move || {
            let end_tx = end_tx.clone();
            Box::pin(async move {
                let (reply, answer) = oneshot::channel();
                if end_tx.send(reply).await.is_err() {
                    return end_response(false, "Exporter is shutting down");
                }
                answer
                    .await
                    .unwrap_or_else(|_| end_response(false, "Exporter is shutting down"))
            })
        }));

        let system = session.logs().system_logger();
        system.info(format!(
            "Session server started on {local_addr} and unix://{}",
            hook_dir.path().display()
        ));
        if options.tls.is_some() {
            system.info("TLS enabled on the TCP listener");
        }
        if options.passphrase.is_some() {
            system.info("clients must present the passphrase (the hook socket needs none)");
        }
        Ok(DirectExporter {
            session,
            hooks: self.config().hooks.clone(),
            motd: self.config().motd.clone(),
            tcp: Some(tcp),
            hook_server: Some(hook_server),
            hook_dir,
            local_addr,
            end_rx,
            clients,
            restart_rx,
        })
    }
}

impl DirectExporter {
    /// The TCP address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The hook socket (`JUMPSTARTER_HOST` of hooks).
    pub fn hook_socket(&self) -> &Path {
        self.hook_dir.path()
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Runs the lifecycle until told to stop or a hook says `exit`; then stops the listeners,
    /// closes the drivers and removes the hook socket.
    pub async fn run(mut self, control: Control) -> Outcome {
        let outcome = self.cycles(&control).await;
        if outcome == Outcome::Stopped {
            self.session
                .set_status(ExporterStatus::Offline, "Exporter shutting down");
        }
        self.session
            .logs()
            .system_logger()
            .info("Stopping the session server");
        // Pending EndSession calls are answered "shutting down".
        self.end_rx.close();
        while let Ok(reply) = self.end_rx.try_recv() {
            let _ = reply.send(end_response(false, "Exporter is shutting down"));
        }
        self.session.close().await;
        if let Some(tcp) = self.tcp.take() {
            tcp.shutdown(SHUTDOWN_GRACE).await;
        }
        if let Some(hook) = self.hook_server.take() {
            hook.shutdown(SHUTDOWN_GRACE).await;
        }
        outcome
    }

    async fn cycles(&mut self, control: &Control) -> Outcome {
        let env = HookEnv {
            socket: self.hook_dir.path().to_owned(),
            lease_name: DIRECT_LEASE_NAME.into(),
            client_name: String::new(),
        };
        let session = self.session.clone();
        let system = session.logs().system_logger();
        let mut first = true;
        loop {
            if control.is_stopping() {
                return Outcome::Stopped;
            }
            if !first {
                // New readers see this session's records only.
                session.logs().clear_backlog();
                session.reset().await;
                session.set_motd(self.motd.clone().unwrap_or_default());
            }
            first = false;
            self.clients.new_cycle();
            // Requests of connections that raced a cycle's end are moot now.
            while let Ok(ack) = self.restart_rx.try_recv() {
                let _ = ack.send(());
            }

            let before = before_lease(
                &session,
                self.hooks.before_lease.as_ref(),
                &env,
                &control.stop,
            )
            .await;
            let ready = match before {
                HookPhase::Done | HookPhase::Warned(_) | HookPhase::Interrupted => true,
                HookPhase::EndLease(_) => {
                    self.clients.failed();
                    false
                }
                HookPhase::Exit(_) => {
                    linger(&session, HookKind::BeforeLease, control).await;
                    return Outcome::HookExit(HookKind::BeforeLease);
                }
            };

            // Serve until EndSession or a stop (or, after a failed beforeLease, a client that
            // comes after those who saw the failure).
            let first_end = tokio::select! {
                _ = control.stop.cancelled() => None,
                _ = control.after_session.cancelled(), if !ready => None,
                r = self.end_rx.recv() => r,
                Some(ack) = self.restart_rx.recv(), if !ready => {
                    system.info("A new client after a failed beforeLease hook: starting a new session");
                    session.logs().clear_backlog();
                    session.set_status(ExporterStatus::Available, "Available for new lease");
                    let _ = ack.send(());
                    continue;
                }
            };
            let Some(first_end) = first_end else {
                if ready {
                    let after = after_lease(
                        &session,
                        self.hooks.after_lease.as_ref(),
                        &env,
                        &control.force,
                    )
                    .await;
                    if matches!(after, HookPhase::Exit(_)) {
                        session.set_status(
                            ExporterStatus::Offline,
                            "Exporter shutting down due to afterLease hook failure",
                        );
                        return Outcome::HookExit(HookKind::AfterLease);
                    }
                }
                return Outcome::Stopped;
            };

            system.info("EndSession requested");
            let mut waiting = vec![first_end];
            let (response, after) = if ready {
                let run = after_lease(
                    &session,
                    self.hooks.after_lease.as_ref(),
                    &env,
                    &control.force,
                );
                tokio::pin!(run);
                // EndSession calls arriving while the hook runs get the same answer.
                let after = loop {
                    tokio::select! {
                        a = &mut run => break a,
                        Some(more) = self.end_rx.recv() => waiting.push(more),
                    }
                };
                let response = match (&after, self.hooks.after_lease.is_some()) {
                    (HookPhase::Done, false) => end_response(true, "Session ended"),
                    (HookPhase::Done, true) => {
                        end_response(true, "Session ended, afterLease hook completed")
                    }
                    (HookPhase::Warned(e), _) => {
                        end_response(true, format!("Session ended, afterLease hook warning: {e}"))
                    }
                    (HookPhase::EndLease(e) | HookPhase::Exit(e), _) => {
                        end_response(true, format!("Session ended, afterLease hook failed: {e}"))
                    }
                    (HookPhase::Interrupted, _) => {
                        end_response(true, "Session ended, afterLease hook interrupted")
                    }
                };
                (response, after)
            } else {
                system.info("Skipping afterLease hook: beforeLease hook failed");
                session.set_status(ExporterStatus::Available, "Available for new lease");
                (
                    end_response(
                        true,
                        "Session ended (afterLease hook skipped: beforeLease hook failed)",
                    ),
                    HookPhase::Done,
                )
            };
            for reply in waiting {
                let _ = reply.send(response.clone());
            }
            if matches!(after, HookPhase::Exit(_)) {
                linger(&session, HookKind::AfterLease, control).await;
                return Outcome::HookExit(HookKind::AfterLease);
            }
            if control.is_stopping() || control.after_session.is_cancelled() {
                return Outcome::Stopped;
            }

            // Stay AVAILABLE for a moment; EndSession calls meanwhile find the session ended.
            let pause = tokio::time::sleep(NEXT_SESSION_DELAY);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    _ = control.stop.cancelled() => return Outcome::Stopped,
                    _ = control.after_session.cancelled() => return Outcome::Stopped,
                    Some(reply) = self.end_rx.recv() => {
                        let _ = reply.send(end_response(true, "Session already ended"));
                    }
                }
            }
            system.info("Starting a new session");
        }
    }
}

/// Keeps serving the failure status for a moment (or until stopped), then reports OFFLINE.
async fn linger(session: &Session, kind: HookKind, control: &Control) {
    tokio::select! {
        _ = tokio::time::sleep(FAILURE_LINGER) => {}
        _ = control.stop.cancelled() => {}
    }
    session.set_status(
        ExporterStatus::Offline,
        format!("Exporter shutting down due to {} hook failure", kind.name()),
    );
}
