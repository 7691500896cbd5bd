//! Driver types by name: upstream `type:` strings mapped to constructors.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use jumpstarter_config::{ConfigError, DriverConfig};

use crate::driver::Driver;
use crate::logs::Logger;
use crate::tree::Instance;

/// What a constructor gets: its config, its children (already built, `ref:` children
/// resolved to the shared instance) and a logger named after the driver class.
pub struct BuildContext<'a> {
    pub type_name: &'a str,
    pub config: &'a DriverConfig,
    pub children: &'a [(String, Arc<dyn Driver>)],
    pub logger: Logger,
}

impl BuildContext<'_> {
    /// The last segment of the type string (`MockPower` for `...driver.MockPower`).
    pub fn class_name(&self) -> &str {
        class_name(self.type_name)
    }

    /// A configured child by name.
    pub fn child(&self, name: &str) -> Option<&Arc<dyn Driver>> {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d)
    }
}

/// The class name of a type string.
pub fn class_name(type_name: &str) -> &str {
    type_name.rsplit('.').next().unwrap_or(type_name)
}

/// What a constructor returns: a driver, and the children it creates itself (upstream's Qemu,
/// Dutlink and the flashers build their own power, console and storage nodes). The tree
/// merges them with the node's configured children; a configured child wins over a created one
/// of the same name.
pub struct Built {
    pub driver: Arc<dyn Driver>,
    pub children: Vec<(String, Instance)>,
}

impl Built {
    pub fn new(driver: impl Driver) -> Self {
        Built {
            driver: Arc::new(driver),
            children: Vec::new(),
        }
    }

    /// Adds a child the driver creates.
    pub fn child(mut self, name: impl Into<String>, child: Instance) -> Self {
        self.children.push((name.into(), child));
        self
    }
}

impl From<Arc<dyn Driver>> for Built {
    fn from(driver: Arc<dyn Driver>) -> Self {
        Built {
            driver,
            children: Vec::new(),
        }
    }
}

impl<D: Driver> From<Arc<D>> for Built {
    fn from(driver: Arc<D>) -> Self {
        Built {
            driver,
            children: Vec::new(),
        }
    }
}

/// Builds a driver (and the children it creates) from its config.
pub type Factory = Arc<dyn Fn(&BuildContext<'_>) -> Result<Built, ConfigError> + Send + Sync>;

/// Everything the exporter can instantiate, keyed by `type:` string.
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, Factory>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers a constructor for a `type:` string, replacing any earlier one. It returns a
    /// driver (`Arc<D>` or `Arc<dyn Driver>`) or a [`Built`] subtree.
    pub fn register<F, B>(&mut self, type_name: &str, factory: F) -> &mut Self
    where
        F: Fn(&BuildContext<'_>) -> Result<B, ConfigError> + Send + Sync + 'static,
        B: Into<Built>,
    {
        self.factories.insert(
            type_name.to_owned(),
            Arc::new(move |ctx| factory(ctx).map(Into::into)),
        );
        self
    }

    pub fn get(&self, type_name: &str) -> Option<&Factory> {
        self.factories.get(type_name)
    }

    pub fn contains(&self, type_name: &str) -> bool {
        self.factories.contains_key(type_name)
    }

    /// Known type strings, sorted.
    pub fn known(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    /// Adds every entry of another registry (later entries win).
    pub fn extend(&mut self, other: &Registry) {
        for (k, v) in &other.factories {
            self.factories.insert(k.clone(), v.clone());
        }
    }

    /// Known types close to `type_name` (likely meant when it is a typo), best first.
    pub fn suggestions(&self, type_name: &str) -> Vec<&str> {
        let mut scored: Vec<(f64, &str)> = self
            .known()
            .map(|k| {
                let full = strsim::jaro_winkler(type_name, k);
                let class = strsim::jaro_winkler(class_name(type_name), class_name(k));
                (full.max(class), k)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored
            .iter()
            .filter(|(s, _)| *s > 0.85)
            .take(3)
            .map(|(_, k)| *k)
            .collect()
    }

    /// The message for an unknown type: the closest known names first, then all of them.
    pub fn unknown_type_message(&self, type_name: &str) -> String {
        let close = self.suggestions(type_name);
        let mut msg = format!("unknown driver type `{type_name}`");
        if !close.is_empty() {
            msg.push_str(&format!("; did you mean `{}`?", close.join("` or `")));
        }
        let all: Vec<&str> = self.known().collect();
        msg.push_str(&format!("\nknown types: {}", all.join(", ")));
        msg
    }
}
