//! `kind: ExporterConfig`: what an exporter exports and how it connects.
//!
//! The file format is upstream's (`apiVersion: jumpstarter.dev/v1alpha1`). Differences in how
//! files are *checked* (never in what a valid file means):
//! * every error names the file, line and column;
//! * a node that is not a valid driver, composite or proxy is an error (upstream silently turns
//!   it into an empty composite);
//! * `ref:` targets are resolved and checked (existence, cycles) when the file is loaded;
//! * unknown keys are kept out of the model but reported as warnings (upstream ignores them
//!   silently; files that work upstream keep working here).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::driver_config::DriverConfig;
use crate::error::{ConfigError, ConfigWarning, Source};
use crate::yaml::{self, Node, Pos, Value};

/// The upstream type string of the composite driver.
pub const COMPOSITE_TYPE: &str = "jumpstarter_driver_composite.driver.Composite";
/// The upstream type string of the proxy driver (what `ref:` nodes become).
pub const PROXY_TYPE: &str = "jumpstarter_driver_composite.driver.Proxy";

pub use crate::common::{GrpcOptionValue, GrpcOptions, Metadata, TlsConfig};

/// What to do when a hook fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HookFailure {
    #[default]
    Warn,
    EndLease,
    Exit,
}

impl HookFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            HookFailure::Warn => "warn",
            HookFailure::EndLease => "endLease",
            HookFailure::Exit => "exit",
        }
    }
}

