//! A lab's own driver in Rust: a (simulated) thermometer, as one family.
//!
//! A family takes four things, all in this crate:
//! 1. an interface, declared once with `#[jumpstarter_core::interface]`: its methods with
//!    typed arguments and results. That yields the method table, the dispatch and a typed
//!    client ([`ThermometerClient`]);
//! 2. a driver implementing it, turned into a `Driver` by `jumpstarter_core::export!`;
//! 3. `j` commands for its client class ([`ThermometerCommands`]);
//! 4. one `register` function that adds the `type:` string (with the constructor, which reads
//!    the node's `config:` with serde) and the command set.
//!
//! Tests go through a real session with [`jumpstarter_core::testing::serve`] (below), exactly
//! as a client would reach the driver. `src/main.rs` turns it into an exporter binary (and
//! `j`) with one line of glue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use clap::{ArgMatches, Command};
use jumpstarter_core::interface::Items;
use jumpstarter_core::registry::BuildContext;
use jumpstarter_core::{ConfigError, DriverError};
use jumpstarter_family::{CliResult, Commands, Families, Node, generic};

/// The `type:` string of the driver in exporter configs.
pub const TYPE: &str = "example_thermometer.Thermometer";
/// Its client class (the `jumpstarter.dev/client` label). No Python client class exists for
/// it: upstream clients drive it as a generic `DriverClient`.
pub const CLIENT: &str = "example_thermometer.client.ThermometerClient";

/// What the node's `config:` may say (unknown keys are an error naming file and line).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Degrees Celsius reported before any `set`.
    #[serde(default = "default_celsius")]
    pub celsius: f64,
    /// The sensor's name, reported by `name`.
    pub sensor: String,
}

fn default_celsius() -> f64 {
    21.5
}

/// One reading of `watch`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reading {
    pub n: usize,
    pub celsius: f64,
}

/// The thermometer interface: the session checks calls against it (argument counts give
/// Python's TypeError texts), decodes arguments and encodes results.
#[jumpstarter_core::interface(client = ThermometerClient)]
pub trait ThermometerInterface {
    /// The current temperature in degrees Celsius
    async fn read(&self) -> Result<f64, DriverError>;
    /// The sensor's name
    async fn name(&self) -> Result<String, DriverError>;
    /// Set the simulated temperature
    async fn set(&self, celsius: f64) -> Result<(), DriverError>;
    /// COUNT readings (default 3), one per item
    #[streaming]
    fn watch(self: Arc<Self>, #[default(3)] count: usize) -> Result<Items<Reading>, DriverError>;
}

/// A thermometer whose temperature can be set (a lab would read a device here).
pub struct Thermometer {
    sensor: String,
    initial: f64,
    /// f64 bits, so calls can run concurrently without a lock.
    celsius: AtomicU64,
}

impl Thermometer {
    pub fn new(config: Config) -> Self {
        Thermometer {
            sensor: config.sensor,
            initial: config.celsius,
            celsius: AtomicU64::new(config.celsius.to_bits()),
        }
    }

    fn celsius(&self) -> f64 {
        f64::from_bits(self.celsius.load(Ordering::Relaxed))
    }
}

#[async_trait]
impl ThermometerInterface for Thermometer {
    async fn read(&self) -> Result<f64, DriverError> {
        Ok(self.celsius())
    }

    async fn name(&self) -> Result<String, DriverError> {
        Ok(self.sensor.clone())
    }

    async fn set(&self, celsius: f64) -> Result<(), DriverError> {
        if !(-273.15..=1000.0).contains(&celsius) {
            // ValueError in Python terms: INVALID_ARGUMENT on the wire.
            return Err(DriverError::invalid(format!(
                "{celsius} °C is out of range"
            )));
        }
        self.celsius.store(celsius.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    fn watch(self: Arc<Self>, count: usize) -> Result<Items<Reading>, DriverError> {
        let celsius = self.celsius();
        Ok(Box::pin(futures::stream::iter(
            (0..count).map(move |n| Ok(Reading { n, celsius })),
        )))
    }
}

jumpstarter_core::export! {
    impl Thermometer {
        client = CLIENT;
        interfaces = [ThermometerInterface];

        /// Sessions start from the configured temperature.
        async fn reset(&self) -> Result<(), DriverError> {
            self.celsius
                .store(self.initial.to_bits(), Ordering::Relaxed);
            Ok(())
        }
    }
}

/// The constructor the registry calls for every session (drivers are per session).
pub fn build(ctx: &BuildContext<'_>) -> Result<Arc<Thermometer>, ConfigError> {
    let config: Config = ctx.config.parse()?;
    Ok(Arc::new(Thermometer::new(config)))
}

/// `j <thermo> temp` (the temperature with its unit), next to the generic `call`,
/// `stream-call`, `connect` and `methods` commands.
pub struct ThermometerCommands;

#[async_trait(?Send)]
impl Commands for ThermometerCommands {
    fn command(&self, node: &Node<'_>) -> Command {
        generic::command(node.path, node.client)
            .about(
                node.client
                    .description()
                    .unwrap_or("A thermometer")
                    .to_owned(),
            )
            .subcommand(Command::new("temp").about("Print the temperature in degrees Celsius"))
    }

    async fn run(&self, node: &Node<'_>, m: &ArgMatches) -> CliResult {
        match m.subcommand() {
            Some(("temp", _)) => {
                let t = ThermometerClient::new(node.client.clone());
                jumpstarter_core::outln!("{} °C ({})", t.read().await?, t.name().await?);
                Ok(0)
            }
            _ => generic::run(node.client, m).await,
        }
    }
}

/// Adds this crate's family: the driver type and the `j` commands of its client class.
pub fn register(f: &mut Families) {
    f.driver(TYPE, build)
        .commands(&[CLIENT], ThermometerCommands);
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use jumpstarter_core::testing::serve;
    use jumpstarter_core::{DriverTree, Instance};
    use serde_json::json;

    fn tree() -> DriverTree {
        let t = Thermometer::new(Config {
            celsius: 20.0,
            sensor: "bench".into(),
        });
        DriverTree::composite(vec![("thermo", Instance::new(Arc::new(t), TYPE))])
    }

    #[tokio::test]
    async fn methods_through_a_real_session() {
        let served = serve(tree()).await.unwrap();
        let t = served.client.get("thermo").unwrap();
        let typed = ThermometerClient::new(t.clone());
        assert_eq!(typed.name().await.unwrap(), "bench");
        assert_eq!(
            typed
                .watch(Some(1))
                .await
                .unwrap()
                .next()
                .await
                .unwrap()
                .unwrap(),
            Reading {
                n: 0,
                celsius: 20.0
            }
        );
        assert_eq!(t.call("read", vec![]).await.unwrap(), json!(20));
        t.call("set", vec![json!(36.6)]).await.unwrap();
        assert_eq!(t.call("read", vec![]).await.unwrap(), json!(36.6));
        let items = t
            .streaming_call_collect("watch", vec![json!(2)])
            .await
            .unwrap();
        assert_eq!(
            items,
            vec![
                json!({"n": 0, "celsius": 36.6}),
                json!({"n": 1, "celsius": 36.6})
            ]
        );
        let err = t.call("set", vec![json!(-300)]).await.unwrap_err();
        assert!(
            err.as_call().is_some_and(|c| c.is_invalid_argument()),
            "{err}"
        );
        served.shutdown().await;
    }
}
