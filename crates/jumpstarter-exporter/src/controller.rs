//! Controller mode (`jmp run --exporter ALIAS` with `endpoint` and `token`): register with a
//! controller, report status, keep the Status stream, and serve each lease in a fresh session
//! whose connections arrive through router tunnels (controller.md §8, protocol notes §8).
//!
//! ```text
//! connect -> Register(report) -> ReportStatus(AVAILABLE) -> Status stream
//!   leased=true L  -> new session + hook socket, Listen(L) (each ListenResponse: a router
//!                     stream becomes one connection of the session), beforeLease hook,
//!                     LEASE_READY; session status changes are reported as they happen
//!   leased=false   -> afterLease hook, ReleaseLease(L), AVAILABLE, session closed
//!   EndSession     -> afterLease hook at once (the client still listening), AVAILABLE,
//!                     1 s, ReleaseLease(L); leased=false then finds the hook done
//! ```
//!
//! When the controller goes away the current lease keeps running (its router tunnels do not
//! need the controller) and the exporter reconnects with back-off (0.5 s doubling to 10 s,
//! for ever; upstream gives up after ~8 s and relies on a supervisor). The first Status
//! message after a reconnect says whether the lease is still ours.
//!
//! A refused credential is not transient: when the controller refuses the exporter's token
//! (or its name) [`AUTH_TRIES`] times with no successful Register in between, with the same
//! back-off between tries, [`Exporter::run_controller`] gives up with [`RunError::Refused`].
//! What counts as a refusal is [`is_refusal`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use jumpstarter_config::{Env, ExporterConfig};
use jumpstarter_core::channel::{ChannelError, ChannelSettings};
use jumpstarter_core::controller::{Identity, RouterStream, router_stream};
use jumpstarter_core::logs::LogHub;
use jumpstarter_core::session::{ServerHandle, Session};
use jumpstarter_core::socket::SocketDir;
use jumpstarter_core::transport::{Dial, H2Channel, Target};
use jumpstarter_protocol::v1::controller_service_client::ControllerServiceClient;
use jumpstarter_protocol::v1::{
    EndSessionResponse, ExporterStatus, ListenRequest, RegisterRequest, ReleaseLeaseRequest,
    ReportStatusRequest, StatusRequest, UnregisterRequest,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Request;

use crate::Exporter;
use crate::direct::{Control, Outcome, SHUTDOWN_GRACE};
use crate::hooks::{HookEnv, HookKind};
use crate::lease::{HookPhase, after_lease, before_lease};

/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Refusals of the exporter's credentials, without a successful Register in between, after
/// which controller mode gives up.
pub const AUTH_TRIES: u32 = 3;
/// After an EndSession's afterLease phase, how long before the release is requested
/// (upstream's pause, so the client sees AVAILABLE before its tunnel goes).
const RELEASE_AFTER_END_SESSION: Duration = Duration::from_secs(1);

/// Why controller mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the exporter config has no endpoint: controller mode needs endpoint and token")]
    NoEndpoint,
    #[error("the exporter config has no token: controller mode needs endpoint and token")]
    NoToken,
    /// The token is not a JWT (named with its file position or variable).
    #[error(transparent)]
    Token(jumpstarter_config::ConfigError),
    /// The `tls` section, TLS environment variables or `grpcOptions` are not usable.
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

/// Why controller mode ended without being told to stop.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The controller refused the exporter's credentials [`AUTH_TRIES`] times.
    #[error(
        "the controller at {target} refused this exporter's credentials {tries} times \
         ({what}: {message}); check token, endpoint and metadata (namespace, name) in the \
         exporter config (the controller's admin prints a fresh one), then restart"
    )]
    Refused {
        target: String,
        tries: u32,
        /// The RPC that was refused, e.g. "Register failed".
        what: &'static str,
        /// The controller's message.
        message: String,
        #[source]
        status: tonic::Status,
    },
}

/// Whether `status` says the controller refuses the exporter's credentials (retrying with the
/// same config cannot help), as opposed to a transient failure.
///
/// UNAUTHENTICATED and PERMISSION_DENIED are refusals. Upstream's controller (and ours, which
/// is wire-compatible) answers a token that no authenticator accepts, or whose signature or
/// expiry is wrong, with UNKNOWN and the authenticator's text (controller.md §2.3), and an
/// exporter that does not exist with UNKNOWN `... exporters.jumpstarter.dev "<name>" not found`;
/// those texts are refusals too. A controller that is down, UNAVAILABLE or whose token issuer
/// is "not initialized" yet is transient.
pub fn is_refusal(status: &tonic::Status) -> bool {
    use tonic::Code;
    let m = status.message();
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => true,
        Code::Unknown => {
            m.contains("failed to authenticate token")
                || m.starts_with("oidc: verify token:")
                || (m.starts_with("exporter ") && m.contains("exporters.jumpstarter.dev"))
        }
        Code::InvalidArgument => {
            m == "object kind mismatch"
                || m.starts_with("resource name mismatch")
                || m.starts_with("malformed authorization header")
        }
        _ => false,
    }
}

