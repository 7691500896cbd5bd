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
use jumpstarter_config::exporter::{COMPOSITE_TYPE, DriverNode, ExportEntry};
use jumpstarter_config::{ConfigError, DriverConfig, ExporterConfig, Source};
use jumpstarter_protocol::v1::DriverInstanceReport;
use uuid::Uuid;

use crate::driver::Driver;
use crate::logs::{Level, LogHub};
use crate::registry::{BuildContext, Registry, class_name};
use crate::resource::Resources;

/// Label carrying the client class path.
pub const CLIENT_LABEL: &str = "jumpstarter.dev/client";
/// Label carrying the node's name (absent on the root).
pub const NAME_LABEL: &str = "jumpstarter.dev/name";
/// Client class of composites.
pub const COMPOSITE_CLIENT: &str = "jumpstarter_driver_composite.client.CompositeClient";

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
        let mut b = ConfigBuilder {
            cfg,
            registry,
            logs,
            grafts,
            memo: HashMap::new(),
            in_progress: Vec::new(),
        };
        let mut children = Vec::new();
        for e in &cfg.export {
            children.push((e.name.clone(), b.child(&e.name, e)?));
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

struct ConfigBuilder<'a> {
    cfg: &'a ExporterConfig,
    registry: &'a Registry,
    logs: &'a LogHub,
    grafts: &'a HashMap<String, Arc<Instance>>,
    memo: HashMap<String, Arc<Instance>>,
    in_progress: Vec<String>,
}

impl ConfigBuilder<'_> {
    fn child(&mut self, path: &str, entry: &ExportEntry) -> Result<Child, ConfigError> {
        match &entry.node {
            DriverNode::Proxy { target_at, .. } => {
                let (target_path, target) =
                    self.cfg.resolve(path).ok_or_else(|| ConfigError::Invalid {
                        at: target_at.clone(),
                        message: format!("`{path}` references a driver that does not exist"),
                    })?;
                if let Some(inst) = self.grafted(&target_path) {
                    return inst.map(Child::Ref).ok_or_else(|| ConfigError::Invalid {
                        at: target_at.clone(),
                        message: format!(
                            "`{path}` references `{target_path}`, which its driver host does not report"
                        ),
                    });
                }
                Ok(Child::Ref(self.build(&target_path, target, target_at)?))
            }
            _ => Ok(Child::Own(self.build(path, entry, &entry.at)?)),
        }
    }

    fn build(
        &mut self,
        path: &str,
        entry: &ExportEntry,
        via: &Source,
    ) -> Result<Arc<Instance>, ConfigError> {
        if let Some(done) = self.memo.get(path) {
            return Ok(done.clone());
        }
        if let Some(graft) = self.grafts.get(path) {
            return Ok(graft.clone());
        }
        if self.in_progress.iter().any(|p| p == path) {
            let mut chain = self.in_progress.clone();
            chain.push(path.to_owned());
            return Err(ConfigError::Invalid {
                at: via.clone(),
                message: format!("driver references form a cycle: {}", chain.join(" -> ")),
            });
        }
        self.in_progress.push(path.to_owned());
        let mut children = Vec::new();
        for c in entry.node.children() {
            let child_path = format!("{path}.{}", c.name);
            children.push((c.name.clone(), self.child(&child_path, c)?));
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
                let driver = factory(&ctx)?;
                Instance {
                    uuid: Uuid::new_v4(),
                    driver,
                    type_name: type_name.clone(),
                    description: description.clone(),
                    methods_description: methods_description.clone(),
                    labels: base.labels,
                    children,
                    resources: Resources::new(),
                }
            }
            DriverNode::Proxy { .. } => unreachable!("proxies are resolved by child()"),
        };
        self.in_progress.pop();
        let instance = Arc::new(instance);
        self.memo.insert(path.to_owned(), instance.clone());
        Ok(instance)
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
                None if node.driver.remote().is_some_and(|h| h.failure().is_some()) => break,
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
