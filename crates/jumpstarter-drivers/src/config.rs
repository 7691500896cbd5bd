//! Helpers for reading driver configs the way upstream drivers accept them.

use jumpstarter_core::BuildContext;
use serde::{Deserialize, Deserializer};

/// For drivers whose upstream class ignores unknown config keys: warn about them (once, at
/// build time) instead of failing, so configs that work upstream keep working.
pub fn ignore_unknown(ctx: &BuildContext<'_>, known: &[&str]) {
    for key in ctx.config.keys() {
        if !known.contains(&key.as_str()) {
            tracing::warn!(
                "{}: config key `{key}` is not used by {} and is ignored",
                ctx.type_name,
                ctx.class_name()
            );
        }
    }
}

/// A TCP/UDP port written as a number or as a numeric string.
pub fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum P {
        N(u16),
        S(String),
    }
    match P::deserialize(d)? {
        P::N(n) => Ok(n),
        P::S(s) => s
            .trim()
            .parse::<u16>()
            .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a port number (0-65535)"))),
    }
}

pub fn default_true() -> bool {
    true
}