/// How to reach and authenticate with the controller.
#[derive(Clone)]
pub struct Link {
    target: Target,
    /// TLS (`tls.ca`/`tls.insecure`, `JMP_GRPC_INSECURE`, `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`,
    /// `JUMPSTARTER_FORCE_SYSTEM_CERTS`) and `grpcOptions`, as for clients.
    settings: ChannelSettings,
    dial: Dial,
    who: Identity,
}

impl Link {
    pub fn from_config(config: &ExporterConfig) -> Result<Link, LinkError> {
        config
            .endpoint
            .as_deref()
            .filter(|e| !e.is_empty())
            .ok_or(LinkError::NoEndpoint)?;
        let token = config
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or(LinkError::NoToken)?;
        config.check_token().map_err(LinkError::Token)?;
        let settings = ChannelSettings::for_exporter(config, &Env::process())?;
        Ok(Link {
            target: Target::endpoint(&settings.endpoint).map_err(ChannelError::from)?,
            dial: settings.dial(),
            settings,
            who: Identity {
                token,
                kind: "Exporter",
                namespace: config
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                name: config.metadata.name.clone(),
            },
        })
    }

    fn request<T>(&self, msg: T) -> Request<T> {
        self.who.request(msg)
    }

    async fn controller(&self) -> Result<ControllerServiceClient<H2Channel>, ServeError> {
        let ch = self
            .settings
            .h2(&self.settings.endpoint)
            .await
            .map_err(|source| ServeError::Connect {
                target: self.target.to_string(),
                source: Box::new(source),
            })?;
        let origin = ch.origin();
        Ok(ControllerServiceClient::with_origin(ch, origin))
    }
}

/// A lease being served.
struct ActiveLease {
    name: String,
    session: Session,
    /// Listen + tunnels + status reports of this lease.
    cancel: CancellationToken,
    server: ServerHandle,
    hook_server: ServerHandle,
    _hook_dir: SocketDir,
    env: HookEnv,
    ready: bool,
    /// Set by whoever runs the afterLease phase first: a client's EndSession or the lease's end.
    after_claimed: Arc<AtomicBool>,
    /// The afterLease phase started by EndSession (it ends with a release request), and
    /// its result once the hook is done.
    early_end: tokio::task::JoinHandle<()>,
    early_phase: oneshot::Receiver<HookPhase>,
}

