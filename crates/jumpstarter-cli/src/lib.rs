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
use jumpstarter_family::Families;

static FAMILIES: OnceLock<Families> = OnceLock::new();

/// The families this binary knows: the built-in ones, plus those a custom binary added with
/// [`main_with_drivers`].
pub fn families() -> &'static Families {
    FAMILIES.get_or_init(jumpstarter_drivers::builtin)
}

/// The driver types exporters are built with.
pub fn drivers() -> Registry {
    families().drivers().clone()
}

/// `jmp`/`j` with more families: the whole `main` of a custom exporter binary is
///
/// ```ignore
/// fn main() {
///     std::process::exit(jumpstarter_cli::main_with_drivers(|f| {
///         mylab::register(f); // f.driver("mylab.Thermometer", ..).commands(&[..], ..)
///     }));
/// }
/// ```
///
/// Driver types and command sets added here win over built-in ones of the same name; any
/// other type still goes to a driver host (docs/driver-hosts.md), and `j` inside a shell on
/// this binary's exporter offers the added commands.
pub fn main_with_drivers(add: impl FnOnce(&mut Families)) -> i32 {
    let mut families = jumpstarter_drivers::builtin();
    add(&mut families);
    let _ = FAMILIES.set(families);
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
