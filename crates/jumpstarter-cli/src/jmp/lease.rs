//! Distributed-mode client commands: `jmp create lease`, `jmp get leases|exporters`,
//! `jmp update lease`, `jmp delete leases` (cli-config.md §2.7-§2.10).
//!
//! Each resolves the client config with [`require_client`] (flags > environment > files),
//! opens one channel to the controller with the config's TLS and options, and prints the
//! result as upstream 0.9.0 does: a table, `-o json` (indent 4), `-o yaml` (sorted keys) or
//! `-o name` (one name a line).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use jumpstarter_config::{ClientConfig, ClientSelection, Env, Locations, require_client};
use jumpstarter_core::channel::ChannelSettings;
use jumpstarter_core::controller::{ControllerError, Identity, LeaseClient};
use jumpstarter_protocol::client_v1::{Exporter, Lease};
use serde_json::{Value as Json, json};

use crate::output;

/// `--client ALIAS` / `--client-config PATH`.
#[derive(Debug, Args, Clone, Default)]
pub struct ClientOpts {
    /// Alias of a client config
    #[arg(long, value_name = "TEXT")]
    pub client: Option<String>,
    /// Path of a client config file
    #[arg(long, value_name = "PATH")]
    pub client_config: Option<PathBuf>,
}

impl ClientOpts {
    pub fn selection(&self) -> ClientSelection {
        ClientSelection {
            client: self.client.clone(),
            client_config: self.client_config.clone(),
        }
    }
}

const OUTPUTS: [&str; 3] = ["json", "yaml", "name"];

#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// Create a lease
    #[command(alias = "leases", alias = "l")]
    Lease(CreateLeaseArgs),
}

#[derive(Debug, Args)]
pub struct CreateLeaseArgs {
    #[command(flatten)]
    config: ClientOpts,
    /// Selector (label query) to filter on, e.g. -l key1=value1,key2=value2; repeatable
    #[arg(short = 'l', long, value_name = "TEXT")]
    selector: Vec<String>,
    /// Target a specific exporter/device name directly
    #[arg(short = 'n', long = "name", value_name = "TEXT")]
    exporter_name: Option<String>,
    /// Duration of the lease: 30m, 3h30m, 1d, PT1H30M, 01:30:00 or seconds
    #[arg(long, value_name = "DURATION", required = true, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Scheduled start (ISO 8601; without a zone: local time)
    #[arg(long, value_name = "DATETIME", value_parser = parse_datetime)]
    begin_time: Option<jiff::Timestamp>,
    /// Lease ID to request (the controller generates one otherwise)
    #[arg(long, value_name = "TEXT")]
    lease_id: Option<String>,
    /// Tag to set on the lease (key=value), repeatable
    #[arg(long = "tag", value_name = "TEXT")]
    tags: Vec<String>,
    /// Allow leasing a disabled exporter (only with --name/-n)
    #[arg(long)]
    allow_disabled: bool,
    /// Output mode
    #[arg(short, long, value_parser = OUTPUTS)]
    output: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// Display one or many exporters
    #[command(alias = "exporter", alias = "e")]
    Exporters(GetExportersArgs),
    /// Display one or many leases
    #[command(alias = "lease", alias = "l")]
    Leases(GetLeasesArgs),
}

#[derive(Debug, Args)]
pub struct GetExportersArgs {
    #[command(flatten)]
    config: ClientOpts,
    /// Selector (label query) to filter on; repeatable
    #[arg(short = 'l', long, value_name = "TEXT")]
    selector: Vec<String>,
    /// Output mode
    #[arg(short, long, value_parser = OUTPUTS)]
    output: Option<String>,
    /// Include fields: leases, online, status (comma-separated or repeated)
    #[arg(long = "with", value_name = "TEXT", value_delimiter = ',', value_parser = ["leases", "online", "status"])]
    with: Vec<String>,
    /// Show labels hidden by controller config
    #[arg(long)]
    show_hidden_labels: bool,
    /// Include disabled exporters in the listing
    #[arg(long)]
    allow_disabled: bool,
}

