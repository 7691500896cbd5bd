//! `j <power> on|off|cycle|read` (upstream `PowerClient`'s commands).

use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};
use futures::StreamExt;
use jumpstarter_family::async_trait;
use jumpstarter_family::output::py_float;
use jumpstarter_family::{CliResult, Commands, Node, group, help_for};

use super::{PowerClient, VirtualPowerClient};

/// The commands of `PowerClient` (`virtual_power: false`) and `VirtualPowerClient` (`off`
/// takes `--destroy`).
pub struct PowerCommands {
    pub virtual_power: bool,
}

#[async_trait(?Send)]
impl Commands for PowerCommands {
    fn command(&self, node: &Node<'_>) -> Command {
        command(node.path, node.client, self.virtual_power)
    }

    async fn run(&self, node: &Node<'_>, m: &ArgMatches) -> CliResult {
        run(node.client, m, self.virtual_power).await
    }
}

fn command(path: &str, node: &jumpstarter_core::DriverClient, virtual_power: bool) -> Command {
    let mut off = Command::new("off").about(help_for(node, "off", "Power off"));
    if virtual_power {
        off = off.arg(
            Arg::new("destroy")
                .long("destroy")
                .action(ArgAction::SetTrue)
                .help("destroy the instance after powering it off"),
        );
    }
    group(path, node, "Generic power")
        .subcommand(Command::new("on").about(help_for(node, "on", "Power on")))
        .subcommand(off)
        .subcommand(
            Command::new("cycle")
                .about(help_for(node, "cycle", "Power cycle"))
                .arg(
                    Arg::new("wait")
                        .short('w')
                        .long("wait")
                        .value_parser(value_parser!(u64))
                        .default_value("2")
                        .help("Wait time in seconds between off and on"),
                ),
        )
        .subcommand(
            Command::new("read")
                .about(help_for(node, "read", "Read power measurements"))
                .arg(
                    Arg::new("count")
                        .short('n')
                        .long("count")
                        .value_parser(value_parser!(u64))
                        .default_value("1")
                        .help("Number of readings (0 = infinite)"),
                )
                .arg(
                    Arg::new("interval")
                        .short('i')
                        .long("interval")
                        .value_parser(value_parser!(f64))
                        .default_value("1.0")
                        .help("Seconds between readings"),
                ),
        )
}

async fn run(
    node: &jumpstarter_core::DriverClient,
    m: &ArgMatches,
    virtual_power: bool,
) -> CliResult {
    let power = PowerClient::new(node.clone());
    match m.subcommand() {
        Some(("on", _)) => power.on().await?,
        Some(("off", sub)) => {
            if virtual_power && sub.get_flag("destroy") {
                VirtualPowerClient::new(node.clone())
                    .off(Some(true))
                    .await?
            } else {
                power.off().await?
            }
        }
        Some(("cycle", sub)) => {
            let wait = sub.get_one::<u64>("wait").copied().unwrap_or(2);
            jumpstarter_core::outln!("Power cycling with {wait} seconds wait time...");
            let name = node.name().to_owned();
            power
                .cycle(
                    Duration::from_secs(wait),
                    |step| tracing::info!(logger = %name, "{step}"),
                )
                .await?;
        }
        Some(("read", sub)) => {
            let count = sub.get_one::<u64>("count").copied().unwrap_or(1);
            let interval = sub.get_one::<f64>("interval").copied().unwrap_or(1.0);
            let mut done = 0u64;
            while count == 0 || done < count {
                let mut readings = power.read().await?;
                while let Some(r) = readings.next().await {
                    let r = r?;
                    jumpstarter_core::outln!(
                        "voltage={} V  current={} A  apparent_power={} VA",
                        py_float(r.voltage),
                        py_float(r.current),
                        py_float(r.apparent_power())
                    );
                }
                done += 1;
                if (count == 0 || done < count) && interval > 0.0 {
                    tokio::time::sleep(Duration::from_secs_f64(interval)).await;
                }
            }
        }
        _ => unreachable!("clap requires a sub-command"),
    }
    Ok(0)
}
