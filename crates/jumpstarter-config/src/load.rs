//! What loading any config file shares: reading it, parsing it as YAML within the process's
//! limits, the load context ([`Ctx`]) that turns nodes into values with errors naming file,
//! line and column, the `apiVersion`/`kind` header and `metadata`.
//!
//! Each kind (`client`, `user`, `exporter`) starts from [`document`] and then reads its own
//! fields with a [`Ctx`] and [`MapReader`]s.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::common::{GrpcOptionValue, GrpcOptions, Metadata};
use crate::error::{ConfigError, ConfigWarning, Source};
use crate::yaml::{self, Node, Pos, Value};

/// Reads a config file's text.
pub(crate) fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads a config file's text; a file that does not exist is `None`.
pub(crate) fn read_if_present(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// A config file parsed as YAML, before its kind's fields are read.
pub(crate) struct Document {
    /// The file (or label) that errors and warnings name.
    pub(crate) file: Arc<Path>,
    /// The top node (the file is not empty).
    pub(crate) root: Node,
    /// The parser's warnings, located in `file`.
    pub(crate) warnings: Vec<ConfigWarning>,
}

/// Parses config text with [`yaml::parse`] (the process's limits); `file` names it in
/// messages. An empty document is an error with the message `empty`, at 1:1.
pub(crate) fn document(text: &str, file: &Path, empty: &str) -> Result<Document, ConfigError> {
    let file: Arc<Path> = Arc::from(file);
    let doc = yaml::parse(text).map_err(|e| ConfigError::invalid(&file, e.pos, e.message))?;
    let warnings = doc
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
        return Err(ConfigError::invalid(&file, Pos { line: 1, col: 1 }, empty));
    };
    Ok(Document {
        file,
        root,
        warnings,
    })
}

/// The load context: which file the nodes come from.
pub(crate) struct Ctx<'a> {
    pub(crate) file: &'a Arc<Path>,
}

/// Reads keys out of a mapping, remembering which ones were used.
pub(crate) struct MapReader<'n> {
    entries: &'n [(Node, Node)],
    used: Vec<usize>,
}

impl<'n> MapReader<'n> {
    pub(crate) fn take(&mut self, key: &str) -> Option<&'n Node> {
        let idx = self.entries.iter().position(|(k, _)| k.key_text() == key)?;
        self.used.push(idx);
        Some(&self.entries[idx].1)
    }

    pub(crate) fn take_any(&mut self, keys: &[&str]) -> Option<&'n Node> {
        keys.iter().find_map(|k| self.take(k))
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.key_text() == key)
    }

    /// Warns about every key that was not taken.
    pub(crate) fn finish(self, ctx: &Ctx<'_>, what: &str, warnings: &mut Vec<ConfigWarning>) {
        for (i, (k, _)) in self.entries.iter().enumerate() {
            if !self.used.contains(&i) {
                warnings.push(ConfigWarning {
                    at: Source {
                        file: ctx.file.clone(),
                        pos: k.pos,
                    },
                    message: format!("unknown key `{}` in {what} is ignored", k.key_text()),
                });
            }
        }
    }
}

