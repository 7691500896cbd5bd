//! Exporter configs: environment overrides, writing, and list output.

use std::path::Path;

use serde_json::{Value as Json, json};

use crate::common::{Env, Metadata, Origin, TlsConfig, grpc_options_json};
use crate::error::ConfigError;
use crate::exporter::{DriverNode, ExportEntry, ExporterConfig, FailureDetection, Hook, Hooks};
use crate::grpc::ChannelOptions;

impl ExporterConfig {
    /// A new config as `jmp config exporter create` makes it (no drivers, default hooks).
    pub fn new(alias: &str, namespace: Option<String>, name: String) -> ExporterConfig {
        ExporterConfig {
            path: None,
            alias: alias.to_owned(),
            metadata: Metadata { namespace, name },
            endpoint: None,
            endpoint_origin: Origin::Default,
            token: None,
            token_origin: Origin::Default,
            tls: TlsConfig::default(),
            grpc_options: Default::default(),
            grpc_config: Default::default(),
            description: None,
            motd: None,
            export: Vec::new(),
            hooks: Hooks::default(),
            failure_detection: FailureDetection::default(),
            driver_host: Default::default(),
            warnings: Vec::new(),
        }
    }

    /// Applies the environment over the file: `JMP_ENDPOINT`, `JMP_TOKEN`, `JMP_NAMESPACE`,
    /// `JMP_NAME`, and `JMP_GRPC_INSECURE` / `JUMPSTARTER_GRPC_INSECURE` (insecure TLS to the
    /// controller).
    pub fn apply_env(&mut self, env: &Env) {
        if let Some(e) = env.get("JMP_ENDPOINT") {
            self.endpoint = Some(e);
            self.endpoint_origin = Origin::Env("JMP_ENDPOINT".into());
        }
        if let Some(t) = env.get("JMP_TOKEN") {
            self.token = Some(t);
            self.token_origin = Origin::Env("JMP_TOKEN".into());
        }
        if let Some(ns) = env.get("JMP_NAMESPACE") {
            self.metadata.namespace = Some(ns);
        }
        if let Some(n) = env.get("JMP_NAME") {
            self.metadata.name = n;
        }
        if env.grpc_insecure() {
            self.tls.insecure = true;
        }
    }

    /// The endpoint and token needed for controller mode.
    pub fn endpoint_and_token(&self) -> Result<(&str, &str), ConfigError> {
        let what = match &self.path {
            Some(p) => format!("exporter config '{}' ({})", self.alias, p.display()),
            None => format!("exporter config '{}'", self.alias),
        };
        match (self.endpoint.as_deref(), self.token.as_deref()) {
            (Some(e), Some(t)) if !e.is_empty() && !t.is_empty() => Ok((e, t)),
            _ => Err(ConfigError::NotFound(format!(
                "endpoint or token not set in {what}; set them in the file or with JMP_ENDPOINT \
                 and JMP_TOKEN"
            ))),
        }
    }

    /// The controller endpoint, parsed ([`crate::Endpoint::parse`]); a malformed one is an
    /// error that points at where it was set (`file:line:col`, `$JMP_ENDPOINT`).
    pub fn controller_endpoint(&self) -> Result<crate::Endpoint, ConfigError> {
        let (endpoint, _) = self.endpoint_and_token()?;
        let what = match &self.path {
            Some(p) => format!("exporter config '{}' ({})", self.alias, p.display()),
            None => format!("exporter config '{}'", self.alias),
        };
        crate::endpoint::parse_at(endpoint, &self.endpoint_origin, &what)
    }

    /// `endpoint` checked when it is set (a direct-mode exporter needs none); a malformed one
    /// is an error at `file:line:col`.
    pub fn check_endpoint(&self) -> Result<(), ConfigError> {
        match self.endpoint.as_deref() {
            Some(e) if !e.trim().is_empty() => {
                crate::endpoint::parse_at(e, &self.endpoint_origin, "the exporter config").map(drop)
            }
            _ => Ok(()),
        }
    }

    /// Channel settings from `grpcConfig` + `grpcOptions`, and the keys not understood.
    pub fn channel_options(&self) -> Result<(ChannelOptions, Vec<String>), ConfigError> {
        ChannelOptions::from_maps(&self.grpc_config, &self.grpc_options)
    }

    /// The file content as upstream writes it.
    pub fn to_json(&self) -> Json {
        let mut m = serde_json::Map::new();
        m.insert("apiVersion".into(), json!(crate::API_VERSION));
        m.insert("kind".into(), json!("ExporterConfig"));
        m.insert(
            "metadata".into(),
            json!({"namespace": self.metadata.namespace, "name": self.metadata.name}),
        );
        m.insert("endpoint".into(), json!(self.endpoint));
        m.insert(
            "tls".into(),
            json!({"ca": self.tls.ca, "insecure": self.tls.insecure}),
        );
        m.insert("token".into(), json!(self.token));
        m.insert("grpcOptions".into(), grpc_options_json(&self.grpc_options));
        if !self.grpc_config.is_empty() {
            m.insert("grpcConfig".into(), grpc_options_json(&self.grpc_config));
        }
        m.insert("description".into(), json!(self.description));
        if let Some(motd) = &self.motd {
            m.insert("motd".into(), json!(motd));
        }
        // Our extension: kept when set, absent otherwise (upstream ignores unknown keys).
        if let Some(python) = &self.driver_host.python {
            m.insert("driverHost".into(), json!({ "python": python }));
        }
        m.insert("export".into(), entries_json(&self.export));
        m.insert(
            "hooks".into(),
            json!({
                "beforeLease": self.hooks.before_lease.as_ref().map(hook_json),
                "afterLease": self.hooks.after_lease.as_ref().map(hook_json),
            }),
        );
        m.insert(
            "failureDetection".into(),
            json!({
                "maxRapidFailures": self.failure_detection.max_rapid_failures,
                "rapidFailureWindow": self.failure_detection.rapid_failure_window,
            }),
        );
        Json::Object(m)
    }

