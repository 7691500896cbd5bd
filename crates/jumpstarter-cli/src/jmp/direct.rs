//! `jmp shell --tls-grpc HOST:PORT`: a shell connected straight to a `jmp run
//! --tls-grpc-listener` exporter (ours or upstream's), without a controller.
//!
//! Sequence (upstream's, protocol notes §6.2 without EndSession): connect (TLS unless
//! `--tls-grpc-insecure`, passphrase on every call), GetReport, one GetStatus, then LogStream
//! (hook lines always shown, the rest with `--exporter-logs`) while waiting for LEASE_READY or
//! BEFORE_LEASE_HOOK_FAILED. Then the command runs, and its exit code is ours.
//!
//! Unlike upstream, the child's `JUMPSTARTER_HOST` is a local unix socket that relays every
//! call over this shell's connection ([`jumpstarter_core::forward`]): `j` and Python clients
//! inside reach TLS and passphrase-protected exporters without any setting of their own (bug
//! B7). `JMP_EXPORTER` and `JMP_LEASE` are `direct`, as upstream.
//!
//! TLS trust: `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` or the system store; `JMP_GRPC_INSECURE=1`
//! (or `JUMPSTARTER_GRPC_INSECURE=1`) accepts any server certificate, as upstream's `jmp` does.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jumpstarter_core::client::Code;
use jumpstarter_core::forward::{Connect, Forwarder};
use jumpstarter_core::socket::SocketDir;
use jumpstarter_core::tls::{self, ServerTrust};
use jumpstarter_core::transport::{Dial, H2Channel, Target};
use jumpstarter_core::{Client, ClientError};
use jumpstarter_protocol::v1::{ExporterStatus, LogSource, LogStreamResponse};
use jumpstarter_protocol::wire::HOOK_WARNING_PREFIX;

use super::shell::run_child;

/// How long to wait for the exporter to become ready (upstream: 300 s).
const READY_TIMEOUT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(300);

pub struct DirectShell<'a> {
    pub address: &'a str,
    pub insecure: bool,
    pub passphrase: Option<String>,
    pub exporter_logs: bool,
    pub command: &'a [OsString],
}

fn env_true(names: &[&str]) -> bool {
    names
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")))
}

/// How `jmp shell --tls-grpc` dials: plaintext with `--tls-grpc-insecure`, else TLS.
fn dial_options(insecure: bool, passphrase: Option<String>) -> Result<Dial, String> {
    let tls = if insecure {
        None
    } else {
        let trust = if env_true(&["JMP_GRPC_INSECURE", "JUMPSTARTER_GRPC_INSECURE"]) {
            ServerTrust::AnyCertificate
        } else {
            ServerTrust::Roots(Arc::new(tls::default_roots().map_err(|e| e.to_string())?))
        };
        Some(tls::client_config(&trust).map_err(|e| e.to_string())?)
    };
    Ok(Dial { tls, passphrase })
}

