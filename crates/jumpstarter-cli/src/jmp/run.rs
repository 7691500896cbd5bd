//! `jmp run`: the exporter as a service.
//!
//! Direct mode (`--tls-grpc-listener [HOST:]PORT`) serves the exporter on TCP, in plaintext
//! (`--tls-grpc-insecure`) or TLS (`--tls-cert`/`--tls-key`), optionally requiring a
//! passphrase, with the lifecycle hooks around each session. Controller mode (no listener)
//! registers with the controller named by the config's endpoint and token and serves leases
//! through its router; it reconnects with back-off when the controller goes away.
//!
//! Logs go to stderr. Signals: the first SIGTERM, SIGINT or SIGQUIT stops gracefully (the
//! afterLease hook runs if a session is active, drivers are closed, the hook socket is removed);
//! a second one stops at once (a running hook is killed). SIGHUP stops once the current session
//! has ended (`EndSession`).
//!
//! Exit codes (upstream 0.9.0 always exits 0; these are the codes it meant to return):
//! * `0`: stopped without a signal (not reached in direct mode today);
//! * `1`: could not start (config, TLS files, listener) or failed while running;
//! * `2`: usage error (options, or a bad `JMP_*` limit variable);
//! * `3`: a hook with `onFailure: exit` failed (a service manager should not restart at once);
//! * `4`: controller mode: the controller refused the exporter's token (or name) 3 times in a
//!   row (restarting with the same config cannot help);
//! * `128+N`: stopped by signal N after a clean shutdown (130 SIGINT, 143 SIGTERM, 129 SIGHUP).

use std::path::{Path, PathBuf};

use clap::Args;
use jumpstarter_config::ExporterConfig;
use jumpstarter_config::paths::Locations;
use jumpstarter_core::LogHub;
use jumpstarter_core::exit::{CliError, CliResult, Context};
use jumpstarter_exporter::Exporter;
use jumpstarter_exporter::controller::RunError;
use jumpstarter_exporter::direct::{Control, DirectOptions, Outcome};
use tokio::signal::unix::{SignalKind, signal};

/// Shown after the options in `jmp run --help`.
pub const AFTER_HELP: &str = "\
Signals: SIGTERM, SIGINT or SIGQUIT stop gracefully (the afterLease hook runs if a session is \
active, drivers are closed, sockets removed); a second one stops at once. SIGHUP stops once the \
current session has ended (EndSession).

Exit codes: 0 stopped; 1 could not start or failed; 2 usage error; 3 a hook with onFailure: exit \
failed; 4 the controller refused the exporter's token; 128+N stopped by signal N (e.g. 143 for \
SIGTERM).";

/// Exit code when a hook with `onFailure: exit` failed.
pub const EXIT_HOOK_FAILURE: i32 = 3;
/// Exit code when the controller keeps refusing the exporter's credentials.
pub const EXIT_TOKEN_REFUSED: i32 = 4;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Alias of a local exporter config
    #[arg(long, value_name = "TEXT")]
    exporter: Option<String>,
    /// Path of an exporter config file
    #[arg(long, value_name = "PATH")]
    exporter_config: Option<PathBuf>,
    /// Listen on TCP (direct mode) instead of registering with a controller, e.g. 1234 or
    /// 0.0.0.0:1234 (port 0 picks a free port)
    #[arg(long, value_name = "[HOST:]PORT")]
    tls_grpc_listener: Option<String>,
    /// With --tls-grpc-listener, listen without TLS (insecure, for development only)
    #[arg(long)]
    tls_grpc_insecure: bool,
    /// Server certificate (PEM) for --tls-grpc-listener
    #[arg(long, value_name = "PATH")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM) for --tls-grpc-listener
    #[arg(long, value_name = "PATH")]
    tls_key: Option<PathBuf>,
    /// Require this passphrase from clients connecting via --tls-grpc-listener
    #[arg(long, value_name = "TEXT")]
    passphrase: Option<String>,
    /// Read the passphrase from a file (first line), keeping it out of the process list
    #[arg(long, value_name = "PATH", conflicts_with = "passphrase")]
    passphrase_file: Option<PathBuf>,
}

fn usage_error(message: impl std::fmt::Display) -> CliError {
    CliError::usage_of("jmp run [OPTIONS]", message)
}

/// A `--tls-grpc-listener` value whose port is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenerError {
    /// The port text as given.
    #[error("Invalid value for '--tls-grpc-listener': port must be an integer, got '{0}'")]
    NotInteger(String),
    #[error("Invalid value for '--tls-grpc-listener': port must be between 0 and 65535, got {0}")]
    OutOfRange(i64),
}

