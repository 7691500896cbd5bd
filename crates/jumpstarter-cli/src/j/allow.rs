//! Which client classes `j` gives commands to: `JMP_DRIVERS_ALLOW` / `JMP_DRIVERS_UNSAFE`
//! (`jmp shell` sets them from the client config's `drivers:`; `UNSAFE` for local and direct
//! sessions). The matching lives in [`jumpstarter_config::drivers`]: globs on the whole dotted
//! class path, `UNSAFE` allows all. Composites are structure, not code, and are always
//! navigable; a node that is not allowed is listed with a note instead of disappearing.

pub use jumpstarter_config::DriverAllow as Allow;

/// The allow-list of this process's environment.
pub fn from_env() -> Allow {
    Allow::from_env(&jumpstarter_config::Env::process())
}
