//! Which config a command uses: the loading order.
//!
//! | Priority | Client config | Exporter config |
//! |---|---|---|
//! | 1. flags | `--client ALIAS` or `--client-config PATH` (both: error) | `--exporter ALIAS` or `--exporter-config PATH` |
//! | 2. environment selects a file | `JMP_CLIENT_CONFIG` (path) or `JMP_CLIENT` (alias) (both: error) | — |
//! | 3. environment only | `JMP_NAME` + `JMP_NAMESPACE` set: a config from `JMP_*` variables, no file | — |
//! | 4. files | `current-client` of `config.yaml` | — |
//! | fields | `JMP_NAMESPACE`, `JMP_NAME`, `JMP_ENDPOINT`, `JMP_TOKEN`, `JMP_DRIVERS_ALLOW`, `JMP_DRIVERS_UNSAFE`, `JMP_GRPC_INSECURE`/`JUMPSTARTER_GRPC_INSECURE` override the file's values | `JMP_NAMESPACE`, `JMP_NAME`, `JMP_ENDPOINT`, `JMP_TOKEN`, `JMP_GRPC_INSECURE`/`JUMPSTARTER_GRPC_INSECURE` override the file's values |

use std::path::{Path, PathBuf};

use crate::client::ClientConfig;
use crate::common::Env;
use crate::error::ConfigError;
use crate::exporter::ExporterConfig;
use crate::paths::Locations;
use crate::user::UserConfig;

/// The config-selecting flags of a command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSelection {
    /// `--client ALIAS`
    pub client: Option<String>,
    /// `--client-config PATH`
    pub client_config: Option<PathBuf>,
}

/// How the client config was chosen (for messages and `jmp config client list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChosenBy {
    Flag,
    EnvPath,
    EnvAlias,
    EnvOnly,
    CurrentClient,
}

/// Resolves the client config of a command: flags > environment > files; then the
/// environment's field overrides are applied. `Ok(None)` when nothing selects one.
pub fn resolve_client(
    sel: &ClientSelection,
    env: &Env,
    loc: &Locations,
) -> Result<Option<(ClientConfig, ChosenBy)>, ConfigError> {
    let (path, by, what) = if sel.client.is_some() && sel.client_config.is_some() {
        return Err(ConfigError::Conflict(
            "only one of --client, --client-config should be specified".into(),
        ));
    } else if let Some(alias) = &sel.client {
        (
            loc.client_path(alias)?,
            ChosenBy::Flag,
            format!("--client {alias}"),
        )
    } else if let Some(p) = &sel.client_config {
        (p.clone(), ChosenBy::Flag, "--client-config".to_owned())
    } else {
        let by_path = env.get_os("JMP_CLIENT_CONFIG");
        let by_alias = env.get("JMP_CLIENT");
        match (by_path, by_alias) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Conflict(
                    "both $JMP_CLIENT_CONFIG and $JMP_CLIENT are set; unset one of them \
                     (or pass --client / --client-config, which win over both)"
                        .into(),
                ));
            }
            (Some(p), None) => (
                PathBuf::from(p),
                ChosenBy::EnvPath,
                "$JMP_CLIENT_CONFIG".to_owned(),
            ),
            (None, Some(alias)) => (
                loc.client_path(&alias).map_err(|e| ConfigError::Env {
                    var: "JMP_CLIENT".into(),
                    message: e.to_string(),
                })?,
                ChosenBy::EnvAlias,
                format!("$JMP_CLIENT={alias}"),
            ),
            (None, None) => {
                if let Some(cfg) = ClientConfig::from_env(env)? {
                    return Ok(Some((cfg, ChosenBy::EnvOnly)));
                }
                let user = UserConfig::load(&loc.user_config())?;
                let Some(alias) = user.current_client else {
                    return Ok(None);
                };
                let Ok(path) = loc.client_path(&alias) else {
                    return Ok(None);
                };
                if !path.is_file() {
                    // Upstream treats a current-client without a file as unset.
                    return Ok(None);
                }
                (path, ChosenBy::CurrentClient, "current-client".to_owned())
            }
        }
    };
    if !path.is_file() {
        return Err(ConfigError::NotFound(format!(
            "client config '{}' does not exist (selected by {what}); see `jmp config client list`",
            path.display()
        )));
    }
    let mut cfg = ClientConfig::load(&path)?;
    cfg.apply_env(env)?;
    Ok(Some((cfg, by)))
}

/// [`resolve_client`] for commands that need a client config: nothing selected is an error.
pub fn require_client(
    sel: &ClientSelection,
    env: &Env,
    loc: &Locations,
) -> Result<ClientConfig, ConfigError> {
    resolve_client(sel, env, loc)?
        .map(|(c, _)| c)
        .ok_or_else(|| {
            ConfigError::NotFound(
                "none of --client, --client-config is specified, and default config is not set \
             (create one with `jmp config client create`, select one with `jmp config client use`, \
             or set JMP_CLIENT / JMP_CLIENT_CONFIG)"
                    .into(),
            )
        })
}

