//! The driver client allow-list: which client classes a client may load.
//!
//! A class path (`jumpstarter.dev/client` label) must match one of the `drivers.allow` globs
//! (fnmatch-style on the whole dotted path: `*` also crosses dots) unless `drivers.unsafe` is
//! true or the list contains `UNSAFE`. `JMP_DRIVERS_ALLOW` (comma list) and
//! `JMP_DRIVERS_UNSAFE` override the file.

use crate::common::Env;
use crate::error::ConfigError;

/// `drivers:` of a client config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Drivers {
    /// Globs as written (upstream writes `['']` for an empty answer; kept for round trips).
    pub allow: Vec<String>,
    pub unsafe_: bool,
}

impl Drivers {
    /// Splits a comma list the way upstream does (`""` gives `[""]`).
    pub fn split_list(list: &str) -> Vec<String> {
        list.split(',').map(str::to_owned).collect()
    }

    /// Whether every class is allowed.
    pub fn is_unsafe(&self) -> bool {
        self.unsafe_ || self.allow.iter().any(|a| a.trim() == "UNSAFE")
    }

    /// The value `jmp shell` puts in `JMP_DRIVERS_ALLOW` for the shell it spawns.
    pub fn env_value(&self) -> String {
        if self.is_unsafe() {
            "UNSAFE".into()
        } else {
            self.allow.join(",")
        }
    }

    /// Applies `JMP_DRIVERS_ALLOW` / `JMP_DRIVERS_UNSAFE`.
    pub fn apply_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        if let Some(list) = env.get("JMP_DRIVERS_ALLOW") {
            self.allow = Self::split_list(&list);
        }
        if let Some(u) = env.flag("JMP_DRIVERS_UNSAFE")? {
            self.unsafe_ = u;
        }
        Ok(())
    }
}

/// A compiled allow-list.
#[derive(Debug, Clone, Default)]
pub struct DriverAllow {
    unsafe_all: bool,
    globs: Vec<glob::Pattern>,
    raw: Vec<String>,
    /// Where the list came from, for notes ("JMP_DRIVERS_ALLOW", "drivers.allow of c1.yaml").
    source: String,
}

impl DriverAllow {
    /// From `JMP_DRIVERS_ALLOW` and `JMP_DRIVERS_UNSAFE` (what `j` and `env()` read).
    pub fn from_env(env: &Env) -> DriverAllow {
        let list = env.get("JMP_DRIVERS_ALLOW").unwrap_or_default();
        let unsafe_env = env
            .flag("JMP_DRIVERS_UNSAFE")
            .ok()
            .flatten()
            .unwrap_or(false);
        DriverAllow::new(&list, unsafe_env, "JMP_DRIVERS_ALLOW")
    }

    /// From a client config's `drivers:`.
    pub fn from_drivers(d: &Drivers, source: &str) -> DriverAllow {
        DriverAllow::new(&d.allow.join(","), d.unsafe_, source)
    }

    pub fn new(list: &str, unsafe_all: bool, source: &str) -> DriverAllow {
        let raw: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let unsafe_all = unsafe_all || raw.iter().any(|s| s == "UNSAFE");
        let globs = raw
            .iter()
            .filter_map(|g| glob::Pattern::new(g).ok())
            .collect();
        DriverAllow {
            unsafe_all,
            globs,
            raw,
            source: source.to_owned(),
        }
    }

    pub fn allows(&self, class: &str) -> bool {
        self.unsafe_all || self.globs.iter().any(|g| g.matches(class))
    }

    /// Why a class is not allowed, for the note shown in place of its commands.
    pub fn denial(&self, class: &str) -> String {
        if self.raw.is_empty() {
            format!(
                "not available: driver client {class} is not allowed ({} is empty; \
                 set JMP_DRIVERS_ALLOW=UNSAFE or a matching pattern)",
                self.source
            )
        } else {
            format!(
                "not available: driver client {class} does not match {} ({})",
                self.source,
                self.raw.join(",")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_unsafe() {
        let a = DriverAllow::new("jumpstarter_driver_*, vendor.*", false, "JMP_DRIVERS_ALLOW");
        assert!(a.allows("jumpstarter_driver_power.client.PowerClient"));
        assert!(a.allows("vendor.x.Client"));
        assert!(!a.allows("other.Client"));
        assert!(DriverAllow::new("x,UNSAFE", false, "x").allows("anything"));
        assert!(DriverAllow::new("", true, "x").allows("anything"));
        assert!(!DriverAllow::new("", false, "x").allows("anything"));
        assert!(
            DriverAllow::new("", false, "JMP_DRIVERS_ALLOW")
                .denial("a.B")
                .contains("JMP_DRIVERS_ALLOW is empty")
        );
    }

    #[test]
    fn env_overrides_the_file() {
        let mut d = Drivers {
            allow: vec!["a.*".into()],
            unsafe_: false,
        };
        d.apply_env(&Env::from_pairs([("JMP_DRIVERS_ALLOW", "b.*,UNSAFE")]))
            .unwrap();
        assert_eq!(d.allow, ["b.*", "UNSAFE"]);
        assert!(d.is_unsafe());
        assert_eq!(d.env_value(), "UNSAFE");
        let d = Drivers {
            allow: vec!["a.*".into(), "b".into()],
            unsafe_: false,
        };
        assert_eq!(d.env_value(), "a.*,b");
        assert!(DriverAllow::from_drivers(&d, "drivers.allow").allows("a.x.Y"));
        assert!(!DriverAllow::from_drivers(&d, "drivers.allow").allows("c.x.Y"));
    }
}