#[derive(Debug, Args)]
pub struct GetLeasesArgs {
    #[command(flatten)]
    config: ClientOpts,
    /// Selector: leases whose selector contains all of these terms; repeatable
    #[arg(short = 'l', long, value_name = "TEXT")]
    selector: Vec<String>,
    /// Output mode
    #[arg(short, long, value_parser = OUTPUTS)]
    output: Option<String>,
    /// Include expired leases
    #[arg(short = 'a', long)]
    all: bool,
    /// Include leases from all clients
    #[arg(short = 'A', long)]
    all_clients: bool,
    /// Filter leases by tags (label selector syntax, e.g. build=1234)
    #[arg(long, value_name = "TEXT")]
    tag_filter: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Update a lease
    #[command(alias = "leases", alias = "l")]
    Lease(UpdateLeaseArgs),
}

#[derive(Debug, Args)]
pub struct UpdateLeaseArgs {
    #[command(flatten)]
    config: ClientOpts,
    name: String,
    /// New duration
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// New begin time (ISO 8601)
    #[arg(long, value_name = "DATETIME", value_parser = parse_datetime)]
    begin_time: Option<jiff::Timestamp>,
    /// Hand the lease over to another client of the namespace
    #[arg(long, value_name = "NAME")]
    to_client: Option<String>,
    /// Output mode
    #[arg(short, long, value_parser = OUTPUTS)]
    output: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DeleteCommand {
    /// Delete leases
    #[command(alias = "lease", alias = "l")]
    Leases(DeleteLeasesArgs),
}

#[derive(Debug, Args)]
pub struct DeleteLeasesArgs {
    #[command(flatten)]
    config: ClientOpts,
    names: Vec<String>,
    /// Delete the active leases whose selector contains these terms
    #[arg(short = 'l', long, value_name = "TEXT")]
    selector: Vec<String>,
    /// Delete all your active leases
    #[arg(short = 'a', long)]
    all: bool,
    /// Delete the active leases of all clients
    #[arg(short = 'A', long)]
    all_clients: bool,
    /// Output mode
    #[arg(short, long, value_parser = ["name"])]
    output: Option<String>,
}

// ---------------------------------------------------------------- parsing

/// A duration as upstream accepts it: seconds, `HH:MM:SS` (optionally `N days, ` first),
/// ISO 8601 (`PT1H30M`), or units (`30m`, `3h30m`, `1d3h40m`, `2 hours`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "'{s}' is not a valid duration (e.g., '30m', '3h30m', '1d', '1d3h40m', 'PT1H30M', '01:30:00')"
        )
    };
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    if t.contains(':') {
        let (days, clock) = match t.split_once(',') {
            Some((d, c)) => {
                let d = d.trim();
                let n = d
                    .strip_suffix("days")
                    .or_else(|| d.strip_suffix("day"))
                    .ok_or_else(bad)?;
                (n.trim().parse::<u64>().map_err(|_| bad())?, c.trim())
            }
            None => (0, t),
        };
        let parts: Vec<&str> = clock.split(':').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(bad());
        }
        let mut secs = 0f64;
        for p in &parts {
            let v: f64 = p.parse().map_err(|_| bad())?;
            if v < 0.0 || !v.is_finite() {
                return Err(bad());
            }
            secs = secs * 60.0 + v;
        }
        if parts.len() == 2 {
            secs *= 60.0; // H:MM
        }
        return Ok(Duration::from_secs_f64(secs + days as f64 * 86400.0));
    }
    let span: jiff::Span = t.parse().map_err(|_| bad())?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| bad())?;
    Duration::try_from(d).map_err(|_| bad())
}

/// An ISO 8601 date-time; without an offset it is local time (as upstream).
pub fn parse_datetime(s: &str) -> Result<jiff::Timestamp, String> {
    let bad = || format!("'{s}' is not a valid datetime");
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(ts);
    }
    let dt: jiff::civil::DateTime = s.parse().map_err(|_| bad())?;
    dt.to_zoned(jiff::tz::TimeZone::system())
        .map(|z| z.timestamp())
        .map_err(|_| bad())
}

