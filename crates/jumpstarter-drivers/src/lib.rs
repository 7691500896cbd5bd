//! Built-in drivers, one module per family, each with the typed client that drives it.
//!
//! Every driver is registered under its upstream `type:` string ([`builtin`]), so exporter
//! configs written for upstream Jumpstarter run unchanged. Clients are keyed by the upstream
//! client class label (`jumpstarter.dev/client`).

pub mod config;
pub mod http_power;
pub mod network;
pub mod opendal;
pub mod power;
pub mod serial;
pub mod shell;
pub mod storage;

use std::sync::Arc;

use jumpstarter_config::exporter::COMPOSITE_TYPE;
use jumpstarter_core::tree::Composite;
use jumpstarter_core::{Driver, Registry};

/// Every built-in driver, keyed by upstream type string.
pub fn builtin() -> Registry {
    let mut r = Registry::new();
    r.register(COMPOSITE_TYPE, |ctx| {
        config::ignore_unknown(ctx, &[]);
        Ok(Arc::new(Composite) as Arc<dyn Driver>)
    });
    power::register(&mut r);
    http_power::register(&mut r);
    network::register(&mut r);
    storage::register(&mut r);
    opendal::register(&mut r);
    shell::register(&mut r);
    serial::register(&mut r);
    r
}
