//! `kind: UserConfig` (`<root>/config.yaml`): which client config is current.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use crate::error::{ConfigError, ConfigWarning, Source};
use crate::exporter::Ctx;
use crate::yaml::{self, Pos};

/// The user config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserConfig {
    /// Alias of the current client config (`current-client`).
    pub current_client: Option<String>,
    pub warnings: Vec<ConfigWarning>,
}

impl UserConfig {
    /// Reads `config.yaml`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<UserConfig, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UserConfig::default()),
            Err(source) => Err(ConfigError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    pub fn parse(text: &str, file: &Path) -> Result<UserConfig, ConfigError> {
        let file: Arc<Path> = Arc::from(file);
        let doc = yaml::parse(text).map_err(|e| ConfigError::invalid(&file, e.pos, e.message))?;
        let mut warnings: Vec<ConfigWarning> = doc
            .warnings
            .into_iter()
            .map(|w| ConfigWarning {
                at: Source {
                    file: file.clone(),
                    pos: w.pos,
                },
                message: w.message,
            })
            .collect();
        let Some(root) = doc.root else {
            return Err(ConfigError::invalid(
                &file,
                Pos { line: 1, col: 1 },
                "the file is empty; expected a UserConfig (kind: UserConfig, config: \
                 {current-client: ...}); delete it and run `jmp config client use <alias>`",
            ));
        };
        let ctx = Ctx { file: &file };
        let mut top = ctx.mapping(&root, "a UserConfig")?;
        if let Some(v) = top.take("apiVersion") {
            let s = ctx.string(v, "apiVersion")?;
            if s != crate::API_VERSION {
                return Err(ctx.err(
                    v,
                    format!("apiVersion must be '{}', not '{s}'", crate::API_VERSION),
                ));
            }
        }
        if let Some(v) = top.take("kind") {
            let s = ctx.string(v, "kind")?;
            if s != "UserConfig" {
                return Err(ctx.err(v, format!("kind must be 'UserConfig', not '{s}'")));
            }
        }
        let mut current_client = None;
        match top.take("config") {
            Some(c) if !c.is_null() => {
                let mut cm = ctx.mapping(c, "config")?;
                if let Some(v) = cm.take_any(&["current-client", "current_client"]) {
                    current_client = ctx.opt_string(v, "config.current-client")?;
                }
                cm.finish(&ctx, "config", &mut warnings);
            }
            _ => {
                return Err(ctx.err(
                    &root,
                    "config is required (config: {current-client: <alias>})",
                ));
            }
        }
        top.finish(&ctx, "the UserConfig", &mut warnings);
        Ok(UserConfig {
            current_client,
            warnings,
        })
    }

    pub fn to_yaml(&self) -> String {
        crate::emit::to_yaml(&json!({
            "apiVersion": crate::API_VERSION,
            "kind": "UserConfig",
            "config": {"current-client": self.current_client},
        }))
    }

    /// Writes `config.yaml` (atomically; mode 0644 like upstream's plain write).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        crate::write::write_atomic(path, &self.to_yaml(), 0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let u = UserConfig {
            current_client: Some("c1".into()),
            warnings: vec![],
        };
        let text = u.to_yaml();
        assert_eq!(
            text,
            "apiVersion: jumpstarter.dev/v1alpha1\nkind: UserConfig\nconfig:\n  current-client: c1\n"
        );
        assert_eq!(UserConfig::parse(&text, Path::new("u")).unwrap(), u);
        let none = UserConfig::default().to_yaml();
        assert!(none.contains("current-client: null"));
        assert_eq!(
            UserConfig::parse(&none, Path::new("u"))
                .unwrap()
                .current_client,
            None
        );
        let err = UserConfig::parse("kind: UserConfig\nconfig: [\n", Path::new("config.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config.yaml:"), "{err}");
        // An alias that YAML 1.1 would read as a boolean is quoted when written.
        let on = UserConfig {
            current_client: Some("on".into()),
            warnings: vec![],
        };
        assert_eq!(
            UserConfig::parse(&on.to_yaml(), Path::new("u"))
                .unwrap()
                .current_client
                .as_deref(),
            Some("on")
        );
    }
}