/// One lifecycle hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Inline script text, or the path of a script file.
    pub script: String,
    /// Interpreter; `None` means auto-detect from the script file extension or `/bin/sh`.
    pub exec: Option<String>,
    /// Seconds (default 120).
    pub timeout: u64,
    pub on_failure: HookFailure,
    pub at: Source,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hooks {
    pub before_lease: Option<Hook>,
    pub after_lease: Option<Hook>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureDetection {
    pub max_rapid_failures: u32,
    pub rapid_failure_window: u64,
}

impl Default for FailureDetection {
    fn default() -> Self {
        FailureDetection {
            max_rapid_failures: 5,
            rapid_failure_window: 60,
        }
    }
}

/// `driverHost:`: how drivers whose type is not built in are run (jumpstarter-rs only).
#[derive(Debug, Clone, Default)]
pub struct DriverHostConfig {
    /// The Python interpreter for the Python driver host (`python3` on PATH when unset).
    pub python: Option<String>,
}

/// A named entry of `export:` or of a `children:` mapping.
#[derive(Debug, Clone)]
pub struct ExportEntry {
    pub name: String,
    pub at: Source,
    pub node: DriverNode,
}

/// The three shapes a node of the export tree can take.
#[derive(Debug, Clone)]
pub enum DriverNode {
    /// `type:` (with optional `config`, `children`, `description`, `methods_description`).
    Driver {
        type_name: String,
        type_at: Source,
        config: DriverConfig,
        children: Vec<ExportEntry>,
        description: Option<String>,
        methods_description: BTreeMap<String, String>,
    },
    /// Only `children:`; becomes a Composite.
    Composite {
        children: Vec<ExportEntry>,
        description: Option<String>,
    },
    /// `ref: a.b.c`; the same driver instance under a second name.
    Proxy { target: String, target_at: Source },
}

impl DriverNode {
    pub fn children(&self) -> &[ExportEntry] {
        match self {
            DriverNode::Driver { children, .. } | DriverNode::Composite { children, .. } => {
                children
            }
            DriverNode::Proxy { .. } => &[],
        }
    }
}

/// A loaded, validated exporter config.
#[derive(Debug, Clone)]
pub struct ExporterConfig {
    /// The file it came from (None for text given directly).
    pub path: Option<PathBuf>,
    /// File stem of the config, or `default`.
    pub alias: String,
    pub metadata: Metadata,
    pub endpoint: Option<String>,
    pub token: Option<String>,
    pub tls: TlsConfig,
    /// `grpcOptions` (upstream's field).
    pub grpc_options: GrpcOptions,
    /// `grpcConfig` (the field the documentation names).
    pub grpc_config: GrpcOptions,
    /// Top-level description: the help text of the root of `j`.
    pub description: Option<String>,
    /// Message of the day (upstream main), shown to interactive shells.
    pub motd: Option<String>,
    pub export: Vec<ExportEntry>,
    pub hooks: Hooks,
    pub failure_detection: FailureDetection,
    pub driver_host: DriverHostConfig,
    /// Valid but suspicious content.
    pub warnings: Vec<ConfigWarning>,
}

impl ExporterConfig {
    /// Reads and validates an exporter config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg = Self::parse(&text, path)?;
        cfg.path = Some(path.to_owned());
        cfg.alias = crate::paths::exporter_alias(path);
        Ok(cfg)
    }

    /// Parses and validates config text; `file` is used in error messages.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
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
                "the file is empty; expected an ExporterConfig mapping \
                 (apiVersion: jumpstarter.dev/v1alpha1, kind: ExporterConfig, metadata, export)",
            ));
        };
        let ctx = Ctx { file: &file };
        let mut top = ctx.mapping(&root, "an ExporterConfig")?;

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
            if s != "ExporterConfig" {
                return Err(ctx.err(
                    v,
                    format!("kind must be 'ExporterConfig', not '{s}' (is this file in the right folder?)"),
                ));
            }
        }
        let metadata = match top.take("metadata") {
            Some(m) if !m.is_null() => {
                let mut mm = ctx.mapping(m, "metadata")?;
                let namespace = mm
                    .take("namespace")
                    .map(|n| ctx.opt_string(n, "metadata.namespace"))
                    .transpose()?
                    .flatten();
                let name = match mm.take("name") {
                    Some(n) => ctx.string(n, "metadata.name")?,
                    None => return Err(ctx.err(m, "metadata.name is required")),
                };
                mm.finish(&ctx, "metadata", &mut warnings);
                Metadata { namespace, name }
            }
            _ => {
                return Err(ctx.err(
                    &root,
                    "metadata is required (metadata: {namespace: ..., name: ...})",
                ));
            }
        };
        let endpoint = top
            .take("endpoint")
            .map(|v| ctx.opt_string(v, "endpoint"))
            .transpose()?
            .flatten();
        let token = top
            .take("token")
            .map(|v| ctx.opt_string(v, "token"))
            .transpose()?
            .flatten();
        let tls = match top.take("tls") {
            Some(t) => ctx.tls(t, &mut warnings)?,
            None => TlsConfig::default(),
        };
        let grpc_options = top
            .take("grpcOptions")
            .map(|v| ctx.grpc_options(v, "grpcOptions"))
            .transpose()?
            .unwrap_or_default();
        let grpc_config = top
            .take("grpcConfig")
            .map(|v| ctx.grpc_options(v, "grpcConfig"))
            .transpose()?
            .unwrap_or_default();
        let description = top
            .take("description")
            .map(|v| ctx.opt_string(v, "description"))
            .transpose()?
            .flatten();
        let motd = top
            .take("motd")
            .map(|v| ctx.opt_string(v, "motd"))
            .transpose()?
            .flatten();
        let export = match top.take("export") {
            Some(e) if !e.is_null() => ctx.entries(e, "export", &mut warnings)?,
            _ => Vec::new(),
        };
        let hooks = match top.take("hooks") {
            Some(h) if !h.is_null() => ctx.hooks(h, &mut warnings)?,
            _ => Hooks::default(),
        };
        let failure_detection = match top.take_any(&["failureDetection", "failure_detection"]) {
            Some(f) if !f.is_null() => {
                let mut fm = ctx.mapping(f, "failureDetection")?;
                let mut fd = FailureDetection::default();
                if let Some(v) = fm.take_any(&["maxRapidFailures", "max_rapid_failures"]) {
                    fd.max_rapid_failures =
                        ctx.uint(v, "failureDetection.maxRapidFailures")? as u32;
                }
                if let Some(v) = fm.take_any(&["rapidFailureWindow", "rapid_failure_window"]) {
                    fd.rapid_failure_window = ctx.uint(v, "failureDetection.rapidFailureWindow")?;
                }
                fm.finish(&ctx, "failureDetection", &mut warnings);
                fd
            }
            _ => FailureDetection::default(),
        };
        let driver_host = match top.take("driverHost") {
            Some(d) if !d.is_null() => {
                let mut dm = ctx.mapping(d, "driverHost")?;
                let python = dm
                    .take("python")
                    .map(|v| ctx.opt_string(v, "driverHost.python"))
                    .transpose()?
                    .flatten();
                dm.finish(&ctx, "driverHost", &mut warnings);
                DriverHostConfig { python }
            }
            _ => DriverHostConfig::default(),
        };
        // Upstream writes `alias` and `path` into nothing, but tolerate them.
        top.take("alias");
        top.take("path");
        top.finish(&ctx, "the ExporterConfig", &mut warnings);

        let cfg = ExporterConfig {
            path: None,
            alias: "default".into(),
            metadata,
            endpoint,
            token,
            tls,
            grpc_options,
            grpc_config,
            description,
            motd,
            export,
            hooks,
            failure_detection,
            driver_host,
            warnings,
        };
        cfg.check_refs()?;
        Ok(cfg)
    }

    /// Every node of the export tree with its dotted path, in pre-order.
    pub fn nodes(&self) -> Vec<(String, &ExportEntry)> {
        fn walk<'a>(
            prefix: &str,
            entries: &'a [ExportEntry],
            out: &mut Vec<(String, &'a ExportEntry)>,
        ) {
            for e in entries {
                let path = if prefix.is_empty() {
                    e.name.clone()
                } else {
                    format!("{prefix}.{}", e.name)
                };
                out.push((path.clone(), e));
                walk(&path, e.node.children(), out);
            }
        }
        let mut out = Vec::new();
        walk("", &self.export, &mut out);
        out
    }

    /// Finds a node by dotted path from the root (`a.b.c`).
    pub fn find(&self, path: &str) -> Option<&ExportEntry> {
        let mut entries = &self.export;
        let mut found = None;
        for part in path.split('.') {
            let e = entries.iter().find(|e| e.name == part)?;
            entries = match &e.node {
                DriverNode::Driver { children, .. } | DriverNode::Composite { children, .. } => {
                    children
                }
                DriverNode::Proxy { .. } => &EMPTY,
            };
            found = Some(e);
        }
        found
    }

    /// Resolves a proxy chain to the node it finally names (`None` when the chain leads
    /// nowhere or in a circle). To resolve many paths, use [`ExporterConfig::index`].
    pub fn resolve(&self, path: &str) -> Option<(String, &ExportEntry)> {
        let mut current = path.to_owned();
        let mut seen = HashSet::new();
        loop {
            let e = self.find(&current)?;
            match &e.node {
                DriverNode::Proxy { target, .. } => {
                    if !seen.insert(current) {
                        return None;
                    }
                    current = target.clone();
                }
                _ => return Some((current, e)),
            }
        }
    }

    /// Indexes the export tree by path and resolves every `ref:` to the node its chain ends
    /// at, in time linear in the size of the tree. The error is the first problem found in
    /// pre-order: a target that does not exist, a cycle, or a reference to its own ancestor.
    pub fn index(&self) -> Result<ExportIndex<'_>, ConfigError> {
        ExportIndex::new(self)
    }

    fn check_refs(&self) -> Result<(), ConfigError> {
        self.index().map(|_| ())
    }
}

