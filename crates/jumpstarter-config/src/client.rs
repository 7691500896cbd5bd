//! `kind: ClientConfig` (`<root>/clients/<alias>.yaml`): how a client reaches its controller.
//!
//! Same file format as upstream 0.9.0: fields, defaults and the order they are written in
//! (apiVersion, kind, metadata, endpoint, tls, token, refresh_token, grpcOptions, drivers,
//! shell, and leases only when not all defaults). Unknown keys are kept out of the model and
//! reported as warnings.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{Value as Json, json};

use crate::common::{
    Env, GrpcOptionValue, GrpcOptions, Metadata, Origin, TlsConfig, grpc_options_json,
};
use crate::drivers::Drivers;
use crate::endpoint::Endpoint;
use crate::error::{ConfigError, ConfigWarning};
use crate::grpc::ChannelOptions;
use crate::load::{self, Ctx, Extra};
use crate::yaml::{Node, Value};

/// `shell:` of a client config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShellConfig {
    /// Load the user's rc/profile files in `jmp shell`.
    pub use_profiles: bool,
}

/// `leases:` of a client config.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseSettings {
    /// Seconds to wait for a lease to be acquired (>= 5, default 7200).
    pub acquisition_timeout: u64,
    /// Seconds to retry an unreachable exporter (>= 0, default 300; 0 disables).
    pub retry_timeout: f64,
    /// Seconds the Dial retry loop waits for an exporter (> 0, default 30; never written).
    pub dial_timeout: f64,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            acquisition_timeout: 7200,
            retry_timeout: 300.0,
            dial_timeout: 30.0,
        }
    }
}

impl LeaseSettings {
    fn is_default(&self) -> bool {
        self.acquisition_timeout == 7200 && self.retry_timeout == 300.0
    }
}

/// A client config.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// The file it came from (None for a config built from the environment).
    pub path: Option<PathBuf>,
    /// File name up to the first dot (upstream's rule), or `default`.
    pub alias: String,
    pub metadata: Metadata,
    /// Controller endpoint: `host:port` or another of grpc's forms ([`Endpoint::parse`]).
    pub endpoint: Option<String>,
    pub tls: TlsConfig,
    /// Bearer token (a JWT for clients).
    pub token: Option<String>,
    pub refresh_token: Option<String>,
    /// `grpcOptions` (upstream's field).
    pub grpc_options: GrpcOptions,
    /// `grpcConfig` (the documented name); `grpcOptions` wins per key.
    pub grpc_config: GrpcOptions,
    pub drivers: Drivers,
    pub shell: ShellConfig,
    pub leases: LeaseSettings,
    /// Where `endpoint` and `token` came from (file, environment, flag), for messages.
    pub endpoint_origin: Origin,
    pub token_origin: Origin,
    /// Valid but suspicious content.
    pub warnings: Vec<ConfigWarning>,
}

impl ClientConfig {
    /// A new config as `jmp config client create` makes it.
    pub fn new(alias: &str, namespace: Option<String>, name: String) -> ClientConfig {
        ClientConfig {
            path: None,
            alias: alias.to_owned(),
            metadata: Metadata { namespace, name },
            endpoint: None,
            tls: TlsConfig::default(),
            token: None,
            refresh_token: None,
            grpc_options: GrpcOptions::new(),
            grpc_config: GrpcOptions::new(),
            drivers: Drivers::default(),
            shell: ShellConfig::default(),
            leases: LeaseSettings::default(),
            endpoint_origin: Origin::Default,
            token_origin: Origin::Default,
            warnings: Vec::new(),
        }
    }

    /// Reads and validates a client config file.
    pub fn load(path: &Path) -> Result<ClientConfig, ConfigError> {
        let text = load::read(path)?;
        let mut cfg = Self::parse(&text, path)?;
        cfg.path = Some(path.to_owned());
        cfg.alias = client_alias(path);
        Ok(cfg)
    }

