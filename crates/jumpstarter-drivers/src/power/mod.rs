//! The power family: `PowerInterface` drivers, `PowerClient`, and `j <power> on|off|cycle|read`.
//!
//! Wire surface (drivers notes §2.1): `on` and `off` (unary, no arguments, return null) and
//! `read` (server-streaming `{"voltage": number, "current": number}` readings); virtual power
//! drivers' `off` takes `destroy`. `cycle` is a client-side sequence (off, wait, on).
//!
//! * [`interface`]: the interfaces, declared once, and their typed clients.
//! * [`mock`]: `MockPower` / `SyncMockPower`.
//! * [`http`]: `HttpPower` (on/off/read through HTTP requests).
//! * [`cli`]: the `j` commands.

pub mod cli;
pub mod http;
pub mod interface;
pub mod mock;

use jumpstarter_family::Families;

pub use http::{HTTP_POWER, HttpPower};
pub use interface::{
    Power, PowerClient, PowerReading, PowerState, PowerStateClient, VirtualPower,
    VirtualPowerClient,
};
pub use mock::MockPower;

/// Client class of every power driver.
pub const POWER_CLIENT: &str = "jumpstarter_driver_power.client.PowerClient";
/// Client class of virtual power drivers (`off` takes `destroy`).
pub const VIRTUAL_POWER_CLIENT: &str = "jumpstarter_driver_power.client.VirtualPowerClient";

pub const MOCK_POWER: &str = "jumpstarter_driver_power.driver.MockPower";
pub const SYNC_MOCK_POWER: &str = "jumpstarter_driver_power.driver.SyncMockPower";

/// The family's registration: driver types and `j` command sets.
pub fn register(f: &mut Families) {
    f.driver(MOCK_POWER, mock::build)
        .driver(SYNC_MOCK_POWER, mock::build)
        .driver(HTTP_POWER, http::build)
        .commands(
            &[POWER_CLIENT],
            cli::PowerCommands {
                virtual_power: false,
            },
        )
        .commands(
            &[VIRTUAL_POWER_CLIENT],
            cli::PowerCommands {
                virtual_power: true,
            },
        );
}
