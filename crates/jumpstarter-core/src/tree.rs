//! Driver trees: instances, their names, and the pre-order report of `GetReport`.
//!
//! A tree is built once per session (drivers are per session, so uuids change every session).
//! The root is always a [`Composite`] holding the `export:` entries. A `ref:` entry is the
//! *same* instance under a second name: the report lists the target again (same uuid, same
//! labels, the alias's name and parent), followed by the target's subtree, which is what the
//! Python client needs to attach children to the alias.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use jumpstarter_config::exporter::{COMPOSITE_TYPE, DriverNode, ExportEntry, ExportIndex};
use jumpstarter_config::{ConfigError, DriverConfig, ExporterConfig, Source};
use jumpstarter_protocol::v1::DriverInstanceReport;
use uuid::Uuid;

use crate::driver::Driver;
use crate::limits::Limits;
use crate::logs::{Level, LogHub};
use crate::registry::{BuildContext, Registry, class_name};
use crate::resource::Resources;

// The report labels and the composite's client class (defined with the other wire facts).
use jumpstarter_protocol::wire::{CLIENT_LABEL, COMPOSITE_CLIENT, NAME_LABEL};

/// A node grouping its children; no methods of its own.
#[derive(Debug, Default)]
pub struct Composite;

#[async_trait]
impl Driver for Composite {
    fn client(&self) -> &str {
        COMPOSITE_CLIENT
    }
}

/// One driver instance and what the report says about it.
pub struct Instance {
    pub uuid: Uuid,
    pub driver: Arc<dyn Driver>,
    /// The `type:` string it was built from.
    pub type_name: String,
    pub description: Option<String>,
    pub methods_description: BTreeMap<String, String>,
    /// Labels from the node's `config.labels`.
    pub labels: BTreeMap<String, String>,
    pub children: Vec<(String, Child)>,
    /// Resource handles registered on this instance and not yet opened.
    pub resources: Resources,
    /// Set when a driver host serves this node (see [`crate::remote`]): the session relays
    /// every call and stream addressed to it, unchanged, to the host.
    pub host: Option<Arc<crate::remote::HostLink>>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("uuid", &self.uuid)
            .field("type_name", &self.type_name)
            .field("children", &self.children)
            .finish()
    }
}

/// A child of an instance: its own, or another node's instance reached through `ref:`.
#[derive(Debug, Clone)]
pub enum Child {
    Own(Arc<Instance>),
    Ref(Arc<Instance>),
}

impl Child {
    pub fn instance(&self) -> &Arc<Instance> {
        match self {
            Child::Own(i) | Child::Ref(i) => i,
        }
    }
}