fn parse_tags(tags: &[String]) -> Result<std::collections::HashMap<String, String>, String> {
    let mut out = std::collections::HashMap::new();
    for t in tags {
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| format!("Invalid tag format: '{t}' (expected key=value)"))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// The terms of a selector (`a=b,c in (x,y)`), split at top-level commas, `==` as `=`.
fn selector_terms(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|t| {
            t.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .replace("==", "=")
                .replace(" = ", "=")
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether every term of `filter` is one of the lease selector's terms.
pub fn selector_contains(selector: &str, filter: &str) -> bool {
    let have = selector_terms(selector);
    selector_terms(filter).iter().all(|t| have.contains(t))
}

// ---------------------------------------------------------------- connecting

/// Errors print as `Error: ...` and exit 1; usage errors exit 2.
pub enum Fail {
    Error(String),
    Usage(String),
}

impl Fail {
    pub fn report(self, usage: &str) -> i32 {
        match self {
            Fail::Error(m) => {
                eprintln!("Error: {m}");
                1
            }
            Fail::Usage(m) => {
                eprintln!(
                    "Usage: {usage}\nTry '{}' for help.\n\nError: {m}",
                    help_of(usage)
                );
                2
            }
        }
    }
}

fn help_of(usage: &str) -> String {
    let cmd: Vec<&str> = usage
        .split_whitespace()
        .take_while(|w| !w.starts_with('['))
        .collect();
    format!("{} --help", cmd.join(" "))
}

impl From<ControllerError> for Fail {
    fn from(e: ControllerError) -> Fail {
        Fail::Error(describe(&e))
    }
}

/// Controller errors as upstream's `jmp` words them.
pub fn describe(e: &ControllerError) -> String {
    use jumpstarter_core::client::Code;
    match e {
        ControllerError::Status(s) => match s.code() {
            Code::Unavailable => format!("grpc error: {}", s.message()),
            Code::Unknown => format!("grpc controller responded: {}", s.message()),
            Code::Unauthenticated | Code::PermissionDenied => format!(
                "Authentication or authorization failed. Run 'jmp login' and verify access permissions. Details: {}",
                s.message()
            ),
            code => format!(
                "grpc error (Caused by: status = {code:?}, details = \"{}\")",
                s.message()
            ),
        },
        other => other.to_string(),
    }
}

/// The client config and a connection to its controller.
pub async fn connect(opts: &ClientOpts) -> Result<(ClientConfig, LeaseClient), Fail> {
    let env = Env::process();
    let cfg = require_client(&opts.selection(), &env, &Locations::from_env())
        .map_err(|e| Fail::Error(e.to_string()))?;
    let client = connect_config(&cfg, &env).await?;
    Ok((cfg, client))
}

pub async fn connect_config(cfg: &ClientConfig, env: &Env) -> Result<LeaseClient, Fail> {
    let (_, token) = cfg
        .endpoint_and_token()
        .map_err(|e| Fail::Error(e.to_string()))?;
    let settings = ChannelSettings::for_client(cfg, env).map_err(|e| Fail::Error(e.to_string()))?;
    let who = Identity {
        token: token.to_string(),
        kind: "Client",
        namespace: cfg
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: cfg.metadata.name.clone(),
    };
    Ok(LeaseClient::connect(&settings.endpoint, settings.dial(), who).await?)
}

// ---------------------------------------------------------------- views

fn last_segment(s: &str) -> String {
    s.rsplit('/').next().unwrap_or(s).to_string()
}

fn ts(t: &Option<prost_types::Timestamp>) -> Option<jiff::Timestamp> {
    t.as_ref()
        .and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
}

/// Seconds as Python's `timedelta.total_seconds()` gives them: microseconds (nanoseconds
/// rounded toward zero, as protobuf's `ToTimedelta`).
fn secs(d: &Option<prost_types::Duration>) -> Option<f64> {
    d.as_ref().map(|d| {
        let micros = i128::from(d.seconds) * 1_000_000 + i128::from(d.nanos / 1000);
        micros as f64 / 1e6
    })
}

/// ISO 8601 in local time as pydantic prints an aware datetime (`Z` for UTC).
fn iso(t: jiff::Timestamp) -> String {
    let z = t.to_zoned(jiff::tz::TimeZone::system());
    let mut s = z.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let micros = z.subsec_nanosecond() / 1000;
    if micros != 0 {
        s.push_str(&format!(".{micros:06}"));
    }
    let off = z.offset().seconds();
    if off == 0 {
        s.push('Z');
    } else {
        let sign = if off < 0 { '-' } else { '+' };
        let a = off.abs();
        s.push_str(&format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60));
    }
    s
}

/// A protobuf timestamp as `YYYY-MM-DD HH:MM:SS` local time.
pub fn local_time(t: &prost_types::Timestamp) -> String {
    ts(&Some(*t)).map(local).unwrap_or_default()
}

fn local(t: jiff::Timestamp) -> String {
    t.to_zoned(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn condition_json(c: &jumpstarter_protocol::v1::Condition) -> Json {
    // protobuf's MessageToDict: camelCase names, int64 as strings, unset fields left out.
    let mut m = serde_json::Map::new();
    if let Some(v) = &c.r#type {
        m.insert("type".into(), json!(v));
    }
    if let Some(v) = &c.status {
        m.insert("status".into(), json!(v));
    }
    if let Some(v) = c.observed_generation {
        m.insert("observedGeneration".into(), json!(v.to_string()));
    }
    if let Some(t) = &c.last_transition_time {
        let mut tm = serde_json::Map::new();
        if let Some(s) = t.seconds {
            tm.insert("seconds".into(), json!(s.to_string()));
        }
        if let Some(n) = t.nanos {
            tm.insert("nanos".into(), json!(n));
        }
        m.insert("lastTransitionTime".into(), Json::Object(tm));
    }
    if let Some(v) = &c.reason {
        m.insert("reason".into(), json!(v));
    }
    if let Some(v) = &c.message {
        m.insert("message".into(), json!(v));
    }
    Json::Object(m)
}

pub fn lease_json(l: &Lease) -> Json {
    let (namespace, name) = split_name(&l.name);
    json!({
        "namespace": namespace,
        "name": name,
        "selector": l.selector,
        "exporter_name": l.exporter_name.as_deref().filter(|s| !s.is_empty()),
        "tags": l.tags.iter().collect::<std::collections::BTreeMap<_, _>>(),
        "duration": secs(&l.duration).unwrap_or(0.0),
        "effective_duration": secs(&l.effective_duration),
        "begin_time": ts(&l.begin_time).map(iso),
        "client": l.client.as_deref().map(last_segment).unwrap_or_default(),
        "exporter": l.exporter.as_deref().map(last_segment).unwrap_or_default(),
        "conditions": l.conditions.iter().map(condition_json).collect::<Vec<_>>(),
        "effective_begin_time": ts(&l.effective_begin_time).map(iso),
        "effective_end_time": ts(&l.effective_end_time).map(iso),
        "deprecated_labels": l.deprecated_labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
    })
}

fn split_name(path: &str) -> (String, String) {
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() == 4 {
        (parts[1].to_string(), parts[3].to_string())
    } else {
        (String::new(), last_segment(path))
    }
}

fn expires_at(l: &Lease) -> Option<jiff::Timestamp> {
    if let Some(t) = ts(&l.effective_end_time) {
        return Some(t);
    }
    let d = jiff::SignedDuration::try_from(Duration::from_secs_f64(secs(&l.duration)?)).ok()?;
    ts(&l.effective_begin_time)
        .or_else(|| ts(&l.begin_time))
        .and_then(|b| b.checked_add(d).ok())
}

fn remaining(at: Option<jiff::Timestamp>) -> String {
    let Some(at) = at else {
        return String::new();
    };
    let left = at.as_second() - jiff::Timestamp::now().as_second();
    if left <= 0 {
        return "expired".into();
    }
    let (days, hours, minutes) = (left / 86400, (left % 86400) / 3600, (left % 3600) / 60);
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days}d"));
    }
    if hours > 0 {
        parts.push(format!("{hours}h"));
    }
    if minutes > 0 || parts.is_empty() {
        parts.push(format!("{minutes}m"));
    }
    parts.join(" ")
}

const LEASE_COLUMNS: [&str; 7] = [
    "NAME",
    "SELECTOR",
    "EXPIRES AT",
    "REMAINING",
    "CLIENT",
    "EXPORTER",
    "TAGS",
];

fn lease_row(l: &Lease) -> Vec<String> {
    let at = expires_at(l);
    let mut tags: Vec<String> = l.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    tags.sort();
    vec![
        split_name(&l.name).1,
        l.selector.clone(),
        at.map(local).unwrap_or_default(),
        remaining(at),
        l.client.as_deref().map(last_segment).unwrap_or_default(),
        l.exporter.as_deref().map(last_segment).unwrap_or_default(),
        tags.join(","),
    ]
}

fn print_structured(v: &Json, yaml: bool) {
    if yaml {
        println!("{}", jumpstarter_config::emit::to_yaml_sorted(v));
    } else {
        println!("{}", output::json_indent4(v));
    }
}

fn print_leases(leases: &[Lease], output: Option<&str>, single: bool) {
    match output {
        Some("name") => {
            for l in leases {
                println!("{}", split_name(&l.name).1);
            }
        }
        Some(f) => {
            let v = if single && leases.len() == 1 {
                lease_json(&leases[0])
            } else {
                json!({ "leases": leases.iter().map(lease_json).collect::<Vec<_>>() })
            };
            print_structured(&v, f == "yaml");
        }
        None => {
            let rows: Vec<Vec<String>> = leases.iter().map(lease_row).collect();
            output::table(&LEASE_COLUMNS, &rows);
        }
    }
}

fn lease_status(l: &Lease) -> String {
    if l.effective_end_time.is_some() {
        return "Ended".into();
    }
    let Some(c) = l.conditions.last() else {
        return "Unknown".into();
    };
    match (c.r#type.as_deref(), c.status.as_deref()) {
        (Some("Ready"), Some("True")) => "In-Use".into(),
        (Some("Ready"), Some("False")) => "Waiting".into(),
        (Some("Expired"), _) => "Expired".into(),
        _ => c
            .reason
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "Unknown".into()),
    }
}

