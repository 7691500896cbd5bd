//! `jmp shell`: a shell or command connected to an exporter.
//!
//! Local mode (`--exporter ALIAS` / `--exporter-config PATH`) runs the exporter in this
//! process on a private unix socket and spawns `$SHELL` (or the command after `--`) with
//! `JUMPSTARTER_HOST` pointing at it. Unlike upstream 0.9.0 (which always exits 0 here), the
//! exit code is the child's (128+N when the child dies of signal N).
//!
//! Direct mode (`--tls-grpc HOST:PORT`) is in [`direct`], distributed mode (a lease) in
//! [`distributed`]; both attach to the exporter through [`attach`]. Interactive shells print
//! the exporter's message of the day first (config `motd`, plus what a beforeLease hook
//! added), as upstream does after 0.9.0.

mod attach;
mod direct;
mod distributed;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Args;
use jumpstarter_config::ExporterConfig;
use jumpstarter_config::paths::Locations;
use jumpstarter_core::LogHub;
use jumpstarter_core::exit::{CliError, CliResult, Context};
use jumpstarter_exporter::Exporter;

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Alias of a local exporter config (local mode)
    #[arg(long, value_name = "TEXT")]
    exporter: Option<String>,
    /// Path of an exporter config file (local mode)
    #[arg(long, value_name = "PATH")]
    exporter_config: Option<PathBuf>,
    /// Alias of a client config (distributed mode)
    #[arg(long, value_name = "TEXT")]
    client: Option<String>,
    /// Path of a client config file (distributed mode)
    #[arg(long, value_name = "PATH")]
    client_config: Option<PathBuf>,
    /// Use an existing lease (not released at exit)
    #[arg(long, value_name = "TEXT", env = "JMP_LEASE")]
    lease: Option<String>,
    /// Label selector for the lease to create
    #[arg(short = 'l', long, value_name = "TEXT")]
    selector: Vec<String>,
    /// Name of the exporter to lease
    #[arg(short = 'n', long, value_name = "TEXT")]
    name: Option<String>,
    /// Duration of the created lease
    #[arg(long, value_name = "DURATION", default_value = "00:30:00")]
    duration: String,
    /// Also stream the exporter's driver and system logs
    #[arg(long)]
    exporter_logs: bool,
    /// How long to wait for a lease
    #[arg(long, value_name = "DURATION")]
    acquisition_timeout: Option<String>,
    /// How long to keep re-leasing an unreachable exporter
    #[arg(long, value_name = "DURATION", env = "JMP_RETRY_TIMEOUT")]
    retry_timeout: Option<String>,
    /// Connect directly to an exporter listening on HOST:PORT (direct mode)
    #[arg(long, value_name = "HOST:PORT")]
    tls_grpc: Option<String>,
    /// Direct mode without TLS
    #[arg(long)]
    tls_grpc_insecure: bool,
    /// Passphrase for direct mode (default: $JMP_GRPC_PASSPHRASE)
    #[arg(long, value_name = "TEXT")]
    passphrase: Option<String>,
    /// Command to run instead of an interactive shell (put `--` before it)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<OsString>,
}

const SPECIFY_ONE: &str = "Specify one of: --client / --client-config, --exporter / --exporter-config, or --tls-grpc HOST:PORT";

/// The usage line of `jmp shell`'s usage errors.
const USAGE: &str = "jmp shell [OPTIONS] [COMMAND]...";

fn usage_error(message: impl std::fmt::Display) -> CliError {
    CliError::usage_of(USAGE, message)
}

/// `jmp shell`: the command's exit code, or why it could not run.
pub async fn run(args: ShellArgs) -> CliResult {
    // As upstream, --tls-grpc wins over config options.
    if let Some(address) = &args.tls_grpc {
        return direct::run(direct::DirectShell {
            address,
            insecure: args.tls_grpc_insecure,
            passphrase: args.passphrase.clone(),
            exporter_logs: args.exporter_logs,
            command: &args.command,
        })
        .await;
    }
    let given = [
        args.client.is_some(),
        args.client_config.is_some(),
        args.exporter.is_some(),
        args.exporter_config.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(usage_error(
            "Invalid value: only one of --client, --client-config, --exporter, --exporter-config should be specified",
        ));
    }
    let path = if let Some(p) = &args.exporter_config {
        p.clone()
    } else if let Some(alias) = &args.exporter {
        Locations::from_env().find_exporter(alias)?
    } else {
        return distributed(args).await;
    };
    local(&path, &args.command).await
}

