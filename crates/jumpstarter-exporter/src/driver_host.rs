//! Driver hosts: subtrees of the export whose `type:` is not built in, served by a separate
//! process (the contract is `docs/driver-hosts.md`; the Python host in `driver_host.py` is
//! the implementation the exporter ships).
//!
//! Every node whose type the registry does not know roots a *hosted subtree* (the node with
//! everything under it). For each session, each hosted subtree gets its own host process,
//! started in parallel with the others; its report is grafted into the session's tree (see
//! `jumpstarter_core::remote`). A host that cannot start leaves a stand-in node whose calls
//! fail with UNAVAILABLE and the reason; the rest of the tree serves normally. A supervisor
//! task watches each host: exit or a failed health check marks the link failed (calls in
//! flight end with UNAVAILABLE) and the process group is killed; the session's end stops it
//! (stdin closed, SIGTERM, SIGKILL). The next session starts a fresh host.
//!
//! Choosing the interpreter: `JMP_DRIVER_HOST_PYTHON` if set, else `driverHost.python` from
//! the exporter config, else `python3` on `PATH`.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jumpstarter_config::exporter::{DriverNode, ExportEntry};
use jumpstarter_config::{ConfigError, ExporterConfig};
use jumpstarter_core::logs::{Level, LogHub, LogRecord};
use jumpstarter_core::remote::{self, HostControl, HostLink};
use jumpstarter_core::socket::SocketDir;
use jumpstarter_core::transport::H2Channel;
use jumpstarter_core::{Instance, Registry};
use jumpstarter_process::{Group, GroupChild, SpawnError};
use jumpstarter_protocol::v1::{
    GetStatusRequest, LogSource, exporter_service_client::ExporterServiceClient,
};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The Python host program, written next to the host's socket when it starts.
pub const PYTHON_HOST: &str = include_str!("driver_host.py");

/// Environment variable naming the Python interpreter for driver hosts.
pub const PYTHON_ENV: &str = "JMP_DRIVER_HOST_PYTHON";
/// Seconds a host may take to start serving (default 60).
pub const START_TIMEOUT_ENV: &str = "JMP_DRIVER_HOST_START_TIMEOUT";
/// Seconds a host may leave a health check unanswered before it is killed (default 60).
pub const HANG_TIMEOUT_ENV: &str = "JMP_DRIVER_HOST_HANG_TIMEOUT";

const STDERR_LINES: usize = 40;

/// One hosted subtree of a config.
#[derive(Debug, Clone)]
pub struct HostedSubtree {
    /// Dotted path of the subtree's root node (`custom`, `board.vendor`).
    pub path: String,
    /// The node's configured name (last path segment).
    pub name: String,
    /// The root node's `type:`.
    pub type_name: String,
    /// What the host gets: `{"export": {name: node}}`, `ref:`s rewritten relative to it.
    pub host_config: Value,
}

/// How hosts are started.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The interpreter, and where the choice came from (for messages).
    pub python: PathBuf,
    pub python_from: &'static str,
    pub start_timeout: Duration,
    pub hang_timeout: Duration,
}

impl HostOptions {
    /// Options from the environment and the config (the environment wins).
    pub fn new(config: &ExporterConfig) -> HostOptions {
        let (python, python_from) = match std::env::var_os(PYTHON_ENV).filter(|v| !v.is_empty()) {
            Some(p) => (PathBuf::from(p), PYTHON_ENV),
            None => match &config.driver_host.python {
                Some(p) => (PathBuf::from(p), "driverHost.python in the exporter config"),
                None => (PathBuf::from("python3"), "the default"),
            },
        };
        let secs = |var: &str, default: u64| {
            std::env::var(var)
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s > 0.0)
                .map_or(Duration::from_secs(default), Duration::from_secs_f64)
        };
        HostOptions {
            python,
            python_from,
            start_timeout: secs(START_TIMEOUT_ENV, 60),
            hang_timeout: secs(HANG_TIMEOUT_ENV, 60),
        }
    }
}