    pub fn to_yaml(&self) -> String {
        crate::emit::to_yaml(&self.to_json())
    }

    /// One item of `jmp config exporter list -o json|yaml`: alias first, path last.
    pub fn list_item_json(&self) -> Json {
        let mut m = serde_json::Map::new();
        m.insert("alias".into(), json!(self.alias));
        if let Json::Object(body) = self.to_json() {
            m.extend(body);
        }
        m.remove("grpcConfig");
        m.remove("motd");
        m.remove("driverHost");
        m.insert(
            "path".into(),
            json!(self.path.as_ref().map(|p| p.display().to_string())),
        );
        Json::Object(m)
    }

    /// Writes the config atomically, mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        crate::write::write_atomic(path, &self.to_yaml(), 0o600)
    }

    /// Where `tls.ca` came from is the file; used by channel builders for messages.
    pub fn tls_origin(&self) -> &Origin {
        &self.tls.ca_origin
    }
}

fn hook_json(h: &Hook) -> Json {
    json!({
        "exec": h.exec,
        "script": h.script,
        "timeout": h.timeout,
        "onFailure": h.on_failure.as_str(),
    })
}

fn entries_json(entries: &[ExportEntry]) -> Json {
    Json::Object(
        entries
            .iter()
            .map(|e| (e.name.clone(), node_json(&e.node)))
            .collect(),
    )
}

fn node_json(node: &DriverNode) -> Json {
    match node {
        DriverNode::Driver {
            type_name,
            config,
            children,
            description,
            methods_description,
            ..
        } => {
            // Every key, defaults included, as upstream's model dump writes a driver node.
            let mut m = serde_json::Map::new();
            m.insert("type".into(), json!(type_name));
            m.insert("description".into(), json!(description));
            m.insert("methods_description".into(), json!(methods_description));
            let cfg = config.to_json();
            m.insert(
                "config".into(),
                if cfg.is_object() { cfg } else { json!({}) },
            );
            m.insert("children".into(), entries_json(children));
            Json::Object(m)
        }
        DriverNode::Composite { children, .. } => json!({"children": entries_json(children)}),
        DriverNode::Proxy { target, .. } => json!({"ref": target}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_config_reads_back_and_env_overrides() {
        let mut e = ExporterConfig::new("e1", Some("ns".into()), "en".into());
        e.endpoint = Some("ep:1".into());
        e.token = Some("t".into());
        let text = e.to_yaml();
        assert_eq!(
            text,
            "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata:\n  namespace: ns\n  \
             name: en\nendpoint: ep:1\ntls:\n  ca: ''\n  insecure: false\ntoken: t\ngrpcOptions: {}\n\
             description: null\nexport: {}\nhooks:\n  beforeLease: null\n  afterLease: null\n\
             failureDetection:\n  maxRapidFailures: 5\n  rapidFailureWindow: 60\n"
        );
        let mut back = ExporterConfig::parse(&text, Path::new("e1.yaml")).unwrap();
        assert!(back.warnings.is_empty(), "{:?}", back.warnings);
        back.apply_env(&Env::from_pairs([
            ("JMP_ENDPOINT", "ctl:2"),
            ("JMP_TOKEN", "t2"),
            ("JMP_NAME", "other"),
            ("JMP_GRPC_INSECURE", "1"),
        ]));
        assert_eq!(back.endpoint_and_token().unwrap(), ("ctl:2", "t2"));
        assert_eq!(back.metadata.name, "other");
        assert!(back.tls.insecure);
    }

    #[test]
    fn export_trees_round_trip() {
        let text = "apiVersion: jumpstarter.dev/v1alpha1\nkind: ExporterConfig\nmetadata: {namespace: n, name: e}\n\
                    export:\n  power:\n    type: jumpstarter_driver_power.driver.MockPower\n    description: P\n\
                    \x20   methods_description: {'on': turn on}\n    config: {log_level: 'off', x: 0o17}\n\
                    \x20 group:\n    children:\n      s: {type: a.B}\n  alias: {ref: power}\n\
                    hooks:\n  beforeLease: {script: 'echo hi', timeout: 5, onFailure: exit}\n";
        let c = ExporterConfig::parse(text, Path::new("e.yaml")).unwrap();
        let out = c.to_yaml();
        let back = ExporterConfig::parse(&out, Path::new("e.yaml")).unwrap();
        assert_eq!(back.to_json(), c.to_json(), "{out}");
        assert!(out.contains("'on': turn on"), "{out}");
        assert!(out.contains("log_level: 'off'"), "{out}");
    }
}
