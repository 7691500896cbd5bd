//! Pieces shared by client and exporter configs: metadata, TLS, gRPC options, the environment.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::Arc;

use base64::Engine;

use crate::error::{ConfigError, ConfigWarning, Source};
use crate::load::{Ctx, Extra};
use crate::yaml::Node;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    pub namespace: Option<String>,
    pub name: String,
}

/// Where a setting came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Origin {
    #[default]
    Default,
    File(Source),
    Env(String),
    Flag(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => write!(f, "the default"),
            Origin::File(s) => write!(f, "{s}"),
            Origin::Env(v) => write!(f, "${v}"),
            Origin::Flag(v) => write!(f, "{v}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
    /// Base64-encoded PEM bundle, empty for system roots.
    pub ca: String,
    /// Upstream semantics: TLS, but any server certificate is accepted.
    pub insecure: bool,
    /// Where `ca` was set.
    pub ca_origin: Origin,
}

impl TlsConfig {
    /// The CA bundle as PEM bytes (`None` when `ca` is empty: use the system roots).
    ///
    /// `ca` is base64 (whitespace ignored, as Python's `b64decode` does) of one or more PEM
    /// `CERTIFICATE` blocks.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        if self.ca.trim().is_empty() {
            return Ok(None);
        }
        let compact: String = self.ca.chars().filter(|c| !c.is_whitespace()).collect();
        let bad = |message: String| match &self.ca_origin {
            Origin::File(at) => ConfigError::Invalid {
                at: at.clone(),
                message,
            },
            Origin::Env(var) => ConfigError::Env {
                var: var.clone(),
                message,
            },
            other => ConfigError::NotFound(format!("{other}: {message}")),
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|e| {
                bad(format!(
                    "tls.ca is not base64 ({e}); it must be the base64 encoding of a PEM CA bundle \
                     (e.g. `base64 -w0 ca.pem`)"
                ))
            })?;
        let text = String::from_utf8_lossy(&bytes);
        if !text.contains("-----BEGIN CERTIFICATE-----") {
            return Err(bad(
                "tls.ca decodes from base64 but holds no PEM certificate \
                 (-----BEGIN CERTIFICATE-----); encode the CA's PEM file with `base64 -w0 ca.pem`"
                    .into(),
            ));
        }
        Ok(Some(bytes))
    }
}

/// `grpcOptions` in file order (written back in the same order).
pub type GrpcOptions = indexmap::IndexMap<String, GrpcOptionValue>;

/// A gRPC channel option value (upstream allows strings and integers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcOptionValue {
    Str(String),
    Int(i64),
}

impl GrpcOptionValue {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            GrpcOptionValue::Str(s) => serde_json::Value::String(s.clone()),
            GrpcOptionValue::Int(i) => serde_json::Value::from(*i),
        }
    }
}

/// `grpcOptions` as JSON (for writing files).
pub fn grpc_options_json(map: &GrpcOptions) -> serde_json::Value {
    serde_json::Value::Object(map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
}

/// A way to read environment variables (the process environment, or a fixed set in tests).
#[derive(Clone)]
pub struct Env(Arc<Lookup>);

type Lookup = dyn Fn(&str) -> Option<OsString> + Send + Sync;

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Env")
    }
}

impl Env {
    /// The process environment.
    pub fn process() -> Env {
        Env(Arc::new(|k| std::env::var_os(k)))
    }

    /// A fixed set of variables.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        let map: BTreeMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Env(Arc::new(move |k| map.get(k).map(OsString::from)))
    }

    /// A variable's value; unset and empty are the same (None). Non-UTF-8 values are None.
    pub fn get(&self, key: &str) -> Option<String> {
        (self.0)(key)
            .and_then(|v| v.into_string().ok())
            .filter(|v| !v.is_empty())
    }

    pub fn get_os(&self, key: &str) -> Option<OsString> {
        (self.0)(key).filter(|v| !v.is_empty())
    }

    /// A boolean variable the way pydantic reads one (`1/true/yes/on`, `0/false/no/off`).
    pub fn flag(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" | "y" | "t" => Ok(Some(true)),
            "0" | "false" | "no" | "off" | "n" | "f" => Ok(Some(false)),
            _ => Err(ConfigError::Env {
                var: key.into(),
                message: format!("'{v}' is not a boolean; use 1 or 0"),
            }),
        }
    }

    /// Whether `JMP_GRPC_INSECURE` or `JUMPSTARTER_GRPC_INSECURE` asks for insecure TLS.
    pub fn grpc_insecure(&self) -> bool {
        ["JMP_GRPC_INSECURE", "JUMPSTARTER_GRPC_INSECURE"]
            .iter()
            .any(|k| {
                self.get(k)
                    .is_some_and(|v| v.trim() == "1" || v.eq_ignore_ascii_case("true"))
            })
    }
}

impl Ctx<'_> {
    /// A `tls:` mapping (null means defaults).
    pub(crate) fn tls(
        &self,
        node: &Node,
        warnings: &mut Vec<ConfigWarning>,
    ) -> Result<TlsConfig, ConfigError> {
        if node.is_null() {
            return Ok(TlsConfig::default());
        }
        let mut tm = self.mapping(node, "tls")?;
        let mut tls = TlsConfig::default();
        if let Some(v) = tm.take("ca") {
            tls.ca = self.opt_string(v, "tls.ca")?.unwrap_or_default();
            tls.ca_origin = Origin::File(self.at(v.pos));
        }
        if let Some(v) = tm.take("insecure") {
            tls.insecure = self.boolean(v, "tls.insecure")?;
        }
        tm.finish(self, "tls", Extra::Warn, warnings)?;
        Ok(tls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn ca_must_be_base64_pem() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(PEM);
        let ok = TlsConfig {
            ca: format!("{}\n{}", &b64[..10], &b64[10..]),
            ..Default::default()
        };
        assert_eq!(ok.ca_pem().unwrap().unwrap(), PEM.as_bytes());
        assert_eq!(TlsConfig::default().ca_pem().unwrap(), None);
        let raw_pem = TlsConfig {
            ca: PEM.into(),
            ca_origin: Origin::Env("JMP_TLS".into()),
            ..Default::default()
        };
        let err = raw_pem.ca_pem().unwrap_err().to_string();
        assert!(err.starts_with("$JMP_TLS: tls.ca is not base64"), "{err}");
        let not_pem = TlsConfig {
            ca: base64::engine::general_purpose::STANDARD.encode("hello"),
            ..Default::default()
        };
        let err = not_pem.ca_pem().unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
    }

    #[test]
    fn env_flags() {
        let env = Env::from_pairs([("A", "yes"), ("B", "0"), ("C", "maybe"), ("E", "")]);
        assert_eq!(env.flag("A").unwrap(), Some(true));
        assert_eq!(env.flag("B").unwrap(), Some(false));
        assert_eq!(env.flag("E").unwrap(), None);
        assert!(
            env.flag("C")
                .unwrap_err()
                .to_string()
                .starts_with("$C: 'maybe'")
        );
        assert!(Env::from_pairs([("JUMPSTARTER_GRPC_INSECURE", "1")]).grpc_insecure());
        assert!(!Env::from_pairs([("JMP_GRPC_INSECURE", "0")]).grpc_insecure());
    }
}
