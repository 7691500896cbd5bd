//! Driver families: what a family registers, and the `j` command sets it brings.
//!
//! A *family* (power, network, storage, ...) is one folder holding its drivers, its typed client
//! and its `j` commands, with one `register(&mut Families)` function that says:
//! * which `type:` strings build which drivers ([`Families::driver`]), and
//! * which client-class labels (`jumpstarter.dev/client`, with aliases) get which `j` command
//!   set ([`Families::commands`]).
//!
//! `j` builds its command tree by looking each node's label up here: a node with a command set
//! gets its commands (and its children as sub-groups, so a node may have both), a composite
//! gets its children, anything else the generic commands. Nothing in `j` names a family.

pub mod generic;
pub mod output;
pub mod stdio;
pub mod usage;

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use clap::{ArgMatches, Command};
use jumpstarter_core::registry::Built;
use jumpstarter_core::{BuildContext, ConfigError, DriverClient, Registry};

pub use async_trait::async_trait;
pub use clap;
pub use jumpstarter_core::exit::{CliError, CliResult};

/// What a command set fetched before the tree was built (see [`Commands::prepare`]).
pub type Prepared = Option<Arc<dyn Any + Send + Sync>>;

/// One node of `j`'s tree, as a command set sees it.
pub struct Node<'a> {
    pub client: &'a DriverClient,
    /// The full command path for usage lines (`j power`).
    pub path: &'a str,
    /// The export keys from the root to this node (`["group", "psu2"]`).
    pub names: &'a [String],
    /// The raw arguments of `j` (command sets that parse their own options use them).
    pub argv: &'a [String],
    /// What [`Commands::prepare`] returned for this node.
    pub prepared: &'a Prepared,
}

impl Node<'_> {
    /// What [`Commands::prepare`] returned, as its type.
    pub fn prepared<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.prepared.as_ref()?.downcast_ref()
    }
}

/// The `j` commands of a client class.
#[async_trait(?Send)]
pub trait Commands: Send + Sync + 'static {
    /// Runs before the command tree is built, concurrently for every node with this command
    /// set (the Shell family lists the node's methods here). Default: nothing.
    async fn prepare(&self, node: &DriverClient) -> Prepared {
        let _ = node;
        None
    }

    /// The node's group: its sub-commands, help texts and options. Start from [`group`].
    fn command(&self, node: &Node<'_>) -> Command;

    /// Runs the sub-command `m` chose; `Ok(code)` is the exit status.
    async fn run(&self, node: &Node<'_>, m: &ArgMatches) -> CliResult;
}

/// A command set made of two functions: `command(path, node) -> Command` and
/// `async run(node, matches) -> CliResult` (for sets that need no preparation and no state).
///
/// ```ignore
/// jumpstarter_family::command_set! {
///     /// The commands of `LampClient`.
///     pub struct LampCommands => command, run;
/// }
/// ```
#[macro_export]
macro_rules! command_set {
    ($(#[$meta:meta])* $vis:vis struct $name:ident => $command:path, $run:path;) => {
        $(#[$meta])*
        $vis struct $name;

        #[$crate::async_trait(?Send)]
        impl $crate::Commands for $name {
            fn command(&self, node: &$crate::Node<'_>) -> $crate::clap::Command {
                $command(node.path, node.client)
            }

            async fn run(
                &self,
                node: &$crate::Node<'_>,
                m: &$crate::clap::ArgMatches,
            ) -> $crate::CliResult {
                $run(node.client, m).await
            }
        }
    };
}

/// Everything the families of a build register: driver types and command sets.
#[derive(Clone, Default)]
pub struct Families {
    drivers: Registry,
    commands: HashMap<String, Arc<dyn Commands>>,
}

impl fmt::Debug for Families {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut labels: Vec<&String> = self.commands.keys().collect();
        labels.sort();
        f.debug_struct("Families")
            .field("drivers", &self.drivers)
            .field("commands", &labels)
            .finish()
    }
}

impl Families {
    pub fn new() -> Self {
        Families::default()
    }

    /// Registers a driver constructor for a `type:` string (replacing an earlier one). The
    /// constructor may return a driver, or a [`Built`] subtree (a driver and children it
    /// creates itself).
    pub fn driver<F, B>(&mut self, type_name: &str, factory: F) -> &mut Self
    where
        F: Fn(&BuildContext<'_>) -> Result<B, ConfigError> + Send + Sync + 'static,
        B: Into<Built>,
    {
        self.drivers.register(type_name, factory);
        self
    }

    /// Gives every client-class label in `labels` (a class and its aliases) the command set.
    pub fn commands(&mut self, labels: &[&str], commands: impl Commands) -> &mut Self {
        let commands: Arc<dyn Commands> = Arc::new(commands);
        for label in labels {
            self.commands.insert((*label).to_owned(), commands.clone());
        }
        self
    }

    /// The driver types, for building exporters.
    pub fn drivers(&self) -> &Registry {
        &self.drivers
    }

    /// The driver types, mutably (to add types registered elsewhere).
    pub fn drivers_mut(&mut self) -> &mut Registry {
        &mut self.drivers
    }

    /// The command set of a client class.
    pub fn commands_for(&self, label: &str) -> Option<&Arc<dyn Commands>> {
        self.commands.get(label)
    }

    /// Adds every entry of `other` (its entries win).
    pub fn extend(&mut self, other: &Families) {
        self.drivers.extend(&other.drivers);
        for (k, v) in &other.commands {
            self.commands.insert(k.clone(), v.clone());
        }
    }
}

impl From<Families> for Registry {
    fn from(f: Families) -> Registry {
        f.drivers
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
pub const HELP_TEMPLATE: &str =
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
