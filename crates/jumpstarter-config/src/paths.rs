//! Where configuration files live.
//!
//! | What | Path |
//! |---|---|
//! | config root | `$JMP_CLIENT_CONFIG_HOME`, else `$XDG_CONFIG_HOME/jumpstarter`, else `~/.config/jumpstarter` |
//! | user config | `<root>/config.yaml` |
//! | client configs | `<root>/clients/<alias>.yaml` |
//! | exporter configs | `<root>/exporters/<alias>.yaml`, then `/etc/jumpstarter/exporters/<alias>.yaml` |

use std::path::{Path, PathBuf};

use crate::error::ConfigError;

/// The system-wide exporter config directory.
pub const SYSTEM_EXPORTERS_DIR: &str = "/etc/jumpstarter/exporters";

/// The directories configuration is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    /// The per-user config root.
    pub root: PathBuf,
    /// The system exporter directory (`/etc/jumpstarter/exporters`).
    pub system_exporters: PathBuf,
}

impl Locations {
    /// Locations from the process environment.
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var_os(k).filter(|v| !v.is_empty()))
    }

    /// Locations from an environment lookup function (testable).
    pub fn from_vars(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Self {
        let root = if let Some(home) = var("JMP_CLIENT_CONFIG_HOME") {
            PathBuf::from(home)
        } else if let Some(xdg) = var("XDG_CONFIG_HOME") {
            PathBuf::from(xdg).join("jumpstarter")
        } else {
            let home = var("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/"));
            home.join(".config").join("jumpstarter")
        };
        Locations {
            root,
            system_exporters: PathBuf::from(SYSTEM_EXPORTERS_DIR),
        }
    }

    pub fn user_config(&self) -> PathBuf {
        self.root.join("config.yaml")
    }

    pub fn clients_dir(&self) -> PathBuf {
        self.root.join("clients")
    }

    pub fn exporters_dir(&self) -> PathBuf {
        self.root.join("exporters")
    }

    /// The file of a client alias (`<root>/clients/<alias>.yaml`), whether it exists or not.
    pub fn client_path(&self, alias: &str) -> Result<PathBuf, ConfigError> {
        validate_alias(alias, "client")?;
        Ok(self.clients_dir().join(format!("{alias}.yaml")))
    }

    /// The user-directory file of an exporter alias (where `jmp config exporter create` writes).
    pub fn user_exporter_path(&self, alias: &str) -> Result<PathBuf, ConfigError> {
        validate_alias(alias, "exporter")?;
        Ok(self.exporters_dir().join(format!("{alias}.yaml")))
    }

    /// The system file of an exporter alias.
    pub fn system_exporter_path(&self, alias: &str) -> Result<PathBuf, ConfigError> {
        validate_alias(alias, "exporter")?;
        Ok(self.system_exporters.join(format!("{alias}.yaml")))
    }

    /// Client config files (`*.yaml` in `clients/`), in directory order like upstream.
    pub fn client_files(&self) -> Result<Vec<PathBuf>, ConfigError> {
        yaml_files(&self.clients_dir())
    }

    /// Exporter aliases with their resolved files: user directory first, then `/etc`-only
    /// ones, each in directory order.
    pub fn exporter_files(&self) -> Result<Vec<(String, PathBuf)>, ConfigError> {
        let mut out: Vec<(String, PathBuf)> = Vec::new();
        for dir in [self.exporters_dir(), self.system_exporters.clone()] {
            for p in yaml_files(&dir)? {
                let alias = exporter_alias(&p);
                if !out.iter().any(|(a, _)| *a == alias) {
                    out.push((alias, p));
                }
            }
        }
        Ok(out)
    }

    /// Finds the file of an exporter alias: the user directory wins over the system one.
    pub fn find_exporter(&self, alias: &str) -> Result<PathBuf, ConfigError> {
        validate_alias(alias, "exporter")?;
        let candidates = [
            self.exporters_dir().join(format!("{alias}.yaml")),
            self.system_exporters.join(format!("{alias}.yaml")),
        ];
        candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or_else(|| {
                ConfigError::NotFound(format!(
                    "exporter config '{alias}' not found: looked for {} and {}",
                    candidates[0].display(),
                    candidates[1].display()
                ))
            })
    }
}

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ConfigError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let p = entry.path();
        if p.extension().is_some_and(|x| x == "yaml") && p.is_file() {
            out.push(p);
        }
    }
    Ok(out)
}

/// Aliases are file stems: no path separators, not `.` or `..`, not empty.
pub fn validate_alias(alias: &str, what: &str) -> Result<(), ConfigError> {
    if alias.is_empty() || alias == "." || alias == ".." || alias.contains(['/', '\\', '\0']) {
        return Err(ConfigError::NotFound(format!(
            "invalid {what} alias '{alias}': must not contain path separators or be '.' / '..'"
        )));
    }
    Ok(())
}

/// The alias of an exporter config file: its name without `.yaml`.
pub fn exporter_alias(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.strip_suffix(".yaml").unwrap_or(n).to_owned())
        .unwrap_or_else(|| "default".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn root_precedence() {
        let l = Locations::from_vars(env(&[("HOME", "/h")]));
        assert_eq!(l.root, PathBuf::from("/h/.config/jumpstarter"));
        let l = Locations::from_vars(env(&[("HOME", "/h"), ("XDG_CONFIG_HOME", "/x")]));
        assert_eq!(l.root, PathBuf::from("/x/jumpstarter"));
        let l = Locations::from_vars(env(&[
            ("HOME", "/h"),
            ("XDG_CONFIG_HOME", "/x"),
            ("JMP_CLIENT_CONFIG_HOME", "/j"),
        ]));
        assert_eq!(l.root, PathBuf::from("/j"));
        assert_eq!(l.exporters_dir(), PathBuf::from("/j/exporters"));
    }

    #[test]
    fn user_exporters_win_over_system_ones() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("user");
        let system = dir.path().join("system");
        std::fs::create_dir_all(user.join("exporters")).unwrap();
        std::fs::create_dir_all(&system).unwrap();
        std::fs::write(system.join("a.yaml"), "x").unwrap();
        std::fs::write(system.join("b.yaml"), "x").unwrap();
        std::fs::write(user.join("exporters/a.yaml"), "x").unwrap();
        let l = Locations {
            root: user.clone(),
            system_exporters: system.clone(),
        };
        assert_eq!(l.find_exporter("a").unwrap(), user.join("exporters/a.yaml"));
        assert_eq!(l.find_exporter("b").unwrap(), system.join("b.yaml"));
        let err = l.find_exporter("c").unwrap_err().to_string();
        assert!(err.contains("'c' not found"), "{err}");
        assert!(l.find_exporter("../a").is_err());
        assert!(l.find_exporter("..").is_err());
    }

    #[test]
    fn alias_of_a_path() {
        assert_eq!(exporter_alias(Path::new("/e/my.exp.yaml")), "my.exp");
        assert_eq!(exporter_alias(Path::new("/e/x.yml")), "x.yml");
    }
}