/// The nodes of an export tree by dotted path, with every `ref:` resolved (see
/// [`ExporterConfig::index`]).
#[derive(Debug)]
pub struct ExportIndex<'a> {
    nodes: Vec<(String, &'a ExportEntry)>,
    by_path: HashMap<String, usize>,
    /// For a proxy, the index of the node its chain of references ends at.
    targets: Vec<Option<usize>>,
}

/// How far the resolution of one proxy has got.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RefState {
    Unvisited,
    OnChain,
    Done,
}

impl<'a> ExportIndex<'a> {
    fn new(cfg: &'a ExporterConfig) -> Result<Self, ConfigError> {
        let nodes = cfg.nodes();
        let by_path: HashMap<String, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, (p, _))| (p.clone(), i))
            .collect();
        let proxy_target = |i: usize| match &nodes[i].1.node {
            DriverNode::Proxy { target, target_at } => Some((target, target_at)),
            _ => None,
        };
        let mut state = vec![RefState::Unvisited; nodes.len()];
        let mut targets: Vec<Option<usize>> = vec![None; nodes.len()];
        for start in 0..nodes.len() {
            let Some(first) = proxy_target(start) else {
                continue;
            };
            if state[start] == RefState::Done {
                continue;
            }
            // Follow the chain start -> ... until a driver, or a proxy resolved before.
            let mut chain = vec![start];
            state[start] = RefState::OnChain;
            let (mut last, mut link) = (start, first);
            let end = loop {
                let (target, target_at) = link;
                let Some(&next) = by_path.get(target.as_str()) else {
                    let mut message = format!(
                        "`{}` references nonexistent driver `{target}`",
                        nodes[last].0
                    );
                    if last != start {
                        message.push_str(&format!(
                            " (the end of the chain of references {})",
                            chain_text(chain.iter().map(|&i| nodes[i].0.as_str()))
                        ));
                    }
                    message.push_str(&format!(" (drivers: {})", known_drivers(&nodes)));
                    return Err(ConfigError::Invalid {
                        at: target_at.clone(),
                        message,
                    });
                };
                let Some(next_link) = proxy_target(next) else {
                    break next;
                };
                match state[next] {
                    RefState::Done => break targets[next].unwrap_or(next),
                    RefState::Unvisited => {
                        state[next] = RefState::OnChain;
                        chain.push(next);
                        (last, link) = (next, next_link);
                    }
                    RefState::OnChain => {
                        let names = chain
                            .iter()
                            .map(|&i| nodes[i].0.as_str())
                            .chain([nodes[next].0.as_str()]);
                        let how = if next == start {
                            "is part of"
                        } else {
                            "leads into"
                        };
                        return Err(ConfigError::Invalid {
                            at: first.1.clone(),
                            message: format!(
                                "`{}` {how} a reference cycle: {}",
                                nodes[start].0,
                                chain_text(names)
                            ),
                        });
                    }
                }
            };
            // Only a driver or composite can be an ancestor (proxies have no children), so
            // only the end of the chain needs checking against each proxy on it.
            let end_prefix = format!("{}.", nodes[end].0);
            for &i in &chain {
                if nodes[i].0.starts_with(&end_prefix) {
                    return Err(ConfigError::Invalid {
                        at: proxy_target(i).map_or(first.1, |(_, at)| at).clone(),
                        message: format!(
                            "`{}` references its own ancestor `{}`",
                            nodes[i].0, nodes[end].0
                        ),
                    });
                }
                state[i] = RefState::Done;
                targets[i] = Some(end);
            }
        }
        Ok(ExportIndex {
            nodes,
            by_path,
            targets,
        })
    }

    /// Every node with its dotted path, in pre-order.
    pub fn nodes(&self) -> &[(String, &'a ExportEntry)] {
        &self.nodes
    }

    /// The node at a dotted path.
    pub fn get(&self, path: &str) -> Option<&'a ExportEntry> {
        self.by_path.get(path).map(|&i| self.nodes[i].1)
    }

    /// The node a path finally names: a proxy's resolved target, any other node itself.
    pub fn resolve(&self, path: &str) -> Option<(&str, &'a ExportEntry)> {
        let i = *self.by_path.get(path)?;
        let end = match self.nodes[i].1.node {
            DriverNode::Proxy { .. } => self.targets[i]?,
            _ => i,
        };
        Some((self.nodes[end].0.as_str(), self.nodes[end].1))
    }
}

