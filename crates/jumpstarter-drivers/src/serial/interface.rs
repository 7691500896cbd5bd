//! The serial interface (drivers notes §2.2) and `SerialClient`.

use jumpstarter_core::client::DriverStream;
use jumpstarter_core::{BoxStream, ClientError, DriverError, Value};

use super::Console;

/// Upstream's `PySerial` methods: `connect` (the line as a byte stream), `close` (ends every
/// active `connect` stream) and `set_dtr` / `set_rts`.
///
/// `value` of `set_dtr` / `set_rts` arrives as sent: the driver takes its truth as Python
/// would (booleans and numbers) and refuses anything else, null included, with its own text.
#[jumpstarter_core::interface(client = SerialClient)]
pub trait Serial {
    /// Open the serial port as a byte stream
    #[stream]
    async fn connect(&self) -> Result<BoxStream, DriverError>;
    /// Force-close every active connection to the serial port
    #[wire = "close"]
    #[client = "close"]
    async fn close_connections(&self) -> Result<(), DriverError>;
    /// Set the DTR control signal
    #[client = "set_dtr_value"]
    async fn set_dtr(&self, #[raw] value: Value) -> Result<(), DriverError>;
    /// Set the RTS control signal
    #[client = "set_rts_value"]
    async fn set_rts(&self, #[raw] value: Value) -> Result<(), DriverError>;
}

impl SerialClient {
    /// Opens the `connect` stream wrapped in an expect-style [`Console`].
    pub async fn console(&self) -> Result<Console<DriverStream>, ClientError> {
        Ok(Console::new(self.connect().await?))
    }

    /// Sets the DTR line.
    pub async fn set_dtr(&self, value: bool) -> Result<(), ClientError> {
        self.set_dtr_value(Value::Bool(value)).await
    }

    /// Sets the RTS line.
    pub async fn set_rts(&self, value: bool) -> Result<(), ClientError> {
        self.set_rts_value(Value::Bool(value)).await
    }
}
