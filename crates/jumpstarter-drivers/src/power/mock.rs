//! `MockPower` and `SyncMockPower`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use jumpstarter_core::interface::Items;
use jumpstarter_core::{BuildContext, ConfigError, DriverError, Logger};

use super::{POWER_CLIENT, Power, PowerReading, PowerState};

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
impl Power for MockPower {
    async fn on(&self) -> Result<(), DriverError> {
        self.on.store(true, Ordering::SeqCst);
        self.logger.info("power on");
        Ok(())
    }

    async fn off(&self) -> Result<(), DriverError> {
        self.on.store(false, Ordering::SeqCst);
        self.logger.info("power off");
        Ok(())
    }

    fn read(self: Arc<Self>) -> Result<Items<PowerReading>, DriverError> {
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
        Ok(Box::pin(futures::stream::iter(readings.map(Ok))))
    }
}

#[async_trait]
impl PowerState for MockPower {
    async fn get_state(&self) -> Result<String, DriverError> {
        Ok(if self.is_on() { "on" } else { "off" }.into())
    }
}

jumpstarter_core::export! {
    impl MockPower {
        client = POWER_CLIENT;
        interfaces = [Power, PowerState];
    }
}

pub(super) fn build(ctx: &BuildContext<'_>) -> Result<Arc<MockPower>, ConfigError> {
    crate::config::ignore_unknown(ctx, &[]);
    Ok(Arc::new(MockPower::new(ctx.logger.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power::{MOCK_POWER, PowerClient};
    use futures::StreamExt;
    use jumpstarter_core::Value;
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