/// Loads an exporter config by alias (user directory, then `/etc`) or path, and applies the
/// environment's overrides.
pub fn resolve_exporter(
    alias: Option<&str>,
    path: Option<&Path>,
    env: &Env,
    loc: &Locations,
) -> Result<ExporterConfig, ConfigError> {
    let mut cfg = match (alias, path) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Conflict(
                "only one of --exporter, --exporter-config should be specified".into(),
            ));
        }
        (Some(a), None) => {
            let p = loc.find_exporter(a)?;
            let mut c = ExporterConfig::load(&p)?;
            c.alias = a.to_owned();
            c
        }
        (None, Some(p)) => ExporterConfig::load(p)?,
        (None, None) => {
            return Err(ConfigError::Conflict(
                "one of --exporter, --exporter-config should be specified".into(),
            ));
        }
    };
    cfg.apply_env(env);
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Locations) {
        let dir = tempfile::tempdir().unwrap();
        let loc = Locations {
            root: dir.path().join("cfg"),
            system_exporters: dir.path().join("etc"),
        };
        for (alias, ep) in [("a", "a:1"), ("b", "b:1")] {
            let mut c = ClientConfig::new(alias, Some("ns".into()), alias.into());
            c.endpoint = Some(ep.into());
            c.token = Some("t".into());
            c.save(&loc.client_path(alias).unwrap()).unwrap();
        }
        UserConfig {
            current_client: Some("a".into()),
            warnings: vec![],
        }
        .save(&loc.user_config())
        .unwrap();
        (dir, loc)
    }

    fn pick(
        sel: &ClientSelection,
        env: &[(&str, &str)],
        loc: &Locations,
    ) -> Result<(String, ChosenBy), ConfigError> {
        let env = Env::from_pairs(env.iter().copied());
        resolve_client(sel, &env, loc).map(|r| {
            let (c, by) = r.expect("a config");
            (c.endpoint.unwrap_or_default(), by)
        })
    }

    #[test]
    fn flags_beat_environment_beat_files() {
        let (_d, loc) = setup();
        let none = ClientSelection::default();
        let flag_b = ClientSelection {
            client: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(
            pick(&none, &[], &loc).unwrap(),
            ("a:1".into(), ChosenBy::CurrentClient)
        );
        assert_eq!(
            pick(&none, &[("JMP_CLIENT", "b")], &loc).unwrap(),
            ("b:1".into(), ChosenBy::EnvAlias)
        );
        let b_path = loc.client_path("b").unwrap();
        assert_eq!(
            pick(
                &none,
                &[("JMP_CLIENT_CONFIG", b_path.to_str().unwrap())],
                &loc
            )
            .unwrap(),
            ("b:1".into(), ChosenBy::EnvPath)
        );
        assert_eq!(
            pick(&flag_b, &[("JMP_CLIENT", "a")], &loc).unwrap().0,
            "b:1"
        );
        // Field overrides apply to whichever file was chosen.
        assert_eq!(
            pick(&flag_b, &[("JMP_ENDPOINT", "x:9")], &loc).unwrap().0,
            "x:9"
        );
        // The environment-only config wins over current-client.
        assert_eq!(
            pick(
                &none,
                &[
                    ("JMP_NAME", "n"),
                    ("JMP_NAMESPACE", "ns"),
                    ("JMP_ENDPOINT", "env:1")
                ],
                &loc
            )
            .unwrap(),
            ("env:1".into(), ChosenBy::EnvOnly)
        );
    }

    #[test]
    fn conflicts_and_missing_configs_are_clear() {
        let (_d, loc) = setup();
        let both = ClientSelection {
            client: Some("a".into()),
            client_config: Some("/x".into()),
        };
        assert!(
            pick(&both, &[], &loc)
                .unwrap_err()
                .to_string()
                .contains("only one of --client")
        );
        let err = pick(
            &ClientSelection::default(),
            &[("JMP_CLIENT", "a"), ("JMP_CLIENT_CONFIG", "/x")],
            &loc,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("both $JMP_CLIENT_CONFIG and $JMP_CLIENT are set"),
            "{err}"
        );
        let err = pick(&ClientSelection::default(), &[("JMP_CLIENT", "nope")], &loc)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope.yaml' does not exist (selected by $JMP_CLIENT=nope)"),
            "{err}"
        );
        let err = pick(&ClientSelection::default(), &[("JMP_CLIENT", "../x")], &loc)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("$JMP_CLIENT: invalid client alias"),
            "{err}"
        );
        // current-client naming a missing file counts as unset.
        UserConfig {
            current_client: Some("gone".into()),
            warnings: vec![],
        }
        .save(&loc.user_config())
        .unwrap();
        let env = Env::from_pairs(Vec::<(String, String)>::new());
        assert!(
            resolve_client(&ClientSelection::default(), &env, &loc)
                .unwrap()
                .is_none()
        );
        let err = require_client(&ClientSelection::default(), &env, &loc)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("none of --client, --client-config is specified"),
            "{err}"
        );
    }
}
