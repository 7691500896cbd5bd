//! `jmp-controller`: the controller + router daemon (`serve`) and its admin commands
//! (`admin ...`), which work on the data directory directly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use jumpstarter_config::{Locations, UserConfig};
use jumpstarter_controller::admin::{self, ClientConfigOptions};
use jumpstarter_controller::{Options, open_existing_store, open_store};
use jumpstarter_core::exit::{CliError, Context};

#[derive(Parser)]
#[command(
    name = "jmp-controller",
    version,
    about = "Jumpstarter controller and router with an embedded SQLite store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (ControllerService, ClientService, RouterService and health on one
    /// TLS port).
    Serve(Serve),
    /// Manage clients, exporters and leases in a data directory.
    Admin(Admin),
}

#[derive(Args)]
struct DataDir {
    /// Directory holding the database, keys and TLS certificate (created owner-only).
    #[arg(long, env = "JMP_CONTROLLER_DATA_DIR", value_name = "DIR")]
    data_dir: PathBuf,
}

#[derive(Args)]
struct Serve {
    #[command(flatten)]
    dir: DataDir,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8082", value_name = "ADDR")]
    listen: SocketAddr,
    /// host:port that clients and exporters use to reach this controller (and its router);
    /// goes into the self-signed certificate and printed configs. Default: localhost:<port>.
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// TLS certificate chain (PEM) to serve instead of the self-signed one.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Lifetime of newly minted client and exporter tokens, in days.
    #[arg(long, default_value_t = 365, value_name = "DAYS")]
    token_lifetime_days: u64,
    /// Lifetime of a token issued by RotateToken (`jmp auth rotate`), in days (at most
    /// --token-lifetime-days). The rotated-away token stops working at once.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    rotated_token_lifetime_days: u64,
    /// Seconds without a heartbeat after which an exporter is marked offline.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    offline_after: u64,
}