/// Whether an unknown type is a typo of a built-in one: a known class of the same module
/// within a small edit distance (`jumpstarter_driver_power.driver.MockPowr`; case ignored, 1
/// edit for names of up to 6 letters, else 2). Those fail when loading. Anything else goes to
/// a driver host, including upstream's classes next to our built-in ones
/// (`jumpstarter_driver_network.driver.VsockNetwork` is 4 edits from `EchoNetwork`): only
/// the host can tell whether a type exists.
fn is_typo(registry: &Registry, type_name: &str) -> bool {
    let Some((module, class)) = type_name.rsplit_once('.') else {
        return false;
    };
    let class = class.to_lowercase();
    registry.known().any(|k| match k.rsplit_once('.') {
        Some((m, c)) if m == module => {
            let limit = if c.chars().count() <= 6 { 1 } else { 2 };
            strsim::damerau_levenshtein(&class, &c.to_lowercase()) <= limit
        }
        _ => false,
    })
}

/// The pip packages a hosted subtree needs (upstream's own pinned to the release we are
/// compatible with), for the message shown when no host could start.
fn packages(host_config: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(t)) = m.get("type")
                    && let Some((module, _)) = t.split_once('.')
                {
                    let dist = module.replace('_', "-");
                    let dist = if module.starts_with("jumpstarter_driver_") {
                        format!("{dist}=={UPSTREAM_VERSION}")
                    } else {
                        dist
                    };
                    if !out.contains(&dist) {
                        out.push(dist);
                    }
                }
                m.values().for_each(|v| walk(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = vec![format!("jumpstarter=={UPSTREAM_VERSION}")];
    walk(host_config, &mut out);
    out
}

/// The upstream release whose packages the Python host runs.
const UPSTREAM_VERSION: &str = "0.9.0";

/// Finds the hosted subtrees of a config and checks their `ref:`s: a node inside a hosted
/// subtree may only reference nodes of the same subtree (the host resolves it in-process).
/// An unknown type that looks like a typo of a built-in one is an error instead.
pub fn hosted_subtrees(
    config: &ExporterConfig,
    registry: &Registry,
) -> Result<Vec<HostedSubtree>, ConfigError> {
    for (_, entry) in config.nodes() {
        if let DriverNode::Driver {
            type_name, type_at, ..
        } = &entry.node
            && !registry.contains(type_name)
            && is_typo(registry, type_name)
        {
            return Err(ConfigError::Invalid {
                at: type_at.clone(),
                message: registry.unknown_type_message(type_name),
            });
        }
    }
    let mut roots: Vec<(String, &ExportEntry)> = Vec::new();
    fn walk<'a>(
        prefix: &str,
        entries: &'a [ExportEntry],
        registry: &Registry,
        out: &mut Vec<(String, &'a ExportEntry)>,
    ) {
        for e in entries {
            let path = if prefix.is_empty() {
                e.name.clone()
            } else {
                format!("{prefix}.{}", e.name)
            };
            match &e.node {
                DriverNode::Driver { type_name, .. } if !registry.contains(type_name) => {
                    out.push((path, e));
                }
                node => walk(&path, node.children(), registry, out),
            }
        }
    }
    walk("", &config.export, registry, &mut roots);
    roots
        .into_iter()
        .map(|(path, entry)| {
            let parent = path.rsplit_once('.').map(|(p, _)| p.to_owned());
            let node = host_node(config, &path, parent.as_deref(), entry)?;
            let DriverNode::Driver { type_name, .. } = &entry.node else {
                unreachable!("hosted roots are driver nodes")
            };
            Ok(HostedSubtree {
                name: entry.name.clone(),
                type_name: type_name.clone(),
                host_config: json!({ "export": { entry.name.clone(): node } }),
                path,
            })
        })
        .collect()
}

/// The JSON form of a node for the host, `ref:`s checked and rewritten.
fn host_node(
    config: &ExporterConfig,
    root: &str,
    parent: Option<&str>,
    entry: &ExportEntry,
) -> Result<Value, ConfigError> {
    let inside = |p: &str| p == root || p.starts_with(&format!("{root}."));
    let mut out = Map::new();
    match &entry.node {
        DriverNode::Proxy { target, target_at } => {
            let resolved = config.resolve(target).map(|(p, _)| p);
            if !inside(target) || !resolved.as_deref().is_some_and(inside) {
                return Err(ConfigError::Invalid {
                    at: target_at.clone(),
                    message: format!(
                        "`ref: {target}` inside `{root}` points outside it; `{root}` is served by a \
                         driver host (its type is not built in), which can only reference drivers \
                         of its own subtree: move `{target}` under `{root}`, or reference `{root}` \
                         from outside instead"
                    ),
                });
            }
            let relative = match parent {
                Some(p) => target
                    .strip_prefix(&format!("{p}."))
                    .unwrap_or(target)
                    .to_owned(),
                None => target.clone(),
            };
            out.insert("ref".into(), Value::String(relative));
        }
        DriverNode::Composite {
            children,
            description,
        } => {
            out.insert(
                "children".into(),
                host_children(config, root, parent, children)?,
            );
            if let Some(d) = description {
                out.insert("description".into(), Value::String(d.clone()));
            }
        }
        DriverNode::Driver {
            type_name,
            config: driver_config,
            children,
            description,
            methods_description,
            ..
        } => {
            out.insert("type".into(), Value::String(type_name.clone()));
            let cfg = driver_config.to_json();
            if !cfg.is_null() {
                out.insert("config".into(), cfg);
            }
            if !children.is_empty() {
                out.insert(
                    "children".into(),
                    host_children(config, root, parent, children)?,
                );
            }
            if let Some(d) = description {
                out.insert("description".into(), Value::String(d.clone()));
            }
            if !methods_description.is_empty() {
                out.insert(
                    "methods_description".into(),
                    serde_json::to_value(methods_description).unwrap_or_default(),
                );
            }
        }
    }
    Ok(Value::Object(out))
}

fn host_children(
    config: &ExporterConfig,
    root: &str,
    parent: Option<&str>,
    children: &[ExportEntry],
) -> Result<Value, ConfigError> {
    let mut map = Map::new();
    for c in children {
        map.insert(c.name.clone(), host_node(config, root, parent, c)?);
    }
    Ok(Value::Object(map))
}

/// Stand-ins for every hosted subtree (used when checking a config without starting hosts).
pub fn placeholders(hosted: &[HostedSubtree]) -> HashMap<String, Arc<Instance>> {
    hosted
        .iter()
        .map(|h| {
            let link = HostLink::failed(&h.path, "not started");
            (h.path.clone(), remote::unavailable(link, &h.type_name))
        })
        .collect()
}

/// Starts a host per hosted subtree, in parallel. Never fails: a host that cannot start
/// becomes a stand-in node carrying the reason (also logged).
pub async fn start_all(
    hosted: &[HostedSubtree],
    options: &HostOptions,
    logs: &LogHub,
) -> HashMap<String, Arc<Instance>> {
    let mut set = tokio::task::JoinSet::new();
    for h in hosted {
        let (h, options, logs) = (h.clone(), options.clone(), logs.clone());
        set.spawn(async move {
            let inst = start(&h, &options, &logs).await;
            (h.path, inst)
        });
    }
    let mut out = HashMap::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok((path, inst)) => {
                out.insert(path, inst);
            }
            Err(e) => tracing::error!("driver host start task failed: {e}"),
        }
    }
    // A task that panicked leaves no entry; give its subtree a stand-in.
    for h in hosted {
        out.entry(h.path.clone()).or_insert_with(|| {
            let link = HostLink::failed(&h.path, "the host could not be started");
            remote::unavailable(link, &h.type_name)
        });
    }
    out
}

