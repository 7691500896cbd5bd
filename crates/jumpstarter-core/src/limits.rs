//! Every resource bound of the exporter and controller in one place: what a peer may hold open,
//! for how long, and how much it may make us buffer.
//!
//! Each limit has a default (a `DEFAULT_*` constant), an environment variable that overrides it
//! for the process (`JMP_*`, read once by [`Limits::from_env`]), and an error text that names the
//! limit and its variable ([`Limits::exceeded`]), so whoever hits a limit knows what to change.
//! Durations are given in seconds (fractions allowed), counts and sizes as whole numbers (sizes
//! may end in `K`, `M` or `G`, powers of 1024).
//!
//! Daemons read the environment once at start ([`Limits::from_env`], a bad value is an error
//! naming the variable) and install the result with [`set_global`]; library code that is not
//! handed a `Limits` uses [`global`]. README's "Limits and hardening" lists them all.

use std::sync::OnceLock;
use std::time::Duration;

/// One named limit: its environment variable and what it bounds (for messages and docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitName {
    pub var: &'static str,
    pub what: &'static str,
}

macro_rules! limits {
    ($( $(#[$doc:meta])* $field:ident : $ty:ident = $default:expr, $konst:ident, $var:literal, $what:literal; )*) => {
        /// The limits in force (see the module docs).
        #[derive(Debug, Clone, PartialEq)]
        pub struct Limits {
            $( $(#[$doc])* pub $field: $ty, )*
        }

        $( $(#[$doc])* pub const $konst: $ty = $default; )*

        impl Default for Limits {
            fn default() -> Self {
                Limits { $( $field: $konst, )* }
            }
        }

        impl Limits {
            /// Every limit's name, in declaration order.
            pub const NAMES: &'static [(&'static str, LimitName)] = &[
                $( (stringify!($field), LimitName { var: $var, what: $what }), )*
            ];

            /// The defaults, overridden by the `JMP_*` variables that `lookup` knows.
            pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Limits, LimitError> {
                let mut limits = Limits::default();
                $(
                    if let Some(text) = lookup($var) {
                        limits.$field = <$ty as LimitValue>::parse(&text)
                            .ok_or_else(|| LimitError { var: $var, value: text.clone(), expected: <$ty as LimitValue>::EXPECTED })?;
                    }
                )*
                Ok(limits)
            }
        }
    };
}

limits! {
    /// How long a new connection has to finish its TLS handshake and send its first request.
    handshake_timeout: Duration = Duration::from_secs(10), DEFAULT_HANDSHAKE_TIMEOUT,
        "JMP_HANDSHAKE_TIMEOUT", "seconds for a new connection's TLS handshake and first request";
    /// How long a connection may stay open with no request in flight.
    idle_timeout: Duration = Duration::from_secs(300), DEFAULT_IDLE_TIMEOUT,
        "JMP_IDLE_TIMEOUT", "seconds a connection may stay open with no request in flight";
    /// Connections one exporter listener (unix socket, TCP port) serves at once.
    max_connections: usize = 256, DEFAULT_MAX_CONNECTIONS,
        "JMP_MAX_CONNECTIONS", "connections served at once per exporter listener";
    /// Connections the controller's port serves at once (every online exporter holds one).
    controller_max_connections: usize = 16384, DEFAULT_CONTROLLER_MAX_CONNECTIONS,
        "JMP_CONTROLLER_MAX_CONNECTIONS", "connections served at once by the controller";
    /// HTTP/2 streams (calls) open at once on one connection.
    max_streams_per_connection: u32 = 256, DEFAULT_MAX_STREAMS_PER_CONNECTION,
        "JMP_MAX_STREAMS_PER_CONNECTION", "calls open at once on one connection";
    /// Resource handles (flash/dump transfers) open at once in one session.
    max_resource_handles: usize = 64, DEFAULT_MAX_RESOURCE_HANDLES,
        "JMP_MAX_RESOURCE_HANDLES", "resource handles open at once per session";
    /// Bytes one stream may make the exporter buffer before it stops reading (backpressure).
    stream_buffer: usize = 8 << 20, DEFAULT_STREAM_BUFFER,
        "JMP_STREAM_BUFFER", "bytes buffered per stream before the sender is slowed down";
    /// Wrong passphrases one peer address may send before it has to wait.
    passphrase_failures: u32 = 5, DEFAULT_PASSPHRASE_FAILURES,
        "JMP_PASSPHRASE_FAILURES", "wrong passphrases per peer before back-off";
    /// The longest wait imposed on a peer that keeps sending wrong passphrases.
    passphrase_max_backoff: Duration = Duration::from_secs(30), DEFAULT_PASSPHRASE_MAX_BACKOFF,
        "JMP_PASSPHRASE_MAX_BACKOFF", "seconds of the longest back-off after wrong passphrases";
    /// Levels of nested lists and mappings in a YAML config file (aliases count in full).
    yaml_max_depth: usize = jumpstarter_config::yaml::DEFAULT_MAX_DEPTH, DEFAULT_YAML_MAX_DEPTH,
        "JMP_YAML_MAX_DEPTH", "levels of nesting in a YAML file";
    /// Nodes that anchors and aliases may copy in one YAML config file (alias bombs).
    yaml_alias_nodes: usize = jumpstarter_config::yaml::DEFAULT_ALIAS_NODES, DEFAULT_YAML_ALIAS_NODES,
        "JMP_YAML_ALIAS_NODES", "YAML nodes copied by anchors and aliases per file";
    /// Bytes of scalar text that anchors and aliases may copy in one YAML config file.
    yaml_alias_bytes: usize = jumpstarter_config::yaml::DEFAULT_ALIAS_BYTES, DEFAULT_YAML_ALIAS_BYTES,
        "JMP_YAML_ALIAS_BYTES", "bytes of YAML text copied by anchors and aliases per file";
    /// Lines of an exporter's driver report (every `ref:` repeats its target's subtree).
    tree_max_entries: usize = 100_000, DEFAULT_TREE_MAX_ENTRIES,
        "JMP_TREE_MAX_ENTRIES", "entries in an exporter's driver tree report";
    /// Levels of drivers in an exporter's tree, counting those reached through `ref:`.
    tree_max_depth: usize = 64, DEFAULT_TREE_MAX_DEPTH,
        "JMP_TREE_MAX_DEPTH", "levels of nested drivers in an exporter's driver tree";
    /// Dials of one lease whose router streams are not paired yet (each holds a connection).
    max_pending_dials: usize = 16, DEFAULT_MAX_PENDING_DIALS,
        "JMP_MAX_PENDING_DIALS", "unpaired Dials pending at once per lease";
    /// Bytes of one request message to the controller's services.
    controller_max_message: usize = 4 << 20, DEFAULT_CONTROLLER_MAX_MESSAGE,
        "JMP_CONTROLLER_MAX_MESSAGE", "bytes in one request message to the controller";
    /// How long a stopped process family (hook, shell script, `jmp shell` command) gets between SIGTERM and SIGKILL.
    kill_grace: Duration = Duration::from_secs(5), DEFAULT_KILL_GRACE,
        "JMP_KILL_GRACE", "seconds a stopped process group gets between SIGTERM and SIGKILL";
}

impl Limits {
    /// The defaults overridden by the process environment.
    pub fn from_env() -> Result<Limits, LimitError> {
        Limits::from_lookup(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
    }

    /// The variable and description of the limit stored in field `field` (a field name).
    pub fn name(field: &str) -> Option<LimitName> {
        Limits::NAMES
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, name)| *name)
    }

    /// The text for "limit `field` reached": what was bounded, the value, and the variable that
    /// raises it, e.g. `limit reached: 64 resource handles open at once per session
    /// (JMP_MAX_RESOURCE_HANDLES)`.
    pub fn exceeded(field: &str, value: impl std::fmt::Display) -> String {
        match Limits::name(field) {
            Some(name) => format!("limit reached: {value} {} ({})", name.what, name.var),
            None => format!("limit reached: {field} = {value}"),
        }
    }
}

/// A `JMP_*` limit variable whose value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?} is not valid: expected {expected}")]
pub struct LimitError {
    pub var: &'static str,
    pub value: String,
    pub expected: &'static str,
}

trait LimitValue: Sized {
    const EXPECTED: &'static str;
    fn parse(text: &str) -> Option<Self>;
}

impl LimitValue for Duration {
    const EXPECTED: &'static str = "a number of seconds greater than 0, such as 10 or 0.5";
    fn parse(text: &str) -> Option<Self> {
        let secs: f64 = text.trim().parse().ok()?;
        (secs.is_finite() && secs > 0.0 && secs < 1e9).then(|| Duration::from_secs_f64(secs))
    }
}

fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&text[..i], 1 << 20),
        (i, 'g' | 'G') => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    let n: u64 = digits.trim().parse().ok()?;
    n.checked_mul(unit).filter(|n| *n > 0)
}

impl LimitValue for usize {
    const EXPECTED: &'static str = "a whole number greater than 0 (K, M, G suffixes allowed)";
    fn parse(text: &str) -> Option<Self> {
        parse_size(text).and_then(|n| usize::try_from(n).ok())
    }
}

impl LimitValue for u32 {
    const EXPECTED: &'static str = "a whole number greater than 0";
    fn parse(text: &str) -> Option<Self> {
        parse_size(text).and_then(|n| u32::try_from(n).ok())
    }
}

static GLOBAL: OnceLock<Limits> = OnceLock::new();

/// Installs the process's limits (once; later calls return `false` and change nothing).
pub fn set_global(limits: Limits) -> bool {
    let yaml = limits.yaml();
    let installed = GLOBAL.set(limits).is_ok();
    if installed {
        // The YAML layer sits below this crate and keeps its own copy.
        jumpstarter_config::yaml::set_limits(yaml);
    }
    installed
}

impl Limits {
    /// The limits of YAML parsing (jumpstarter-config's share of these).
    pub fn yaml(&self) -> jumpstarter_config::yaml::ParseLimits {
        jumpstarter_config::yaml::ParseLimits {
            max_depth: self.yaml_max_depth,
            alias_nodes: self.yaml_alias_nodes,
            alias_bytes: self.yaml_alias_bytes,
        }
    }
}

/// The process's limits: what [`set_global`] installed, else the environment's (a bad value
/// there falls back to the default with a warning; daemons validate it at start instead).
pub fn global() -> &'static Limits {
    GLOBAL.get_or_init(|| {
        Limits::from_env().unwrap_or_else(|e| {
            tracing::warn!("{e}; using the defaults");
            Limits::default()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |var| pairs.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone())
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(Limits::from_lookup(|_| None).unwrap(), Limits::default());
        let l = Limits::from_lookup(env(&[
            ("JMP_IDLE_TIMEOUT", "0.5"),
            ("JMP_STREAM_BUFFER", "2M"),
            ("JMP_MAX_CONNECTIONS", "10"),
        ]))
        .unwrap();
        assert_eq!(l.idle_timeout, Duration::from_millis(500));
        assert_eq!(l.stream_buffer, 2 << 20);
        assert_eq!(l.max_connections, 10);
        assert_eq!(l.handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for bad in ["0", "-1", "x", "", "1.5", "99999999999999999999"] {
            let e = Limits::from_lookup(env(&[("JMP_MAX_CONNECTIONS", bad)])).unwrap_err();
            assert_eq!(e.var, "JMP_MAX_CONNECTIONS");
            assert!(e.to_string().starts_with("JMP_MAX_CONNECTIONS="), "{e}");
        }
        for bad in ["0", "-2", "nan", "inf", "abc"] {
            let e = Limits::from_lookup(env(&[("JMP_IDLE_TIMEOUT", bad)])).unwrap_err();
            assert!(e.to_string().contains("seconds"), "{e}");
        }
    }

    #[test]
    fn readme_lists_every_limit() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("## Limits and hardening")
            .nth(1)
            .expect("README has a Limits and hardening section");
        for (field, name) in Limits::NAMES {
            assert!(
                section.contains(&format!("| `{}` |", name.var)),
                "README's limits table lacks {} ({field})",
                name.var
            );
        }
    }

    #[test]
    fn exceeded_names_the_knob() {
        assert_eq!(
            Limits::exceeded("max_resource_handles", 64),
            "limit reached: 64 resource handles open at once per session (JMP_MAX_RESOURCE_HANDLES)"
        );
        for (field, name) in Limits::NAMES {
            assert!(name.var.starts_with("JMP_"), "{field}");
        }
    }
}
