//! The serial family: the `PySerial` driver, `SerialClient` (with the [`Console`] expect
//! helper), and `j <serial> pipe|start-console|call`.
//!
//! `type: jumpstarter_driver_pyserial.driver.PySerial`, client class
//! `jumpstarter_driver_pyserial.client.PySerialClient` (drivers notes §2.2).
//!
//! Wire surface:
//!
//! | method | kind | args | result |
//! |---|---|---|---|
//! | `connect` | stream | — | the serial line as a byte stream |
//! | `close` | unary | — | `null`; ends every active `connect` stream of the driver |
//! | `set_dtr` | unary | `value: bool` | `null`; sets DTR on a short-lived second handle |
//! | `set_rts` | unary | `value: bool` | `null`; same for RTS |
//!
//! Config: `url` (required; see [`url`] for the forms), `baudrate` = 115200, `check_present` =
//! true (open the port once when the driver is built, so a missing device fails the exporter
//! at start; not for `loop://`), `cps` (bytes per second toward the device, one byte at a
//! time; absent or not positive = unthrottled), `disable_hupcl` = false (clear HUPCL so closing
//! the port does not drop DTR). Unknown keys are errors, as upstream's dataclass rejects them.
//!
//! Streams: a tty or `socket://` line never ends by itself: the client's end of input is
//! ignored (the device keeps talking) and a device that goes away ends the stream with an
//! error, as pyserial reports it. `loop://` echoes, and ends once the client's input has ended
//! and everything was echoed. `set_dtr`/`set_rts` do nothing on `loop://` and `socket://`.

//!
//! * [`interface`]: the interface, declared once, and `SerialClient`.
//! * [`pyserial`]: `PySerial` and its config; [`port`], [`stream`], [`url`]: the tty, the
//!   stream adapters and the URL forms it uses.
//! * [`console`]: the expect helper; [`testing`]: a pty playing a device.
//! * [`cli`]: the `j` commands.

pub mod cli;
pub mod console;
pub mod interface;
pub mod port;
pub mod pyserial;
pub mod stream;
pub mod testing;
pub mod url;

use jumpstarter_family::Families;

pub use console::{Console, ExpectError, Match};
pub use interface::{Serial, SerialClient};
pub use port::PortError;
pub use pyserial::{BuildError, DEFAULT_BAUDRATE, PySerial, SerialConfig};
pub use url::{SerialUrl, UrlError};

/// Client class of serial drivers.
pub const PYSERIAL_CLIENT: &str = "jumpstarter_driver_pyserial.client.PySerialClient";
pub const PYSERIAL: &str = "jumpstarter_driver_pyserial.driver.PySerial";

/// The family's registration: driver types and `j` command sets.
pub fn register(f: &mut Families) {
    f.driver(PYSERIAL, pyserial::build)
        .commands(&[PYSERIAL_CLIENT], cli::SerialCommands);
}

#[cfg(test)]
mod tests;