/// Starts one host; on failure, the stand-in with the reason.
pub async fn start(h: &HostedSubtree, options: &HostOptions, logs: &LogHub) -> Arc<Instance> {
    match launch(h, options, logs).await {
        Ok(inst) => inst,
        Err(reason) => {
            let message = format!(
                "driver `{}` (type `{}`) is unavailable: {reason}",
                h.path, h.type_name
            );
            // The system logger also writes to tracing.
            logs.system_logger().error(message);
            remote::unavailable(HostLink::failed(&h.path, reason), &h.type_name)
        }
    }
}

type Lines = Arc<Mutex<VecDeque<String>>>;

fn read_lines(
    pipe: impl AsyncRead + Unpin + Send + 'static,
    lines: Lines,
    what: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            tracing::debug!("{what}: {line}");
            let mut l = lines.lock().unwrap_or_else(|e| e.into_inner());
            if l.len() == STDERR_LINES {
                l.pop_front();
            }
            l.push_back(line);
        }
    })
}

/// The host's own diagnosis: its last `error: ` line.
fn host_error(lines: &Lines) -> Option<String> {
    let l = lines.lock().unwrap_or_else(|e| e.into_inner());
    l.iter()
        .rev()
        .find_map(|s| s.strip_prefix("error: "))
        .map(str::to_owned)
}