impl Instance {
    /// An instance built in code.
    pub fn new(driver: Arc<dyn Driver>, type_name: impl Into<String>) -> Self {
        Instance {
            uuid: Uuid::new_v4(),
            driver,
            type_name: type_name.into(),
            description: None,
            methods_description: BTreeMap::new(),
            labels: BTreeMap::new(),
            children: Vec::new(),
            resources: Resources::new(),
            host: None,
        }
    }

    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = Some(d.into());
        self
    }

    pub fn method_description(mut self, method: &str, d: impl Into<String>) -> Self {
        self.methods_description.insert(method.to_owned(), d.into());
        self
    }

    pub fn child(mut self, name: impl Into<String>, child: Instance) -> Self {
        self.children
            .push((name.into(), Child::Own(Arc::new(child))));
        self
    }

    pub fn class_name(&self) -> &str {
        class_name(&self.type_name)
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Entry {
    pub uuid: Uuid,
    pub parent: Option<Uuid>,
    pub name: Option<String>,
    pub instance: Arc<Instance>,
}

/// A built tree.
#[derive(Debug, Clone)]
pub struct DriverTree {
    entries: Vec<Entry>,
    by_uuid: HashMap<Uuid, Arc<Instance>>,
}

impl DriverTree {
    /// A tree from a root instance built in code.
    pub fn new(root: Instance) -> Self {
        let root = Arc::new(root);
        let mut entries = Vec::new();
        emit(&root, None, None, &mut entries);
        let by_uuid = entries
            .iter()
            .map(|e| (e.uuid, e.instance.clone()))
            .collect();
        DriverTree { entries, by_uuid }
    }

    /// A tree whose root composite holds the given named drivers.
    pub fn composite(children: Vec<(&str, Instance)>) -> Self {
        let mut root = Instance::new(Arc::new(Composite), COMPOSITE_TYPE);
        for (name, child) in children {
            root = root.child(name, child);
        }
        Self::new(root)
    }

    /// Builds the tree an exporter config describes.
    pub fn from_config(
        cfg: &ExporterConfig,
        registry: &Registry,
        logs: &LogHub,
    ) -> Result<Self, ConfigError> {
        Self::from_config_with(cfg, registry, logs, &HashMap::new())
    }

    /// [`DriverTree::from_config`] with subtrees built elsewhere (driver hosts): `grafts` maps
    /// a node's dotted path to its instance, which is used as is (its config is not looked
    /// at). A `ref:` into a grafted subtree finds the node by its children's names.
    pub fn from_config_with(
        cfg: &ExporterConfig,
        registry: &Registry,
        logs: &LogHub,
        grafts: &HashMap<String, Arc<Instance>>,
    ) -> Result<Self, ConfigError> {
        Self::from_config_limited(cfg, registry, logs, grafts, crate::limits::global())
    }

    /// [`DriverTree::from_config_with`] within the given limits (`tree_max_entries`,
    /// `tree_max_depth`): the report of a tree whose `ref:`s repeat subtrees that themselves
    /// hold `ref:`s can grow exponentially with the file, so its size and depth are counted
    /// before it is made.
    pub fn from_config_limited(
        cfg: &ExporterConfig,
        registry: &Registry,
        logs: &LogHub,
        grafts: &HashMap<String, Arc<Instance>>,
        limits: &Limits,
    ) -> Result<Self, ConfigError> {
        let mut b = ConfigBuilder {
            index: cfg.index()?,
            registry,
            logs,
            grafts,
            limits,
            memo: HashMap::new(),
            measured: HashMap::new(),
            in_progress: Vec::new(),
        };
        let mut children = Vec::new();
        let mut size = Size::ROOT;
        for e in &cfg.export {
            let (child, child_size) = b.child(&e.name, e)?;
            size = b.add(size, child_size, &e.at, true)?;
            children.push((e.name.clone(), child));
        }
        let root = Instance {
            uuid: Uuid::new_v4(),
            driver: Arc::new(Composite),
            type_name: COMPOSITE_TYPE.to_owned(),
            description: cfg.description.clone(),
            methods_description: BTreeMap::new(),
            labels: BTreeMap::new(),
            children,
            resources: Resources::new(),
            host: None,
        };
        Ok(Self::new(root))
    }

    /// Report lines in pre-order, root first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn root(&self) -> &Arc<Instance> {
        &self.entries[0].instance
    }

    pub fn get(&self, uuid: &Uuid) -> Option<&Arc<Instance>> {
        self.by_uuid.get(uuid)
    }

    /// Every distinct instance once (proxied instances are listed once), root first.
    pub fn instances(&self) -> Vec<Arc<Instance>> {
        let mut seen = std::collections::HashSet::new();
        self.entries
            .iter()
            .filter(|e| seen.insert(e.uuid))
            .map(|e| e.instance.clone())
            .collect()
    }

    /// The `GetReport` lines.
    pub fn report(&self) -> Vec<DriverInstanceReport> {
        self.entries
            .iter()
            .map(|e| {
                let inst = &e.instance;
                let mut labels = inst.labels.clone();
                labels.extend(inst.driver.labels());
                labels.insert(CLIENT_LABEL.to_owned(), inst.driver.client().to_owned());
                if let Some(name) = &e.name {
                    labels.insert(NAME_LABEL.to_owned(), name.clone());
                }
                DriverInstanceReport {
                    uuid: e.uuid.hyphenated().to_string(),
                    parent_uuid: e.parent.map(|p| p.hyphenated().to_string()),
                    labels: labels.into_iter().collect(),
                    description: inst.description.clone().filter(|d| !d.is_empty()),
                    methods_description: {
                        // As upstream: what the driver describes itself wins over the config.
                        let mut m = inst.methods_description.clone();
                        m.extend(inst.driver.methods_description());
                        m.into_iter().collect()
                    },
                }
            })
            .collect()
    }

    /// Calls `reset()` on every instance; failures are returned with the driver's path.
    pub async fn reset(&self) -> Vec<(String, crate::driver::DriverError)> {
        let mut failures = Vec::new();
        for inst in self.instances() {
            if let Err(e) = inst.driver.reset().await {
                failures.push((inst.type_name.clone(), e));
            }
        }
        failures
    }

    /// Calls `close()` once on every instance, children before parents.
    pub async fn close(&self) {
        for inst in self.instances().into_iter().rev() {
            inst.driver.close().await;
        }
    }
}

