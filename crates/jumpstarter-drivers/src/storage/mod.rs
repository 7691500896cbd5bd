//! The storage family: storage muxes and flashers, their mock drivers, typed clients and
//! `j` commands.
//!
//! Wire surface (drivers notes §2.4):
//! * StorageMux (`...StorageMuxClient`): `host`, `dut`, `off` (no arguments, null results),
//!   `write(src handle)`, `read(dst handle)`.
//! * StorageMuxFlasher (`...StorageMuxFlasherClient`): the same methods; its client flashes as
//!   `host` → `write` → `dut` (dut even when the write fails).
//! * Flasher (`jumpstarter_driver_opendal.client.FlasherClient` and the core
//!   `jumpstarter.client.flasher.FlasherClient`): `flash(source handle, partition|null)`,
//!   `dump(target handle, partition|null)`.
//!
//! * [`interface`]: the interfaces, declared once, and their typed clients.
//! * [`transfer`]: what the clients send and receive (local files, URLs, atomic dumps).
//! * [`mux`]: `MockStorageMux` / `MockStorageMuxFlasher`.
//! * [`flasher`]: the `MockFlasher` driver.
//! * [`cli`]: the `j` commands.

pub mod cli;
pub mod flasher;
pub mod interface;
mod medium;
pub mod mux;
pub mod transfer;

use jumpstarter_family::Families;

pub use flasher::MockFlasher;
pub use interface::{Flasher, FlasherClient, StorageMux, StorageMuxClient};
pub use mux::{MockStorageMux, MuxState};
pub use transfer::{Source, Transfer};

pub const STORAGE_MUX_CLIENT: &str = "jumpstarter_driver_opendal.client.StorageMuxClient";
pub const STORAGE_MUX_FLASHER_CLIENT: &str =
    "jumpstarter_driver_opendal.client.StorageMuxFlasherClient";
pub const FLASHER_CLIENT: &str = "jumpstarter_driver_opendal.client.FlasherClient";
/// The core flasher interface's client (QEMU, Cuttlefish); same wire contract.
pub const CORE_FLASHER_CLIENT: &str = "jumpstarter.client.flasher.FlasherClient";

pub const MOCK_STORAGE_MUX: &str = "jumpstarter_driver_opendal.driver.MockStorageMux";
pub const MOCK_STORAGE_MUX_FLASHER: &str =
    "jumpstarter_driver_opendal.driver.MockStorageMuxFlasher";
pub const MOCK_FLASHER: &str = "jumpstarter_driver_opendal.driver.MockFlasher";

/// The family's registration: driver types and `j` command sets.
pub fn register(f: &mut Families) {
    f.driver(MOCK_STORAGE_MUX, |ctx| mux::build(ctx, STORAGE_MUX_CLIENT))
        .driver(MOCK_STORAGE_MUX_FLASHER, |ctx| {
            mux::build(ctx, STORAGE_MUX_FLASHER_CLIENT)
        })
        .driver(MOCK_FLASHER, flasher::build)
        .commands(
            &[STORAGE_MUX_CLIENT],
            cli::StorageCommands(cli::Flavour::Mux),
        )
        .commands(
            &[STORAGE_MUX_FLASHER_CLIENT],
            cli::StorageCommands(cli::Flavour::MuxFlasher),
        )
        .commands(
            &[FLASHER_CLIENT, CORE_FLASHER_CLIENT],
            cli::StorageCommands(cli::Flavour::Flasher),
        );
}