/// The deprecated `online` field: upstream 0.9.0 still shows it.
#[allow(deprecated)]
fn online(e: &Exporter) -> bool {
    e.online
}

fn status_name(s: i32) -> String {
    jumpstarter_protocol::v1::ExporterStatus::try_from(s)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("EXPORTER_STATUS_")
                .to_string()
        })
        .unwrap_or_else(|_| "UNKNOWN".into())
}

// ---------------------------------------------------------------- commands

pub async fn create(cmd: CreateCommand) -> i32 {
    let CreateCommand::Lease(a) = cmd;
    let usage = "jmp create lease [OPTIONS]";
    create_lease(a).await.unwrap_or_else(|f| f.report(usage))
}

async fn create_lease(a: CreateLeaseArgs) -> Result<i32, Fail> {
    if a.selector.is_empty() && a.exporter_name.is_none() {
        return Err(Fail::Usage(
            "one of --selector/-l or --name/-n is required".into(),
        ));
    }
    let tags = parse_tags(&a.tags).map_err(Fail::Usage)?;
    let (_, client) = connect(&a.config).await?;
    let lease = new_lease(
        &a.selector.join(","),
        a.exporter_name.clone(),
        a.duration.unwrap_or_default(),
        a.begin_time,
        tags,
        a.allow_disabled,
    );
    let l = client
        .create_lease(lease, a.lease_id.as_deref().unwrap_or(""))
        .await?;
    for (k, m) in &l.deprecated_labels {
        let suffix = if m.is_empty() {
            String::new()
        } else {
            format!(": {m}")
        };
        eprintln!("Warning: selector label '{k}' is deprecated{suffix}");
    }
    print_leases(std::slice::from_ref(&l), a.output.as_deref(), true);
    Ok(0)
}

