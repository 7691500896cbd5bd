//! TRANSITIONAL: the command sets not yet moved into their family folders, wrapped as
//! [`Commands`]. Each family's move deletes its entry here (power is done: see
//! jumpstarter-drivers/src/power/cli.rs for the shape).

use clap::{ArgMatches, Command};
use jumpstarter_drivers::shell::SHELL_CLIENT;
use jumpstarter_family::async_trait;
use jumpstarter_family::{CliError, CliResult, Commands, Families, Node, Prepared};

use super::{CmdError, CmdResult, shell};

fn cli(r: CmdResult) -> CliResult {
    r.map_err(|CmdError(m)| CliError::runtime(m))
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
    f.commands(&[SHELL_CLIENT], Shell);
}
