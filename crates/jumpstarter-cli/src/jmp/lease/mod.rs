//! Distributed-mode client commands: `jmp create lease`, `jmp get leases|exporters`,
//! `jmp update lease`, `jmp delete leases` (cli-config.md §2.7-§2.10).
//!
//! Each resolves the client config with [`jumpstarter_config::require_client`] (flags >
//! environment > files), opens one channel to the controller with the config's TLS and
//! options, and prints the result as upstream 0.9.0 does: a table, `-o json` (indent 4),
//! `-o yaml` (sorted keys) or `-o name` (one name a line).
//!
//! The folder follows those steps: [`parse`] (durations, date-times, tags, selector terms),
//! [`connect`] (the controller and its errors), [`view`] (tables and structured output) and
//! [`commands`] (what each command does); the options are here.

mod commands;
mod connect;
mod parse;
mod view;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use jumpstarter_config::ClientSelection;

pub use commands::{create, delete, get, new_lease, update};
pub use connect::{Controller, connect_config, describe};
pub use parse::{parse_datetime, parse_duration};
pub use view::local_time;

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