/// Distributed mode: `--client` / `--client-config`, else a client config chosen by the
/// environment or `current-client`; nothing at all is a usage error.
async fn distributed(args: ShellArgs) -> CliResult {
    use jumpstarter_config::{ClientSelection, Env, resolve_client};
    let sel = ClientSelection {
        client: args.client.clone(),
        client_config: args.client_config.clone(),
    };
    let config = match resolve_client(&sel, &Env::process(), &Locations::from_env())
        .context("Failed to load config")?
    {
        Some((c, _)) => c,
        None => return Err(usage_error(SPECIFY_ONE)),
    };
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    let duration = super::lease::parse_duration(&args.duration)
        .map_err(|e| usage_error(format!("Invalid value for '--duration': {e}")))?;
    let acquisition_timeout = match args.acquisition_timeout.as_deref() {
        None => None,
        Some(t) => match super::lease::parse_duration(t) {
            Ok(d) if d >= std::time::Duration::from_secs(5) => Some(d),
            Ok(_) => {
                return Err(usage_error(format!(
                    "Invalid value for '--acquisition-timeout': '{t}' must be at least 5 seconds"
                )));
            }
            Err(e) => {
                return Err(usage_error(format!(
                    "Invalid value for '--acquisition-timeout': {e}"
                )));
            }
        },
    };
    distributed::run(distributed::DistributedShell {
        config,
        lease: args.lease.clone(),
        selector: args.selector.clone(),
        name: args.name.clone(),
        duration,
        acquisition_timeout,
        exporter_logs: args.exporter_logs,
        command: &args.command,
    })
    .await
}

async fn local(path: &Path, command: &[OsString]) -> CliResult {
    let config = ExporterConfig::load(path).context("Failed to load config")?;
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    let exporter = Exporter::new(config, crate::drivers()).await?;
    let local = exporter.start_local(LogHub::new()).await?;
    if command.is_empty() {
        let motd = local.session.motd();
        if !motd.trim().is_empty() {
            jumpstarter_core::outln!("{}", motd.trim_end());
        }
    }
    let env = [
        ("JUMPSTARTER_HOST", local.path().as_os_str().to_owned()),
        ("JMP_DRIVERS_ALLOW", "UNSAFE".into()),
        ("_JMP_SUPPRESS_DRIVER_WARNINGS", "1".into()),
    ];
    let code = run_child(command, "local", &env).await;
    local.stop().await;
    Ok(code)
}

/// The variable that tags the processes of `jmp shell`'s command (see
/// [`jumpstarter_process::Tag`]).
pub const SHELL_TAG_VAR: &str = "JMP_SHELL_TAG";

/// Runs the shell or command with extra environment, forwarding SIGTERM/SIGHUP and riding
/// out SIGINT (the terminal delivers it to the child too). Returns the child's exit code.
pub async fn run_child(command: &[OsString], context: &str, env: &[(&str, OsString)]) -> i32 {
    run_child_until(command, context, env, std::future::pending()).await
}

/// Whether this process is in the foreground of the terminal on stdin: then the child must
/// share our process group (a shell in another group could not read the terminal, and
/// job control of the user's own shell would break).
fn foreground_terminal() -> bool {
    nix::unistd::tcgetpgrp(std::io::stdin()).is_ok_and(|g| g == nix::unistd::getpgrp())
}

