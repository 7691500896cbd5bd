//! A lab's own driver in Rust: a (simulated) thermometer.
//!
//! Writing a driver takes three things from `jumpstarter_core`:
//! 1. a type implementing [`Driver`]: the client label, a method table, and the methods;
//! 2. a constructor registered under the `type:` string exporter configs use
//!    ([`register`]), which reads the node's `config:` with serde;
//! 3. tests through a real session with [`jumpstarter_core::testing::serve`] (see the tests
//!    below), exactly as a client would reach the driver.
//!
//! `src/main.rs` turns it into an exporter binary with one line of glue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use jumpstarter_core::registry::BuildContext;
use jumpstarter_core::{
    Args, CallContext, ConfigError, Driver, DriverError, Method, Param, Registry, Value,
    ValueStream,
};

/// The `type:` string of the driver in exporter configs.
pub const TYPE: &str = "example_thermometer.Thermometer";

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

/// A thermometer whose temperature can be set (a lab would read a device here).
pub struct Thermometer {
    sensor: String,
    initial: f64,
    /// f64 bits, so calls can run concurrently without a lock.
    celsius: AtomicU64,
}

const METHODS: &[Method] = &[
    Method::unary("read").help("The current temperature in degrees Celsius"),
    Method::unary("name").help("The sensor's name"),
    Method::unary("set")
        .params(&[Param::required("celsius")])
        .help("Set the simulated temperature"),
    Method::streaming("watch")
        .params(&[Param::optional("count")])
        .help("COUNT readings (default 3), one per item"),
];

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
impl Driver for Thermometer {
    fn client(&self) -> &str {
        // No Python client class exists for it: `j` offers generic commands
        // (`j thermo call read`), upstream clients a generic DriverClient.
        "example_thermometer.client.ThermometerClient"
    }

    fn methods(&self) -> &[Method] {
        METHODS
    }

    async fn call(&self, method: &str, args: Args, _: &CallContext) -> Result<Value, DriverError> {
        // The session already checked that `method` is in the table as a unary method and
        // that the argument count fits its parameters.
        match method {
            "read" => Ok(self.celsius().into()),
            "name" => Ok(self.sensor.clone().into()),
            "set" => {
                let c: f64 = args.get(0, "celsius")?;
                if !(-273.15..=1000.0).contains(&c) {
                    // ValueError in Python terms: INVALID_ARGUMENT on the wire.
                    return Err(DriverError::invalid(format!("{c} °C is out of range")));
                }
                self.celsius.store(c.to_bits(), Ordering::Relaxed);
                Ok(Value::Null)
            }
            other => Err(DriverError::method_not_found(other)),
        }
    }

    fn streaming_call(
        self: Arc<Self>,
        method: &str,
        args: Args,
        _: CallContext,
    ) -> Result<ValueStream, DriverError> {
        match method {
            "watch" => {
                let count: usize = args.get_or(0, "count", 3)?;
                let c = self.celsius();
                Ok(Box::pin(futures::stream::iter((0..count).map(move |i| {
                    Ok(serde_json::json!({"n": i, "celsius": c}))
                }))))
            }
            other => Err(DriverError::method_not_found(other)),
        }
    }

    /// Sessions start from the configured temperature.
    async fn reset(&self) -> Result<(), DriverError> {
        self.celsius
            .store(self.initial.to_bits(), Ordering::Relaxed);
        Ok(())
    }
}

/// The constructor the registry calls for every session (drivers are per session).
pub fn build(ctx: &BuildContext<'_>) -> Result<Arc<dyn Driver>, ConfigError> {
    let config: Config = ctx.config.parse()?;
    Ok(Arc::new(Thermometer::new(config)))
}

/// Adds this crate's driver types to a registry.
pub fn register(registry: &mut Registry) {
    registry.register(TYPE, build);
}

#[cfg(test)]
mod tests {
    use super::*;
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
