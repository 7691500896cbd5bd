//! Shell: `jumpstarter_driver_shell.driver.Shell` (configured scripts run on the exporter host)
//! and `ShellClient`, and `j <shell> <method>`.
//!
//! Config (as upstream): `methods` maps a method name to a script, or to a mapping with
//! `command` (a mapping without one runs `echo Hello`, as upstream), `description` (reported
//! in `methods_description`) and `timeout`; `shell` (argv prefix, default `["bash", "-c"]`),
//! `timeout` (seconds, default 300) and `cwd`. Unknown keys are config errors. One key of
//! ours: `allowed_env` (see below).
//!
//! ## What environment a client may set
//!
//! The client's `env` is checked name by name, and one refused name refuses the call
//! (ValueError, nothing runs):
//! 1. the name must be an identifier (upstream's check and text);
//! 2. upstream's deny-list ([`BLOCKED_ENV_VARS`], [`BLOCKED_ENV_PREFIXES`]) is refused with
//!    upstream's text, unless `allowed_env` names it exactly;
//! 3. then an allow-list decides. Without `allowed_env`, a name is allowed when it is made of
//!    ASCII letters, digits and `_`, starts with a letter, and is not one the shell, the
//!    dynamic loader, libc or a common interpreter/tool reads ([`RESERVED_ENV_VARS`],
//!    [`RESERVED_ENV_PREFIXES`]: `SHELLOPTS`, `PS4`, `ENV`, `IFS`, `GLIBC_TUNABLES`,
//!    `PERL5OPT`, `GIT_*`...), so `FOO`, `ENV_VAR` or `version` work as with upstream. With
//!    `allowed_env: [NAME, PREFIX*, ...]` exactly what it lists is allowed: a `NAME` entry
//!    allows that name whatever it is (the owner's explicit choice), a `PREFIX*` entry the
//!    names starting with `PREFIX` except the reserved ones (`*` alone: any identifier not
//!    reserved); `allowed_env: []` refuses every name. Upstream accepts every identifier off
//!    its short deny-list, which lets `SHELLOPTS=xtrace PS4='$(cmd)'` run `cmd`.
//!
//! Wire surface (drivers notes §2.8):
//!
//! | method | kind | args | result |
//! |---|---|---|---|
//! | `get_methods` | unary | — | the configured method names |
//! | `call_method` | streaming | `method`, `env` (str → str), then any number of str args | `[stdout, stderr, returncode]` items |
//!
//! A call runs `shell + [script, method, *args]` (so `$0` is the method name and `$1...` the
//! args) in a new process group, with the exporter's environment plus the client's `env`.
//! Output is streamed as it arrives: each item carries one chunk of stdout or stderr text
//! (UTF-8; invalid bytes become U+FFFD, multi-byte characters are never split between items)
//! with a null return code, and the last item is `["", "", code]` (`-N` when the script died
//! of signal N, as Python reports it). When the method's timeout expires the whole process
//! group gets SIGTERM, then SIGKILL after 5 s (`JMP_KILL_GRACE`), and the last item is upstream's
//! `["", "\nTimeout expired while running <method>: Command '[...]' timed out after <t>
//! seconds\n", 199]`. The timeout covers the whole call: a background process that keeps the
//! output pipes open counts as still running.
//!
//! Departures from upstream 0.9.0, on purpose:
//! * a client that goes away mid-call (cancelled RPC, dropped connection, ended session) gets
//!   its process group terminated the same way; upstream leaves the script running;
//! * the script's stdin is `/dev/null` (upstream's inherits the exporter's stdin);
//! * after SIGTERM we wait for the whole group (not only the script) before SIGKILL;
//! * the `calling ...` log line shows env names but not their values;
//! * `get_methods` lists the names in config order, as upstream does.
//!
//! * [`config`]: the `config:` (methods, shell, timeout, cwd, `allowed_env`).
//! * [`env`]: which environment a client may set.
//! * [`interface`]: the interface, declared once, and `ShellClient`.
//! * [`driver`]: `Shell` (runs a method's script in its own process group).
//! * [`cli`]: the `j` commands.

pub mod cli;
pub mod config;
pub mod driver;
pub mod env;
pub mod interface;

#[cfg(test)]
mod tests;

use jumpstarter_family::Families;

pub use config::{MethodConfig, Seconds, ShellConfig};
pub use driver::Shell;
pub use env::{
    BLOCKED_ENV_PREFIXES, BLOCKED_ENV_VARS, EnvEntryError, EnvPolicy, RESERVED_ENV_PREFIXES,
    RESERVED_ENV_VARS, check_env_name,
};
pub use interface::{ShellClient, ShellInterface, ShellOutput};

/// Client class of the Shell driver.
pub const SHELL_CLIENT: &str = "jumpstarter_driver_shell.client.ShellClient";
pub const SHELL: &str = "jumpstarter_driver_shell.driver.Shell";

/// The return code of a call whose method ran out of time (upstream's).
pub const TIMEOUT_CODE: i32 = 199;

/// The Shell config key that decides which environment a client may set.
pub const ALLOWED_ENV_KEY: &str = "allowed_env";

/// The family's registration: the driver type and the `j` command set.
pub fn register(f: &mut Families) {
    f.driver(SHELL, driver::build)
        .commands(&[SHELL_CLIENT], cli::ShellCommands);
}
