//! Power: the `PowerInterface` drivers and `PowerClient`.
//!
//! Wire surface (drivers notes §2.1): `on` and `off` (unary, no arguments, return null) and
//! `read` (server-streaming `{"voltage": number, "current": number}` readings). `cycle` is a
//! client-side sequence (off, wait, on), not an RPC.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use jumpstarter_core::driver::ValueStream;
use jumpstarter_core::{
    Args, CallContext, ClientError, Driver, DriverClient, DriverError, Logger, Method, Registry,
    Value,
};
use serde::{Deserialize, Serialize};

/// Client class of every power driver.
pub const POWER_CLIENT: &str = "jumpstarter_driver_power.client.PowerClient";
/// Client class of virtual power drivers (`off` takes `destroy`).
pub const VIRTUAL_POWER_CLIENT: &str = "jumpstarter_driver_power.client.VirtualPowerClient";

pub const MOCK_POWER: &str = "jumpstarter_driver_power.driver.MockPower";
pub const SYNC_MOCK_POWER: &str = "jumpstarter_driver_power.driver.SyncMockPower";

/// One power measurement. Both fields are always sent as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerReading {
    pub voltage: f64,
    pub current: f64,
}

impl PowerReading {
    pub fn apparent_power(&self) -> f64 {
        self.voltage * self.current
    }
}

const METHODS: &[Method] = &[
    Method::unary("on").help("Power on"),
    Method::unary("off").help("Power off"),
    Method::streaming("read").help("Read power measurements"),
    Method::unary("get_state").help("Current power state: \"on\" or \"off\" (not upstream)"),
];

/// `MockPower` and `SyncMockPower`: log `power on` / `power off` and report two readings,
/// (0 V, 0 A) then (5 V, 2 A). The power state is kept so tests can observe it.
///
/// Not in upstream: a unary `get_state` method (no arguments) returns `"on"` or `"off"`, so a
/// client can observe what other clients (or lifecycle hooks) did to the mock. Upstream's
/// `PowerClient` never calls it, and it does not appear in the report.
pub struct MockPower {
    logger: Logger,
    on: AtomicBool,
}

impl MockPower {
    pub fn new(logger: Logger) -> Self {
        MockPower {
            logger,
            on: AtomicBool::new(false),
        }
    }

    /// Whether the last command was `on`.
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Driver for MockPower {
    fn client(&self) -> &str {
        POWER_CLIENT
    }

    fn methods(&self) -> &[Method] {
        METHODS
    }

    async fn call(
        &self,
        method: &str,
        _args: Args,
        _ctx: &CallContext,
    ) -> Result<Value, DriverError> {
        match method {
            "on" => {
                self.on.store(true, Ordering::SeqCst);
                self.logger.info("power on");
                Ok(Value::Null)
            }
            "off" => {
                self.on.store(false, Ordering::SeqCst);
                self.logger.info("power off");
                Ok(Value::Null)
            }
            "get_state" => Ok(Value::from(if self.is_on() { "on" } else { "off" })),
            other => Err(DriverError::method_not_found(other)),
        }
    }

    fn streaming_call(
        self: Arc<Self>,
        method: &str,
        _args: Args,
        _ctx: CallContext,
    ) -> Result<ValueStream, DriverError> {
        match method {
            "read" => {
                let readings = [
                    PowerReading {
                        voltage: 0.0,
                        current: 0.0,
                    },
                    PowerReading {
                        voltage: 5.0,
                        current: 2.0,
                    },
                ];
                let items = readings.map(|r| serde_json::to_value(r).map_err(DriverError::other));
                Ok(Box::pin(futures::stream::iter(items)))
            }
            other => Err(DriverError::method_not_found(other)),
        }
    }
}

pub fn register(r: &mut Registry) {
    for type_name in [MOCK_POWER, SYNC_MOCK_POWER] {
        r.register(type_name, |ctx| {
            crate::config::ignore_unknown(ctx, &[]);
            Ok(Arc::new(MockPower::new(ctx.logger.clone())) as Arc<dyn Driver>)
        });
    }
}

/// The client of any power driver.
#[derive(Debug, Clone)]
pub struct PowerClient {
    pub driver: DriverClient,
}

impl PowerClient {
    pub fn new(driver: DriverClient) -> Self {
        PowerClient { driver }
    }

