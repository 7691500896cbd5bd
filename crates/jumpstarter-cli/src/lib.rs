//! `jmp` (management) and `j` (driver commands inside a shell).
//!
//! One binary can play both parts: invoked as `j` (by name, e.g. through a symlink) it is `j`,
//! otherwise it is `jmp`.

pub mod j;
pub mod jmp;
pub mod logging;
pub mod output;

use std::ffi::OsString;
use std::path::Path;
use std::sync::OnceLock;

use jumpstarter_core::Registry;

static DRIVERS: OnceLock<Registry> = OnceLock::new();

/// The driver types exporters are built with: the built-in ones, plus those a custom binary
/// added with [`main_with_drivers`].
pub fn drivers() -> Registry {
    DRIVERS
        .get()
        .cloned()
        .unwrap_or_else(jumpstarter_drivers::builtin)
}

/// `jmp`/`j` with more driver types: the whole `main` of a custom exporter binary is
///
/// ```ignore
/// fn main() {
///     std::process::exit(jumpstarter_cli::main_with_drivers(|r| {
///         r.register("mylab.Thermometer", mylab::build);
///     }));
/// }
/// ```
///
/// Types added here win over built-in ones of the same name; any other type still goes to a
/// driver host (docs/driver-hosts.md).
pub fn main_with_drivers(add: impl FnOnce(&mut Registry)) -> i32 {
    let mut registry = jumpstarter_drivers::builtin();
    add(&mut registry);
    let _ = DRIVERS.set(registry);
    main_from_args()
}

/// Runs `jmp` or `j` depending on the program name; returns the exit code.
pub fn main_from_args() -> i32 {
    let args: Vec<OsString> = std::env::args_os().collect();
    let program = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("jmp");
    if program == "j" {
        j::main(args.into_iter().skip(1).collect())
    } else {
        jmp::main(args)
    }
}