    /// Parses config text; `file` names it in messages.
    pub fn parse(text: &str, file: &Path) -> Result<ClientConfig, ConfigError> {
        let load::Document {
            file,
            root,
            mut warnings,
            ..
        } = load::document(
            text,
            file,
            "the file is empty; expected a ClientConfig (apiVersion: jumpstarter.dev/v1alpha1, \
             kind: ClientConfig, metadata, endpoint, token); create one with \
             `jmp config client create`",
        )?;
        let ctx = Ctx { file: &file };
        let mut top = ctx.mapping(&root, "a ClientConfig")?;
        ctx.header(&mut top, "ClientConfig", |found| match found {
            "ExporterConfig" => {
                " (this is an exporter config: it belongs in exporters/ and is used with \
                 --exporter / --exporter-config)"
            }
            "UserConfig" => " (this is the user config: it belongs in config.yaml)",
            _ => "",
        })?;
        let metadata = match top.take("metadata") {
            Some(m) if !m.is_null() => Some(ctx.metadata(m, &mut warnings)?),
            _ => None,
        };
        let mut cfg = ClientConfig::new(
            "default",
            metadata.as_ref().and_then(|m| m.namespace.clone()),
            metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
        );
        if metadata.is_none() {
            return Err(ctx.err(
                &root,
                "metadata is required (metadata: {namespace: ..., name: ...}), \
                 or set JMP_NAMESPACE and JMP_NAME",
            ));
        }
        if let Some(v) = top.take("endpoint") {
            cfg.endpoint = ctx.opt_string(v, "endpoint")?;
            cfg.endpoint_origin = Origin::File(ctx.at(v.pos));
        }
        if let Some(t) = top.take("tls") {
            cfg.tls = ctx.tls(t, &mut warnings)?;
        }
        if let Some(v) = top.take("token") {
            cfg.token = ctx.opt_string(v, "token")?;
            cfg.token_origin = Origin::File(ctx.at(v.pos));
        }
        if let Some(v) = top.take("refresh_token") {
            cfg.refresh_token = ctx.opt_string(v, "refresh_token")?;
        }
        if let Some(v) = top.take("grpcOptions") {
            cfg.grpc_options = ctx.grpc_options(v, "grpcOptions")?;
        }
        if let Some(v) = top.take("grpcConfig") {
            cfg.grpc_config = ctx.grpc_options(v, "grpcConfig")?;
        }
        if let Some(d) = top.take("drivers")
            && !d.is_null()
        {
            let mut dm = ctx.mapping(d, "drivers")?;
            if let Some(a) = dm.take("allow") {
                cfg.drivers.allow = allow_list(&ctx, a)?;
            }
            if let Some(u) = dm.take("unsafe") {
                cfg.drivers.unsafe_ = ctx.boolean(u, "drivers.unsafe")?;
            }
            dm.finish(&ctx, "drivers", Extra::Refuse, &mut warnings)?;
        }
        if let Some(s) = top.take("shell")
            && !s.is_null()
        {
            let mut sm = ctx.mapping(s, "shell")?;
            if let Some(u) = sm.take("use_profiles") {
                cfg.shell.use_profiles = ctx.boolean(u, "shell.use_profiles")?;
            }
            sm.finish(&ctx, "shell", Extra::Warn, &mut warnings)?;
        }
        if let Some(l) = top.take("leases")
            && !l.is_null()
        {
            let mut lm = ctx.mapping(l, "leases")?;
            if let Some(v) = lm.take("acquisition_timeout") {
                let secs = ctx.uint(v, "leases.acquisition_timeout")?;
                if secs < 5 {
                    return Err(ctx.err(
                        v,
                        "leases.acquisition_timeout must be at least 5 seconds (the lease poll interval)",
                    ));
                }
                cfg.leases.acquisition_timeout = secs;
            }
            if let Some(v) = lm.take("retry_timeout") {
                cfg.leases.retry_timeout = seconds(&ctx, v, "leases.retry_timeout", true)?;
            }
            if let Some(v) = lm.take("dial_timeout") {
                cfg.leases.dial_timeout = seconds(&ctx, v, "leases.dial_timeout", false)?;
            }
            lm.finish(&ctx, "leases", Extra::Refuse, &mut warnings)?;
        }
        top.take("alias");
        top.take("path");
        // Upstream refuses unknown keys here (and in drivers, leases, metadata).
        top.finish(&ctx, "the ClientConfig", Extra::Refuse, &mut warnings)?;
        cfg.warnings = warnings;
        Ok(cfg)
    }