fn proto_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn proto_ts(t: jiff::Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

pub fn new_lease(
    selector: &str,
    exporter_name: Option<String>,
    duration: Duration,
    begin_time: Option<jiff::Timestamp>,
    tags: std::collections::HashMap<String, String>,
    allow_disabled: bool,
) -> Lease {
    Lease {
        selector: selector.to_string(),
        duration: Some(proto_duration(duration)),
        begin_time: begin_time.map(proto_ts),
        exporter_name,
        tags,
        allow_disabled,
        ..Default::default()
    }
}

pub async fn get(cmd: GetCommand) -> i32 {
    match cmd {
        GetCommand::Leases(a) => get_leases(a)
            .await
            .unwrap_or_else(|f| f.report("jmp get leases [OPTIONS]")),
        GetCommand::Exporters(a) => get_exporters(a)
            .await
            .unwrap_or_else(|f| f.report("jmp get exporters [OPTIONS]")),
    }
}

async fn get_leases(a: GetLeasesArgs) -> Result<i32, Fail> {
    let (cfg, client) = connect(&a.config).await?;
    let selector = a.selector.join(",");
    let mut leases = client
        .list_leases_tagged(
            &selector,
            !a.all,
            a.tag_filter.as_deref().unwrap_or_default(),
        )
        .await?;
    if !selector.is_empty() {
        leases.retain(|l| selector_contains(&l.selector, &selector));
    }
    if !a.all_clients {
        leases.retain(|l| l.client.as_deref().map(last_segment) == Some(cfg.metadata.name.clone()));
    }
    print_leases(&leases, a.output.as_deref(), false);
    Ok(0)
}

async fn get_exporters(a: GetExportersArgs) -> Result<i32, Fail> {
    let (_, client) = connect(&a.config).await?;
    let with = |w: &str| a.with.iter().any(|x| x == w);
    let (leases_on, online_on, status_on) = (with("leases"), with("online"), with("status"));
    let mut exporters: Vec<Exporter> = client
        .list_exporters_hidden(&a.selector.join(","), a.show_hidden_labels)
        .await?;
    if !a.allow_disabled {
        exporters.retain(|e| e.enabled != Some(false));
    }
    let mut held = std::collections::HashMap::new();
    if leases_on {
        for l in client.list_leases("", true).await? {
            let ready = l.conditions.last().is_some_and(|c| {
                c.r#type.as_deref() == Some("Ready") && c.status.as_deref() == Some("True")
            });
            if let Some(e) = l.exporter.as_deref().filter(|e| !e.is_empty())
                && l.effective_begin_time.is_some()
                && ready
            {
                held.insert(last_segment(e), l);
            }
        }
    }
    match a.output.as_deref() {
        Some("name") => {
            for e in &exporters {
                println!("{}", last_segment(&e.name));
            }
        }
        Some(f) => {
            let list: Vec<Json> = exporters
                .iter()
                .map(|e| {
                    let (namespace, name) = split_name(&e.name);
                    let mut m = serde_json::Map::new();
                    m.insert("namespace".into(), json!(namespace));
                    m.insert("name".into(), json!(name));
                    m.insert(
                        "labels".into(),
                        json!(
                            e.labels
                                .iter()
                                .collect::<std::collections::BTreeMap<_, _>>()
                        ),
                    );
                    if online_on {
                        m.insert("online".into(), json!(online(e)));
                    }
                    if status_on {
                        m.insert(
                            "status".into(),
                            if e.status == 0 {
                                Json::Null
                            } else {
                                json!(e.status)
                            },
                        );
                    }
                    if a.allow_disabled {
                        m.insert("enabled".into(), json!(e.enabled.unwrap_or(true)));
                    }
                    if leases_on {
                        m.insert(
                            "lease".into(),
                            held.get(&name).map(lease_json).unwrap_or(Json::Null),
                        );
                    }
                    m.insert(
                        "deprecated_labels".into(),
                        json!(
                            e.deprecated_labels
                                .iter()
                                .collect::<std::collections::BTreeMap<_, _>>()
                        ),
                    );
                    Json::Object(m)
                })
                .collect();
            print_structured(&json!({ "exporters": list }), f == "yaml");
        }
        None => {
            let mut headers = vec!["NAME"];
            if a.allow_disabled {
                headers.push("ENABLED");
            }
            if online_on {
                headers.push("ONLINE");
            }
            if status_on {
                headers.push("STATUS");
            }
            headers.push("LABELS");
            if leases_on {
                headers.extend(["LEASED BY", "LEASE STATUS", "RELEASE TIME"]);
            }
            let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
            let rows: Vec<Vec<String>> = exporters
                .iter()
                .map(|e| {
                    let name = last_segment(&e.name);
                    let mut row = vec![name.clone()];
                    if a.allow_disabled {
                        row.push(yes(e.enabled.unwrap_or(true)));
                    }
                    if online_on {
                        row.push(yes(online(e)));
                    }
                    if status_on {
                        row.push(status_name(e.status));
                    }
                    let mut labels: Vec<String> =
                        e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    labels.sort();
                    row.push(labels.join(","));
                    if leases_on {
                        match held.get(&name) {
                            Some(l) => row.extend([
                                l.client.as_deref().map(last_segment).unwrap_or_default(),
                                lease_status(l),
                                expires_at(l).map(local).unwrap_or_default(),
                            ]),
                            None => row.extend([String::new(), "Available".into(), String::new()]),
                        }
                    }
                    row
                })
                .collect();
            output::table(&headers, &rows);
        }
    }
    Ok(0)
}

pub async fn update(cmd: UpdateCommand) -> i32 {
    let UpdateCommand::Lease(a) = cmd;
    update_lease(a)
        .await
        .unwrap_or_else(|f| f.report("jmp update lease [OPTIONS] NAME"))
}

async fn update_lease(a: UpdateLeaseArgs) -> Result<i32, Fail> {
    if a.duration.is_none() && a.begin_time.is_none() && a.to_client.is_none() {
        return Err(Fail::Usage(
            "At least one of --duration, --begin-time, or --to-client must be specified".into(),
        ));
    }
    let (_, client) = connect(&a.config).await?;
    let mut lease = Lease {
        name: a.name.clone(),
        ..Default::default()
    };
    let mut paths = Vec::new();
    if let Some(d) = a.duration {
        lease.duration = Some(proto_duration(d));
        paths.push("duration".to_string());
    }
    if let Some(t) = a.begin_time {
        lease.begin_time = Some(proto_ts(t));
        paths.push("begin_time".to_string());
    }
    if let Some(c) = &a.to_client {
        lease.client = Some(format!("namespaces/{}/clients/{c}", client.namespace()));
        paths.push("client".to_string());
    }
    let l = client.update_lease(lease, paths).await?;
    print_leases(std::slice::from_ref(&l), a.output.as_deref(), true);
    Ok(0)
}

pub async fn delete(cmd: DeleteCommand) -> i32 {
    let DeleteCommand::Leases(a) = cmd;
    delete_leases(a)
        .await
        .unwrap_or_else(|f| f.report("jmp delete leases [OPTIONS] [NAMES]..."))
}

async fn delete_leases(a: DeleteLeasesArgs) -> Result<i32, Fail> {
    if a.names.is_empty() && a.selector.is_empty() && !a.all && !a.all_clients {
        return Err(Fail::Error(
            "One of NAMES, --selector, --all or --all-clients must be specified".into(),
        ));
    }
    let (cfg, client) = connect(&a.config).await?;
    let names: Vec<String> = if !a.names.is_empty() {
        a.names.clone()
    } else {
        let selector = a.selector.join(",");
        let mut leases = client.list_leases(&selector, true).await?;
        if !selector.is_empty() {
            leases.retain(|l| selector_contains(&l.selector, &selector));
        }
        if !a.all_clients {
            leases.retain(|l| {
                l.client.as_deref().map(last_segment) == Some(cfg.metadata.name.clone())
            });
        }
        leases.iter().map(|l| split_name(&l.name).1).collect()
    };
    if names.is_empty() {
        return Err(Fail::Error("no leases found matching the criteria".into()));
    }
    for n in &names {
        client.delete_lease(n).await?;
        if a.output.is_some() {
            println!("{n}");
        } else {
            println!("lease \"{n}\" deleted");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_upstream() {
        let s = |x| parse_duration(x).unwrap().as_secs();
        assert_eq!(s("90"), 90);
        assert_eq!(s("30m"), 1800);
        assert_eq!(s("3h30m"), 12600);
        assert_eq!(s("1d"), 86400);
        assert_eq!(s("1d3h40m"), 86400 + 3 * 3600 + 40 * 60);
        assert_eq!(s("PT1H30M"), 5400);
        assert_eq!(s("01:30:00"), 5400);
        assert_eq!(s("2 days, 01:30:00"), 2 * 86400 + 5400);
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("is not a valid duration")
        );
    }

    #[test]
    fn selector_containment() {
        assert!(selector_contains("board=rpi,arch=arm", "arch==arm"));
        assert!(selector_contains("a in (x,y),b=c", "a in (x,y)"));
        assert!(!selector_contains("board=rpi", "board=x86"));
        assert!(selector_contains("board=rpi", ""));
    }

    #[test]
    fn remaining_like_upstream() {
        let now = jiff::Timestamp::now();
        assert_eq!(remaining(None), "");
        assert_eq!(remaining(Some(now)), "expired");
        let later = now
            .checked_add(jiff::SignedDuration::from_secs(2 * 86400 + 3 * 3600 + 30))
            .unwrap();
        assert_eq!(remaining(Some(later)), "2d 3h");
    }
}