/// [`run_child`], and when `hang_up` completes (the lease ended) the child gets SIGHUP, as
/// upstream's shell does.
///
/// Nothing the command started outlives it: the command runs in a process group of its own
/// (unless it needs our terminal, see [`foreground_terminal`]) and with a [`SHELL_TAG_VAR`]
/// tag; when it ends, however it ends (an exit, SIGKILL), what is left of its group and every
/// tagged process gets SIGTERM, then SIGKILL after `JMP_KILL_GRACE`. A SIGTERM or SIGHUP to
/// `jmp shell` (or the lease's end) goes to the whole group, and SIGKILL follows after the
/// grace if the command is still running.
pub async fn run_child_until(
    command: &[OsString],
    context: &str,
    env: &[(&str, OsString)],
    hang_up: impl std::future::Future<Output = ()>,
) -> i32 {
    use jumpstarter_process::exit::{shell_code, spawn_failure_code};
    use jumpstarter_process::{Group, GroupChild, Signal, SpawnError, Tag};
    use tokio::signal::unix::{SignalKind, signal};

    let kill_grace = || jumpstarter_core::limits::global().kill_grace;
    let mut cmd = child_command(command, context);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let group = if foreground_terminal() {
        Group::Inherit
    } else {
        Group::Own
    };
    // Dropped before `disarm` (a panic, the runtime stopping), it kills the whole family.
    let mut child = match GroupChild::spawn(&mut cmd, group, Some(Tag::new(SHELL_TAG_VAR))) {
        Ok(c) => c,
        Err(e) => {
            let program = command
                .first()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(default_shell);
            return match e {
                SpawnError::Start(e) => {
                    eprintln!("Error: cannot run '{program}': {e}");
                    spawn_failure_code(&e)
                }
                SpawnError::Vanished => {
                    eprintln!("Error: cannot run '{program}': {e}");
                    1
                }
            };
        }
    };
    let (Ok(mut int), Ok(mut term), Ok(mut hup), Ok(mut quit)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::quit()),
    ) else {
        let code = shell_code(child.wait().await.ok());
        child.stop(kill_grace()).await;
        child.disarm();
        return code;
    };
    let hang_up = futures::FutureExt::fuse(hang_up);
    tokio::pin!(hang_up);
    // Armed by a SIGTERM/SIGHUP: the command gets SIGKILL if it is still running then.
    let escalate = tokio::time::sleep(std::time::Duration::from_secs(86400));
    tokio::pin!(escalate);
    let mut escalating = false;
    let stop_with = |child: &GroupChild,
                     sig: Signal,
                     escalating: &mut bool,
                     at: std::pin::Pin<&mut tokio::time::Sleep>| {
        child.signal(sig);
        if !*escalating {
            *escalating = true;
            at.reset(tokio::time::Instant::now() + kill_grace());
        }
    };
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.ok(),
            _ = &mut hang_up => stop_with(&child, Signal::SIGHUP, &mut escalating, escalate.as_mut()),
            _ = int.recv() => {}
            _ = quit.recv() => {}
            _ = term.recv() => stop_with(&child, Signal::SIGTERM, &mut escalating, escalate.as_mut()),
            _ = hup.recv() => stop_with(&child, Signal::SIGHUP, &mut escalating, escalate.as_mut()),
            _ = &mut escalate, if escalating => {
                tracing::warn!("the command did not stop within {:?}, sending SIGKILL", kill_grace());
                child.kill_now();
                escalating = false;
            }
        }
    };
    // Whatever the command left behind.
    child.stop(kill_grace()).await;
    child.disarm();
    shell_code(status)
}

fn default_shell() -> String {
    std::env::var("SHELL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "bash".into())
}

/// The command to spawn: the given argv, or `$SHELL` with upstream's prompt for the context.
fn child_command(command: &[OsString], context: &str) -> tokio::process::Command {
    if let Some((program, args)) = command.split_first() {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args);
        return cmd;
    }
    let shell = default_shell();
    let name = Path::new(&shell)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned();
    let mut cmd = tokio::process::Command::new(&shell);
    if name.ends_with("bash") {
        cmd.args(["--norc", "--noprofile"]);
        cmd.env(
            "PS1",
            format!(
                "\\[\\e[90m\\]\\W \\[\\e[93m\\]⚡\\[\\e[97m\\]{context} \\[\\e[93m\\]➤\\[\\e[0m\\] "
            ),
        );
    } else if name == "zsh" {
        cmd.args([
            "--no-rcs",
            "-o",
            "inc_append_history",
            "-o",
            "share_history",
        ]);
        cmd.env(
            "PS1",
            format!("%F{{8}}%1~ %F{{yellow}}⚡%F{{white}}{context} %F{{yellow}}➤%f "),
        );
        if std::env::var_os("HISTFILE").is_none()
            && let Some(home) = std::env::var_os("HOME")
        {
            cmd.env("HISTFILE", Path::new(&home).join(".zsh_history"));
        }
    } else if name == "fish" {
        cmd.args([
            "--init-command",
            &format!(
                "function fish_prompt; set_color grey; echo -n (basename $PWD)' '; set_color yellow; echo -n '⚡'; set_color white; echo -n '{context} '; set_color yellow; echo -n '➤ '; set_color normal; end"
            ),
        ]);
    }
    cmd
}
