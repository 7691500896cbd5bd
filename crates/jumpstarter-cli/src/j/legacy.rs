//! TRANSITIONAL: the command sets not yet moved into their family folders, wrapped as
//! [`Commands`]. Each family's move deletes its entry here (power is done: see
//! jumpstarter-drivers/src/power/cli.rs for the shape).

use clap::{ArgMatches, Command};
use jumpstarter_drivers::network::NETWORK_CLIENT;
use jumpstarter_drivers::serial::PYSERIAL_CLIENT;
use jumpstarter_drivers::shell::SHELL_CLIENT;
use jumpstarter_family::async_trait;
use jumpstarter_family::{CliError, CliResult, Commands, Families, Node, Prepared};

use super::{CmdError, CmdResult, network, serial, shell};

fn cli(r: CmdResult) -> CliResult {
    r.map_err(|CmdError(m)| CliError::runtime(m))
}

struct Network;
#[async_trait(?Send)]
impl Commands for Network {
    fn command(&self, n: &Node<'_>) -> Command {
        network::command(n.path, n.client)
    }
    async fn run(&self, n: &Node<'_>, m: &ArgMatches) -> CliResult {
        cli(network::run(n.client, m).await)
    }
}

struct Serial;
#[async_trait(?Send)]
impl Commands for Serial {
    fn command(&self, n: &Node<'_>) -> Command {
        serial::command(n.path, n.client)
    }
    async fn run(&self, n: &Node<'_>, m: &ArgMatches) -> CliResult {
        cli(serial::run(n.client, m).await)
    }
}

struct Shell;
#[async_trait(?Send)]
impl Commands for Shell {
    async fn prepare(&self, node: &jumpstarter_core::DriverClient) -> Prepared {
        Some(std::sync::Arc::new(shell::prefetch_one(node).await))
    }
    fn command(&self, n: &Node<'_>) -> Command {
        shell::command(n.path, n.client, n.prepared())
    }
    async fn run(&self, n: &Node<'_>, m: &ArgMatches) -> CliResult {
        cli(shell::run(n.client, m, n.names, n.prepared(), n.argv).await)
    }
}

/// Adds the not-yet-moved command sets.
pub fn register(f: &mut Families) {
    f.commands(
        &[
            NETWORK_CLIENT,
            "jumpstarter_driver_network.client.DbusNetworkClient",
        ],
        Network,
    )
    .commands(&[SHELL_CLIENT], Shell)
    .commands(&[PYSERIAL_CLIENT], Serial);
}
