//! `jmp shell --client ALIAS`: a shell connected to an exporter leased from a controller
//! (cli-config.md §5.4).
//!
//! 1. The lease: `--lease L` (or `$JMP_LEASE`, kept at exit), else one created from
//!    `--selector` / `--name` / `--duration` (released at exit, also on failure and Ctrl-C),
//!    else the client's only active lease.
//! 2. Waiting for Ready: the controller is asked every 250 ms (upstream: every 5 s); a
//!    spinner with the elapsed time on a TTY, log lines otherwise. Unsatisfiable or invalid
//!    leases fail at once with the controller's message; `--acquisition-timeout` bounds it.
//! 3. Connection: Dial through the router, one HTTP/2 connection over the router stream, the
//!    exporter's status until LEASE_READY (beforeLease hook), then a local unix socket for the
//!    child that relays every call over that connection ([`Forwarder`]); when it breaks, the
//!    next call dials again.
//! 4. The command runs with `JUMPSTARTER_HOST`, `JMP_EXPORTER`, `JMP_LEASE`,
//!    `JMP_EXPORTER_LABELS` and `JMP_DRIVERS_ALLOW`; its exit code is ours.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jumpstarter_config::{ClientConfig, Env};
use jumpstarter_core::Client;
use jumpstarter_core::controller::{ControllerError, LeaseClient};
use jumpstarter_core::exit::{CliError, CliResult};
use jumpstarter_core::forward::Connect;
use jumpstarter_core::transport::DialError;
use jumpstarter_protocol::client_v1::Lease;

use super::attach::{attach, hook_ready};
use super::{USAGE, run_child_until};
use crate::jmp::lease::{self, Controller, describe};

/// Why the session did not end cleanly (after the command).
#[derive(Debug, thiserror::Error)]
enum AfterLeaseError {
    /// The exporter's message.
    #[error("{0}")]
    Failed(String),
    /// The seconds waited.
    #[error("Timeout waiting for afterLease hook ({0} s)")]
    Timeout(u64),
}

const POLL: Duration = Duration::from_millis(250);
/// How often a running shell checks whether its lease ended (upstream: every 30 s).
const LEASE_CHECK: Duration = Duration::from_secs(1);
/// How long the shell waits for the exporter's afterLease hook after EndSession.
const AFTER_LEASE_TIMEOUT: Duration = Duration::from_secs(300);

pub struct DistributedShell<'a> {
    pub config: ClientConfig,
    pub lease: Option<String>,
    pub selector: Vec<String>,
    pub name: Option<String>,
    pub duration: Duration,
    pub acquisition_timeout: Option<Duration>,
    pub exporter_logs: bool,
    pub command: &'a [OsString],
}

/// A lease this command created; released when dropped without [`Owned::release`].
struct Owned {
    client: LeaseClient,
    name: String,
    done: bool,
}

impl Owned {
    async fn release(mut self) {
        self.done = true;
        tracing::info!(
            logger = "jumpstarter.client.lease",
            "Releasing Lease {}",
            self.name
        );
        if let Err(e) = self.client.delete_lease(&self.name).await {
            eprintln!(
                "Warning: could not release lease {}: {}",
                self.name,
                describe(&e)
            );
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Last resort (a panic or an early return): release in the background.
        let (client, name) = (self.client.clone(), self.name.clone());
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                let _ = client.delete_lease(&name).await;
            });
        }
    }
}

/// `jmp shell` on a lease: the command's exit code, or why it could not run.
pub async fn run(args: DistributedShell<'_>) -> CliResult {
    let env = Env::process();
    let client = lease::connect_config(&args.config, &env).await?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| CliError::from(e).context("cannot watch SIGINT"))?;
    let (name, owned) = choose_lease(&client, &args).await?;
    let acquired = tokio::select! {
        r = acquire(&client, &name, &args) => r,
        _ = int.recv() => Err(CliError::with_code("Cancelled by user.", 2)),
    };
    let lease = match acquired {
        Ok(l) => l,
        Err(e) => {
            if let Some(o) = owned {
                o.release().await;
            }
            return Err(e);
        }
    };
    // Only a lease this shell created gets an EndSession (upstream's rule).
    let result = connected(&client, &lease, &args, &mut int, owned.is_some()).await;
    if let Some(o) = owned {
        o.release().await;
    }
    result
}