    pub async fn on(&self) -> Result<(), ClientError> {
        self.driver.call("on", vec![]).await.map(drop)
    }

    /// `off`; `destroy` is only sent to virtual power drivers.
    pub async fn off(&self) -> Result<(), ClientError> {
        self.driver.call("off", vec![]).await.map(drop)
    }

    pub async fn off_destroy(&self, destroy: bool) -> Result<(), ClientError> {
        self.driver
            .call("off", vec![Value::Bool(destroy)])
            .await
            .map(drop)
    }

    /// Off, wait, on. `progress` is told about each step.
    pub async fn cycle(&self, wait: Duration, progress: impl Fn(&str)) -> Result<(), ClientError> {
        progress("Starting power cycle sequence");
        self.off().await?;
        progress(&format!("Waiting {} seconds...", wait.as_secs_f64()));
        tokio::time::sleep(wait).await;
        self.on().await?;
        progress("Power cycle sequence complete");
        Ok(())
    }

    /// The readings of one `read` call, validated strictly (both fields must be numbers).
    pub async fn read(
        &self,
    ) -> Result<
        Pin<Box<dyn futures::Stream<Item = Result<PowerReading, ClientError>> + Send>>,
        ClientError,
    > {
        let items = self.driver.streaming_call("read", vec![]).await?;
        Ok(Box::pin(items.map(|item| {
            let v = item?;
            reading(&v)
                .ok_or_else(|| ClientError::shape("read", format!("not a power reading: {v}")))
        })))
    }
}

fn reading(v: &Value) -> Option<PowerReading> {
    let obj = v.as_object()?;
    Some(PowerReading {
        voltage: obj.get("voltage")?.as_f64()?,
        current: obj.get("current")?.as_f64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jumpstarter_core::testing::serve_with_logs;
    use jumpstarter_core::{DriverTree, Instance, LogHub};

    #[tokio::test]
    async fn mock_power_through_a_session() {
        let logs = LogHub::new();
        let driver = Arc::new(MockPower::new(
            logs.driver_logger("MockPower", Default::default()),
        ));
        let tree =
            DriverTree::composite(vec![("power", Instance::new(driver.clone(), MOCK_POWER))]);
        let served = serve_with_logs(tree, logs.clone()).await.unwrap();
        let power = PowerClient::new(served.client.get("power").unwrap().clone());
        assert_eq!(power.driver.client_class(), POWER_CLIENT);
        let state = || async { power.driver.call("get_state", vec![]).await.unwrap() };
        assert_eq!(state().await, "off");
        power.on().await.unwrap();
        assert!(driver.is_on());
        assert_eq!(state().await, "on");
        let readings: Vec<PowerReading> = power
            .read()
            .await
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(
            readings,
            [
                PowerReading {
                    voltage: 0.0,
                    current: 0.0
                },
                PowerReading {
                    voltage: 5.0,
                    current: 2.0
                }
            ]
        );
        assert_eq!(readings[1].apparent_power(), 10.0);
        power.off().await.unwrap();
        assert!(!driver.is_on());
        assert_eq!(state().await, "off");
        let (backlog, _) = logs.subscribe();
        let msgs: Vec<&str> = backlog.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(msgs, ["power on", "power off"]);

        // Wrong kinds, unknown names and extra arguments get upstream's codes.
        let err = power.driver.call("read", vec![]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "DriverCall 'read' failed with gRPC NOT_FOUND: method read missing marker marker_drivercall"
        );
        let err = power.driver.call("rescue", vec![]).await.unwrap_err();
        assert!(err.as_call().unwrap().is_not_implemented());
        let err = power
            .driver
            .call("on", vec![Value::Bool(true)])
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "DriverCall 'on' failed with gRPC UNKNOWN: MockPower.on() takes 1 positional argument but 2 were given"
        );
        served.shutdown().await;
    }
}
