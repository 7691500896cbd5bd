//! `j <net> address|forward-tcp|forward-unix|connect` (upstream `NetworkClient`'s commands,
//! plus `connect`: stdin/stdout to the stream).

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};
use jumpstarter_core::DriverClient;
use jumpstarter_core::socket::SocketDir;
use jumpstarter_core::stream::splice;
use jumpstarter_family::stdio::stdio;
use jumpstarter_family::{CliError, CliResult, group, help_for};

use super::{NetworkClient, split_host_port, strip_scheme};

jumpstarter_family::command_set! {
    /// The commands of `NetworkClient` (and `DbusNetworkClient`).
    pub struct NetworkCommands => command, run;
}

fn command(path: &str, node: &DriverClient) -> Command {
    group(path, node, "Generic Network Connection")
        .subcommand(
            Command::new("address")
                .about(help_for(node, "address", "Direct TCP connection to remote network"))
                .arg(Arg::new("host").long("host").action(ArgAction::SetTrue))
                .arg(Arg::new("port").long("port").action(ArgAction::SetTrue)),
        )
        .subcommand(
            Command::new("forward-tcp")
                .about(help_for(
                    node,
                    "forward-tcp",
                    "Forward local TCP port to remote network\n\nPORT is the TCP port to listen on.",
                ))
                .arg(
                    Arg::new("address")
                        .long("address")
                        .default_value("localhost")
                        .help("Local address to listen on"),
                )
                .arg(
                    Arg::new("port")
                        .value_name("PORT")
                        .required(true)
                        .value_parser(value_parser!(u16)),
                ),
        )
        .subcommand(
            Command::new("forward-unix")
                .about(help_for(
                    node,
                    "forward-unix",
                    "Forward local Unix domain socket to remote network\n\nPATH is the path of the \
                     Unix domain socket to listen on, defaults to a random path under $XDG_RUNTIME_DIR.",
                ))
                .arg(Arg::new("path").value_name("PATH").value_parser(value_parser!(PathBuf))),
        )
        .subcommand(
            Command::new("connect").about(help_for(
                node,
                "connect",
                "Connect stdin and stdout to the remote network",
            )),
        )
}

async fn run(node: &DriverClient, m: &ArgMatches) -> CliResult {
    let net = NetworkClient::new(node.clone());
    match m.subcommand() {
        Some(("address", sub)) => {
            address(
                &net,
                node.name(),
                sub.get_flag("host"),
                sub.get_flag("port"),
            )
            .await
        }
        Some(("forward-tcp", sub)) => {
            let host = sub
                .get_one::<String>("address")
                .cloned()
                .unwrap_or_default();
            let port = sub.get_one::<u16>("port").copied().unwrap_or(0);
            forward_tcp(&net, &host, port).await
        }
        Some(("forward-unix", sub)) => {
            forward_unix(&net, sub.get_one::<PathBuf>("path").cloned()).await
        }
        Some(("connect", _)) => stdio(net.connect().await?).await,
        _ => unreachable!("clap requires a sub-command"),
    }
}

async fn address(net: &NetworkClient, name: &str, host: bool, port: bool) -> CliResult {
    let addr = match net.address().await {
        Ok(a) => a,
        Err(e) => {
            if let Some(call) = e.as_call() {
                if call.is_invalid_argument() {
                    return Err(CliError::runtime(format!(
                        "enable_address mode is not true in the exporter configuration: {}",
                        call.message
                    )));
                }
                // Echo and Unix networks have no address; neither had TCP and UDP networks
                // before exporter 0.7.1 (upstream's client blames the exporter's version
                // either way).
                if call.is_not_implemented() {
                    return Err(CliError::runtime(format!(
                        "{name} has no direct address: its driver does not export `address` \
                         (TCP and UDP network drivers do, on exporters 0.7.1 or later)"
                    )));
                }
            }
            return Err(e.into());
        }
    };
    if host == port {
        jumpstarter_core::outln!("{}", strip_scheme(&addr));
    } else {
        let (h, p) = split_host_port(&addr);
        jumpstarter_core::outln!("{}", if host { h } else { p });
    }
    Ok(0)
}

async fn forward_tcp(net: &NetworkClient, host: &str, port: u16) -> CliResult {
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .map_err(|e| CliError::runtime(format!("cannot listen on {host}:{port}: {e}")))?;
    match listener.local_addr()? {
        std::net::SocketAddr::V6(a) => jumpstarter_core::outln!("[{}]:{}", a.ip(), a.port()),
        std::net::SocketAddr::V4(a) => jumpstarter_core::outln!("{}:{}", a.ip(), a.port()),
    }
    let listener = &listener;
    serve_forward(net, || async move {
        let (s, _) = listener.accept().await?;
        let _ = s.set_nodelay(true);
        Ok(s)
    })
    .await
}

async fn forward_unix(net: &NetworkClient, path: Option<PathBuf>) -> CliResult {
    let (_dir, path) = match path {
        Some(p) => (None, p),
        None => {
            let dir = SocketDir::new()?;
            let p = dir.path().to_owned();
            (Some(dir), p)
        }
    };
    clear_stale_socket(&path)?;
    let listener = tokio::net::UnixListener::bind(&path)
        .map_err(|e| CliError::runtime(format!("cannot listen on {}: {e}", path.display())))?;
    jumpstarter_core::outln!("{}", path.display());
    let l = &listener;
    let result = serve_forward(net, || async move { l.accept().await.map(|(s, _)| s) }).await;
    let _ = std::fs::remove_file(&path);
    result
}

/// Removes a socket file nobody listens on any more (left by a process that was killed), so
/// the path can be bound again. A socket someone listens on, or any other file, stays.
fn clear_stale_socket(path: &std::path::Path) -> Result<(), CliError> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(CliError::runtime(format!(
            "cannot listen on {}: the path exists and is not a socket",
            path.display()
        )));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(CliError::runtime(format!(
            "cannot listen on {}: another process is listening there",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)
            .map_err(|e| {
                CliError::runtime(format!(
                    "cannot remove the stale socket {}: {e}",
                    path.display()
                ))
            }),
        // Anything else (no permission, ...): binding says what is wrong.
        Err(_) => Ok(()),
    }
}

/// Accepts connections until interrupted (SIGINT or SIGTERM); each one gets its own `connect` stream.
async fn serve_forward<F, Fut, S>(net: &NetworkClient, mut accept: F) -> CliResult
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<S>>,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| CliError::runtime(format!("cannot watch SIGTERM: {e}")))?;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            conn = accept() => {
                let conn = match conn {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        continue;
                    }
                };
                let net = net.clone();
                tasks.spawn(async move {
                    match net.connect().await {
                        Ok(stream) => {
                            if let Err(e) = splice(conn, stream).await {
                                tracing::debug!("forwarded connection ended: {e}");
                            }
                        }
                        Err(e) => tracing::warn!("cannot open stream: {e}"),
                    }
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = tokio::signal::ctrl_c() => return Ok(0),
            _ = terminate.recv() => return Ok(0),
        }
    }
}