/// The lease to use: given, created, or the client's only active one.
async fn choose_lease(
    client: &LeaseClient,
    args: &DistributedShell<'_>,
) -> Result<(String, Option<Owned>), CliError> {
    let me = args.config.metadata.name.clone();
    if let Some(l) = &args.lease {
        let got = client.get_lease(l).await.map_err(Controller)?;
        let holder = got
            .client
            .as_deref()
            .map(|c| c.rsplit('/').next().unwrap_or(c).to_string())
            .unwrap_or_default();
        if !holder.is_empty() && holder != me {
            return Err(CliError::runtime(format!(
                "lease {l} belongs to client '{holder}', not the current client '{me}'"
            )));
        }
        return Ok((l.clone(), None));
    }
    if !args.selector.is_empty() || args.name.is_some() {
        let selector = args.selector.join(",");
        let new = lease::new_lease(
            &selector,
            args.name.clone(),
            args.duration,
            None,
            Default::default(),
            false,
        );
        let created = client.create_lease(new, "").await.map_err(Controller)?;
        let name = created
            .name
            .rsplit('/')
            .next()
            .unwrap_or(&created.name)
            .to_string();
        let what = if selector.is_empty() {
            format!("exporter {}", args.name.clone().unwrap_or_default())
        } else {
            format!("selector {selector}")
        };
        tracing::info!(
            logger = "jumpstarter.client.lease",
            "Acquiring lease {name} for {what} for duration {}",
            hms(args.duration)
        );
        let owned = Owned {
            client: client.clone(),
            name: name.clone(),
            done: false,
        };
        return Ok((name, Some(owned)));
    }
    let mut mine = client.list_leases("", true).await.map_err(Controller)?;
    mine.retain(|l| {
        l.client
            .as_deref()
            .is_some_and(|c| c.rsplit('/').next() == Some(me.as_str()))
    });
    match mine.len() {
        0 => Err(CliError::usage_of(
            USAGE,
            "no active leases found. Use --selector/-l or --name/-n to create one, or create a lease with 'jmp create lease'.",
        )),
        1 => Ok((
            mine[0]
                .name
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string(),
            None,
        )),
        _ => {
            let lines: Vec<String> = mine
                .iter()
                .map(|l| {
                    format!(
                        "  {} (exporter={}, selector={})",
                        l.name.rsplit('/').next().unwrap_or_default(),
                        l.exporter
                            .as_deref()
                            .and_then(|e| e.rsplit('/').next())
                            .unwrap_or(""),
                        l.selector
                    )
                })
                .collect();
            Err(CliError::usage_of(
                USAGE,
                format!(
                    "Multiple active leases found:\n{}\nUse --lease to specify one, or run interactively to select.",
                    lines.join("\n")
                ),
            ))
        }
    }
}

fn hms(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

/// Waits until the lease is Ready (spinner on a TTY).
async fn acquire(
    client: &LeaseClient,
    name: &str,
    args: &DistributedShell<'_>,
) -> Result<Lease, CliError> {
    use std::io::IsTerminal;
    let start = Instant::now();
    let timeout = args
        .acquisition_timeout
        .unwrap_or(Duration::from_secs(args.config.leases.acquisition_timeout));
    let spinner = std::io::stderr().is_terminal().then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        s.enable_steady_tick(Duration::from_millis(100));
        s.set_message(format!("Acquiring lease {name}..."));
        s
    });
    let waited = tokio::time::timeout(timeout, client.wait_ready(name, POLL)).await;
    if let Some(s) = &spinner {
        s.finish_and_clear();
    }
    match waited {
        Err(_) => Err(CliError::runtime(format!(
            "lease {name} acquisition timed out after {} seconds",
            timeout.as_secs()
        ))),
        Ok(Err(ControllerError::Unsatisfiable { message, .. })) => Err(CliError::runtime(format!(
            "the lease cannot be satisfied: {message}"
        ))),
        Ok(Err(ControllerError::Ended { .. })) => {
            Err(CliError::runtime(format!("lease {name} released")))
        }
        Ok(Err(e)) => Err(Controller(e).into()),
        Ok(Ok(l)) => {
            tracing::info!(
                logger = "jumpstarter.client.lease",
                "Lease {name} acquired successfully! ({})",
                hms(start.elapsed())
            );
            Ok(l)
        }
    }
}

/// Dials the exporter, waits for its beforeLease hook, runs the command.
async fn connected(
    client: &LeaseClient,
    lease: &Lease,
    args: &DistributedShell<'_>,
    int: &mut tokio::signal::unix::Signal,
    end_session: bool,
) -> CliResult {
    let name = lease
        .name
        .rsplit('/')
        .next()
        .unwrap_or(&lease.name)
        .to_string();
    let exporter = lease
        .exporter
        .as_deref()
        .and_then(|e| e.rsplit('/').next())
        .unwrap_or("")
        .to_string();
    let (channel, session, logs) = tokio::select! {
        r = prepare(client, &name, args.exporter_logs) => r?,
        _ = int.recv() => return Err(CliError::with_code("Cancelled by user.", 2)),
    };
    let connect: Connect = {
        let (client, name) = (client.clone(), name.clone());
        Arc::new(move || {
            let (client, name) = (client.clone(), name.clone());
            Box::pin(async move {
                client.dial(&name).await.map_err(|e| match e {
                    ControllerError::Dial { source, .. } => source,
                    other => DialError::Connect(std::io::Error::other(describe(&other))),
                })
            })
        })
    };
    let attached = attach(channel, &session, logs, connect, args.command).await?;
    let labels = match client.list_exporters("").await {
        Ok(list) => list
            .into_iter()
            .find(|e| e.name.rsplit('/').next() == Some(exporter.as_str()))
            .map(|e| {
                let mut l: Vec<String> = e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                l.sort();
                l.join(",")
            })
            .unwrap_or_default(),
        Err(e) => {
            tracing::debug!("cannot list exporters: {}", describe(&e));
            String::new()
        }
    };
    let env = [
        ("JUMPSTARTER_HOST", attached.host()),
        ("JMP_DRIVERS_ALLOW", args.config.drivers.env_value().into()),
        ("_JMP_SUPPRESS_DRIVER_WARNINGS", "1".into()),
        ("JMP_EXPORTER", exporter.clone().into()),
        ("JMP_LEASE", name.clone().into()),
        ("JMP_EXPORTER_LABELS", labels.into()),
    ];
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        let (client, ended) = (client.clone(), ended.clone());
        async move {
            lease_end(client, name).await;
            ended.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    };
    let mut code = run_child_until(args.command, &exporter, &env, watch).await;
    if end_session && !ended.load(std::sync::atomic::Ordering::SeqCst) {
        // The exporter runs its afterLease hook now; its output reaches us through the logs.
        if let Err(e) = finish_session(&session).await {
            // Reported here: the command's own exit code wins over this failure.
            eprintln!("Error: {e}");
            if code == 0 {
                code = 1;
            }
        }
    }
    attached.close().await;
    Ok(code)
}