#[derive(Args)]
struct Admin {
    #[command(flatten)]
    dir: DataDir,
    /// Create the data directory and its database if they do not exist yet (without it, a
    /// directory that holds no controller database is refused).
    #[arg(long)]
    init: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a client or an exporter and print (or save) its config.
    Create {
        #[command(subcommand)]
        what: Create,
    },
    /// List clients, exporters or leases.
    Get {
        /// What kind of object.
        what: Kind,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Print the config of an existing client or exporter.
    Config {
        /// What kind of object.
        what: Single,
        /// The object's name.
        name: String,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Delete a client or an exporter (an exporter takes its leases with it).
    Delete {
        /// What kind of object.
        what: Single,
        /// The object's name.
        name: String,
        /// The object's namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// End a lease now (like the client releasing it).
    EndLease {
        /// The object's name.
        name: String,
        /// The object's namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Allow new leases on an exporter.
    Enable {
        /// The object's name.
        name: String,
        /// The object's namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
    /// Stop new leases on an exporter (except explicit ones with allowDisabled).
    Disable {
        /// The object's name.
        name: String,
        /// The object's namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Clients,
    Exporters,
    Leases,
}

#[derive(Clone, Copy, ValueEnum)]
enum Single {
    Client,
    Exporter,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Args)]
struct ConfigArgs {
    /// The object's namespace.
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// Save to the default location (clients: ~/.config/jumpstarter/clients/NAME.yaml,
    /// exporters: /etc/jumpstarter/exporters/NAME.yaml).
    #[arg(long)]
    save: bool,
    /// Save to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write `tls.insecure: true` into the config.
    #[arg(long)]
    insecure_tls: bool,
    /// Endpoint to write instead of the one the controller advertises.
    #[arg(long, value_name = "HOST:PORT")]
    endpoint: Option<String>,
    /// Client configs: comma-separated driver client classes (globs) the client may load.
    /// Default: upstream's own packages (`jumpstarter_driver_*,jumpstarter.client.*`), which
    /// covers every built-in driver; `--allow ""` allows none.
    #[arg(long, value_name = "LIST")]
    allow: Option<String>,
    /// Client configs: allow any driver package.
    #[arg(long = "unsafe")]
    unsafe_drivers: bool,
}

#[derive(Subcommand)]
enum Create {
    Client {
        /// The object's name.
        name: String,
        /// Labels, key=value (repeatable).
        #[arg(short, long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    Exporter {
        /// The object's name.
        name: String,
        /// Labels, key=value (repeatable); clients select exporters by them.
        #[arg(short, long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

fn main() -> ExitCode {
    jumpstarter_controller_init_logging();
    let cli = Cli::parse();
    let code = match start(cli) {
        Ok(()) => 0,
        Err(e) => e.report(),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Checks the limits (for `serve`), starts the runtime and runs the command.
fn start(cli: Cli) -> Result<(), CliError> {
    if let Command::Serve(_) = &cli.command {
        // Limits from JMP_* (a bad value is a usage error), descriptor limit raised.
        let caps = [("controller_max_connections", 1)];
        jumpstarter_core::session::daemon_limits(&caps).map_err(CliError::usage)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(run(cli))
}

fn jumpstarter_controller_init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("JMP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal (a redirected log or journald gets plain text) and never
    // with NO_COLOR set.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(s) => serve(s).await,
        Command::Admin(a) => admin_cmd(a).await,
    }
}

async fn serve(s: Serve) -> Result<(), CliError> {
    let running = jumpstarter_controller::start(Options {
        data_dir: s.dir.data_dir,
        listen: s.listen,
        advertise: s.advertise,
        tls_cert: s.tls_cert,
        tls_key: s.tls_key,
        token_lifetime: Duration::from_secs(s.token_lifetime_days.saturating_mul(86_400)),
        rotated_token_lifetime: Duration::from_secs(
            s.rotated_token_lifetime_days.saturating_mul(86_400),
        ),
        offline_after: Duration::from_secs(s.offline_after.max(1)),
    })
    .await?;
    // Tests and scripts read this line to learn the port.
    eprintln!(
        "jmp-controller listening on {} (advertised as {})",
        running.local_addr, running.endpoint
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    running.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Writes a config file (it holds a token): atomically, created with mode 0600.
fn save(path: &Path, text: &str) -> Result<(), CliError> {
    jumpstarter_config::write::write_atomic(path, text, 0o600)?;
    Ok(())
}

/// Where `--save` writes: the client config directory `jmp --client NAME` reads
/// (`$JMP_CLIENT_CONFIG_HOME`, `$XDG_CONFIG_HOME/jumpstarter` or `~/.config/jumpstarter`), or
/// the system exporter directory.
fn default_path(kind: Single, name: &str) -> Result<PathBuf, CliError> {
    let loc = Locations::from_env();
    Ok(match kind {
        Single::Client => loc.client_path(name)?,
        Single::Exporter => loc.system_exporter_path(name)?,
    })
}

/// After saving a client config to the default location: when it is the only one, it becomes
/// the current client (as upstream's `jmp admin create client --save` does).
fn make_current_if_only(name: &str) -> Result<(), CliError> {
    let loc = Locations::from_env();
    if loc.client_files()?.len() == 1 {
        let path = loc.user_config();
        let mut user = UserConfig::load(&path)?;
        user.current_client = Some(name.to_owned());
        user.save(&path)?;
    }
    Ok(())
}

/// The allow-list written into a client config: `--allow` as given, else upstream's own
/// driver packages (none with `--unsafe`, which allows everything anyway).
fn allow_list(cfg: &ConfigArgs) -> Vec<String> {
    match &cfg.allow {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None if cfg.unsafe_drivers => Vec::new(),
        None => admin::DEFAULT_ALLOW.iter().map(|s| s.to_string()).collect(),
    }
}

async fn print_config(
    store: &jumpstarter_controller::store::Store,
    kind: Single,
    name: &str,
    cfg: &ConfigArgs,
) -> Result<(), CliError> {
    let (endpoint, ca) = admin::endpoint_and_ca(store, cfg.endpoint.as_deref()).await?;
    let text = match kind {
        Single::Client => {
            let c = store
                .client(&cfg.namespace, name)
                .await?
                .ok_or_else(|| CliError::runtime(format!("no client {}/{name}", cfg.namespace)))?;
            let o = ClientConfigOptions {
                insecure: cfg.insecure_tls,
                allow: allow_list(cfg),
                unsafe_drivers: cfg.unsafe_drivers,
            };
            admin::client_config_yaml(&c, &endpoint, &ca, &o)
        }
        Single::Exporter => {
            let e = store.exporter(&cfg.namespace, name).await?.ok_or_else(|| {
                CliError::runtime(format!("no exporter {}/{name}", cfg.namespace))
            })?;
            admin::exporter_config_yaml(&e, &endpoint, &ca, cfg.insecure_tls)
        }
    };
    let target = match (&cfg.out, cfg.save) {
        (Some(out), _) => Some(out.clone()),
        (None, true) => Some(default_path(kind, name)?),
        (None, false) => None,
    };
    match target {
        Some(path) => {
            save(&path, &text)?;
            if cfg.out.is_none() && matches!(kind, Single::Client) {
                make_current_if_only(name)?;
            }
            let what = match kind {
                Single::Client => "Client",
                Single::Exporter => "Exporter",
            };
            jumpstarter_core::outln!(
                "{what} configuration successfully saved to {}",
                path.display()
            );
        }
        None => jumpstarter_core::out!("{text}"),
    }
    Ok(())
}

async fn admin_cmd(a: Admin) -> Result<(), CliError> {
    let (store, keys) = if a.init {
        open_store(&a.dir.data_dir).await?
    } else {
        open_existing_store(&a.dir.data_dir).await?
    };
    let r = admin_inner(&store, &keys, a.command).await;
    store.close().await;
    r
}

async fn admin_inner(
    store: &jumpstarter_controller::store::Store,
    keys: &jumpstarter_controller::auth::Keys,
    command: AdminCommand,
) -> Result<(), CliError> {
    match command {
        AdminCommand::Create { what } => match what {
            Create::Client { name, labels, cfg } => {
                let labels = admin::parse_labels(&labels)?;
                // Nothing is created when the config could not be printed.
                admin::endpoint_and_ca(store, cfg.endpoint.as_deref()).await?;
                admin::create_client(store, keys, &cfg.namespace, &name, labels).await?;
                print_config(store, Single::Client, &name, &cfg).await?;
            }
            Create::Exporter { name, labels, cfg } => {
                let labels = admin::parse_labels(&labels)?;
                // Nothing is created when the config could not be printed.
                admin::endpoint_and_ca(store, cfg.endpoint.as_deref()).await?;
                admin::create_exporter(store, keys, &cfg.namespace, &name, labels).await?;
                print_config(store, Single::Exporter, &name, &cfg).await?;
            }
        },
        AdminCommand::Config { what, name, cfg } => print_config(store, what, &name, &cfg).await?,
        AdminCommand::Get { what, output } => {
            let rows: Vec<serde_json::Value> = match what {
                Kind::Clients => store
                    .clients()
                    .await?
                    .iter()
                    .map(|c| {
                        serde_json::json!({"namespace": c.namespace, "name": c.name,
                            "labels": c.labels})
                    })
                    .collect(),
                Kind::Exporters => store
                    .exporters()
                    .await?
                    .iter()
                    .map(|e| {
                        serde_json::json!({"namespace": e.namespace, "name": e.name,
                            "labels": e.labels, "enabled": e.enabled, "online": e.online(),
                            "registered": e.registered(), "status": e.status,
                            "message": e.status_message})
                    })
                    .collect(),
                Kind::Leases => store
                    .leases(None)
                    .await?
                    .iter()
                    .map(|l| {
                        serde_json::json!({"namespace": l.namespace, "name": l.name,
                            "client": l.client, "selector": l.selector.to_string(),
                            "exporter": l.st_exporter, "ended": l.ended,
                            "conditions": l.conditions.iter().map(|c| format!("{}={}:{}", c.type_, c.status, c.reason)).collect::<Vec<_>>()})
                    })
                    .collect(),
            };
            match output {
                Output::Json => {
                    jumpstarter_core::outln!("{}", serde_json::to_string_pretty(&rows)?)
                }
                Output::Text => {
                    for r in rows {
                        let obj = r.as_object().cloned().unwrap_or_default();
                        let line: Vec<String> = obj
                            .iter()
                            .map(|(k, v)| format!("{k}={}", v.to_string().trim_matches('"')))
                            .collect();
                        jumpstarter_core::outln!("{}", line.join("  "));
                    }
                }
            }
        }
        AdminCommand::Delete {
            what,
            name,
            namespace,
        } => match what {
            Single::Client => {
                store.delete_client(&namespace, &name).await?;
                jumpstarter_core::outln!("client {namespace}/{name} deleted");
            }
            Single::Exporter => {
                let n = store.delete_exporter(&namespace, &name).await?;
                jumpstarter_core::outln!("exporter {namespace}/{name} deleted (with {n} leases)");
            }
        },
        AdminCommand::EndLease { name, namespace } => {
            store
                .update_lease(&namespace, &name, |l| {
                    if l.ended || l.release {
                        return Ok::<_, ()>(false);
                    }
                    l.release = true;
                    l.generation += 1;
                    Ok(true)
                })
                .await?
                .ok();
            jumpstarter_core::outln!("lease {namespace}/{name} marked for release");
        }
        AdminCommand::Enable { name, namespace } => {
            set_enabled(store, &namespace, &name, true).await?
        }
        AdminCommand::Disable { name, namespace } => {
            set_enabled(store, &namespace, &name, false).await?
        }
    }
    Ok(())
}

async fn set_enabled(
    store: &jumpstarter_controller::store::Store,
    ns: &str,
    name: &str,
    enabled: bool,
) -> Result<(), CliError> {
    store
        .update_exporter(ns, name, |e| {
            let changed = e.enabled != enabled;
            e.enabled = enabled;
            changed
        })
        .await?;
    let state = if enabled { "enabled" } else { "disabled" };
    jumpstarter_core::outln!("exporter {ns}/{name} {state}");
    Ok(())
}
