//! The attach step both remote modes of `jmp shell` share (`--tls-grpc` and a lease): once
//! the exporter's channel is open, stream its logs and wait for its beforeLease hook
//! ([`hook_ready`]), then serve a local unix socket that relays every call of the child over
//! that channel and show the message of the day ([`attach`]).

use std::ffi::OsString;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jumpstarter_core::Client;
use jumpstarter_core::client::Code;
use jumpstarter_core::exit::CliError;
use jumpstarter_core::forward::{Connect, Forwarder};
use jumpstarter_core::socket::SocketDir;
use jumpstarter_core::transport::H2Channel;
use jumpstarter_protocol::v1::{ExporterStatus, LogSource, LogStreamResponse};
use jumpstarter_protocol::wire::HOOK_WARNING_PREFIX;
use tokio::task::JoinHandle;

/// How long to wait for the exporter to become ready (upstream: 300 s).
const READY_TIMEOUT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(300);

/// Why the exporter did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    /// Failed or offline without a message: the status name.
    #[error("exporter is {0}")]
    Status(&'static str),
    /// Failed or offline: the exporter's message.
    #[error("{0}")]
    Failed(String),
    #[error("connection to the exporter lost: {0}")]
    Lost(String),
    #[error("GetStatus failed: {0}")]
    GetStatus(String),
    #[error("the exporter stopped answering GetStatus")]
    Silent,
    /// The seconds waited.
    #[error("Timeout waiting for beforeLease hook ({0} s)")]
    Timeout(u64),
}

/// Streams the exporter's logs (hook output always, the rest with `exporter_logs`) and waits
/// for its beforeLease hook; a hook that failed with a warning is shown. `logger` names the
/// waiting line's logger. Returns the log task, to abort when the shell ends.
pub async fn hook_ready(
    session: &Client,
    exporter_logs: bool,
    logger: &'static str,
) -> Result<JoinHandle<()>, CliError> {
    let logs = spawn_logs(session, exporter_logs);
    // Said only when there is something to wait for (a direct exporter without hooks is ready
    // at the first answer).
    let announce = || tracing::info!(logger, "Waiting for beforeLease hook to complete...");
    match wait_ready(session, announce).await {
        Ok(message) => {
            if let Some(warning) = message.strip_prefix(HOOK_WARNING_PREFIX) {
                jumpstarter_core::outln!("Warning: {warning}");
            }
            Ok(logs)
        }
        Err(e) => {
            logs.abort();
            Err(e.into())
        }
    }
}

/// The log stream alone, for an exporter without a status to wait for.
pub fn spawn_logs(session: &Client, exporter_logs: bool) -> JoinHandle<()> {
    tokio::spawn(stream_logs(session.clone(), exporter_logs))
}

/// The local socket the child reaches the exporter through, and what serves it.
pub struct Attached {
    dir: SocketDir,
    forwarder: Forwarder,
    logs: JoinHandle<()>,
}

impl Attached {
    /// The child's `JUMPSTARTER_HOST`.
    pub fn host(&self) -> OsString {
        self.dir.path().as_os_str().to_owned()
    }

    /// Stops the log stream and the relay.
    pub async fn close(self) {
        self.logs.abort();
        self.forwarder.stop().await;
        drop(self.dir);
    }
}

/// Serves a local socket relaying every call over `channel` (and over a new one from
/// `connect` when it breaks); an interactive shell (no `command`) gets the exporter's message
/// of the day first. `logs` is aborted on failure.
pub async fn attach(
    channel: H2Channel,
    session: &Client,
    logs: JoinHandle<()>,
    connect: Connect,
    command: &[OsString],
) -> Result<Attached, CliError> {
    let dir = match SocketDir::new() {
        Ok(d) => d,
        Err(e) => {
            logs.abort();
            return Err(CliError::from(e).context("cannot create a local socket directory"));
        }
    };
    let forwarder = match Forwarder::serve(dir.path(), Some(channel), connect) {
        Ok(f) => f,
        Err(e) => {
            logs.abort();
            return Err(
                CliError::from(e).context(format!("cannot listen on {}", dir.path().display()))
            );
        }
    };
    if command.is_empty()
        && let Ok(report) = session.get_report().await
        && !report.motd.trim().is_empty()
    {
        jumpstarter_core::outln!("{}", report.motd.trim_end());
    }
    Ok(Attached {
        dir,
        forwarder,
        logs,
    })
}

