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
//! TLS trust: `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` or the system store (a self-signed
//! certificate that is its own trust anchor is accepted even when marked `CA:TRUE`, as
//! upstream does); `JMP_GRPC_INSECURE=1` (or `JUMPSTARTER_GRPC_INSECURE=1`) accepts any server
//! certificate, as upstream's `jmp` does. The passphrase is `--passphrase`, else
//! `JMP_GRPC_PASSPHRASE` (what `j` reads; upstream's `jmp shell` has no variable). A TLS
//! client against a plaintext exporter, or the reverse, is told which flag to change.

use std::ffi::OsString;
use std::sync::Arc;

use jumpstarter_core::client::Code;
use jumpstarter_core::exit::{CliError, CliResult};
use jumpstarter_core::forward::Connect;
use jumpstarter_core::tls::{self, ServerTrust};
use jumpstarter_core::transport::{self, Dial, DialError, H2Channel, Target};
use jumpstarter_core::{Client, ClientError};

use super::attach::{attach, hook_ready, spawn_logs};
use super::{USAGE, run_child};

/// Why the exporter could not be reached.
#[derive(Debug, thiserror::Error)]
enum DirectError {
    #[error("Exporter did not respond to initial connection (Caused by: {0})")]
    Connect(#[source] DialError),
    /// The exporter's message.
    #[error("Authentication failed: {0}")]
    Auth(String),
    #[error("Exporter {target} did not respond to initial status check: {message}")]
    Status { target: String, message: String },
    /// Plaintext (`--tls-grpc-insecure`) dialled a TLS exporter.
    #[error(
        "Exporter did not respond to initial connection (Caused by: the exporter at {target} \
         speaks TLS; drop --tls-grpc-insecure, and trust its certificate with \
         GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=CERT.pem or skip verification with JMP_GRPC_INSECURE=1)"
    )]
    SpeaksTls { target: String },
    /// TLS dialled a plaintext exporter.
    #[error(
        "Exporter did not respond to initial connection (Caused by: the exporter at {target} \
         speaks plaintext gRPC, not TLS (it runs with --tls-grpc-insecure); add \
         --tls-grpc-insecure, or restart it with --tls-cert and --tls-key)"
    )]
    Plaintext { target: String },
}

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
fn dial_options(insecure: bool, passphrase: Option<String>) -> Result<Dial, tls::TlsError> {
    let tls = if insecure {
        None
    } else {
        let trust = if env_true(&["JMP_GRPC_INSECURE", "JUMPSTARTER_GRPC_INSECURE"]) {
            ServerTrust::AnyCertificate
        } else {
            ServerTrust::Roots(Arc::new(tls::default_roots()?))
        };
        Some(tls::client_config(&trust)?)
    };
    Ok(Dial { tls, passphrase })
}

/// `jmp shell --tls-grpc`: the command's exit code, or why it could not run.
pub async fn run(args: DirectShell<'_>) -> CliResult {
    let target = Target::parse(args.address);
    if !matches!(target, Target::Tcp { .. }) {
        return Err(CliError::usage_of(
            USAGE,
            format!(
                "Invalid value for '--tls-grpc': expected HOST:PORT, got '{}'",
                args.address
            ),
        ));
    }
    // As `j` does: the passphrase may come from JMP_GRPC_PASSPHRASE (kept out of `ps`).
    let passphrase = args.passphrase.clone().or_else(|| {
        std::env::var("JMP_GRPC_PASSPHRASE")
            .ok()
            .filter(|p| !p.is_empty())
    });
    let dial = dial_options(args.insecure, passphrase)?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| CliError::from(e).context("cannot watch SIGINT"))?;
    let (channel, client, logs) = tokio::select! {
        r = prepare(&target, &dial, args.exporter_logs) => r?,
        _ = int.recv() => return Err(CliError::with_code("Cancelled by user.", 2)),
    };
    let connect: Connect = {
        let (target, dial) = (target.clone(), dial.clone());
        Arc::new(move || {
            let (target, dial) = (target.clone(), dial.clone());
            Box::pin(async move { H2Channel::dial(&target, &dial).await })
        })
    };
    let attached = attach(channel, &client, logs, connect, args.command).await?;
    let env = [
        ("JUMPSTARTER_HOST", attached.host()),
        ("JMP_DRIVERS_ALLOW", "UNSAFE".into()),
        ("_JMP_SUPPRESS_DRIVER_WARNINGS", "1".into()),
        ("JMP_EXPORTER", "direct".into()),
        ("JMP_LEASE", "direct".into()),
    ];
    let code = run_child(args.command, "direct", &env).await;
    attached.close().await;
    Ok(code)
}

/// Connects, checks the exporter and waits until it is ready.
async fn prepare(
    target: &Target,
    dial: &Dial,
    exporter_logs: bool,
) -> Result<(H2Channel, Client, tokio::task::JoinHandle<()>), CliError> {
    let channel = H2Channel::dial(target, dial).await.map_err(|e| match e {
        DialError::Plaintext { .. } => DirectError::Plaintext {
            target: target.to_string(),
        },
        other => DirectError::Connect(other),
    })?;
    let client = match Client::from_channel(channel.clone()).await {
        Ok(c) => c,
        Err(ClientError::Unauthenticated(m)) => return Err(DirectError::Auth(m).into()),
        Err(other) => {
            if let Target::Tcp { host, port } = target
                && dial.tls.is_none()
                && transport::speaks_tls(host, *port).await
            {
                return Err(DirectError::SpeaksTls {
                    target: target.to_string(),
                }
                .into());
            }
            return Err(CliError::from(other));
        }
    };
    if let Err(s) = client.get_status().await {
        if s.code() == Code::Unimplemented {
            tracing::debug!("GetStatus is not implemented; assuming the exporter is ready");
            let logs = spawn_logs(&client, exporter_logs);
            return Ok((channel, client, logs));
        }
        return Err(DirectError::Status {
            target: target.to_string(),
            message: s.message().to_string(),
        }
        .into());
    }
    let logs = hook_ready(&client, exporter_logs, "jmp.shell").await?;
    Ok((channel, client, logs))
}