    /// A config made only from `JMP_*` variables, as upstream builds one when both `JMP_NAME`
    /// and `JMP_NAMESPACE` are set and no config is selected. `None` when they are not set.
    pub fn from_env(env: &Env) -> Result<Option<ClientConfig>, ConfigError> {
        let (Some(namespace), Some(name)) = (env.get("JMP_NAMESPACE"), env.get("JMP_NAME")) else {
            return Ok(None);
        };
        let mut cfg = ClientConfig::new("default", Some(namespace), name);
        let json_var = |var: &str| -> Result<Option<Json>, ConfigError> {
            env.get(var)
                .map(|v| {
                    serde_json::from_str::<Json>(&v).map_err(|e| ConfigError::Env {
                        var: var.into(),
                        message: format!("not valid JSON ({e})"),
                    })
                })
                .transpose()
        };
        let env_err = |var: &str, message: &str| ConfigError::Env {
            var: var.into(),
            message: message.into(),
        };
        if let Some(v) = env.get("JMP_REFRESH_TOKEN") {
            cfg.refresh_token = Some(v);
        }
        if let Some(tls) = json_var("JMP_TLS")? {
            let obj = tls.as_object().ok_or_else(|| {
                env_err("JMP_TLS", r#"expected {"ca": "...", "insecure": false}"#)
            })?;
            if let Some(ca) = obj.get("ca") {
                cfg.tls.ca = ca.as_str().unwrap_or_default().to_owned();
                cfg.tls.ca_origin = Origin::Env("JMP_TLS".into());
            }
            if let Some(i) = obj.get("insecure") {
                cfg.tls.insecure = i
                    .as_bool()
                    .ok_or_else(|| env_err("JMP_TLS", "insecure must be true or false"))?;
            }
        }
        if let Some(g) = json_var("JMP_GRPCOPTIONS")? {
            let obj = g
                .as_object()
                .ok_or_else(|| env_err("JMP_GRPCOPTIONS", "expected a JSON object"))?;
            for (k, v) in obj {
                let v = match v {
                    Json::String(s) => GrpcOptionValue::Str(s.clone()),
                    Json::Number(n) if n.as_i64().is_some() => {
                        GrpcOptionValue::Int(n.as_i64().unwrap_or_default())
                    }
                    _ => {
                        return Err(env_err(
                            "JMP_GRPCOPTIONS",
                            "values must be strings or integers",
                        ));
                    }
                };
                cfg.grpc_options.insert(k.clone(), v);
            }
        }
        if let Some(d) = json_var("JMP_DRIVERS")? {
            if let Some(a) = d.get("allow") {
                cfg.drivers.allow = match a {
                    Json::String(s) => Drivers::split_list(s),
                    Json::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| env_err("JMP_DRIVERS", "allow must be a list of strings"))?,
                    _ => return Err(env_err("JMP_DRIVERS", "allow must be a list of strings")),
                };
            }
            if let Some(u) = d.get("unsafe") {
                cfg.drivers.unsafe_ = u
                    .as_bool()
                    .ok_or_else(|| env_err("JMP_DRIVERS", "unsafe must be true or false"))?;
            }
        }
        if let Some(s) = json_var("JMP_SHELL")?
            && let Some(u) = s.get("use_profiles")
        {
            cfg.shell.use_profiles = u.as_bool().unwrap_or(false);
        }
        if let Some(l) = json_var("JMP_LEASES")? {
            if let Some(a) = l.get("acquisition_timeout") {
                cfg.leases.acquisition_timeout = a
                    .as_u64()
                    .filter(|a| *a >= 5)
                    .ok_or_else(|| env_err("JMP_LEASES", "acquisition_timeout must be >= 5"))?;
            }
            if let Some(r) = l.get("retry_timeout") {
                cfg.leases.retry_timeout = r
                    .as_f64()
                    .filter(|r| *r >= 0.0)
                    .ok_or_else(|| env_err("JMP_LEASES", "retry_timeout must be >= 0"))?;
            }
        }
        cfg.apply_env(env)?;
        Ok(Some(cfg))
    }