impl<'a> Ctx<'a> {
    pub(crate) fn err(&self, node: &Node, message: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.file, node.pos, message)
    }

    pub(crate) fn at(&self, pos: Pos) -> Source {
        Source {
            file: self.file.clone(),
            pos,
        }
    }

    /// Checks `apiVersion` and `kind` when present (both are optional, as upstream reads
    /// them). `hint` adds to the message for a wrong kind, given the kind found.
    pub(crate) fn header(
        &self,
        top: &mut MapReader<'_>,
        kind: &str,
        hint: impl Fn(&str) -> &'static str,
    ) -> Result<(), ConfigError> {
        if let Some(v) = top.take("apiVersion") {
            let s = self.string(v, "apiVersion")?;
            if s != crate::API_VERSION {
                return Err(self.err(
                    v,
                    format!("apiVersion must be '{}', not '{s}'", crate::API_VERSION),
                ));
            }
        }
        if let Some(v) = top.take("kind") {
            let s = self.string(v, "kind")?;
            if s != kind {
                return Err(self.err(v, format!("kind must be '{kind}', not '{s}'{}", hint(&s))));
            }
        }
        Ok(())
    }

    /// A non-null `metadata:` mapping (`name` required, `namespace` optional).
    pub(crate) fn metadata(
        &self,
        node: &Node,
        warnings: &mut Vec<ConfigWarning>,
    ) -> Result<Metadata, ConfigError> {
        let mut mm = self.mapping(node, "metadata")?;
        let namespace = mm
            .take("namespace")
            .map(|n| self.opt_string(n, "metadata.namespace"))
            .transpose()?
            .flatten();
        let name = match mm.take("name") {
            Some(n) => self.string(n, "metadata.name")?,
            None => return Err(self.err(node, "metadata.name is required")),
        };
        mm.finish(self, "metadata", warnings);
        Ok(Metadata { namespace, name })
    }

    pub(crate) fn mapping<'n>(
        &self,
        node: &'n Node,
        what: &str,
    ) -> Result<MapReader<'n>, ConfigError> {
        match &node.value {
            Value::Map(entries) => Ok(MapReader {
                entries,
                used: Vec::new(),
            }),
            _ => Err(self.err(
                node,
                format!("expected {what} (a mapping), found {}", node.kind_name()),
            )),
        }
    }

    pub(crate) fn string(&self, node: &Node, what: &str) -> Result<String, ConfigError> {
        match &node.value {
            Value::Str(s) => Ok(s.clone()),
            // Numbers and booleans written where text is expected: upstream's pydantic would
            // reject them; keep the text as written so `name: 123` works.
            Value::Int(_) | Value::Float(_) if node.plain => Ok(node.raw.clone()),
            _ => Err(self.err(
                node,
                format!("{what} must be a string, found {}", node.kind_name()),
            )),
        }
    }

    pub(crate) fn opt_string(
        &self,
        node: &Node,
        what: &str,
    ) -> Result<Option<String>, ConfigError> {
        if node.is_null() {
            Ok(None)
        } else {
            self.string(node, what).map(Some)
        }
    }

    pub(crate) fn boolean(&self, node: &Node, what: &str) -> Result<bool, ConfigError> {
        match &node.value {
            Value::Bool(b) => Ok(*b),
            Value::Str(s) if matches!(s.as_str(), "true" | "false") => Ok(s == "true"),
            _ => Err(self.err(
                node,
                format!("{what} must be true or false, found {}", node.kind_name()),
            )),
        }
    }

    pub(crate) fn uint(&self, node: &Node, what: &str) -> Result<u64, ConfigError> {
        match &node.value {
            Value::Int(i) if *i >= 0 && *i <= u64::MAX as i128 => Ok(*i as u64),
            Value::Float(x) if *x >= 0.0 && x.fract() == 0.0 && *x < 1.8e19 => Ok(*x as u64),
            _ => Err(self.err(
                node,
                format!(
                    "{what} must be a non-negative whole number, found {}",
                    node.kind_name()
                ),
            )),
        }
    }

    pub(crate) fn grpc_options(&self, node: &Node, what: &str) -> Result<GrpcOptions, ConfigError> {
        if node.is_null() {
            return Ok(GrpcOptions::new());
        }
        let Value::Map(entries) = &node.value else {
            return Err(self.err(
                node,
                format!("{what} must be a mapping of option name to value"),
            ));
        };
        let mut out = GrpcOptions::new();
        for (k, v) in entries {
            let value = match &v.value {
                Value::Int(i) => GrpcOptionValue::Int(
                    i64::try_from(*i).map_err(|_| self.err(v, "value out of range"))?,
                ),
                Value::Str(s) => GrpcOptionValue::Str(s.clone()),
                Value::Bool(b) => GrpcOptionValue::Int(i64::from(*b)),
                _ => {
                    return Err(self.err(
                        v,
                        format!(
                            "{what}.{}: values must be strings or integers, found {}",
                            k.key_text(),
                            v.kind_name()
                        ),
                    ));
                }
            };
            out.insert(k.key_text().to_owned(), value);
        }
        Ok(out)
    }

    pub(crate) fn string_map(
        &self,
        node: &Node,
        what: &str,
    ) -> Result<BTreeMap<String, String>, ConfigError> {
        if node.is_null() {
            return Ok(BTreeMap::new());
        }
        let Value::Map(entries) = &node.value else {
            return Err(self.err(node, format!("{what} must be a mapping of names to text")));
        };
        entries
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.key_text().to_owned(),
                    self.string(v, &format!("{what}.{}", k.key_text()))?,
                ))
            })
            .collect()
    }
}