fn emit(inst: &Arc<Instance>, parent: Option<Uuid>, name: Option<&str>, out: &mut Vec<Entry>) {
    out.push(Entry {
        uuid: inst.uuid,
        parent,
        name: name.map(str::to_owned),
        instance: inst.clone(),
    });
    for (child_name, child) in &inst.children {
        emit(child.instance(), Some(inst.uuid), Some(child_name), out);
    }
}

/// What an instance adds to the report: its lines (itself and everything below it, `ref:`
/// subtrees repeated) and its height (1 for a leaf).
#[derive(Debug, Clone, Copy)]
struct Size {
    entries: usize,
    height: usize,
}

impl Size {
    const ROOT: Size = Size {
        entries: 1,
        height: 1,
    };
}

struct ConfigBuilder<'a> {
    index: ExportIndex<'a>,
    registry: &'a Registry,
    logs: &'a LogHub,
    grafts: &'a HashMap<String, Arc<Instance>>,
    limits: &'a Limits,
    memo: HashMap<String, (Arc<Instance>, Size)>,
    /// Sizes of grafted instances, by address.
    measured: HashMap<usize, Size>,
    in_progress: Vec<String>,
}

impl ConfigBuilder<'_> {
    fn child(&mut self, path: &str, entry: &ExportEntry) -> Result<(Child, Size), ConfigError> {
        match &entry.node {
            DriverNode::Proxy { target_at, .. } => {
                let (target_path, target) = match self.index.resolve(path) {
                    Some((p, t)) => (p.to_owned(), t),
                    None => {
                        return Err(ConfigError::Invalid {
                            at: target_at.clone(),
                            message: format!("`{path}` references a driver that does not exist"),
                        });
                    }
                };
                if let Some(inst) = self.grafted(&target_path) {
                    let inst = inst.ok_or_else(|| ConfigError::Invalid {
                        at: target_at.clone(),
                        message: format!(
                            "`{path}` references `{target_path}`, which its driver host does not report"
                        ),
                    })?;
                    let size = self.measure(&inst, target_at)?;
                    return Ok((Child::Ref(inst), size));
                }
                let (inst, size) = self.build(&target_path, target, target_at)?;
                Ok((Child::Ref(inst), size))
            }
            _ => {
                let (inst, size) = self.build(path, entry, &entry.at)?;
                Ok((Child::Own(inst), size))
            }
        }
    }

    /// `parent` with one more child of size `child`, within the limits (`at` is the child;
    /// `root` when the parent is the tree's root, which is not a level of drivers).
    fn add(&self, parent: Size, child: Size, at: &Source, root: bool) -> Result<Size, ConfigError> {
        let size = Size {
            entries: parent.entries.saturating_add(child.entries),
            height: parent.height.max(child.height.saturating_add(1)),
        };
        let levels = if root { child.height } else { size.height };
        if size.entries > self.limits.tree_max_entries {
            return Err(ConfigError::Invalid {
                at: at.clone(),
                message: format!(
                    "the driver tree's report grows too large here (each `ref:` repeats its \
                     target's subtree); {}",
                    Limits::exceeded("tree_max_entries", self.limits.tree_max_entries)
                ),
            });
        }
        if levels > self.limits.tree_max_depth {
            return Err(self.too_deep(at));
        }
        Ok(size)
    }

    fn too_deep(&self, at: &Source) -> ConfigError {
        ConfigError::Invalid {
            at: at.clone(),
            message: format!(
                "drivers nested too deep here (counting those reached through `ref:`); {}",
                Limits::exceeded("tree_max_depth", self.limits.tree_max_depth)
            ),
        }
    }

    /// The size of a grafted instance (built from a driver host's report), counted without
    /// recursion and without going past the limits.
    fn measure(&mut self, inst: &Arc<Instance>, at: &Source) -> Result<Size, ConfigError> {
        let key = Arc::as_ptr(inst) as usize;
        if let Some(size) = self.measured.get(&key) {
            return Ok(*size);
        }
        let mut size = Size {
            entries: 0,
            height: 0,
        };
        let mut stack = vec![(inst.clone(), 1usize)];
        while let Some((node, depth)) = stack.pop() {
            size.entries += 1;
            size.height = size.height.max(depth);
            if size.entries > self.limits.tree_max_entries {
                // Reports the limit (the sum is over it).
                return self.add(Size::ROOT, size, at, true);
            }
            if depth > self.limits.tree_max_depth {
                return Err(self.too_deep(at));
            }
            for (_, child) in &node.children {
                stack.push((child.instance().clone(), depth + 1));
            }
        }
        self.measured.insert(key, size);
        Ok(size)
    }

    fn build(
        &mut self,
        path: &str,
        entry: &ExportEntry,
        via: &Source,
    ) -> Result<(Arc<Instance>, Size), ConfigError> {
        if let Some((done, size)) = self.memo.get(path) {
            return Ok((done.clone(), *size));
        }
        if let Some(graft) = self.grafts.get(path) {
            let graft = graft.clone();
            let size = self.measure(&graft, via)?;
            return Ok((graft, size));
        }
        if self.in_progress.iter().any(|p| p == path) {
            let mut chain = self.in_progress.clone();
            chain.push(path.to_owned());
            return Err(ConfigError::Invalid {
                at: via.clone(),
                message: format!("driver references form a cycle: {}", chain.join(" -> ")),
            });
        }
        // Every instance under construction is an ancestor of the next one, so this bounds
        // the recursion as well as the tree.
        if self.in_progress.len() >= self.limits.tree_max_depth {
            return Err(self.too_deep(via));
        }
        self.in_progress.push(path.to_owned());
        let mut children = Vec::new();
        let mut size = Size {
            entries: 1,
            height: 1,
        };
        for c in entry.node.children() {
            let child_path = format!("{path}.{}", c.name);
            let (child, child_size) = self.child(&child_path, c)?;
            size = self.add(size, child_size, &c.at, false)?;
            children.push((c.name.clone(), child));
        }
        let instance = match &entry.node {
            DriverNode::Composite { description, .. } => Instance {
                uuid: Uuid::new_v4(),
                driver: Arc::new(Composite),
                type_name: COMPOSITE_TYPE.to_owned(),
                description: description.clone(),
                methods_description: BTreeMap::new(),
                labels: BTreeMap::new(),
                children,
                resources: Resources::new(),
                host: None,
            },
            DriverNode::Driver {
                type_name,
                type_at,
                config,
                description,
                methods_description,
                ..
            } => {
                let factory = self
                    .registry
                    .get(type_name)
                    .ok_or_else(|| ConfigError::Invalid {
                        at: type_at.clone(),
                        message: self.registry.unknown_type_message(type_name),
                    })?;
                let (base, rest) = split_base_fields(config)?;
                let driver_children: Vec<(String, Arc<dyn Driver>)> = children
                    .iter()
                    .map(|(n, c)| (n.clone(), c.instance().driver.clone()))
                    .collect();
                let ctx = BuildContext {
                    type_name,
                    config: &rest,
                    children: &driver_children,
                    logger: self
                        .logs
                        .driver_logger(class_name(type_name), base.log_level),
                };
                let built = factory(&ctx)?;
                // Children the driver created, after the configured ones; a configured child
                // of the same name wins.
                for (name, inst) in built.children {
                    if children.iter().any(|(n, _)| *n == name) {
                        continue;
                    }
                    let inst = Arc::new(inst);
                    let child_size = self.measure(&inst, via)?;
                    size = self.add(size, child_size, via, false)?;
                    children.push((name, Child::Own(inst)));
                }
                let driver = built.driver;
                Instance {
                    uuid: Uuid::new_v4(),
                    driver,
                    type_name: type_name.clone(),
                    description: description.clone(),
                    methods_description: methods_description.clone(),
                    labels: base.labels,
                    children,
                    resources: Resources::new(),
                    host: None,
                }
            }
            DriverNode::Proxy { .. } => {
                return Err(ConfigError::Invalid {
                    at: via.clone(),
                    message: format!("`{path}` is a reference, not a driver"),
                });
            }
        };
        self.in_progress.pop();
        let instance = Arc::new(instance);
        self.memo.insert(path.to_owned(), (instance.clone(), size));
        Ok((instance, size))
    }
}