impl Exporter {
    /// Runs controller mode until told to stop or a hook says `exit`.
    ///
    /// Ends with [`RunError::Refused`] when the controller keeps refusing the exporter's
    /// credentials (after the same goodbye as a stop).
    pub async fn run_controller(&self, control: Control) -> Result<Outcome, RunError> {
        let link = Link::from_config(self.config())?;
        let mut backoff = MIN_BACKOFF;
        let mut lease: Option<ActiveLease> = None;
        let mut refusals = 0u32;
        let ended = loop {
            if control.is_stopping() {
                break Ok(Outcome::Stopped);
            }
            match self
                .connected(&link, &control, &mut lease, &mut backoff, &mut refusals)
                .await
            {
                Ok(Some(outcome)) => break Ok(outcome),
                Ok(None) => {}
                Err(ServeError::Rpc { what, status }) if is_refusal(&status) => {
                    refusals += 1;
                    if refusals >= AUTH_TRIES {
                        break Err(RunError::Refused {
                            target: link.target.to_string(),
                            tries: refusals,
                            what,
                            message: status.message().to_string(),
                            status,
                        });
                    }
                    tracing::warn!(
                        "{what}: {} (refused {refusals} of {AUTH_TRIES} times); \
                         reconnecting in {backoff:?}",
                        status.message()
                    );
                }
                Err(e) => tracing::warn!("{e}; reconnecting in {backoff:?}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = control.stop.cancelled() => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
        let refused = ended.is_err();
        if let Some(l) = lease.take() {
            self.end_lease(&link, l, &control).await;
        }
        // Goodbye (best effort, bounded).
        let bye = async {
            if let Ok(mut c) = link.controller().await {
                let _ = c
                    .report_status(link.request(ReportStatusRequest {
                        status: ExporterStatus::Offline as i32,
                        message: Some("Exporter shutting down".into()),
                        release_lease: None,
                    }))
                    .await;
                let _ = c
                    .unregister(link.request(UnregisterRequest {
                        reason: "Exporter shutting down".into(),
                    }))
                    .await;
            }
        };
        if !refused {
            let _ = tokio::time::timeout(Duration::from_secs(10), bye).await;
        }
        ended
    }

    /// One connection to the controller: register, then follow the Status stream. Returns
    /// `Ok(Some(_))` to stop, `Ok(None)`/`Err` to reconnect.
    async fn connected(
        &self,
        link: &Link,
        control: &Control,
        lease: &mut Option<ActiveLease>,
        backoff: &mut Duration,
        refusals: &mut u32,
    ) -> Result<Option<Outcome>, ServeError> {
        let mut c = link.controller().await?;
        let probe = self
            .new_session(LogHub::new())
            .await
            .map_err(ServeError::other)?;
        let report = probe.full_report();
        probe.close().await;
        c.register(link.request(RegisterRequest {
            labels: report.labels.clone(),
            reports: report.reports.clone(),
        }))
        .await
        .map_err(ServeError::rpc("Register failed"))?;
        *refusals = 0;
        let (status, message) = match lease {
            Some(l) => {
                let s = l.session.status();
                (s.status, s.message)
            }
            None => (
                ExporterStatus::Available,
                "Exporter registered and available".to_string(),
            ),
        };
        report_status(&mut c, link, status, &message).await?;
        let mut stream = c
            .status(link.request(StatusRequest {}))
            .await
            .map_err(ServeError::rpc("Status stream refused"))?
            .into_inner();
        tracing::info!("registered with the controller at {}", link.target);
        loop {
            let msg = tokio::select! {
                m = stream.next() => m,
                _ = control.stop.cancelled() => return Ok(Some(Outcome::Stopped)),
            };
            let msg = match msg {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(ServeError::rpc("Status stream failed")(e)),
                None => return Err(ServeError::Ended("Status stream")),
            };
            *backoff = MIN_BACKOFF;
            let wanted: Option<String> = if msg.leased {
                Some(msg.lease_name.clone().unwrap_or_default())
            } else {
                None
            };
            let current: Option<String> = lease.as_ref().map(|l| l.name.clone());
            if wanted == current {
                continue;
            }
            if let Some(l) = lease.take() {
                self.end_lease(link, l, control).await;
            }
            if let Some(lease_name) = wanted {
                let client = msg.client_name.clone().unwrap_or_default();
                match self.start_lease(link, &lease_name, &client, control).await {
                    Ok((l, outcome)) => {
                        *lease = Some(l);
                        if let Some(o) = outcome {
                            return Ok(Some(o));
                        }
                    }
                    Err(e) => tracing::error!("cannot serve lease {lease_name}: {e}"),
                }
            }
        }
    }

    async fn start_lease(
        &self,
        link: &Link,
        name: &str,
        client: &str,
        control: &Control,
    ) -> Result<(ActiveLease, Option<Outcome>), ServeError> {
        tracing::info!(lease = name, client, "lease started");
        let session = self
            .new_session(LogHub::new())
            .await
            .map_err(ServeError::other)?;
        let hook_dir = SocketDir::new().map_err(ServeError::other)?;
        let hook_server = session
            .serve_unix(hook_dir.path())
            .map_err(ServeError::other)?;
        let cancel = CancellationToken::new();
        let (conn_tx, conn_rx) = mpsc::channel::<Result<RouterStream, std::io::Error>>(8);
        let server = session.serve_incoming(ReceiverStream::new(conn_rx), None);

        // Status reports follow the session.
        let mut status_rx = session.watch_status();
        let (l2, c2) = (link.clone(), cancel.clone());
        tokio::spawn(async move {
            let Ok(mut c) = l2.controller().await else {
                return;
            };
            loop {
                let s = status_rx.borrow_and_update().clone();
                if let Err(e) = report_status(&mut c, &l2, s.status, &s.message).await {
                    tracing::warn!("{e}");
                    match l2.controller().await {
                        Ok(fresh) => c = fresh,
                        Err(_) => tokio::time::sleep(MIN_BACKOFF).await,
                    }
                    continue;
                }
                tokio::select! {
                    r = status_rx.changed() => if r.is_err() { return },
                    _ = c2.cancelled() => return,
                }
            }
        });

        // Listen: each answer is a router stream, served as a connection of the session once
        // the client has joined it. A stream nobody joins within the handshake timeout is
        // closed, at most `max_pending_dials` wait at once (more Dials are ignored until
        // some pair or time out), and every stream of the lease ends with the lease.
        let (l3, c3, lease_name) = (link.clone(), cancel.clone(), name.to_string());
        let limits = jumpstarter_core::limits::global();
        let pending = Arc::new(tokio::sync::Semaphore::new(limits.max_pending_dials));
        let pairing_timeout = limits.handshake_timeout;
        tokio::spawn(async move {
            let mut backoff = MIN_BACKOFF;
            while !c3.is_cancelled() {
                let listen = async {
                    let mut c = l3.controller().await?;
                    let mut s = c
                        .listen(l3.request(ListenRequest {
                            lease_name: lease_name.clone(),
                        }))
                        .await
                        .map_err(ServeError::rpc("Listen refused"))?
                        .into_inner();
                    let mut refused = 0u64;
                    while let Some(m) = s.next().await {
                        let m = m.map_err(ServeError::rpc("Listen failed"))?;
                        let Ok(permit) = pending.clone().try_acquire_owned() else {
                            // One line per burst, not per Dial.
                            if refused == 0 {
                                tracing::warn!(
                                    lease = %lease_name,
                                    "ignoring Dials: {}",
                                    jumpstarter_core::limits::Limits::exceeded(
                                        "max_pending_dials",
                                        limits.max_pending_dials
                                    )
                                );
                            }
                            refused += 1;
                            continue;
                        };
                        if refused > 0 {
                            tracing::warn!(lease = %lease_name, "{refused} Dials were ignored");
                            refused = 0;
                        }
                        let (l4, tx, end) = (l3.clone(), conn_tx.clone(), c3.clone());
                        tokio::spawn(async move {
                            let joined = async {
                                let t =
                                    router_stream(&m.router_endpoint, &m.router_token, &l4.dial)
                                        .await
                                        .map_err(ServeError::other)?;
                                t.paired(pairing_timeout).await.map_err(ServeError::other)
                            };
                            let joined = tokio::select! {
                                j = joined => j,
                                _ = end.cancelled() => return,
                            };
                            drop(permit);
                            match joined {
                                Ok(t) => {
                                    let _ = tx.send(Ok(t.ending_with(end))).await;
                                }
                                Err(e) => tracing::debug!("router stream dropped: {e}"),
                            }
                        });
                    }
                    Ok::<_, ServeError>(())
                };
                tokio::select! {
                    r = listen => {
                        if let Err(e) = r { tracing::warn!("{e}"); } else { backoff = MIN_BACKOFF; }
                    }
                    _ = c3.cancelled() => return,
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = c3.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });

        let env = HookEnv {
            socket: hook_dir.path().to_owned(),
            lease_name: name.to_string(),
            client_name: client.to_string(),
        };
        let before = before_lease(
            &session,
            self.config().hooks.before_lease.as_ref(),
            &env,
            &control.stop,
        )
        .await;
        let (ready, outcome) = match before {
            HookPhase::Done | HookPhase::Warned(_) | HookPhase::Interrupted => (true, None),
            HookPhase::EndLease(_) => {
                // The lease is given back; the controller ends it and says leased=false.
                release(link, name).await;
                (false, None)
            }
            HookPhase::Exit(_) => (false, Some(Outcome::HookExit(HookKind::BeforeLease))),
        };
        // EndSession (a client's shell is done): afterLease now, while the client still
        // listens (its output reaches the client's log stream), then ask the controller to
        // release the lease; the lease's end then finds the phase done.
        let after_claimed = Arc::new(AtomicBool::new(false));
        let (end_tx, mut end_rx) = mpsc::channel::<()>(1);
        let claimed = after_claimed.clone();
        session.set_end_session_handler(Arc::new(move || {
            if !claimed.swap(true, Ordering::SeqCst) {
                let _ = end_tx.try_send(());
            }
            Box::pin(async {
                EndSessionResponse {
                    success: true,
                    message: Some(
                        "Session end triggered, afterLease hook running asynchronously".into(),
                    ),
                }
            })
        }));
        let (phase_tx, early_phase) = oneshot::channel();
        let early_end = {
            let (session, env, link, lease) =
                (session.clone(), env.clone(), link.clone(), name.to_string());
            let hook = if ready {
                self.config().hooks.after_lease.clone()
            } else {
                None
            };
            let (force, lease_cancel) = (control.force.clone(), cancel.clone());
            tokio::spawn(async move {
                tokio::select! {
                    r = end_rx.recv() => if r.is_none() { return },
                    _ = lease_cancel.cancelled() => return,
                }
                tracing::info!(lease = %lease, "EndSession: running afterLease before the release");
                let phase = after_lease(&session, hook.as_ref(), &env, &force).await;
                let _ = phase_tx.send(phase);
                tokio::time::sleep(RELEASE_AFTER_END_SESSION).await;
                release(&link, &lease).await;
            })
        };
        Ok((
            ActiveLease {
                name: name.to_string(),
                session,
                cancel,
                server,
                hook_server,
                _hook_dir: hook_dir,
                env,
                ready,
                after_claimed,
                early_end,
                early_phase,
            },
            outcome,
        ))
    }

    async fn end_lease(&self, link: &Link, l: ActiveLease, control: &Control) {
        tracing::info!(lease = %l.name, "lease ended");
        let after = if l.after_claimed.swap(true, Ordering::SeqCst) {
            // EndSession started the afterLease phase: let the hook finish. Its pending
            // release request is moot now that the lease has ended.
            let phase = l.early_phase.await.ok();
            l.early_end.abort();
            phase
        } else {
            l.early_end.abort();
            if l.ready {
                Some(
                    after_lease(
                        &l.session,
                        self.config().hooks.after_lease.as_ref(),
                        &l.env,
                        &control.force,
                    )
                    .await,
                )
            } else {
                l.session
                    .set_status(ExporterStatus::Available, "Available for new lease");
                None
            }
        };
        if matches!(after, Some(HookPhase::Exit(_))) {
            control.stop();
        }
        release(link, &l.name).await;
        // The last status (AVAILABLE) is reported before the reporter stops.
        if let Ok(mut c) = link.controller().await {
            let s = l.session.status();
            let _ = report_status(&mut c, link, s.status, &s.message).await;
        }
        l.cancel.cancel();
        l.session.close().await;
        l.server.shutdown(SHUTDOWN_GRACE).await;
        l.hook_server.shutdown(SHUTDOWN_GRACE).await;
    }
}

async fn report_status(
    c: &mut ControllerServiceClient<H2Channel>,
    link: &Link,
    status: ExporterStatus,
    message: &str,
) -> Result<(), ServeError> {
    c.report_status(link.request(ReportStatusRequest {
        status: status as i32,
        message: Some(message.to_string()),
        release_lease: None,
    }))
    .await
    .map(|_| ())
    .map_err(ServeError::rpc("ReportStatus failed"))
}

async fn release(link: &Link, lease: &str) {
    let Ok(mut c) = link.controller().await else {
        return;
    };
    if let Err(e) = c
        .release_lease(link.request(ReleaseLeaseRequest {
            name: lease.to_string(),
        }))
        .await
    {
        tracing::debug!("ReleaseLease {lease}: {}", e.message());
    }
}

/// Why the link to the controller (or one lease's serving) failed; logged, then retried.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("cannot reach the controller at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An RPC the controller refused or that broke (`what`: "Register failed", ...).
    #[error("{what}: {}", .status.message())]
    Rpc {
        what: &'static str,
        #[source]
        status: tonic::Status,
    },
    #[error("{0} ended")]
    Ended(&'static str),
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl ServeError {
    fn rpc(what: &'static str) -> impl FnOnce(tonic::Status) -> ServeError {
        move |status| ServeError::Rpc { what, status }
    }

    fn other(e: impl std::error::Error + Send + Sync + 'static) -> ServeError {
        ServeError::Other(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::is_refusal;
    use tonic::Status;

    #[test]
    fn refusals_and_transient_failures() {
        for s in [
            Status::unauthenticated("missing authorization header"),
            Status::unauthenticated("token revoked: it was replaced by a newer token"),
            Status::permission_denied("permission denied for exporter default/e1"),
            Status::unknown("failed to authenticate token"),
            Status::unknown("oidc: verify token: oidc: token is expired (Token Expiry: x)"),
            Status::unknown("exporter default/e1: exporters.jumpstarter.dev \"e1\" not found"),
            Status::invalid_argument("object kind mismatch"),
        ] {
            assert!(is_refusal(&s), "{s:?}");
        }
        for s in [
            Status::unavailable("connection refused"),
            Status::unknown("authenticator not initialized"),
            Status::unknown("some storage error"),
            Status::internal("boom"),
            Status::deadline_exceeded("slow"),
            Status::invalid_argument("labels too long"),
        ] {
            assert!(!is_refusal(&s), "{s:?}");
        }
    }
}
