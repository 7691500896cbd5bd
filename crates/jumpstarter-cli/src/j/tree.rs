//! The `j` command tree, built from the session's driver tree.

use std::ffi::OsString;
use std::future::Future;
use std::pin::Pin;

use clap::{Arg, ArgMatches, Command};
use jumpstarter_core::tree::COMPOSITE_CLIENT;
use jumpstarter_core::{Client, DriverClient};
use jumpstarter_drivers::network::NETWORK_CLIENT;
use jumpstarter_drivers::opendal::OPENDAL_CLIENT;
use jumpstarter_drivers::power::{POWER_CLIENT, VIRTUAL_POWER_CLIENT};
use jumpstarter_drivers::serial::PYSERIAL_CLIENT;
use jumpstarter_drivers::shell::SHELL_CLIENT;
use jumpstarter_drivers::storage::{
    CORE_FLASHER_CLIENT, FLASHER_CLIENT, STORAGE_MUX_CLIENT, STORAGE_MUX_FLASHER_CLIENT,
};

use super::allow::Allow;
use super::shell::ShellMethods;
use super::storage::Flavour;
use super::{CmdError, CmdResult, generic, network, opendal, power, serial, shell, storage, usage};

const LEVELS: [&str; 5] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

/// How `j` presents a node.
pub enum Kind {
    Composite,
    Power {
        virtual_power: bool,
    },
    Network,
    Storage(Flavour),
    Opendal,
    Shell,
    Serial,
    /// A client class without native commands: generic calls by method name.
    Generic,
    /// Not allowed by `JMP_DRIVERS_ALLOW`: listed, with the reason.
    Denied(String),
}

pub fn kind(node: &DriverClient, allow: &Allow) -> Kind {
    let class = node.client_class();
    if class == COMPOSITE_CLIENT {
        return Kind::Composite;
    }
    if let Err(note) = node.allowed_by(allow) {
        return Kind::Denied(note);
    }
    match class {
        POWER_CLIENT => Kind::Power {
            virtual_power: false,
        },
        VIRTUAL_POWER_CLIENT => Kind::Power {
            virtual_power: true,
        },
        NETWORK_CLIENT | "jumpstarter_driver_network.client.DbusNetworkClient" => Kind::Network,
        STORAGE_MUX_CLIENT => Kind::Storage(Flavour::Mux),
        STORAGE_MUX_FLASHER_CLIENT => Kind::Storage(Flavour::MuxFlasher),
        FLASHER_CLIENT | CORE_FLASHER_CLIENT => Kind::Storage(Flavour::Flasher),
        OPENDAL_CLIENT => Kind::Opendal,
        SHELL_CLIENT => Kind::Shell,
        PYSERIAL_CLIENT => Kind::Serial,
        _ => Kind::Generic,
    }
}

/// The help of a sub-command: the config's `methods_description` wins over the built-in text.
pub fn help_for(node: &DriverClient, command: &str, builtin: &str) -> String {
    node.methods_description()
        .get(command)
        .cloned()
        .unwrap_or_else(|| builtin.to_owned())
}

/// click's help layout: usage first, then the description, then options and commands.
const HELP_TEMPLATE: &str =
    "{usage-heading} {usage}\n\n{about-with-newline}\n{all-args}{after-help}";

/// A driver group: named by the export key, help from the config's `description`.
/// `path` is the full command path (`j power`), for the usage line.
pub fn group(path: &str, node: &DriverClient, builtin_help: &str) -> Command {
    let name = path.rsplit(' ').next().unwrap_or(path);
    Command::new(name.to_owned())
        .about(node.description().unwrap_or(builtin_help).to_owned())
        .override_usage(format!("{path} [OPTIONS] COMMAND [ARGS]..."))
        .help_template(HELP_TEMPLATE)
        .disable_help_subcommand(true)
        .subcommand_required(true)
        .arg_required_else_help(true)
}