pub async fn run(args: DirectShell<'_>) -> i32 {
    let target = Target::parse(args.address);
    if !matches!(target, Target::Tcp { .. }) {
        eprintln!(
            "Usage: jmp shell [OPTIONS] [COMMAND]...\nTry 'jmp shell --help' for help.\n\n\
             Error: Invalid value for '--tls-grpc': expected HOST:PORT, got '{}'",
            args.address
        );
        return 2;
    }
    let dial = match dial_options(args.insecure, args.passphrase.clone()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let mut int = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error: cannot watch SIGINT: {e}");
            return 1;
        }
    };
    let prepared = tokio::select! {
        r = prepare(&target, &dial, args.exporter_logs) => r,
        _ = int.recv() => {
            eprintln!("Error: Cancelled by user.");
            return 2;
        }
    };
    let (channel, client, logs) = match prepared {
        Ok(p) => p,
        Err(code) => return code,
    };
    let dir = match SocketDir::new() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("Error: cannot create a local socket directory: {e}");
            logs.abort();
            return 1;
        }
    };
    let connect: Connect = {
        let (target, dial) = (target.clone(), dial.clone());
        Arc::new(move || {
            let (target, dial) = (target.clone(), dial.clone());
            Box::pin(async move { H2Channel::dial(&target, &dial).await })
        })
    };
    let forwarder = match Forwarder::serve(dir.path(), Some(channel), connect) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("Error: cannot listen on {}: {e}", dir.path().display());
            logs.abort();
            return 1;
        }
    };
    if args.command.is_empty()
        && let Ok(report) = client.get_report().await
        && !report.motd.trim().is_empty()
    {
        println!("{}", report.motd.trim_end());
    }
    let env = [
        ("JUMPSTARTER_HOST", dir.path().as_os_str().to_owned()),
        ("JMP_DRIVERS_ALLOW", "UNSAFE".into()),
        ("_JMP_SUPPRESS_DRIVER_WARNINGS", "1".into()),
        ("JMP_EXPORTER", "direct".into()),
        ("JMP_LEASE", "direct".into()),
    ];
    let code = run_child(args.command, "direct", &env).await;
    logs.abort();
    forwarder.stop().await;
    code
}

/// Connects, checks the exporter and waits until it is ready. Errors are printed; the `Err`
/// is the exit code.
async fn prepare(
    target: &Target,
    dial: &Dial,
    exporter_logs: bool,
) -> Result<(H2Channel, Client, tokio::task::JoinHandle<()>), i32> {
    let channel = H2Channel::dial(target, dial).await.map_err(|e| {
        eprintln!("Error: Exporter did not respond to initial connection (Caused by: {e})");
        1
    })?;
    let client = Client::from_channel(channel.clone()).await.map_err(|e| {
        match e {
            ClientError::Unauthenticated(m) => eprintln!("Error: Authentication failed: {m}"),
            other => eprintln!("Error: {other}"),
        }
        1
    })?;
    if let Err(s) = client.get_status().await {
        if s.code() == Code::Unimplemented {
            tracing::debug!("GetStatus is not implemented; assuming the exporter is ready");
            let logs = tokio::spawn(stream_logs(client.clone(), exporter_logs));
            return Ok((channel, client, logs));
        }
        eprintln!(
            "Error: Exporter {target} did not respond to initial status check: {}",
            s.message()
        );
        return Err(1);
    }
    let logs = tokio::spawn(stream_logs(client.clone(), exporter_logs));
    tracing::info!(
        logger = "jmp.shell",
        "Waiting for beforeLease hook to complete..."
    );
    match wait_ready(&client).await {
        Ok(message) => {
            if let Some(warning) = message.strip_prefix(HOOK_WARNING_PREFIX) {
                println!("Warning: {warning}");
            }
            Ok((channel, client, logs))
        }
        Err(message) => {
            logs.abort();
            eprintln!("Error: {message}");
            Err(1)
        }
    }
}

/// Polls GetStatus until LEASE_READY (the message is returned) or a failure (the message is
/// the error).
pub(super) async fn wait_ready(client: &Client) -> Result<String, String> {
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
                            format!("exporter is {}", status.as_str_name())
                        } else {
                            message
                        });
                    }
                    _ => {}
                }
            }
            Ok(Err(s)) if s.code() == Code::Unimplemented => return Ok(String::new()),
            Ok(Err(s)) if s.code() == Code::Unavailable => {
                unavailable += 1;
                if unavailable >= 20 {
                    return Err(format!("connection to the exporter lost: {}", s.message()));
                }
            }
            Ok(Err(s)) => return Err(format!("GetStatus failed: {}", s.message())),
            Err(_) => {
                unavailable += 1;
                if unavailable >= 20 {
                    return Err("the exporter stopped answering GetStatus".into());
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "Timeout waiting for beforeLease hook ({} s)",
                READY_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Prints LogStream records as they arrive: hook output always, driver and system records
/// with `--exporter-logs`. Reconnects a few times if the stream breaks.
pub(super) async fn stream_logs(client: Client, all: bool) {
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
