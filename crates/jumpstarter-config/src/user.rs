//! `kind: UserConfig` (`<root>/config.yaml`): which client config is current.

use std::path::Path;

use serde_json::json;

use crate::error::{ConfigError, ConfigWarning};
use crate::load::{self, Ctx, Extra};

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
        match load::read_if_present(path)? {
            Some(text) => Self::parse(&text, path),
            None => Ok(UserConfig::default()),
        }
    }

    pub fn parse(text: &str, file: &Path) -> Result<UserConfig, ConfigError> {
        let load::Document {
            file,
            root,
            mut warnings,
            ..
        } = load::document(
            text,
            file,
            "the file is empty; expected a UserConfig (kind: UserConfig, config: \
             {current-client: ...}); delete it and run `jmp config client use <alias>`",
        )?;
        let ctx = Ctx { file: &file };
        let mut top = ctx.mapping(&root, "a UserConfig")?;
        ctx.header(&mut top, "UserConfig", |_| "")?;
        let mut current_client = None;
        match top.take("config") {
            Some(c) if !c.is_null() => {
                let mut cm = ctx.mapping(c, "config")?;
                if let Some(v) = cm.take_any(&["current-client", "current_client"]) {
                    current_client = ctx.opt_string(v, "config.current-client")?;
                }
                cm.finish(&ctx, "config", Extra::Warn, &mut warnings)?;
            }
            _ => {
                return Err(ctx.err(
                    &root,
                    "config is required (config: {current-client: <alias>})",
                ));
            }
        }
        top.finish(&ctx, "the UserConfig", Extra::Warn, &mut warnings)?;
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

    /// Writes `config.yaml` atomically with mode 0600, like every config file (upstream
    /// writes this one with the umask's mode, usually 0644).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        crate::write::write_atomic(path, &self.to_yaml(), 0o600)
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
        // Unknown keys warn (upstream ignores them), near misses are errors.
        let u = UserConfig::parse(
            "kind: UserConfig\nconfig: {current-client: a, theme: dark}\n",
            Path::new("config.yaml"),
        )
        .unwrap();
        assert_eq!(u.current_client.as_deref(), Some("a"));
        assert!(u.warnings[0].to_string().contains("unknown key `theme`"));
        let err = UserConfig::parse(
            "kind: UserConfig\nconfig: {current-clint: a}\n",
            Path::new("config.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "config.yaml:2:10: unknown key `current-clint` in config; did you mean `current-client`?"
        );
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
