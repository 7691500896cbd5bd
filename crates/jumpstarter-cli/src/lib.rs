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