/// A chain of paths for a message, `a -> b -> c`, shortened in the middle when long.
fn chain_text<'s>(names: impl Iterator<Item = &'s str>) -> String {
    const SHOWN: usize = 4;
    let names: Vec<&str> = names.collect();
    if names.len() <= 3 * SHOWN {
        return names.join(" -> ");
    }
    format!(
        "{} -> ... ({} more) ... -> {}",
        names[..SHOWN].join(" -> "),
        names.len() - 2 * SHOWN,
        names[names.len() - SHOWN..].join(" -> ")
    )
}

/// The drivers of a tree for a message, shortened when there are many.
fn known_drivers(nodes: &[(String, &ExportEntry)]) -> String {
    const SHOWN: usize = 20;
    let known: Vec<&str> = nodes
        .iter()
        .filter(|(_, e)| !matches!(e.node, DriverNode::Proxy { .. }))
        .map(|(p, _)| p.as_str())
        .collect();
    match known.len() {
        0 => "none".to_owned(),
        n if n <= SHOWN => known.join(", "),
        n => format!("{}, and {} more", known[..SHOWN].join(", "), n - SHOWN),
    }
}

static EMPTY: Vec<ExportEntry> = Vec::new();

pub(crate) struct Ctx<'a> {
    pub(crate) file: &'a Arc<Path>,
}

