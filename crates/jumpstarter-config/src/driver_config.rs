//! A driver's `config:` mapping, with errors that point into the file.

use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::error::ConfigError;
use crate::yaml::{Node, PathSegment, Pos, Value};

/// The `config:` of one driver node (possibly absent), and where it came from.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    node: Option<Node>,
    /// Position of the driver node itself (used when `config:` is absent).
    owner: Pos,
    file: Arc<Path>,
}

impl DriverConfig {
    pub fn new(node: Option<Node>, owner: Pos, file: Arc<Path>) -> Self {
        DriverConfig { node, owner, file }
    }

    /// A config built in code (tests, the Rust SDK). Errors point at `<code>`.
    pub fn from_json(value: serde_json::Value) -> Self {
        let node = json_to_node(&value);
        DriverConfig {
            node: Some(node),
            owner: Pos::default(),
            file: Arc::from(Path::new("<code>")),
        }
    }

    /// An empty config.
    pub fn empty() -> Self {
        DriverConfig {
            node: None,
            owner: Pos::default(),
            file: Arc::from(Path::new("<code>")),
        }
    }

    /// The config as JSON (an empty object when absent or null).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.node {
            Some(n) if !n.is_null() => n.to_json(),
            _ => serde_json::Value::Object(Default::default()),
        }
    }

    /// The same config without some keys (positions of the rest are kept).
    pub fn without(&self, keys: &[&str]) -> DriverConfig {
        let node = self.node.as_ref().map(|n| match &n.value {
            Value::Map(entries) => Node {
                value: Value::Map(
                    entries
                        .iter()
                        .filter(|(k, _)| !keys.contains(&k.key_text()))
                        .cloned()
                        .collect(),
                ),
                ..n.clone()
            },
            _ => n.clone(),
        });
        DriverConfig {
            node,
            owner: self.owner,
            file: self.file.clone(),
        }
    }

    /// Keys present in the config mapping.
    pub fn keys(&self) -> Vec<String> {
        self.node
            .as_ref()
            .and_then(Node::as_map)
            .map(|m| m.iter().map(|(k, _)| k.key_text().to_owned()).collect())
            .unwrap_or_default()
    }

    /// Deserializes the config. On failure the error names the file, line and column of the
    /// offending value and the path to it (e.g. `config.port`).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let json = self.to_json();
        serde_path_to_error::deserialize::<_, T>(json).map_err(|err| {
            let segments: Vec<PathSegment> = err
                .path()
                .iter()
                .filter_map(|s| match s {
                    serde_path_to_error::Segment::Map { key } => {
                        Some(PathSegment::Key(key.clone()))
                    }
                    serde_path_to_error::Segment::Seq { index } => Some(PathSegment::Index(*index)),
                    _ => None,
                })
                .collect();
            let unknown_key = err.inner().to_string().starts_with("unknown field");
            let pos = match (&self.node, segments.split_last()) {
                // An unknown field: point at the key, not at its value.
                (Some(n), Some((PathSegment::Key(k), parent))) if unknown_key => n
                    .locate(parent)
                    .as_map()
                    .and_then(|m| m.iter().find(|(key, _)| key.key_text() == k))
                    .map_or(n.pos, |(key, _)| key.pos),
                (Some(n), _) => n.locate(&segments).pos,
                (None, _) => self.owner,
            };
            let path = err.path().to_string();
            let message = if path == "." {
                format!("config: {}", err.inner())
            } else {
                format!("config.{path}: {}", err.inner())
            };
            ConfigError::invalid(&self.file, pos, message)
        })
    }

    /// An error about the config as a whole, or about one key of it.
    pub fn error(&self, key: Option<&str>, message: impl Into<String>) -> ConfigError {
        let pos = match (&self.node, key) {
            (Some(n), Some(k)) => n
                .as_map()
                .and_then(|m| m.iter().find(|(kk, _)| kk.key_text() == k))
                .map(|(kk, _)| kk.pos)
                .unwrap_or(n.pos),
            (Some(n), None) => n.pos,
            (None, _) => self.owner,
        };
        ConfigError::invalid(&self.file, pos, message)
    }
}

fn json_to_node(v: &serde_json::Value) -> Node {
    use serde_json::Value as J;
    let value = match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i as i128),
            (_, Some(u)) => Value::Int(u as i128),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::Str(s.clone()),
        J::Array(items) => Value::Seq(items.iter().map(json_to_node).collect()),
        J::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| {
                    (
                        Node {
                            value: Value::Str(k.clone()),
                            pos: Pos::default(),
                            raw: k.clone(),
                            plain: false,
                        },
                        json_to_node(v),
                    )
                })
                .collect(),
        ),
    };
    Node {
        value,
        pos: Pos::default(),
        raw: String::new(),
        plain: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Tcp {
        host: String,
        port: u16,
    }

    fn cfg(text: &str) -> DriverConfig {
        let root = yaml::parse(text).unwrap().root.unwrap();
        DriverConfig::new(
            root.get("config").cloned(),
            root.pos,
            Arc::from(Path::new("x.yaml")),
        )
    }

    #[test]
    fn errors_point_at_the_bad_value() {
        let c = cfg("type: t\nconfig:\n  host: h\n  port: nope\n");
        let err = c.parse::<Tcp>().unwrap_err().to_string();
        assert!(
            err.starts_with("x.yaml:4:9: config.port: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn missing_and_unknown_fields() {
        let err = cfg("type: t\nconfig:\n  host: h\n")
            .parse::<Tcp>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `port`"), "{err}");
        assert!(err.starts_with("x.yaml:3:3:"), "{err}");
        let err = cfg("type: t\nconfig:\n  host: h\n  port: 1\n  prot: 2\n")
            .parse::<Tcp>()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("x.yaml:5:3: config.prot: unknown field `prot`"),
            "{err}"
        );
    }

    #[test]
    fn absent_config_is_empty() {
        let c = cfg("type: t\n");
        assert_eq!(c.to_json(), serde_json::json!({}));
        let err = c.parse::<Tcp>().unwrap_err().to_string();
        assert!(err.starts_with("x.yaml:1:1:"), "{err}");
    }
}