impl ConfigBuilder<'_> {
    /// A node inside a grafted subtree: `None` when `path` is outside every graft,
    /// `Some(None)` when it is inside one that has no such node.
    fn grafted(&self, path: &str) -> Option<Option<Arc<Instance>>> {
        let (root, rest) = self.grafts.iter().find_map(|(root, inst)| {
            if path == root {
                Some((inst, ""))
            } else {
                path.strip_prefix(root.as_str())
                    .and_then(|r| r.strip_prefix('.'))
                    .map(|r| (inst, r))
            }
        })?;
        let mut node = root.clone();
        for part in rest.split('.').filter(|p| !p.is_empty()) {
            let next = node
                .children
                .iter()
                .find(|(n, _)| n == part)
                .map(|(_, c)| c.instance().clone());
            match next {
                Some(n) => node = n,
                // A host that is not running has a stand-in without children: an alias into
                // its subtree is the stand-in (its calls fail with the host's error).
                None if node.host.as_ref().is_some_and(|h| h.failure().is_some()) => break,
                None => return Some(None),
            }
        }
        Some(Some(node))
    }
}

/// The config keys every driver accepts (upstream's Driver base class fields).
struct BaseFields {
    log_level: Level,
    labels: BTreeMap<String, String>,
}

fn split_base_fields(config: &DriverConfig) -> Result<(BaseFields, DriverConfig), ConfigError> {
    #[derive(serde::Deserialize)]
    struct Base {
        #[serde(default)]
        log_level: Option<String>,
        #[serde(default)]
        labels: BTreeMap<String, String>,
    }
    let keys = config.keys();
    let base: Base = config.parse()?;
    let log_level = match base.log_level {
        None => Level::Info,
        Some(l) => Level::parse(&l).ok_or_else(|| {
            config.error(
                Some("log_level"),
                format!(
                    "config.log_level: `{l}` is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
                ),
            )
        })?,
    };
    let rest = if keys.iter().any(|k| k == "log_level" || k == "labels") {
        config.without(&["log_level", "labels"])
    } else {
        config.clone()
    };
    Ok((
        BaseFields {
            log_level,
            labels: base.labels,
        },
        rest,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{Method, Value};
    use crate::limits::{DEFAULT_TREE_MAX_DEPTH, DEFAULT_TREE_MAX_ENTRIES, DEFAULT_YAML_MAX_DEPTH};
    use jumpstarter_config::ExporterConfig;
    use std::path::Path;

    struct Fake(&'static str);
    #[async_trait]
    impl Driver for Fake {
        fn client(&self) -> &str {
            self.0
        }
        fn methods(&self) -> &[Method] {
            &[]
        }
    }

    fn registry() -> Registry {
        let mut r = Registry::new();
        r.register("a.Power", |_ctx| {
            Ok(Arc::new(Fake("power.Client")) as Arc<dyn Driver>)
        });
        r.register("a.Echo", |ctx| {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct C {}
            let _: C = ctx.config.parse()?;
            Ok(Arc::new(Fake("net.Client")) as Arc<dyn Driver>)
        });
        r
    }

    fn build(text: &str) -> Result<DriverTree, ConfigError> {
        let cfg = ExporterConfig::parse(text, Path::new("t.yaml"))?;
        DriverTree::from_config(&cfg, &registry(), &LogHub::new())
    }

    #[test]
    fn factories_may_create_children_and_configured_ones_win() {
        let mut r = registry();
        r.register("a.Board", |_ctx| {
            Ok(crate::registry::Built::new(Fake("board.Client"))
                .child(
                    "power",
                    Instance::new(Arc::new(Fake("created.Power")), "x.P"),
                )
                .child(
                    "console",
                    Instance::new(Arc::new(Fake("created.Console")), "x.C"),
                ))
        });
        let cfg = ExporterConfig::parse(
            "metadata: {name: x}\nexport:\n  board:\n    type: a.Board\n    children:\n      power: {type: a.Power}\n      extra: {type: a.Power}\n",
            Path::new("t.yaml"),
        )
        .unwrap();
        let t = DriverTree::from_config(&cfg, &r, &LogHub::new()).unwrap();
        let report = t.report();
        let lines: Vec<(Option<&str>, &str)> = t
            .entries()
            .iter()
            .zip(&report)
            .map(|(e, r)| (e.name.as_deref(), r.labels[CLIENT_LABEL].as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                (None, COMPOSITE_CLIENT),
                (Some("board"), "board.Client"),
                // Configured children first; the configured `power` wins over the created one.
                (Some("power"), "power.Client"),
                (Some("extra"), "power.Client"),
                (Some("console"), "created.Console"),
            ]
        );
        // Created children count against the tree's limits like configured ones.
        let small = Limits {
            tree_max_entries: 4,
            ..Limits::default()
        };
        let err =
            DriverTree::from_config_limited(&cfg, &r, &LogHub::new(), &HashMap::new(), &small)
                .unwrap_err();
        assert!(err.to_string().contains("JMP_TREE_MAX_ENTRIES"), "{err}");
    }

    #[test]
    fn report_is_preorder_with_proxy_duplicates() {
        let t = build(
            "metadata: {name: x}\ndescription: Demo\nexport:\n  power:\n    type: a.Power\n    description: PSU\n    methods_description: {\"on\": Turn on}\n    config: {labels: {k: v}, log_level: DEBUG}\n  nested:\n    children:\n      p2: {type: a.Power}\n  alias: {ref: power}\n  galias: {ref: nested}\n",
        )
        .unwrap();
        let r = t.report();
        let names: Vec<Option<&str>> = r
            .iter()
            .map(|x| x.labels.get(NAME_LABEL).map(String::as_str))
            .collect();
        assert_eq!(
            names,
            [
                None,
                Some("power"),
                Some("nested"),
                Some("p2"),
                Some("alias"),
                Some("galias"),
                Some("p2")
            ]
        );
        // Root: composite client label only, the config description, no parent.
        assert_eq!(r[0].labels.len(), 1);
        assert_eq!(r[0].labels[CLIENT_LABEL], COMPOSITE_CLIENT);
        assert_eq!(r[0].description.as_deref(), Some("Demo"));
        assert!(r[0].parent_uuid.is_none());
        // The alias repeats the target's uuid, labels and descriptions under its own name.
        assert_eq!(r[4].uuid, r[1].uuid);
        assert_eq!(r[4].parent_uuid.as_deref(), Some(r[0].uuid.as_str()));
        assert_eq!(r[4].description.as_deref(), Some("PSU"));
        assert_eq!(r[4].methods_description["on"], "Turn on");
        assert_eq!(r[1].labels["k"], "v");
        assert_eq!(r[1].labels[CLIENT_LABEL], "power.Client");
        // A proxied composite re-reports its subtree with the original parent uuids.
        assert_eq!(r[5].uuid, r[2].uuid);
        assert_eq!(r[6].uuid, r[3].uuid);
        assert_eq!(r[6].parent_uuid.as_deref(), Some(r[2].uuid.as_str()));
        // Distinct instances once each.
        assert_eq!(t.instances().len(), 4);
    }

    #[test]
    fn unknown_types_are_listed() {
        let err = build("metadata: {name: x}\nexport:\n  p: {type: a.Powr}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("t.yaml:3:13: unknown driver type `a.Powr`; did you mean `a.Power`?"),
            "{err}"
        );
        assert!(err.contains("known types: a.Echo, a.Power"), "{err}");
    }

    #[test]
    fn driver_config_errors_have_positions() {
        let err = build(
            "metadata: {name: x}\nexport:\n  e:\n    type: a.Echo\n    config:\n      bogus: 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("t.yaml:6:7: config.bogus: unknown field `bogus`"),
            "{err}"
        );
        let err = build("metadata: {name: x}\nexport:\n  e:\n    type: a.Power\n    config: {log_level: LOUD}\n").unwrap_err().to_string();
        assert!(
            err.contains("config.log_level: `LOUD` is not one of"),
            "{err}"
        );
    }

    #[test]
    fn structural_reference_cycles_are_errors() {
        let err = build("metadata: {name: x}\nexport:\n  a:\n    children:\n      x: {ref: b}\n  b:\n    children:\n      y: {ref: a}\n").unwrap_err().to_string();
        assert!(err.contains("cycle"), "{err}");
    }

    fn within<T: Send + 'static>(
        limit: std::time::Duration,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(limit)
            .unwrap_or_else(|e| panic!("did not finish within {limit:?}: {e}"))
    }

    #[test]
    fn hostile_forty_thousand_drivers_and_refs_build_in_linear_time() {
        use std::fmt::Write as _;
        let mut text = String::from("metadata: {name: x}\nexport:\n");
        for i in 0..40_000 {
            writeln!(
                text,
                "  d{i}: {{type: a.Power, config: {{labels: {{n: '{i}'}}}}}}"
            )
            .unwrap();
        }
        // A chain of 20,000 refs, each naming the one before.
        text.push_str("  r0: {ref: d0}\n");
        for i in 1..20_000 {
            writeln!(text, "  r{i}: {{ref: r{}}}", i - 1).unwrap();
        }
        let t = within(std::time::Duration::from_secs(30), move || {
            build(&text).unwrap()
        });
        let r = t.report();
        assert_eq!(r.len(), 1 + 40_000 + 20_000);
        assert_eq!(t.instances().len(), 1 + 40_000);
        // The last ref is the first driver.
        assert_eq!(r[60_000].uuid, r[1].uuid);
        assert_eq!(r[60_000].labels[NAME_LABEL], "r19999");
    }

    #[test]
    fn hostile_a_chain_of_a_thousand_refs_builds() {
        use std::fmt::Write as _;
        let mut text = String::from("metadata: {name: x}\nexport:\n  p: {type: a.Power}\n");
        for i in 0..1000 {
            let target = if i == 999 {
                "p".to_owned()
            } else {
                format!("r{}", i + 1)
            };
            writeln!(text, "  r{i}: {{ref: {target}}}").unwrap();
        }
        let t = build(&text).unwrap();
        let r = t.report();
        assert_eq!(r.len(), 1 + 1 + 1000);
        assert!(r[2..].iter().all(|e| e.uuid == r[1].uuid));
    }

    #[test]
    fn hostile_refs_that_multiply_the_report_are_refused() {
        use std::fmt::Write as _;
        // l0 holds two refs to l1, which holds two refs to l2, ...: 2^40 report lines from a
        // few hundred bytes.
        let mut text = String::from("metadata: {name: x}\nexport:\n");
        for i in 0..40 {
            writeln!(
                text,
                "  l{i}:\n    children:\n      a: {{ref: l{n}}}\n      b: {{ref: l{n}}}",
                n = i + 1
            )
            .unwrap();
        }
        text.push_str("  l40: {type: a.Power}\n");
        let err = within(std::time::Duration::from_secs(20), move || {
            build(&text).map(|_| ()).unwrap_err().to_string()
        });
        assert!(err.starts_with("t.yaml:"), "{err}");
        assert!(
            err.contains(&Limits::exceeded(
                "tree_max_entries",
                DEFAULT_TREE_MAX_ENTRIES
            )),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        // Within a smaller limit, the point where it goes over is named.
        let text = "metadata: {name: x}\nexport:\n  g:\n    children:\n      a: {type: a.Power}\n      b: {type: a.Power}\n  r1: {ref: g}\n  r2: {ref: g}\n";
        let cfg = ExporterConfig::parse(text, Path::new("t.yaml")).unwrap();
        let limits = Limits {
            tree_max_entries: 10,
            ..Limits::default()
        };
        let build = |limits: &Limits| {
            DriverTree::from_config_limited(
                &cfg,
                &registry(),
                &LogHub::new(),
                &HashMap::new(),
                limits,
            )
        };
        assert_eq!(build(&limits).unwrap().report().len(), 1 + 3 + 3 + 3);
        let limits = Limits {
            tree_max_entries: 9,
            ..Limits::default()
        };
        let err = build(&limits).unwrap_err().to_string();
        assert!(err.starts_with("t.yaml:8:3: "), "{err}");
    }

    #[test]
    fn hostile_refs_that_nest_deep_are_refused_without_recursion() {
        use std::fmt::Write as _;
        // n0 holds a ref to n1, which holds a ref to n2, ...: 10,000 levels of drivers from a
        // flat file, in both orders (built top-down, and already built bottom-up).
        for reverse in [false, true] {
            let mut lines = Vec::new();
            for i in 0..10_000 {
                lines.push(format!(
                    "  n{i}:\n    children:\n      c: {{ref: n{}}}",
                    i + 1
                ));
            }
            lines.push("  n10000: {type: a.Power}".to_owned());
            if reverse {
                lines.reverse();
            }
            let mut text = String::from("metadata: {name: x}\nexport:\n");
            for l in lines {
                writeln!(text, "{l}").unwrap();
            }
            let err = within(std::time::Duration::from_secs(20), move || {
                build(&text).map(|_| ()).unwrap_err().to_string()
            });
            assert!(
                err.contains(&Limits::exceeded("tree_max_depth", DEFAULT_TREE_MAX_DEPTH)),
                "{err}"
            );
        }
    }

    #[test]
    fn yaml_limits_are_the_ones_listed_here() {
        use jumpstarter_config::yaml;
        for (field, (var, what)) in [
            ("yaml_max_depth", yaml::MAX_DEPTH_LIMIT),
            ("yaml_alias_nodes", yaml::ALIAS_NODES_LIMIT),
            ("yaml_alias_bytes", yaml::ALIAS_BYTES_LIMIT),
        ] {
            let name = Limits::name(field).unwrap();
            assert_eq!((name.var, name.what), (var, what));
        }
        assert_eq!(Limits::default().yaml(), yaml::ParseLimits::default());
        // The message the YAML layer writes is the one `exceeded` gives.
        let text = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let err = yaml::parse(&text).unwrap_err();
        assert!(
            err.message
                .ends_with(&Limits::exceeded("yaml_max_depth", DEFAULT_YAML_MAX_DEPTH)),
            "{err:?}"
        );
        // Both read the variables alike.
        let env = |var: &str| (var == "JMP_YAML_ALIAS_NODES").then(|| "2K".to_owned());
        assert_eq!(
            Limits::from_lookup(env).unwrap().yaml(),
            yaml::ParseLimits::from_lookup(env)
        );
    }

    #[test]
    fn code_built_trees() {
        let t = DriverTree::composite(vec![(
            "p",
            Instance::new(Arc::new(Fake("c")), "a.Power").description("d"),
        )]);
        let r = t.report();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].labels[NAME_LABEL], "p");
        let _ = Value::Null;
    }
}