fn log_level_arg() -> Arg {
    Arg::new("log-level")
        .long("log-level")
        .value_parser(LEVELS)
        .ignore_case(true)
        .global(false)
        .help("Set the log level")
}

fn command_for(path: &str, node: &DriverClient, allow: &Allow, shells: &ShellMethods) -> Command {
    match kind(node, allow) {
        Kind::Composite => composite(path, node, allow, shells),
        Kind::Power { virtual_power } => power::command(path, node, virtual_power),
        Kind::Network => network::command(path, node),
        Kind::Storage(flavour) => storage::command(path, node, flavour),
        Kind::Opendal => opendal::command(path, node),
        Kind::Shell => shell::command(path, node, shells),
        Kind::Serial => serial::command(path, node),
        Kind::Generic => generic::command(path, node),
        Kind::Denied(reason) => Command::new(node.name().to_owned())
            .about(reason)
            .allow_external_subcommands(true),
    }
}

fn composite(path: &str, node: &DriverClient, allow: &Allow, shells: &ShellMethods) -> Command {
    let mut cmd = group(path, node, "Generic composite device").arg(log_level_arg());
    for child in node.children() {
        cmd = cmd.subcommand(command_for(
            &format!("{path} {}", child.name()),
            child,
            allow,
            shells,
        ));
    }
    cmd
}

/// Parses `args` against the tree and runs the chosen command.
pub async fn run(client: &Client, allow: &Allow, args: Vec<OsString>) -> i32 {
    let root = client.root();
    let shells = shell::prefetch(root, allow).await;
    let cmd = composite("j", root, allow, &shells);
    let raw: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let argv = std::iter::once(OsString::from("j")).chain(args);
    let matches = match cmd.try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => {
            let r = usage::render(&e);
            if r.to_stdout {
                print!("{}", r.text);
            } else {
                eprint!("{}", r.text);
            }
            return r.code;
        }
    };
    let ctx = Ctx {
        allow: allow.clone(),
        shells,
        argv: raw,
    };
    match dispatch(root.clone(), matches, &ctx, Vec::new()).await {
        Ok(code) => code,
        Err(CmdError(msg)) => {
            eprintln!("Error: {msg}");
            1
        }
    }
}

/// What dispatching needs besides the node: the allow-list, the Shell nodes' method lists,
/// and the raw arguments (Shell method commands parse their own options, as click does).
struct Ctx {
    allow: Allow,
    shells: ShellMethods,
    argv: Vec<String>,
}

type BoxFut<'a> = Pin<Box<dyn Future<Output = CmdResult> + 'a>>;

/// `names` are the export keys from the root to `node` (`["group", "psu2"]`).
fn dispatch(node: DriverClient, m: ArgMatches, ctx: &Ctx, mut names: Vec<String>) -> BoxFut<'_> {
    Box::pin(async move {
        match kind(&node, &ctx.allow) {
            Kind::Composite => {
                let Some((name, sub)) = m.subcommand() else {
                    return Err(CmdError("missing command".into()));
                };
                let child = node
                    .child(name)
                    .cloned()
                    .ok_or_else(|| CmdError(format!("No such command '{name}'.")))?;
                names.push(name.to_owned());
                dispatch(child, sub.clone(), ctx, names).await
            }
            Kind::Power { virtual_power } => power::run(&node, &m, virtual_power).await,
            Kind::Network => network::run(&node, &m).await,
            Kind::Storage(flavour) => storage::run(&node, &m, flavour).await,
            Kind::Opendal => opendal::run(&node, &m).await,
            Kind::Shell => shell::run(&node, &m, &names, &ctx.shells, &ctx.argv).await,
            Kind::Serial => serial::run(&node, &m).await,
            Kind::Generic => generic::run(&node, &m).await,
            Kind::Denied(reason) => Err(CmdError(format!("{}: {reason}", node.name()))),
        }
    })
}