/// `[HOST:]PORT` as upstream parses it (host `0.0.0.0` when omitted; `[v6]:port` accepted).
pub fn parse_listener(value: &str) -> Result<(String, u16), ListenerError> {
    let (host, port) = match value.rsplit_once(':') {
        Some((h, p)) => {
            let h = h.trim().trim_start_matches('[').trim_end_matches(']');
            (if h.is_empty() { "0.0.0.0" } else { h }, p)
        }
        None => ("0.0.0.0", value),
    };
    let port: i64 = port
        .trim()
        .parse()
        .map_err(|_| ListenerError::NotInteger(port.to_owned()))?;
    let port = u16::try_from(port).map_err(|_| ListenerError::OutOfRange(port))?;
    Ok((host.to_owned(), port))
}

/// What `jmp run` was asked to do, once the options are checked.
enum Mode {
    Direct {
        host: String,
        port: u16,
        tls: Option<(PathBuf, PathBuf)>,
        passphrase: Option<String>,
    },
    Controller,
}

fn check(args: &RunArgs) -> Result<Mode, CliError> {
    if args.exporter.is_some() && args.exporter_config.is_some() {
        return Err(usage_error(
            "Invalid value: only one of --exporter, --exporter-config should be specified",
        ));
    }
    if args.exporter.is_none() && args.exporter_config.is_none() {
        return Err(usage_error(
            "Specify one of: --exporter / --exporter-config",
        ));
    }
    let Some(listener) = &args.tls_grpc_listener else {
        if args.tls_grpc_insecure
            || args.tls_cert.is_some()
            || args.tls_key.is_some()
            || args.passphrase.is_some()
            || args.passphrase_file.is_some()
        {
            return Err(usage_error(
                "--tls-grpc-insecure, --tls-cert, --tls-key, and --passphrase require --tls-grpc-listener",
            ));
        }
        return Ok(Mode::Controller);
    };
    if args.tls_grpc_insecure && (args.tls_cert.is_some() || args.tls_key.is_some()) {
        return Err(usage_error(
            "--tls-grpc-insecure cannot be combined with --tls-cert / --tls-key",
        ));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        _ if args.tls_grpc_insecure => None,
        _ => {
            return Err(usage_error(
                "--tls-grpc-listener requires either --tls-grpc-insecure or --tls-cert and --tls-key",
            ));
        }
    };
    for (opt, path) in [("--tls-cert", &args.tls_cert), ("--tls-key", &args.tls_key)] {
        if let Some(p) = path
            && !p.exists()
        {
            return Err(usage_error(format!(
                "Invalid value for '{opt}': Path '{}' does not exist.",
                p.display()
            )));
        }
    }
    let (host, port) = parse_listener(listener).map_err(usage_error)?;
    let passphrase = match &args.passphrase_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).context(format!(
                "cannot read the passphrase file {}",
                path.display()
            ))?;
            Some(text.lines().next().unwrap_or("").to_owned())
        }
        None => args.passphrase.clone(),
    };
    if let Some(p) = &passphrase
        && (p.is_empty() || !p.bytes().all(|b| (0x20..0x7f).contains(&b)))
    {
        return Err(usage_error(
            "Invalid value for '--passphrase': it must be non-empty printable ASCII (it travels as gRPC metadata)",
        ));
    }
    Ok(Mode::Direct {
        host,
        port,
        tls,
        passphrase,
    })
}

/// `jmp run`: checks the options, loads the exporter and serves until stopped.
pub async fn run(args: RunArgs) -> CliResult {
    let mode = check(&args)?;
    // Limits from JMP_* (a bad value is a usage error), descriptor limit raised. Two exporter
    // listeners at most: the TCP port (or the router tunnels) and the hook socket.
    jumpstarter_core::session::daemon_limits(&[("max_connections", 2)]).map_err(CliError::usage)?;
    let path = match (&args.exporter_config, &args.exporter) {
        (Some(p), _) => p.clone(),
        (None, Some(alias)) => Locations::from_env()
            .find_exporter(alias)
            .context("Failed to load config")?,
        (None, None) => {
            return Err(usage_error(
                "Specify one of: --exporter / --exporter-config",
            ));
        }
    };
    let exporter = load(&path).await?;
    if matches!(mode, Mode::Direct { .. }) {
        let config = exporter.config();
        let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
        if set(&config.endpoint) || set(&config.token) {
            tracing::warn!(
                "direct mode (--tls-grpc-listener): the config's endpoint and token are ignored; \
                 run without --tls-grpc-listener to register with the controller"
            );
        }
    }
    match mode {
        Mode::Controller => controller(exporter).await,
        Mode::Direct {
            host,
            port,
            tls,
            passphrase,
        } => direct(&exporter, host, port, tls, passphrase).await,
    }
}

async fn load(path: &Path) -> Result<Exporter, CliError> {
    let mut config = ExporterConfig::load(path).context("Failed to load config")?;
    // JMP_ENDPOINT, JMP_TOKEN, JMP_NAMESPACE, JMP_NAME and insecure TLS override the file.
    config.apply_env(&jumpstarter_config::Env::process());
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let exporter = Exporter::new(config, crate::drivers()).await?;
    for problem in exporter.hook_problems() {
        tracing::warn!("{problem}");
    }
    Ok(exporter)
}