    /// Applies the environment over the file (the seeds' contract; upstream 0.9.0 ignores
    /// these for file configs): `JMP_NAMESPACE`, `JMP_NAME`, `JMP_ENDPOINT`, `JMP_TOKEN`,
    /// `JMP_DRIVERS_ALLOW`, `JMP_DRIVERS_UNSAFE`, and `JMP_GRPC_INSECURE` /
    /// `JUMPSTARTER_GRPC_INSECURE` (insecure TLS).
    pub fn apply_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        if let Some(ns) = env.get("JMP_NAMESPACE") {
            self.metadata.namespace = Some(ns);
        }
        if let Some(name) = env.get("JMP_NAME") {
            self.metadata.name = name;
        }
        if let Some(e) = env.get("JMP_ENDPOINT") {
            self.endpoint = Some(e);
            self.endpoint_origin = Origin::Env("JMP_ENDPOINT".into());
        }
        if let Some(t) = env.get("JMP_TOKEN") {
            self.token = Some(t);
            self.token_origin = Origin::Env("JMP_TOKEN".into());
        }
        self.drivers.apply_env(env)?;
        if env.grpc_insecure() {
            self.tls.insecure = true;
        }
        Ok(())
    }

    /// Where this config came from, for messages: the file, or "the environment".
    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("client config '{}' ({})", self.alias, p.display()),
            None => "the client config from the environment (JMP_NAME, JMP_NAMESPACE)".into(),
        }
    }

    /// The endpoint and token needed to talk to the controller.
    pub fn endpoint_and_token(&self) -> Result<(&str, &str), ConfigError> {
        match (self.endpoint.as_deref(), self.token.as_deref()) {
            (Some(e), Some(t)) if !e.is_empty() && !t.is_empty() => Ok((e, t)),
            (e, _) => Err(ConfigError::NotFound(format!(
                "{} has no {}; set it in the file (jmp config client create) or with {}",
                self.describe(),
                if e.is_none_or(str::is_empty) {
                    "endpoint"
                } else {
                    "token"
                },
                if e.is_none_or(str::is_empty) {
                    "JMP_ENDPOINT"
                } else {
                    "JMP_TOKEN"
                },
            ))),
        }
    }

    /// The controller endpoint, parsed ([`Endpoint::parse`]); a malformed one is an error that
    /// points at where it was set (`file:line:col`, `$JMP_ENDPOINT`).
    pub fn controller_endpoint(&self) -> Result<Endpoint, ConfigError> {
        let (endpoint, _) = self.endpoint_and_token()?;
        crate::endpoint::parse_at(endpoint, &self.endpoint_origin, &self.describe())
    }

    /// Parses config text as [`ClientConfig::parse`] does, and also refuses what a config
    /// written by hand must not have (what `jmp config client edit` accepts): unknown keys,
    /// a missing, empty or malformed `endpoint`. Every error names `file:line:col`.
    pub fn parse_strict(text: &str, file: &Path) -> Result<ClientConfig, ConfigError> {
        let cfg = Self::parse(text, file)?;
        if let Some(w) = cfg
            .warnings
            .iter()
            .find(|w| w.message.starts_with("unknown key "))
        {
            let key = w.message.trim_end_matches(" is ignored");
            return Err(ConfigError::Invalid {
                at: w.at.clone(),
                message: format!(
                    "{key}; the keys of a ClientConfig are apiVersion, kind, metadata, endpoint, \
                     tls, token, refresh_token, grpcOptions, grpcConfig, drivers, shell, leases"
                ),
            });
        }
        match cfg.endpoint.as_deref().map(str::trim) {
            None | Some("") => {
                let at = match &cfg.endpoint_origin {
                    Origin::File(at) => at.clone(),
                    _ => crate::error::Source {
                        file: std::sync::Arc::from(file),
                        pos: crate::yaml::Pos { line: 1, col: 1 },
                    },
                };
                Err(ConfigError::Invalid {
                    at,
                    message: "the ClientConfig has no endpoint; add `endpoint: HOST:PORT` \
                              (the controller's address)"
                        .into(),
                })
            }
            Some(e) => {
                crate::endpoint::parse_at(e, &cfg.endpoint_origin, &cfg.describe())?;
                Ok(cfg)
            }
        }
    }

    /// The token's claims (`exp`, `iss`, `sub`...), decoded without verification. Client
    /// tokens are JWTs; anything else is an error that says where the token came from.
    pub fn token_claims(&self) -> Result<Json, ConfigError> {
        let (_, token) = self.endpoint_and_token()?;
        decode_jwt(token).map_err(|why| {
            let msg = format!(
                "the token is not a JWT ({why}); client tokens are JWTs issued by the controller: \
                 `jmp-controller admin config client {}` prints this client's config with its token",
                self.metadata.name
            );
            match &self.token_origin {
                Origin::File(at) => ConfigError::Invalid {
                    at: at.clone(),
                    message: msg,
                },
                Origin::Env(var) => ConfigError::Env {
                    var: var.clone(),
                    message: msg,
                },
                _ => ConfigError::NotFound(format!("{}: {msg}", self.describe())),
            }
        })
    }

    /// Channel settings from `grpcConfig` + `grpcOptions`, and the keys not understood.
    pub fn channel_options(&self) -> Result<(ChannelOptions, Vec<String>), ConfigError> {
        ChannelOptions::from_maps(&self.grpc_config, &self.grpc_options)
            .map_err(|e| ConfigError::NotFound(format!("{}: {e}", self.describe())))
    }

    /// The file content, as upstream writes it.
    pub fn to_json(&self) -> Json {
        let mut m = serde_json::Map::new();
        m.insert("apiVersion".into(), json!(crate::API_VERSION));
        m.insert("kind".into(), json!("ClientConfig"));
        m.insert(
            "metadata".into(),
            json!({"namespace": self.metadata.namespace, "name": self.metadata.name}),
        );
        if let Some(e) = &self.endpoint {
            m.insert("endpoint".into(), json!(e));
        }
        m.insert(
            "tls".into(),
            json!({"ca": self.tls.ca, "insecure": self.tls.insecure}),
        );
        if let Some(t) = &self.token {
            m.insert("token".into(), json!(t));
        }
        if let Some(t) = &self.refresh_token {
            m.insert("refresh_token".into(), json!(t));
        }
        m.insert("grpcOptions".into(), grpc_options_json(&self.grpc_options));
        if !self.grpc_config.is_empty() {
            m.insert("grpcConfig".into(), grpc_options_json(&self.grpc_config));
        }
        m.insert(
            "drivers".into(),
            json!({"allow": self.drivers.allow, "unsafe": self.drivers.unsafe_}),
        );
        m.insert(
            "shell".into(),
            json!({"use_profiles": self.shell.use_profiles}),
        );
        if !self.leases.is_default() {
            m.insert("leases".into(), self.leases_json());
        }
        Json::Object(m)
    }

    fn leases_json(&self) -> Json {
        json!({
            "acquisition_timeout": self.leases.acquisition_timeout,
            "retry_timeout": self.leases.retry_timeout,
        })
    }

    /// The YAML text of the file.
    pub fn to_yaml(&self) -> String {
        crate::emit::to_yaml(&self.to_json())
    }

    /// One item of `jmp config client list -o json|yaml` (upstream's model dump: alias and
    /// path first, every field, secrets included).
    pub fn list_item_json(&self) -> Json {
        let mut m = serde_json::Map::new();
        m.insert("alias".into(), json!(self.alias));
        m.insert(
            "path".into(),
            json!(self.path.as_ref().map(|p| p.display().to_string())),
        );
        m.insert("apiVersion".into(), json!(crate::API_VERSION));
        m.insert("kind".into(), json!("ClientConfig"));
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
        m.insert("refresh_token".into(), json!(self.refresh_token));
        m.insert("grpcOptions".into(), grpc_options_json(&self.grpc_options));
        m.insert(
            "drivers".into(),
            json!({"allow": self.drivers.allow, "unsafe": self.drivers.unsafe_}),
        );
        m.insert(
            "shell".into(),
            json!({"use_profiles": self.shell.use_profiles}),
        );
        m.insert("leases".into(), self.leases_json());
        Json::Object(m)
    }

    /// Writes the config to `path` atomically, mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        crate::write::write_atomic(path, &self.to_yaml(), 0o600)
    }
}