/// Reads keys out of a mapping, remembering which ones were used.
pub(crate) struct MapReader<'n> {
    node: &'n Node,
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

    pub(crate) fn finish(self, ctx: &Ctx<'_>, what: &str, warnings: &mut Vec<ConfigWarning>) {
        let _ = self.node;
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

    pub(crate) fn mapping<'n>(
        &self,
        node: &'n Node,
        what: &str,
    ) -> Result<MapReader<'n>, ConfigError> {
        match &node.value {
            Value::Map(entries) => Ok(MapReader {
                node,
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

    fn entries(
        &self,
        node: &Node,
        what: &str,
        warnings: &mut Vec<ConfigWarning>,
    ) -> Result<Vec<ExportEntry>, ConfigError> {
        let Value::Map(entries) = &node.value else {
            return Err(self.err(
                node,
                format!(
                    "{what} must be a mapping of names to drivers, found {}",
                    node.kind_name()
                ),
            ));
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let name = k.key_text().to_owned();
            if name.is_empty() || name.contains('.') {
                return Err(self.err(
                    k,
                    format!(
                        "invalid driver name `{name}`: names must be non-empty and contain no dots"
                    ),
                ));
            }
            let node = self.driver_node(&format!("{what}.{name}"), v, warnings)?;
            out.push(ExportEntry {
                name,
                at: self.at(k.pos),
                node,
            });
        }
        Ok(out)
    }

    fn driver_node(
        &self,
        path: &str,
        node: &Node,
        warnings: &mut Vec<ConfigWarning>,
    ) -> Result<DriverNode, ConfigError> {
        if node.is_null() {
            // `name:` with nothing under it: upstream makes an empty composite.
            return Ok(DriverNode::Composite {
                children: Vec::new(),
                description: None,
            });
        }
        let mut m = self.mapping(
            node,
            &format!("{path} (a driver: type/config, children, or ref)"),
        )?;
        if m.has("type") && m.has("ref") {
            return Err(self.err(
                node,
                format!(
                    "{path} has both `type` and `ref`; a node is either a driver or a reference"
                ),
            ));
        }
        if let Some(r) = m.take("ref") {
            let target = self.string(r, &format!("{path}.ref"))?;
            m.finish(self, path, warnings);
            return Ok(DriverNode::Proxy {
                target,
                target_at: self.at(r.pos),
            });
        }
        let description = m
            .take("description")
            .map(|v| self.opt_string(v, &format!("{path}.description")))
            .transpose()?
            .flatten()
            .filter(|d| !d.is_empty());
        let children = match m.take("children") {
            Some(c) if !c.is_null() => self.entries(c, &format!("{path}.children"), warnings)?,
            _ => Vec::new(),
        };
        let Some(t) = m.take("type") else {
            if let Some(bad) = ["config", "methods_description"].iter().find(|k| m.has(k)) {
                return Err(self.err(node, format!("{path} has `{bad}` but no `type`; add the driver's type (e.g. type: jumpstarter_driver_power.driver.MockPower)")));
            }
            m.finish(self, path, warnings);
            return Ok(DriverNode::Composite {
                children,
                description,
            });
        };
        let type_name = self.string(t, &format!("{path}.type"))?;
        if !type_name.contains('.') {
            return Err(self.err(
                t,
                format!(
                    "{path}.type `{type_name}` is not a class path (expected package.module.Class)"
                ),
            ));
        }
        let methods_description = m
            .take("methods_description")
            .map(|v| self.string_map(v, &format!("{path}.methods_description")))
            .transpose()?
            .unwrap_or_default();
        let config_node = m.take("config");
        if let Some(c) = config_node
            && !c.is_null()
            && c.as_map().is_none()
        {
            return Err(self.err(
                c,
                format!(
                    "{path}.config must be a mapping of settings, found {}",
                    c.kind_name()
                ),
            ));
        }
        m.finish(self, path, warnings);
        let config = DriverConfig::new(config_node.cloned(), node.pos, self.file.clone());
        if type_name == PROXY_TYPE {
            let json = config.to_json();
            let Some(target) = json.get("ref").and_then(|r| r.as_str()) else {
                return Err(self.err(node, format!("{path}: a {PROXY_TYPE} needs config.ref")));
            };
            return Ok(DriverNode::Proxy {
                target: target.to_owned(),
                target_at: self
                    .at(config_node.map_or(node.pos, |c| c.get("ref").map_or(c.pos, |r| r.pos))),
            });
        }
        Ok(DriverNode::Driver {
            type_name,
            type_at: self.at(t.pos),
            config,
            children,
            description,
            methods_description,
        })
    }

    fn hooks(&self, node: &Node, warnings: &mut Vec<ConfigWarning>) -> Result<Hooks, ConfigError> {
        let mut m = self.mapping(node, "hooks")?;
        let before_lease = m
            .take_any(&["beforeLease", "before_lease"])
            .filter(|n| !n.is_null())
            .map(|n| self.hook(n, "hooks.beforeLease", warnings))
            .transpose()?;
        let after_lease = m
            .take_any(&["afterLease", "after_lease"])
            .filter(|n| !n.is_null())
            .map(|n| self.hook(n, "hooks.afterLease", warnings))
            .transpose()?;
        m.finish(self, "hooks", warnings);
        Ok(Hooks {
            before_lease,
            after_lease,
        })
    }

    fn hook(
        &self,
        node: &Node,
        what: &str,
        warnings: &mut Vec<ConfigWarning>,
    ) -> Result<Hook, ConfigError> {
        let mut m = self.mapping(node, what)?;
        let script = match m.take("script") {
            Some(s) => self.string(s, &format!("{what}.script"))?,
            None => return Err(self.err(node, format!("{what}.script is required"))),
        };
        let exec = m
            .take_any(&["exec", "exec_"])
            .map(|v| self.opt_string(v, &format!("{what}.exec")))
            .transpose()?
            .flatten();
        let timeout = match m.take("timeout") {
            Some(t) => {
                let secs = self.uint(t, &format!("{what}.timeout"))?;
                if secs == 0 {
                    return Err(self.err(t, format!("{what}.timeout must be at least 1 second")));
                }
                secs
            }
            None => 120,
        };
        let on_failure = match m.take_any(&["onFailure", "on_failure"]) {
            Some(v) => {
                match self.string(v, &format!("{what}.onFailure"))?.as_str() {
                    "warn" => HookFailure::Warn,
                    "endLease" => HookFailure::EndLease,
                    "exit" => HookFailure::Exit,
                    other => {
                        return Err(self.err(v, format!("{what}.onFailure must be one of warn, endLease, exit; not '{other}'")));
                    }
                }
            }
            None => HookFailure::Warn,
        };
        m.finish(self, what, warnings);
        Ok(Hook {
            script,
            exec,
            timeout,
            on_failure,
            at: self.at(node.pos),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ExporterConfig, ConfigError> {
        ExporterConfig::parse(text, Path::new("e.yaml"))
    }

    const SEED: &str = r#"apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata:
  namespace: default
  name: demo
endpoint: grpc.jumpstarter.example.com:443
token: xxxxx
grpcConfig:
  grpc.keepalive_time_ms: 20000
export:
  power:
    type: jumpstarter_driver_yepkit.driver.Ykush
    config:
      serial: "YK25838"
      port: "1"
  serial:
    type: "jumpstarter_driver_pyserial.driver.PySerial"
    config:
      url: "/dev/ttyUSB0"
      baudrate: 115200
  custom:
    type: "vendorpackage.CustomDriver"
    config:
      hello: "world"
  reference:
    ref: "power"
"#;

    #[test]
    fn the_seed_example_loads() {
        let c = parse(SEED).unwrap();
        assert_eq!(c.metadata.name, "demo");
        assert_eq!(c.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(
            c.endpoint.as_deref(),
            Some("grpc.jumpstarter.example.com:443")
        );
        assert_eq!(
            c.grpc_config.get("grpc.keepalive_time_ms"),
            Some(&GrpcOptionValue::Int(20000))
        );
        let names: Vec<_> = c.export.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["power", "serial", "custom", "reference"]);
        match &c.export[1].node {
            DriverNode::Driver {
                type_name, config, ..
            } => {
                assert_eq!(type_name, "jumpstarter_driver_pyserial.driver.PySerial");
                assert_eq!(config.to_json()["baudrate"], 115200);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&c.export[3].node, DriverNode::Proxy { target, .. } if target == "power"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn every_field() {
        let c = parse(
            r#"apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
metadata: {namespace: lab, name: e1}
endpoint: ctl:1443
token: tok
tls: {ca: "Q0E=", insecure: true}
grpcOptions: {grpc.keepalive_time_ms: 1000, grpc.lb_policy_name: pick_first}
description: Demo exporter
motd: hello
export:
  power:
    type: jumpstarter_driver_power.driver.MockPower
    description: Main PSU
    methods_description: {"on": Turn it on}
  group:
    description: A group
    children:
      p2: {type: jumpstarter_driver_power.driver.SyncMockPower}
  alias: {ref: group.p2}
hooks:
  beforeLease: {script: "j power on", timeout: 5, onFailure: endLease}
  afterLease: {script: /opt/after.sh, exec: /bin/bash}
failureDetection: {maxRapidFailures: 3, rapidFailureWindow: 10}
"#,
        )
        .unwrap();
        assert!(c.tls.insecure);
        assert_eq!(c.tls.ca, "Q0E=");
        assert_eq!(c.description.as_deref(), Some("Demo exporter"));
        assert_eq!(c.motd.as_deref(), Some("hello"));
        let before = c.hooks.before_lease.as_ref().unwrap();
        assert_eq!(
            (before.timeout, before.on_failure),
            (5, HookFailure::EndLease)
        );
        let after = c.hooks.after_lease.as_ref().unwrap();
        assert_eq!(
            (after.timeout, after.on_failure, after.exec.as_deref()),
            (120, HookFailure::Warn, Some("/bin/bash"))
        );
        assert_eq!(
            c.failure_detection,
            FailureDetection {
                max_rapid_failures: 3,
                rapid_failure_window: 10
            }
        );
        let paths: Vec<_> = c.nodes().into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["power", "group", "group.p2", "alias"]);
        let (resolved, _) = c.resolve("alias").unwrap();
        assert_eq!(resolved, "group.p2");
        match &c.export[0].node {
            DriverNode::Driver {
                methods_description,
                description,
                ..
            } => {
                assert_eq!(
                    methods_description.get("on").map(String::as_str),
                    Some("Turn it on")
                );
                assert_eq!(description.as_deref(), Some("Main PSU"));
            }
            other => panic!("{other:?}"),
        }
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let err = parse("metadata:\n  name: x\nexport:\n  power:\n    type: a.B\n   config: {}\n")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("e.yaml:6:"), "{text}");
    }

    #[test]
    fn wrong_api_version_or_kind() {
        let err = parse("apiVersion: v2\nkind: ExporterConfig\nmetadata: {name: x}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("e.yaml:1:13: apiVersion must be 'jumpstarter.dev/v1alpha1'"),
            "{err}"
        );
        let err = parse("kind: ClientConfig\nmetadata: {name: x}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kind must be 'ExporterConfig', not 'ClientConfig'"),
            "{err}"
        );
    }

    #[test]
    fn empty_file_and_missing_metadata() {
        assert!(
            parse("")
                .unwrap_err()
                .to_string()
                .contains("the file is empty")
        );
        assert!(
            parse("export: {}\n")
                .unwrap_err()
                .to_string()
                .contains("metadata is required")
        );
        assert!(
            parse("metadata: {namespace: x}\n")
                .unwrap_err()
                .to_string()
                .contains("metadata.name is required")
        );
    }

    #[test]
    fn dangling_and_cyclic_refs() {
        let err = parse("metadata: {name: x}\nexport:\n  p: {type: a.B}\n  r: {ref: nope}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "e.yaml:4:12: `r` references nonexistent driver `nope` (drivers: p)"
        );
        let err = parse("metadata: {name: x}\nexport:\n  a: {ref: b}\n  b: {ref: a}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("reference cycle"), "{err}");
        let err = parse("metadata: {name: x}\nexport:\n  g:\n    children:\n      r: {ref: g}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("own ancestor"), "{err}");
        let err = parse("metadata: {name: x}\nexport:\n  r: {ref: r}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cycle"), "{err}");
    }

    #[test]
    fn proxy_type_with_config_ref() {
        let c = parse(
            "metadata: {name: x}\nexport:\n  p: {type: a.B}\n  r:\n    type: jumpstarter_driver_composite.driver.Proxy\n    config: {ref: p}\n",
        )
        .unwrap();
        assert!(matches!(&c.export[1].node, DriverNode::Proxy { target, .. } if target == "p"));
    }

    #[test]
    fn bad_nodes_are_errors_not_empty_composites() {
        let err = parse("metadata: {name: x}\nexport:\n  p: {config: {a: 1}}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("has `config` but no `type`"), "{err}");
        let err = parse("metadata: {name: x}\nexport:\n  p: [1]\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("e.yaml:3:6:"), "{err}");
        let err = parse("metadata: {name: x}\nexport:\n  p: {type: MockPower}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a class path"), "{err}");
        let err = parse("metadata: {name: x}\nexport:\n  p: {type: a.B, config: 5}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("config must be a mapping"), "{err}");
        let err = parse("metadata: {name: x}\nexport:\n  p: {type: a.B, ref: q}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("both `type` and `ref`"), "{err}");
    }

    #[test]
    fn hook_validation() {
        let err = parse("metadata: {name: x}\nhooks:\n  beforeLease: {timeout: 3}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("hooks.beforeLease.script is required"),
            "{err}"
        );
        let err =
            parse("metadata: {name: x}\nhooks:\n  afterLease: {script: x, onFailure: panic}\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("must be one of warn, endLease, exit"), "{err}");
        let c =
            parse("metadata: {name: x}\nhooks:\n  before_lease: {script: x, on_failure: exit}\n")
                .unwrap();
        assert_eq!(c.hooks.before_lease.unwrap().on_failure, HookFailure::Exit);
    }

    #[test]
    fn unknown_keys_and_yaml11_keys_warn() {
        let c = parse(
            "metadata: {name: x}\nbogus: 1\nexport:\n  p:\n    type: a.B\n    confg: {}\n    methods_description:\n      on: Turn on\n",
        )
        .unwrap();
        let msgs: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("e.yaml:2:1: unknown key `bogus`")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("unknown key `confg` in export.p")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("e.yaml:8:7:") && m.contains("boolean")),
            "{msgs:?}"
        );
        match &c.export[0].node {
            DriverNode::Driver {
                methods_description,
                ..
            } => {
                assert_eq!(
                    methods_description.get("on").map(String::as_str),
                    Some("Turn on")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_nodes_are_composites() {
        let c = parse("metadata: {name: x}\nexport:\n  a:\n  b: {}\n").unwrap();
        assert!(matches!(c.export[0].node, DriverNode::Composite { .. }));
        assert!(matches!(c.export[1].node, DriverNode::Composite { .. }));
    }
}
