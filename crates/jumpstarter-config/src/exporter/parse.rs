//! Reading an ExporterConfig file: the top-level fields, the export tree's node shapes and
//! the hooks, on top of the shared prologue in [`crate::load`].

use std::path::Path;

use super::model::{
    DriverHostConfig, DriverNode, ExportEntry, ExporterConfig, FailureDetection, Hook, HookFailure,
    Hooks, PROXY_TYPE,
};
use crate::common::{Origin, TlsConfig};
use crate::driver_config::DriverConfig;
use crate::error::{ConfigError, ConfigWarning};
use crate::load::{self, Ctx, Extra};
use crate::yaml::{Node, Value};

impl ExporterConfig {
    /// Reads and validates an exporter config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = load::read(path)?;
        let mut cfg = Self::parse(&text, path)?;
        cfg.path = Some(path.to_owned());
        cfg.alias = crate::paths::exporter_alias(path);
        Ok(cfg)
    }

    /// Parses and validates config text; `file` is used in error messages.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let load::Document {
            file,
            root,
            mut warnings,
            anchors,
        } = load::document(
            text,
            file,
            "the file is empty; expected an ExporterConfig mapping \
             (apiVersion: jumpstarter.dev/v1alpha1, kind: ExporterConfig, metadata, export)",
        )?;
        let ctx = Ctx { file: &file };
        let mut top = ctx.mapping(&root, "an ExporterConfig")?;
        ctx.header(
            &mut top,
            "ExporterConfig",
            |_| " (is this file in the right folder?)",
        )?;
        let metadata = match top.take("metadata") {
            Some(m) if !m.is_null() => ctx.metadata(m, &mut warnings)?,
            _ => {
                return Err(ctx.err(
                    &root,
                    "metadata is required (metadata: {namespace: ..., name: ...})",
                ));
            }
        };
        let (endpoint, endpoint_origin) = match top.take("endpoint") {
            Some(v) => (
                ctx.opt_string(v, "endpoint")?,
                crate::common::Origin::File(ctx.at(v.pos)),
            ),
            None => (None, crate::common::Origin::Default),
        };
        let token_node = top.take("token");
        let token = token_node
            .map(|v| ctx.opt_string(v, "token"))
            .transpose()?
            .flatten();
        let token_origin = token_node.map_or(Origin::Default, |v| Origin::File(ctx.at(v.pos)));
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
                fm.finish(&ctx, "failureDetection", Extra::Warn, &mut warnings)?;
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
                dm.finish(&ctx, "driverHost", Extra::Warn, &mut warnings)?;
                DriverHostConfig { python }
            }
            _ => DriverHostConfig::default(),
        };
        // Upstream writes `alias` and `path` into nothing, but tolerate them.
        top.take("alias");
        top.take("path");
        // A stray top-level key is refused (upstream ignores it): `exports:` or a driver
        // written at the top instead of under `export:` would leave the exporter without it.
        top.tolerate_anchor_holders(&anchors);
        top.finish(&ctx, "the ExporterConfig", Extra::Refuse, &mut warnings)?;

        let cfg = ExporterConfig {
            path: None,
            alias: "default".into(),
            metadata,
            endpoint,
            endpoint_origin,
            token,
            token_origin,
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
}

impl Ctx<'_> {
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
            m.finish(self, path, Extra::Warn, warnings)?;
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
            m.finish(self, path, Extra::Warn, warnings)?;
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
        m.finish(self, path, Extra::Warn, warnings)?;
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
        m.finish(self, "hooks", Extra::Warn, warnings)?;
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
        m.finish(self, what, Extra::Warn, warnings)?;
        Ok(Hook {
            script,
            exec,
            timeout,
            on_failure,
            at: self.at(node.pos),
        })
    }
}
