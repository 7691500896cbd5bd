//! The Shell driver's `config:`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The longest timeout we arm a timer for (about a century; larger values mean "never").
const MAX_TIMEOUT_SECS: f64 = 3.0e9;

/// A duration in seconds as written in the config (an integer or a float), kept so messages
/// print it as Python would.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds {
    value: f64,
    integral: bool,
}

impl Seconds {
    pub fn whole(secs: u64) -> Self {
        Seconds {
            value: secs as f64,
            integral: true,
        }
    }

    pub fn as_f64(&self) -> f64 {
        self.value
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.value.clamp(0.0, MAX_TIMEOUT_SECS))
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.integral {
            write!(f, "{}", self.value as i64)
        } else if self.value.fract() == 0.0 && self.value.abs() < 1e16 {
            write!(f, "{:.1}", self.value)
        } else {
            write!(f, "{}", self.value)
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds {
                    value: v as f64,
                    integral: true,
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                if v < 0 {
                    return Err(E::custom(format!("timeout must not be negative, got {v}")));
                }
                self.visit_u64(v as u64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                if v.is_nan() || v < 0.0 {
                    return Err(E::custom(format!(
                        "timeout must be a non-negative number, got {v}"
                    )));
                }
                Ok(Seconds {
                    value: v,
                    integral: false,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// One configured method: a script string, or a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodConfig {
    /// The script; `None` for a mapping without `command` (upstream runs `echo Hello`).
    pub command: Option<String>,
    pub description: Option<String>,
    /// Overrides the driver's `timeout`.
    pub timeout: Option<Seconds>,
}

impl MethodConfig {
    pub fn script(&self) -> &str {
        self.command.as_deref().unwrap_or("echo Hello")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MethodTable {
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    timeout: Option<Seconds>,
}

impl<'de> Deserialize<'de> for MethodConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MethodConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a script, or a mapping with `command`, `description` and `timeout`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MethodConfig, E> {
                Ok(MethodConfig {
                    command: Some(v.to_owned()),
                    description: None,
                    timeout: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MethodConfig, A::Error> {
                let t = MethodTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(MethodConfig {
                    command: t.command,
                    description: t.description,
                    timeout: t.timeout,
                })
            }
        }
        d.deserialize_any(V)
    }
}

fn default_shell() -> Vec<String> {
    vec!["bash".into(), "-c".into()]
}

fn default_timeout() -> Seconds {
    Seconds::whole(300)
}

/// The Shell driver's `config:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellConfig {
    /// In config order (what `get_methods` returns).
    pub methods: indexmap::IndexMap<String, MethodConfig>,
    #[serde(default = "default_shell")]
    pub shell: Vec<String>,
    #[serde(default = "default_timeout")]
    pub timeout: Seconds,
    #[serde(default)]
    pub cwd: Option<String>,
    /// Which env names a client may set (see the module docs); `None`: the default rule.
    #[serde(default)]
    pub allowed_env: Option<Vec<String>>,
}