/// Controller mode: register with the controller of the config (endpoint, token, tls) and
/// serve leases until stopped.
async fn controller(exporter: Exporter) -> CliResult {
    let signals = Signals::install()?;
    jumpstarter_exporter::controller::Link::from_config(exporter.config())?;
    let control = Control::new();
    let c2 = control.clone();
    let task = tokio::spawn(async move { exporter.run_controller(c2).await });
    supervise(task, control, signals).await
}

async fn direct(
    exporter: &Exporter,
    host: String,
    port: u16,
    tls: Option<(PathBuf, PathBuf)>,
    passphrase: Option<String>,
) -> CliResult {
    let tls = match &tls {
        Some((cert, key)) => {
            Some(jumpstarter_core::tls::server_config(cert, key).context("TLS setup failed")?)
        }
        None => None,
    };
    if tls.is_none() && passphrase.is_some() {
        tracing::warn!(
            "without TLS the passphrase travels in plaintext; it is still required from every client"
        );
    }
    // Signals are watched from the start, so an early SIGTERM still stops cleanly.
    let signals = Signals::install()?;
    let options = DirectOptions {
        host,
        port,
        tls,
        passphrase,
    };
    let running = exporter.start_direct(options, LogHub::new()).await?;
    let control = Control::new();
    let c2 = control.clone();
    let task = tokio::spawn(async move { Ok(running.run(c2).await) });
    supervise(task, control, signals).await
}

/// The signals `jmp run` reacts to.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, CliError> {
        let watch =
            |kind| signal(kind).map_err(|_| CliError::runtime("cannot install signal handlers"));
        Ok(Signals {
            term: watch(SignalKind::terminate())?,
            int: watch(SignalKind::interrupt())?,
            quit: watch(SignalKind::quit())?,
            hup: watch(SignalKind::hangup())?,
        })
    }
}

/// Relays signals to `control` while `task` runs; returns the exit code.
async fn supervise(
    task: tokio::task::JoinHandle<Result<Outcome, RunError>>,
    control: Control,
    signals: Signals,
) -> CliResult {
    let Signals {
        mut term,
        mut int,
        mut quit,
        mut hup,
    } = signals;
    tokio::pin!(task);
    let mut stop_signal: Option<i32> = None;
    let mut hangup = false;
    let outcome = loop {
        let sig = tokio::select! {
            r = &mut task => break r,
            _ = term.recv() => nix::sys::signal::Signal::SIGTERM,
            _ = int.recv() => nix::sys::signal::Signal::SIGINT,
            _ = quit.recv() => nix::sys::signal::Signal::SIGQUIT,
            _ = hup.recv() => nix::sys::signal::Signal::SIGHUP,
        };
        if sig == nix::sys::signal::Signal::SIGHUP {
            tracing::info!("received SIGHUP: stopping once the current session has ended");
            hangup = true;
            control.stop_after_session();
        } else if stop_signal.is_none() {
            tracing::info!(
                "received {}: stopping (send it again to stop at once)",
                sig.as_str()
            );
            stop_signal = Some(sig as i32);
            control.stop();
        } else {
            tracing::warn!("received {} again: stopping at once", sig.as_str());
            control.force();
        }
    };
    match outcome {
        Ok(Err(e @ RunError::Refused { .. })) => {
            tracing::error!("exporter stopped: {e}");
            Ok(EXIT_TOKEN_REFUSED)
        }
        Ok(Err(e @ RunError::Link(_))) => Err(CliError::from(e)),
        Ok(Ok(Outcome::HookExit(kind))) => {
            tracing::error!(
                "exporter stopped: the {} hook failed and its onFailure is exit",
                kind.name()
            );
            Ok(EXIT_HOOK_FAILURE)
        }
        Ok(Ok(Outcome::Stopped)) => {
            tracing::info!("exporter stopped");
            Ok(match (stop_signal, hangup) {
                (Some(s), _) => 128 + s,
                (None, true) => 128 + nix::sys::signal::Signal::SIGHUP as i32,
                (None, false) => 0,
            })
        }
        Err(e) => Err(e).context("the exporter failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_values() {
        assert_eq!(parse_listener("1234"), Ok(("0.0.0.0".into(), 1234)));
        assert_eq!(parse_listener("127.0.0.1:80"), Ok(("127.0.0.1".into(), 80)));
        assert_eq!(parse_listener(":80"), Ok(("0.0.0.0".into(), 80)));
        assert_eq!(parse_listener("[::1]:9"), Ok(("::1".into(), 9)));
        assert_eq!(parse_listener("0"), Ok(("0.0.0.0".into(), 0)));
        assert_eq!(
            parse_listener("x:abc").unwrap_err().to_string(),
            "Invalid value for '--tls-grpc-listener': port must be an integer, got 'abc'"
        );
        assert_eq!(
            parse_listener("70000").unwrap_err().to_string(),
            "Invalid value for '--tls-grpc-listener': port must be between 0 and 65535, got 70000"
        );
    }
}