/// What the host said before it went away: its `error:` line if any, else its last lines.
fn diagnosis(lines: &Lines) -> String {
    if let Some(e) = host_error(lines) {
        return e;
    }
    let l = lines.lock().unwrap_or_else(|e| e.into_inner());
    let tail: Vec<&str> = l
        .iter()
        .rev()
        .take(8)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if tail.is_empty() {
        "it printed nothing".into()
    } else {
        format!("its last output: {}", tail.join(" | "))
    }
}

async fn launch(
    h: &HostedSubtree,
    options: &HostOptions,
    logs: &LogHub,
) -> Result<Arc<Instance>, String> {
    let dir = SocketDir::new().map_err(|e| format!("cannot create a socket directory: {e}"))?;
    let program = dir.dir().join("driver_host.py");
    let config = dir.dir().join("host.json");
    std::fs::write(&program, PYTHON_HOST)
        .and_then(|()| std::fs::write(&config, h.host_config.to_string()))
        .map_err(|e| {
            format!(
                "cannot write the host files in {}: {e}",
                dir.dir().display()
            )
        })?;
    let mut cmd = tokio::process::Command::new(&options.python);
    cmd.arg(&program)
        .arg(dir.path())
        .arg(&config)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Dropped (a failed start), it kills the host's whole group.
    let mut host = GroupChild::spawn(&mut cmd, Group::Own, None).map_err(|e| {
        let python = options.python.display();
        let e = match e {
            SpawnError::Start(e) => e,
            SpawnError::Vanished => {
                return format!(
                    "the Python driver host (`{python}`, from {}) exited before it started",
                    options.python_from
                );
            }
        };
        if e.kind() == std::io::ErrorKind::NotFound {
            let pip: Vec<String> = packages(&h.host_config)
                .iter()
                .map(|p| format!("'{p}'"))
                .collect();
            format!(
                "Python `{python}` (from {}) was not found; `{}` is not built in and runs in a \
                 Python driver host: install python3 and `pip install {}`, or set {PYTHON_ENV} \
                 (or driverHost.python in the exporter config) to a Python that has them",
                options.python_from,
                h.type_name,
                pip.join(" ")
            )
        } else {
            format!(
                "cannot run Python `{python}` (from {}): {e}",
                options.python_from
            )
        }
    })?;
    let child = host.child();
    let output: Lines = Arc::new(Mutex::new(VecDeque::new()));
    let mut readers = Vec::new();
    if let Some(err) = child.stderr.take() {
        readers.push(read_lines(
            err,
            output.clone(),
            format!("driver host {}", h.path),
        ));
    }
    if let Some(out) = child.stdout.take() {
        readers.push(read_lines(
            out,
            output.clone(),
            format!("driver host {}", h.path),
        ));
    }
    let stdin = child.stdin.take();

    // Ready when the socket answers GetReport.
    let deadline = Instant::now() + options.start_timeout;
    let (channel, reports) = loop {
        if let Ok(Some(status)) = host.child().try_wait() {
            for r in readers {
                let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
            }
            return Err(match host_error(&output) {
                Some(e) => format!("the Python driver host could not start: {e}"),
                None => format!(
                    "the Python driver host exited ({status}): {}",
                    diagnosis(&output)
                ),
            });
        }
        if let Some(ready) = probe(dir.path()).await {
            break ready;
        }
        if Instant::now() >= deadline {
            host.stop(Duration::from_secs(1)).await;
            return Err(format!(
                "the Python driver host did not start serving within {:?} ({}); raise {START_TIMEOUT_ENV} if it is just slow",
                options.start_timeout,
                diagnosis(&output)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (link, control) = HostLink::new(&h.path, channel.clone());
    let inst = match remote::graft(link, &reports, &h.name, &h.type_name) {
        Ok(inst) => inst,
        Err(e) => {
            host.stop(Duration::from_secs(1)).await;
            return Err(e.to_string());
        }
    };
    tokio::spawn(forward_logs(
        channel.clone(),
        logs.clone(),
        control.stop.clone(),
    ));
    tokio::spawn(supervise(
        host,
        stdin,
        dir,
        channel,
        control,
        output,
        options.hang_timeout,
        h.path.clone(),
    ));
    Ok(inst)
}

async fn probe(
    socket: &Path,
) -> Option<(
    H2Channel,
    Vec<jumpstarter_protocol::v1::DriverInstanceReport>,
)> {
    let io = tokio::net::UnixStream::connect(socket).await.ok()?;
    let channel = H2Channel::handshake(io).await.ok()?;
    let mut client = ExporterServiceClient::with_origin(channel.clone(), channel.origin());
    let report = client.get_report(()).await.ok()?.into_inner();
    Some((channel, report.reports))
}

#[allow(clippy::too_many_arguments)]
async fn supervise(
    // Kills whatever is left of the group however this task ends (it is never disarmed).
    mut host: GroupChild,
    stdin: Option<tokio::process::ChildStdin>,
    dir: SocketDir,
    channel: H2Channel,
    control: HostControl,
    output: Lines,
    hang_timeout: Duration,
    path: String,
) {
    let mut stdin = stdin;
    let interval = (hang_timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut health = ExporterServiceClient::with_origin(channel.clone(), channel.origin());
    loop {
        tokio::select! {
            status = host.wait() => {
                // Give the output readers a moment to collect the last words.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let why = match status {
                    Ok(s) => format!("the host process exited ({s}); {}", diagnosis(&output)),
                    Err(e) => format!("the host process is gone: {e}"),
                };
                tracing::error!("driver host for `{path}`: {why}");
                control.fail(why);
                break;
            }
            _ = control.stop.cancelled() => {
                control.fail("the session ended");
                // End of stdin asks the host to close its drivers and exit.
                drop(stdin.take());
                if tokio::time::timeout(Duration::from_secs(5), host.wait()).await.is_err() {
                    host.stop(Duration::from_secs(2)).await;
                }
                break;
            }
            _ = tokio::time::sleep(interval) => {
                let check = health.get_status(GetStatusRequest {});
                if tokio::time::timeout(hang_timeout, check).await.is_err() {
                    let why = format!(
                        "the host stopped answering (no reply to a health check within {hang_timeout:?}); it was killed"
                    );
                    tracing::error!("driver host for `{path}`: {why}");
                    control.fail(why);
                    host.kill_now();
                    let _ = host.wait().await;
                    break;
                }
            }
        }
    }
    drop(dir);
    let _ = control.stopped.send(true);
}

/// Republishes the host's `LogStream` in the session's log hub.
async fn forward_logs(channel: H2Channel, logs: LogHub, stop: tokio_util::sync::CancellationToken) {
    let mut client = ExporterServiceClient::with_origin(channel.clone(), channel.origin());
    let mut stream = tokio::select! {
        r = client.log_stream(()) => match r {
            Ok(s) => s.into_inner(),
            Err(e) => {
                tracing::debug!("driver host log stream: {e}");
                return;
            }
        },
        _ = stop.cancelled() => return,
    };
    let logger: Arc<str> = Arc::from("driver-host");
    loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            _ = stop.cancelled() => return,
        };
        let Ok(Some(r)) = msg else { return };
        logs.publish(LogRecord {
            level: Level::parse(&r.severity).unwrap_or(Level::Info),
            message: r.message,
            source: r
                .source
                .and_then(|s| LogSource::try_from(s).ok())
                .unwrap_or(LogSource::Driver),
            logger: logger.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_of_built_in_types_but_not_upstreams_other_classes() {
        let families = jumpstarter_drivers::builtin();
        let r = families.drivers();
        for typo in [
            "jumpstarter_driver_power.driver.MockPowr",
            "jumpstarter_driver_power.driver.mockpower",
            "jumpstarter_driver_network.driver.EchoNetwrk",
            "jumpstarter_driver_network.driver.TcpNetwok",
        ] {
            assert!(is_typo(r, typo), "{typo}");
        }
        // Upstream 0.9.0's classes in modules we implement, which we do not build in.
        for upstream in [
            "jumpstarter_driver_network.driver.VsockNetwork",
            "jumpstarter_driver_network.driver.WebsocketNetwork",
            "jumpstarter_driver_network.driver.DbusNetwork",
            "jumpstarter_driver_qemu.driver.Qemu",
            "vendorpackage.MockPowr",
        ] {
            assert!(!is_typo(r, upstream), "{upstream}");
        }
    }

    #[test]
    fn packages_a_subtree_needs() {
        let cfg = json!({"export": {"b": {"type": "vendor_pkg.driver.Bench", "children": {
            "net": {"type": "jumpstarter_driver_network.driver.VsockNetwork"},
            "n2": {"type": "jumpstarter_driver_network.driver.DbusNetwork"}}}}});
        assert_eq!(
            packages(&cfg),
            [
                "jumpstarter==0.9.0",
                "vendor-pkg",
                "jumpstarter-driver-network==0.9.0"
            ]
        );
    }
}
