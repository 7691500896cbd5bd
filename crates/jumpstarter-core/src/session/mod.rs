//! A session: one driver tree served over gRPC (`ExporterService` + `RouterService`).
//!
//! The session knows drivers and streams, nothing about how it is reached: the exporter
//! runtime decides which listeners (unix socket, TCP, router tunnel) feed it connections.

mod listen;
mod passphrase;
mod service;
mod status;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jumpstarter_protocol::v1::{
    EndSessionResponse, ExporterStatus, GetReportResponse,
    exporter_service_server::ExporterServiceServer, router_service_server::RouterServiceServer,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::limits::Limits;
use crate::logs::{LogHub, Logger};
use crate::tree::DriverTree;

pub use listen::{
    ConnLimits, DESCRIPTOR_HEADROOM, ListenOptions, Listener, SERVER_KEEPALIVE_INTERVAL,
    SERVER_KEEPALIVE_TIMEOUT, daemon_limits, fit_to_descriptors, raise_descriptor_limit, serve,
    tcp_incoming,
};
pub use passphrase::{PassphraseGuard, PassphraseLayer, constant_time_eq};
pub use status::StatusState;

/// Handles `EndSession` when the session belongs to a lease (set by the exporter runtime).
pub type EndSessionHandler =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = EndSessionResponse> + Send>> + Send + Sync>;

struct Inner {
    uuid: Uuid,
    labels: HashMap<String, String>,
    tree: DriverTree,
    report: GetReportResponse,
    status: watch::Sender<StatusState>,
    status_updates: tokio::sync::broadcast::Sender<StatusState>,
    logs: LogHub,
    system: Logger,
    end_session: Mutex<Option<EndSessionHandler>>,
    motd: Mutex<String>,
    compression: bool,
    cancel: CancellationToken,
    closed: tokio::sync::OnceCell<()>,
}

/// A session. Cheap to clone; all clones are the same session.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("uuid", &self.inner.uuid)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for `tree`, starting in AVAILABLE. `uuid` is the exporter's uuid (upstream
    /// reuses one per exporter process for every session).
    pub fn new(tree: DriverTree, logs: LogHub, uuid: Uuid) -> Session {
        let report = GetReportResponse {
            uuid: uuid.hyphenated().to_string(),
            labels: HashMap::new(),
            reports: tree.report(),
            alternative_endpoints: Vec::new(),
            motd: String::new(),
        };
        let system = logs.system_logger();
        Session {
            inner: Arc::new(Inner {
                uuid,
                labels: HashMap::new(),
                tree,
                report,
                status: watch::Sender::new(StatusState::default()),
                status_updates: tokio::sync::broadcast::channel(64).0,
                logs,
                system,
                end_session: Mutex::new(None),
                motd: Mutex::new(String::new()),
                compression: !std::env::var("JMP_DISABLE_COMPRESSION").is_ok_and(|v| v == "1"),
                cancel: CancellationToken::new(),
                closed: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// Resets every driver (upstream does this when a session starts). A driver whose reset
    /// fails is reported in the log; the session still starts.
    pub async fn reset(&self) {
        for (driver, err) in self.inner.tree.reset().await {
            self.inner
                .system
                .warning(format!("reset of {driver} failed: {err}"));
        }
    }

    /// Whether resource streams advertise the requested encoding (`JMP_DISABLE_COMPRESSION=1`
    /// advertises none, as upstream; the handle's encoding is honoured either way).
    pub fn compression_enabled(&self) -> bool {
        self.inner.compression
    }

    pub fn uuid(&self) -> Uuid {
        self.inner.uuid
    }

    pub fn labels(&self) -> &HashMap<String, String> {
        &self.inner.labels
    }

    pub fn tree(&self) -> &DriverTree {
        &self.inner.tree
    }

    /// The report without the message of the day (see [`Session::full_report`]).
    pub fn report(&self) -> &GetReportResponse {
        &self.inner.report
    }

    /// What `GetReport` answers: the report with the current message of the day.
    pub fn full_report(&self) -> GetReportResponse {
        let mut report = self.inner.report.clone();
        report.motd = self.motd();
        report
    }

    /// The message of the day (`GetReportResponse.motd`, a field added after 0.9.0).
    pub fn motd(&self) -> String {
        self.inner
            .motd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the message of the day.
    pub fn set_motd(&self, motd: impl Into<String>) {
        *self.inner.motd.lock().unwrap_or_else(|e| e.into_inner()) = motd.into();
    }

    /// Appends a paragraph to the message of the day (a newline between non-empty parts).
    pub fn append_motd(&self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let mut motd = self.inner.motd.lock().unwrap_or_else(|e| e.into_inner());
        if !motd.is_empty() {
            motd.push('\n');
        }
        motd.push_str(text);
    }

    pub fn logs(&self) -> &LogHub {
        &self.inner.logs
    }

    /// Moves to a new status (a repeat of the same status still counts as an update).
    pub fn set_status(&self, status: ExporterStatus, message: impl Into<String>) {
        let message = message.into();
        tracing::debug!(status = status.as_str_name(), "status: {message}");
        self.inner.status.send_modify(|s| {
            s.update(status, message);
            let _ = self.inner.status_updates.send(s.clone());
        });
    }

    /// Every status update from now on, none skipped (up to 64 unread).
    pub fn status_updates(&self) -> tokio::sync::broadcast::Receiver<StatusState> {
        self.inner.status_updates.subscribe()
    }

    pub fn status(&self) -> StatusState {
        self.inner.status.borrow().clone()
    }

    pub fn watch_status(&self) -> watch::Receiver<StatusState> {
        self.inner.status.subscribe()
    }

    /// Installs the `EndSession` handler (sessions without one answer "No active lease
    /// context", like upstream's local mode).
    pub fn set_end_session_handler(&self, handler: EndSessionHandler) {
        *self
            .inner
            .end_session
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }

    fn end_session_handler(&self) -> Option<EndSessionHandler> {
        self.inner
            .end_session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Fires when the session is closing: streams and log readers end.
    pub fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.inner.cancel.cancelled()
    }

    /// Ends every stream and calls `close()` on every driver, once.
    pub async fn close(&self) {
        self.inner.cancel.cancel();
        self.inner
            .closed
            .get_or_init(|| async {
                self.inner.tree.close().await;
            })
            .await;
    }

    /// The two gRPC services of this session, ready to add to a tonic server.
    pub fn services(
        &self,
    ) -> (
        ExporterServiceServer<service::ExporterSvc>,
        RouterServiceServer<service::RouterSvc>,
    ) {
        (
            ExporterServiceServer::new(service::ExporterSvc {
                session: self.clone(),
            }),
            RouterServiceServer::new(service::RouterSvc {
                session: self.clone(),
            }),
        )
    }

    /// Serves the session on a new unix socket at `path`, under the process's limits.
    pub fn serve_unix(&self, path: &Path) -> std::io::Result<ServerHandle> {
        self.serve_unix_with_limits(path, crate::limits::global())
    }

    /// [`Session::serve_unix`] under `limits`.
    pub fn serve_unix_with_limits(
        &self,
        path: &Path,
        limits: &Limits,
    ) -> std::io::Result<ServerHandle> {
        let listener = tokio::net::UnixListener::bind(path)?;
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let name = format!("unix socket {}", path.display());
        Ok(self.serve_on(
            Listener::new(name, ConnLimits::exporter(limits)),
            incoming,
            Some(path.to_owned()),
            PassphraseLayer::with_limits(None, limits),
        ))
    }

    /// Serves the session on a bound TCP listener, through TLS when `tls` is given, under the
    /// process's limits.
    pub fn serve_tcp(
        &self,
        listener: tokio::net::TcpListener,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
        options: &ListenOptions,
    ) -> ServerHandle {
        self.serve_tcp_with_limits(listener, tls, options, crate::limits::global())
    }

    /// [`Session::serve_tcp`] under `limits`.
    pub fn serve_tcp_with_limits(
        &self,
        listener: tokio::net::TcpListener,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
        options: &ListenOptions,
        limits: &Limits,
    ) -> ServerHandle {
        let name = match listener.local_addr() {
            Ok(a) => format!("TCP listener {a}"),
            Err(_) => "TCP listener".to_string(),
        };
        let conf = Listener::new(name, ConnLimits::exporter(limits))
            .with_tls(tls.or_else(|| options.tls.clone()))
            .with_keepalive(options.keepalive);
        let guard = PassphraseLayer::with_limits(options.passphrase.as_deref(), limits);
        self.serve_on(conf, tcp_incoming(listener), None, guard)
    }

    /// Serves the session on any stream of connections (unix, TCP, router tunnels...).
    pub fn serve_incoming<S, IO, E>(&self, incoming: S, socket: Option<PathBuf>) -> ServerHandle
    where
        S: futures::Stream<Item = Result<IO, E>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + tonic::transport::server::Connected + Send + Unpin + 'static,
        IO::ConnectInfo: Clone + Send + Sync + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        self.serve_incoming_with(incoming, socket, &ListenOptions::default())
    }

    /// [`Session::serve_incoming`] with listener options (passphrase, keepalive). `socket` is
    /// a socket file to remove when the listener stops.
    pub fn serve_incoming_with<S, IO, E>(
        &self,
        incoming: S,
        socket: Option<PathBuf>,
        options: &ListenOptions,
    ) -> ServerHandle
    where
        S: futures::Stream<Item = Result<IO, E>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + tonic::transport::server::Connected + Send + Unpin + 'static,
        IO::ConnectInfo: Clone + Send + Sync + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        self.serve_incoming_with_limits(incoming, socket, options, crate::limits::global())
    }

    /// [`Session::serve_incoming_with`] under `limits`.
    pub fn serve_incoming_with_limits<S, IO, E>(
        &self,
        incoming: S,
        socket: Option<PathBuf>,
        options: &ListenOptions,
        limits: &Limits,
    ) -> ServerHandle
    where
        S: futures::Stream<Item = Result<IO, E>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + tonic::transport::server::Connected + Send + Unpin + 'static,
        IO::ConnectInfo: Clone + Send + Sync + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let name = match &socket {
            Some(path) => format!("unix socket {}", path.display()),
            None => "session listener".to_string(),
        };
        let conf = Listener::new(name, ConnLimits::exporter(limits))
            .with_tls(options.tls.clone())
            .with_keepalive(options.keepalive);
        let guard = PassphraseLayer::with_limits(options.passphrase.as_deref(), limits);
        self.serve_on(conf, incoming, socket, guard)
    }

    fn serve_on<S, IO, E>(
        &self,
        listener: Listener,
        incoming: S,
        socket: Option<PathBuf>,
        guard: PassphraseLayer,
    ) -> ServerHandle
    where
        S: futures::Stream<Item = Result<IO, E>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + tonic::transport::server::Connected + Send + Unpin + 'static,
        IO::ConnectInfo: Clone + Send + Sync + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let (exporter, router) = self.services();
        let routes = tonic::service::Routes::new(exporter)
            .add_service(router)
            .prepare();
        let service = tower::Layer::layer(&guard, routes);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let cancel = self.inner.cancel.clone();
        let task = tokio::spawn(serve(listener, incoming, service, async move {
            tokio::select! {
                _ = stop_rx => {}
                _ = cancel.cancelled() => {}
            }
        }));
        ServerHandle {
            stop: Some(stop_tx),
            task: Some(task),
            socket,
        }
    }
}

/// A running listener. Dropping it stops the listener (without waiting).
pub struct ServerHandle {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    socket: Option<PathBuf>,
}

impl ServerHandle {
    /// Stops accepting, lets in-flight calls finish for up to `grace`, then aborts the rest.
    /// Removes the socket file.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(grace, &mut task).await.is_err()
        {
            task.abort();
            let _ = task.await;
        }
        if let Some(path) = self.socket.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(path) = self.socket.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