/// Polls GetStatus until LEASE_READY (the message is returned) or a failure (the message is
/// the error); `announce` runs once, when the first answer (or the lack of one) means waiting.
async fn wait_ready(client: &Client, announce: impl FnOnce()) -> Result<String, ReadyError> {
    let mut announce = Some(announce);
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last: Option<(i32, u64)> = None;
    let mut unavailable = 0u32;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), client.get_status()).await {
            Ok(Ok(s)) => {
                unavailable = 0;
                let status = ExporterStatus::try_from(s.status).unwrap_or_default();
                if last != Some((s.status, s.status_version)) {
                    tracing::debug!(
                        logger = "jmp.status",
                        "Status changed: {} (version={})",
                        status.as_str_name(),
                        s.status_version
                    );
                    last = Some((s.status, s.status_version));
                }
                let message = s.message.unwrap_or_default();
                match status {
                    ExporterStatus::LeaseReady => return Ok(message),
                    ExporterStatus::BeforeLeaseHookFailed | ExporterStatus::Offline => {
                        return Err(if message.is_empty() {
                            ReadyError::Status(status.as_str_name())
                        } else {
                            ReadyError::Failed(message)
                        });
                    }
                    _ => {}
                }
            }
            Ok(Err(s)) if s.code() == Code::Unimplemented => return Ok(String::new()),
            Ok(Err(s)) if s.code() == Code::Unavailable => {
                unavailable += 1;
                if unavailable >= 20 {
                    return Err(ReadyError::Lost(s.message().to_string()));
                }
            }
            Ok(Err(s)) => return Err(ReadyError::GetStatus(s.message().to_string())),
            Err(_) => {
                unavailable += 1;
                if unavailable >= 20 {
                    return Err(ReadyError::Silent);
                }
            }
        }
        // Not ready yet: waiting.
        if let Some(announce) = announce.take() {
            announce();
        }
        if Instant::now() >= deadline {
            return Err(ReadyError::Timeout(READY_TIMEOUT.as_secs()));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Prints LogStream records as they arrive: hook output always, driver and system records
/// with `--exporter-logs`. Reconnects a few times if the stream breaks.
async fn stream_logs(client: Client, all: bool) {
    let mut retries = 0u32;
    let mut delay = Duration::from_millis(100);
    loop {
        match client.log_stream().await {
            Ok(stream) => {
                let mut stream = Box::pin(stream);
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(r) => {
                            retries = 0;
                            print_record(r, all);
                        }
                        Err(s) if matches!(s.code(), Code::Cancelled | Code::Unimplemented) => {
                            return;
                        }
                        Err(s) => {
                            tracing::debug!("LogStream failed: {}", s.message());
                            break;
                        }
                    }
                }
            }
            Err(s) if matches!(s.code(), Code::Cancelled | Code::Unimplemented) => return,
            Err(s) => tracing::debug!("LogStream failed: {}", s.message()),
        }
        retries += 1;
        if retries > 10 {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

fn print_record(r: LogStreamResponse, all: bool) {
    let source = r
        .source
        .and_then(|s| LogSource::try_from(s).ok())
        .unwrap_or(LogSource::System);
    let logger = match source {
        LogSource::BeforeLeaseHook => "exporter:beforeLease",
        LogSource::AfterLeaseHook => "exporter:afterLease",
        LogSource::Driver => "exporter:driver",
        _ => "exporter:system",
    };
    let hook = matches!(
        source,
        LogSource::BeforeLeaseHook | LogSource::AfterLeaseHook
    );
    if !hook && !all {
        return;
    }
    if r.message.contains("raised by servicer method") && r.message.contains("NotImplementedError")
    {
        return;
    }
    let msg = r.message;
    match jumpstarter_core::logs::Level::parse(&r.severity).unwrap_or_default() {
        jumpstarter_core::logs::Level::Debug => tracing::debug!(logger, "{msg}"),
        jumpstarter_core::logs::Level::Info => tracing::info!(logger, "{msg}"),
        jumpstarter_core::logs::Level::Warning => tracing::warn!(logger, "{msg}"),
        _ => tracing::error!(logger, "{msg}"),
    }
}