/// The alias of a client config file: its name up to the first dot (upstream's rule, so
/// `my.dotted.yaml` is `my`).
pub fn client_alias(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .filter(|a| !a.is_empty())
        .unwrap_or("default")
        .to_owned()
}

fn allow_list(ctx: &Ctx<'_>, node: &Node) -> Result<Vec<String>, ConfigError> {
    match &node.value {
        Value::Null => Ok(Vec::new()),
        Value::Str(s) => Ok(Drivers::split_list(s)),
        Value::Seq(items) => items
            .iter()
            .map(|i| ctx.string(i, "drivers.allow entries"))
            .collect(),
        _ => Err(ctx.err(
            node,
            format!(
                "drivers.allow must be a list of patterns (or a comma-separated string), found {}",
                node.kind_name()
            ),
        )),
    }
}

fn seconds(ctx: &Ctx<'_>, node: &Node, what: &str, zero_ok: bool) -> Result<f64, ConfigError> {
    let v = match &node.value {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Str(s) => s.trim().parse::<f64>().map_err(|_| {
            ctx.err(
                node,
                format!("{what} must be a number of seconds, found '{s}'"),
            )
        })?,
        _ => {
            return Err(ctx.err(
                node,
                format!(
                    "{what} must be a number of seconds, found {}",
                    node.kind_name()
                ),
            ));
        }
    };
    if !v.is_finite() || v < 0.0 || (!zero_ok && v == 0.0) {
        return Err(ctx.err(
            node,
            format!(
                "{what} must be {} seconds",
                if zero_ok { "0 or more" } else { "more than 0" }
            ),
        ));
    }
    Ok(v)
}

