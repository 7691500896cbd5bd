//! Built-in driver families, one folder each: its drivers, its typed client and its `j`
//! commands, registered by one `register(&mut Families)` function.
//!
//! Every driver is registered under its upstream `type:` string ([`builtin`]), so exporter
//! configs written for upstream Jumpstarter run unchanged; command sets are keyed by the
//! upstream client class label (`jumpstarter.dev/client`).

pub mod config;
pub mod network;
pub mod opendal;
pub mod power;
pub mod py;
pub mod serial;
pub mod shell;
pub mod storage;
pub mod text;

use std::sync::Arc;

use jumpstarter_config::exporter::COMPOSITE_TYPE;
use jumpstarter_core::tree::Composite;
use jumpstarter_family::Families;

/// Every built-in family: driver types keyed by upstream type string, command sets keyed by
/// client class.
pub fn builtin() -> Families {
    let mut f = Families::new();
    f.driver(COMPOSITE_TYPE, |ctx| {
        config::ignore_unknown(ctx, &[]);
        Ok(Arc::new(Composite))
    });
    power::register(&mut f);
    network::register(&mut f);
    storage::register(&mut f);
    opendal::register(&mut f);
    shell::register(&mut f);
    serial::register(&mut f);
    f
}
