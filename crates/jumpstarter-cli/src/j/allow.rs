//! Which client classes `j` gives commands to (`JMP_DRIVERS_ALLOW`, `JMP_DRIVERS_UNSAFE`).
//!
//! A class path must match one of the comma-separated globs (fnmatch-style, on the full dotted
//! path) unless the list contains `UNSAFE` or `JMP_DRIVERS_UNSAFE` is true. `jmp shell` sets
//! `UNSAFE` for local and direct sessions. Composites are structure, not code, and are always
//! navigable. A node that is not allowed is listed with a note instead of disappearing.

#[derive(Debug, Clone, Default)]
pub struct Allow {
    unsafe_all: bool,
    globs: Vec<glob::Pattern>,
    raw: Vec<String>,
}

impl Allow {
    pub fn from_env() -> Allow {
        let list = std::env::var("JMP_DRIVERS_ALLOW").unwrap_or_default();
        let unsafe_env = std::env::var("JMP_DRIVERS_UNSAFE")
            .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        Allow::new(&list, unsafe_env)
    }

    pub fn new(list: &str, unsafe_all: bool) -> Allow {
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
        Allow {
            unsafe_all,
            globs,
            raw,
        }
    }

    pub fn allows(&self, class: &str) -> bool {
        self.unsafe_all || self.globs.iter().any(|g| g.matches(class))
    }

    /// Why a class is not allowed, for the help text of its node.
    pub fn denial(&self, class: &str) -> String {
        if self.raw.is_empty() {
            format!(
                "not available: driver client {class} is not allowed (JMP_DRIVERS_ALLOW is empty; \
                 set JMP_DRIVERS_ALLOW=UNSAFE or a matching pattern)"
            )
        } else {
            format!(
                "not available: driver client {class} does not match JMP_DRIVERS_ALLOW ({})",
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
        let a = Allow::new("jumpstarter_driver_*, vendor.*", false);
        assert!(a.allows("jumpstarter_driver_power.client.PowerClient"));
        assert!(a.allows("vendor.x.Client"));
        assert!(!a.allows("other.Client"));
        assert!(Allow::new("x,UNSAFE", false).allows("anything"));
        assert!(Allow::new("", true).allows("anything"));
        assert!(!Allow::new("", false).allows("anything"));
        assert!(
            Allow::new("", false)
                .denial("a.B")
                .contains("JMP_DRIVERS_ALLOW is empty")
        );
    }
}