/// Why a token is not a JWT whose payload can be read.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("expected three dot-separated parts, found {0}")]
    Parts(usize),
    #[error("the payload is not base64url: {0}")]
    Base64(#[source] base64::DecodeError),
    #[error("the payload is not JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("the payload is not a JSON object")]
    NotObject,
}

/// Decodes a JWT's payload without verifying it.
pub fn decode_jwt(token: &str) -> Result<Json, JwtError> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 3 {
        return Err(JwtError::Parts(parts.len()));
    }
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1].trim_end_matches('='))
        .map_err(JwtError::Base64)?;
    let claims: Json = serde_json::from_slice(&payload).map_err(JwtError::Json)?;
    if !claims.is_object() {
        return Err(JwtError::NotObject);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"apiVersion: jumpstarter.dev/v1alpha1
kind: ClientConfig
metadata:
  namespace: jumpstarter-lab
  name: myclient
tls:
  insecure: false
  ca: ""
endpoint: "jumpstarter.my-lab.com:1443"
token: "******************"
drivers:
  allow: ["jumpstarter_drivers_*", "vendorpackage.*"]
  unsafe: false
"#;

    fn parse(text: &str) -> Result<ClientConfig, ConfigError> {
        ClientConfig::parse(text, Path::new("c.yaml"))
    }

    #[test]
    fn the_seed_example_loads() {
        let c = parse(FULL).unwrap();
        assert_eq!(c.metadata.name, "myclient");
        assert_eq!(c.metadata.namespace.as_deref(), Some("jumpstarter-lab"));
        assert_eq!(c.endpoint.as_deref(), Some("jumpstarter.my-lab.com:1443"));
        assert_eq!(
            c.drivers.allow,
            ["jumpstarter_drivers_*", "vendorpackage.*"]
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.leases, LeaseSettings::default());
    }

    #[test]
    fn written_text_reads_back_identically() {
        let mut c = parse(FULL).unwrap();
        c.refresh_token = Some("r".into());
        c.grpc_options
            .insert("grpc.keepalive_time_ms".into(), GrpcOptionValue::Int(5));
        c.shell.use_profiles = true;
        c.leases.retry_timeout = 12.5;
        let text = c.to_yaml();
        let back = parse(&text).unwrap();
        assert_eq!(back.to_json(), c.to_json());
        assert!(text.starts_with(
            "apiVersion: jumpstarter.dev/v1alpha1\nkind: ClientConfig\nmetadata:\n  namespace: jumpstarter-lab\n"
        ));
        assert!(text.contains("leases:\n  acquisition_timeout: 7200\n  retry_timeout: 12.5\n"));
        // Defaults are not written for leases.
        assert!(!parse(FULL).unwrap().to_yaml().contains("leases"));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let err = parse("kind: ExporterConfig\n").unwrap_err().to_string();
        assert!(
            err.starts_with("c.yaml:1:7: kind must be 'ClientConfig'"),
            "{err}"
        );
        assert!(err.contains("belongs in exporters/"), "{err}");
        let err = parse("kind: ClientConfig\n").unwrap_err().to_string();
        assert!(err.contains("metadata is required"), "{err}");
        let err = parse("[1, 2\n").unwrap_err().to_string();
        assert!(err.starts_with("c.yaml:"), "{err}");
        let err = parse("metadata: {name: a}\nleases: {acquisition_timeout: 3}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 5 seconds"), "{err}");
        let err = parse("metadata: {name: a}\ndrivers: {allow: 3}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.yaml:2:18: drivers.allow must be a list"),
            "{err}"
        );
        let c =
            parse("metadata: {name: a}\nshell: {bogus: 1}\ndrivers: {allow: 'a.*,b'}\n").unwrap();
        assert_eq!(c.drivers.allow, ["a.*", "b"]);
        assert!(
            c.warnings[0]
                .to_string()
                .contains("unknown key `bogus` in shell is ignored")
        );
        // Where upstream refuses unknown keys (pydantic extra=forbid), so do we.
        let err = parse("metadata: {name: a}\nbogus: 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "c.yaml:2:1: unknown key `bogus` in the ClientConfig; the keys here are: "
            ),
            "{err}"
        );
        let err = parse("metadata: {name: a}\ndrivers: {alow: []}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "c.yaml:2:11: unknown key `alow` in drivers; did you mean `allow`?"
        );
        let err = parse("metadata: {name: a}\nendpont: x:1\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "c.yaml:2:1: unknown key `endpont` in the ClientConfig; did you mean `endpoint`?"
        );
    }

    #[test]
    fn env_overrides_and_env_only_configs() {
        let mut c = parse(FULL).unwrap();
        c.apply_env(&Env::from_pairs([
            ("JMP_ENDPOINT", "other:1"),
            ("JMP_TOKEN", "t2"),
            ("JMP_NAME", "n2"),
            ("JUMPSTARTER_GRPC_INSECURE", "1"),
            ("JMP_DRIVERS_ALLOW", "x.*"),
        ]))
        .unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("other:1"));
        assert_eq!(c.token.as_deref(), Some("t2"));
        assert_eq!(c.metadata.name, "n2");
        assert_eq!(c.metadata.namespace.as_deref(), Some("jumpstarter-lab"));
        assert!(c.tls.insecure);
        assert_eq!(c.drivers.allow, ["x.*"]);
        let err = c.token_claims().unwrap_err().to_string();
        assert!(
            err.starts_with("$JMP_TOKEN: the token is not a JWT"),
            "{err}"
        );

        assert!(
            ClientConfig::from_env(&Env::from_pairs([("JMP_NAME", "a")]))
                .unwrap()
                .is_none()
        );
        let e = ClientConfig::from_env(&Env::from_pairs([
            ("JMP_NAME", "a"),
            ("JMP_NAMESPACE", "ns"),
            ("JMP_ENDPOINT", "ctl:443"),
            ("JMP_TLS", r#"{"ca": "", "insecure": true}"#),
            ("JMP_GRPCOPTIONS", r#"{"grpc.keepalive_time_ms": 100}"#),
            ("JMP_LEASES", r#"{"acquisition_timeout": 60}"#),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(e.alias, "default");
        assert!(e.tls.insecure);
        assert_eq!(e.leases.acquisition_timeout, 60);
        assert_eq!(
            e.grpc_options["grpc.keepalive_time_ms"],
            GrpcOptionValue::Int(100)
        );
        let err = ClientConfig::from_env(&Env::from_pairs([
            ("JMP_NAME", "a"),
            ("JMP_NAMESPACE", "ns"),
            ("JMP_TLS", "{bad"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("$JMP_TLS: not valid JSON"), "{err}");
    }

    #[test]
    fn jwt_claims() {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!(
            "{}.{}.sig",
            enc(r#"{"alg":"none"}"#),
            enc(r#"{"exp":5,"iss":"x"}"#)
        );
        assert_eq!(decode_jwt(&jwt).unwrap()["exp"], 5);
        assert!(decode_jwt("abc").unwrap_err().to_string().contains("three"));
        assert!(
            decode_jwt("a.!!.c")
                .unwrap_err()
                .to_string()
                .contains("base64url")
        );
        let c = parse("metadata: {name: a}\nendpoint: e:1\ntoken: nope\n").unwrap();
        let err = c.token_claims().unwrap_err().to_string();
        assert!(
            err.starts_with("c.yaml:3:8: the token is not a JWT"),
            "{err}"
        );
    }

    #[test]
    fn alias_is_the_name_up_to_the_first_dot() {
        assert_eq!(client_alias(Path::new("/x/c1.yaml")), "c1");
        assert_eq!(client_alias(Path::new("/x/my.dotted.yaml")), "my");
    }
}