/// EndSession and the wait for the afterLease hook (protocol notes §6.2 step 5): a probe
/// GetStatus must read LEASE_READY or AFTER_LEASE_HOOK; then EndSession; when it succeeds,
/// wait until AVAILABLE (done) or AFTER_LEASE_HOOK_FAILED (the error). An exporter that does
/// not answer, or no longer does, counts as done.
async fn finish_session(session: &Client) -> Result<(), AfterLeaseError> {
    use jumpstarter_protocol::v1::ExporterStatus;
    let status = |s: &jumpstarter_protocol::v1::GetStatusResponse| {
        ExporterStatus::try_from(s.status).unwrap_or_default()
    };
    match tokio::time::timeout(Duration::from_secs(5), session.get_status()).await {
        Ok(Ok(s))
            if matches!(
                status(&s),
                ExporterStatus::LeaseReady | ExporterStatus::AfterLeaseHook
            ) => {}
        _ => return Ok(()),
    }
    match tokio::time::timeout(Duration::from_secs(10), session.end_session()).await {
        Ok(Ok(r)) if r.success => {}
        _ => return Ok(()),
    }
    let deadline = Instant::now() + AFTER_LEASE_TIMEOUT;
    let mut pause = Duration::from_millis(5);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), session.get_status()).await {
            Ok(Ok(s)) => match status(&s) {
                ExporterStatus::Available => return Ok(()),
                ExporterStatus::AfterLeaseHookFailed => {
                    return Err(AfterLeaseError::Failed(
                        s.message
                            .filter(|m| !m.is_empty())
                            .unwrap_or_else(|| "afterLease hook failed".into()),
                    ));
                }
                _ => {}
            },
            _ => return Ok(()),
        }
        if Instant::now() >= deadline {
            return Err(AfterLeaseError::Timeout(AFTER_LEASE_TIMEOUT.as_secs()));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Completes when the lease has ended (expired, released elsewhere, or taken away); says
/// so once in its last five minutes too.
async fn lease_end(client: LeaseClient, name: String) {
    let mut warned = false;
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(LEASE_CHECK).await;
        match client.get_lease(&name).await {
            Ok(l) => {
                failures = 0;
                if let Some(end) = l.effective_end_time {
                    tracing::info!(
                        logger = "jumpstarter.client.lease",
                        "Lease {name} ended at {}",
                        lease::local_time(&end)
                    );
                    return;
                }
                if !warned && let (Some(begin), Some(d)) = (&l.effective_begin_time, &l.duration) {
                    let end = begin.seconds + d.seconds;
                    let left = end - jiff::Timestamp::now().as_second();
                    if left <= 300 {
                        warned = true;
                        tracing::info!(
                            logger = "jumpstarter.client.lease",
                            "Lease {name} ending in {} minutes at {}",
                            (left.max(0) + 59) / 60,
                            lease::local_time(&prost_types::Timestamp {
                                seconds: end,
                                nanos: 0
                            })
                        );
                    }
                }
            }
            Err(e) => {
                failures += 1;
                tracing::debug!("cannot check lease {name}: {}", describe(&e));
                if failures >= 30 {
                    // The controller is gone for good; the shell keeps running.
                    return std::future::pending().await;
                }
            }
        }
    }
}

/// Dials the exporter of the lease through the router and waits for its beforeLease hook.
async fn prepare(
    client: &LeaseClient,
    lease: &str,
    exporter_logs: bool,
) -> Result<
    (
        jumpstarter_core::transport::H2Channel,
        Client,
        tokio::task::JoinHandle<()>,
    ),
    CliError,
> {
    let channel = client.dial(lease).await.map_err(Controller)?;
    let session = Client::from_channel(channel.clone()).await?;
    let logs = hook_ready(&session, exporter_logs, "jumpstarter_cli.shell").await?;
    Ok((channel, session, logs))
}
