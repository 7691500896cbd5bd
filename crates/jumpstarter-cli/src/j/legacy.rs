//! TRANSITIONAL: the command sets not yet moved into their family folders, wrapped as
//! [`Commands`]. Each family's move deletes its entry here (power and shell are done: see
//! jumpstarter-drivers/src/power/cli.rs for the shape).

use clap::{ArgMatches, Command};
use jumpstarter_drivers::network::NETWORK_CLIENT;
use jumpstarter_drivers::opendal::OPENDAL_CLIENT;
use jumpstarter_drivers::serial::PYSERIAL_CLIENT;
use jumpstarter_drivers::storage::{
    CORE_FLASHER_CLIENT, FLASHER_CLIENT, STORAGE_MUX_CLIENT, STORAGE_MUX_FLASHER_CLIENT,
};
use jumpstarter_family::async_trait;
use jumpstarter_family::{CliError, CliResult, Commands, Families, Node};

use super::storage::Flavour;
use super::{CmdError, CmdResult, network, opendal, serial, storage};

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

struct Storage(Flavour);
#[async_trait(?Send)]
impl Commands for Storage {
    fn command(&self, n: &Node<'_>) -> Command {
        storage::command(n.path, n.client, self.0)
    }
    async fn run(&self, n: &Node<'_>, m: &ArgMatches) -> CliResult {
        cli(storage::run(n.client, m, self.0).await)
    }
}

struct Opendal;
#[async_trait(?Send)]
impl Commands for Opendal {
    fn command(&self, n: &Node<'_>) -> Command {
        opendal::command(n.path, n.client)
    }
    async fn run(&self, n: &Node<'_>, m: &ArgMatches) -> CliResult {
        cli(opendal::run(n.client, m).await)
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

/// Adds the not-yet-moved command sets.
pub fn register(f: &mut Families) {
    f.commands(
        &[
            NETWORK_CLIENT,
            "jumpstarter_driver_network.client.DbusNetworkClient",
        ],
        Network,
    )
    .commands(&[STORAGE_MUX_CLIENT], Storage(Flavour::Mux))
    .commands(&[STORAGE_MUX_FLASHER_CLIENT], Storage(Flavour::MuxFlasher))
    .commands(
        &[FLASHER_CLIENT, CORE_FLASHER_CLIENT],
        Storage(Flavour::Flasher),
    )
    .commands(&[OPENDAL_CLIENT], Opendal)
    .commands(&[PYSERIAL_CLIENT], Serial);
}
