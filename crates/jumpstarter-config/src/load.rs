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
    /// Where anchored nodes start.
    pub(crate) anchors: Vec<Pos>,
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
        anchors: doc.anchors,
    })
}

/// The load context: which file the nodes come from.
pub(crate) struct Ctx<'a> {
    pub(crate) file: &'a Arc<Path>,
}

/// Reads keys out of a mapping, remembering which ones were used and which ones the schema
/// knows (every key asked for), so [`MapReader::finish`] can tell a typo from an extra key.
pub(crate) struct MapReader<'n> {
    entries: &'n [(Node, Node)],
    used: Vec<usize>,
    known: Vec<String>,
    /// Unknown keys accepted without a word (unless they are near misses).
    tolerated: Vec<usize>,
}

/// What [`MapReader::finish`] does with a key the schema does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extra {
    /// A warning, unless it is a near miss of a known key (then an error): where upstream
    /// ignores unknown keys, so files written for it keep loading.
    Warn,
    /// Always an error: where upstream refuses unknown keys too (pydantic `extra=forbid`),
    /// and at the top level of an exporter config, where a misspelt `export:` would
    /// otherwise leave an exporter without drivers.
    Refuse,
}

impl<'n> MapReader<'n> {
    fn know(&mut self, key: &str) {
        if !self.known.iter().any(|k| k == key) {
            self.known.push(key.to_owned());
        }
    }

    pub(crate) fn take(&mut self, key: &str) -> Option<&'n Node> {
        self.know(key);
        let idx = self.entries.iter().position(|(k, _)| k.key_text() == key)?;
        self.used.push(idx);
        Some(&self.entries[idx].1)
    }

    pub(crate) fn take_any(&mut self, keys: &[&str]) -> Option<&'n Node> {
        for k in keys {
            self.know(k);
        }
        keys.iter().find_map(|k| self.take(k))
    }

    pub(crate) fn has(&mut self, key: &str) -> bool {
        self.know(key);
        self.entries.iter().any(|(k, _)| k.key_text() == key)
    }

    /// Accepts the keys whose values hold YAML anchors (`common: &defaults {...}` kept for
    /// `<<: *defaults` further down): a usual way to share settings, and no typo.
    pub(crate) fn tolerate_anchor_holders(&mut self, anchors: &[Pos]) {
        if anchors.is_empty() {
            return;
        }
        fn holds(node: &Node, anchors: &[Pos]) -> bool {
            anchors.contains(&node.pos)
                || match &node.value {
                    Value::Seq(items) => items.iter().any(|n| holds(n, anchors)),
                    Value::Map(entries) => entries.iter().any(|(_, v)| holds(v, anchors)),
                    _ => false,
                }
        }
        for (i, (_, v)) in self.entries.iter().enumerate() {
            if holds(v, anchors) {
                self.tolerated.push(i);
            }
        }
    }

    /// Checks the keys that were not taken: a near miss of a known key (`exports` for
    /// `export`, `typ` for `type`) is an error that names the key meant; any other one is a
    /// warning, or an error with `Extra::Refuse`.
    pub(crate) fn finish(
        self,
        ctx: &Ctx<'_>,
        what: &str,
        extra: Extra,
        warnings: &mut Vec<ConfigWarning>,
    ) -> Result<(), ConfigError> {
        for (i, (k, _)) in self.entries.iter().enumerate() {
            if self.used.contains(&i) {
                continue;
            }
            let key = k.key_text();
            if let Some(meant) = closest_key(key, &self.known) {
                return Err(ctx.err(
                    k,
                    format!("unknown key `{key}` in {what}; did you mean `{meant}`?"),
                ));
            }
            if self.tolerated.contains(&i) {
                continue;
            }
            if extra == Extra::Refuse {
                return Err(ctx.err(
                    k,
                    format!(
                        "unknown key `{key}` in {what}; the keys here are: {}",
                        self.known.join(", ")
                    ),
                ));
            }
            warnings.push(ConfigWarning {
                at: Source {
                    file: ctx.file.clone(),
                    pos: k.pos,
                },
                message: format!("unknown key `{key}` in {what} is ignored"),
            });
        }
        Ok(())
    }
}

/// The known key `key` is most likely a misspelling of: the same ignoring case, `-` and `_`,
/// or within a small edit distance (1 for keys of up to 4 letters, else 2; transpositions
/// count once).
pub(crate) fn closest_key<'k>(key: &str, known: &'k [String]) -> Option<&'k str> {
    let fold = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, '-' | '_'))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let key_folded = fold(key);
    if key_folded.is_empty() || key.chars().count() > 64 {
        return None;
    }
    known
        .iter()
        .filter_map(|k| {
            let d = strsim::damerau_levenshtein(&key_folded, &fold(k));
            let limit = if k.chars().count() <= 4 { 1 } else { 2 };
            (d <= limit).then_some((d, k.as_str()))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
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
        // Upstream's ObjectMeta refuses unknown keys.
        mm.finish(self, "metadata", Extra::Refuse, warnings)?;
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
                known: Vec::new(),
                tolerated: Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::closest_key;

    #[test]
    fn near_misses() {
        let known: Vec<String> = ["type", "ref", "config", "children", "beforeLease", "export"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let k = |key| closest_key(key, &known);
        assert_eq!(k("typ"), Some("type"));
        assert_eq!(k("tpye"), Some("type"));
        assert_eq!(k("Type"), Some("type"));
        assert_eq!(k("exports"), Some("export"));
        assert_eq!(k("before_lease"), Some("beforeLease"));
        assert_eq!(k("before-lease"), Some("beforeLease"));
        assert_eq!(k("chilren"), Some("children"));
        assert_eq!(k("cnfig"), Some("config"));
        // Not close enough: an extra key, not a typo.
        assert_eq!(k("tags"), None);
        assert_eq!(k("key"), None);
        assert_eq!(k("vendor_note"), None);
        assert_eq!(k(""), None);
    }
}
