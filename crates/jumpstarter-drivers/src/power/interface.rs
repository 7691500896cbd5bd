//! The power interfaces (drivers notes §2.1) and their typed clients.

use std::sync::Arc;
use std::time::Duration;

use jumpstarter_core::interface::Items;
use jumpstarter_core::{ClientError, DriverError};
use serde::{Deserialize, Serialize};

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

/// Upstream's `PowerInterface`: `on`, `off` (no arguments, null results) and `read`, a stream
/// of readings. `cycle` is a client-side sequence, not an RPC.
#[jumpstarter_core::interface(client = PowerClient)]
pub trait Power {
    /// Power on
    async fn on(&self) -> Result<(), DriverError>;
    /// Power off
    async fn off(&self) -> Result<(), DriverError>;
    /// Read power measurements
    #[streaming]
    fn read(self: Arc<Self>) -> Result<Items<PowerReading>, DriverError>;
}

/// Upstream's `VirtualPowerInterface`: as [`Power`], and `off` takes `destroy`.
#[jumpstarter_core::interface(client = VirtualPowerClient)]
pub trait VirtualPower {
    /// Power on
    async fn on(&self) -> Result<(), DriverError>;
    /// Power off
    async fn off(&self, #[default] destroy: bool) -> Result<(), DriverError>;
    /// Read power measurements
    #[streaming]
    fn read(self: Arc<Self>) -> Result<Items<PowerReading>, DriverError>;
}

/// Not upstream: the mock's state, so a client can observe what other clients (or lifecycle
/// hooks) did. Upstream's `PowerClient` never calls it.
#[jumpstarter_core::interface(client = PowerStateClient)]
pub trait PowerState {
    /// Current power state: "on" or "off" (not upstream)
    async fn get_state(&self) -> Result<String, DriverError>;
}

impl PowerClient {
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
}
