//! The ExporterConfig model: the types a loaded file becomes, and walking the export tree.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::common::{GrpcOptions, Metadata, Origin, TlsConfig};
use crate::driver_config::DriverConfig;
use crate::error::{ConfigError, ConfigWarning, Source};

/// The upstream type string of the composite driver.
pub const COMPOSITE_TYPE: &str = "jumpstarter_driver_composite.driver.Composite";
/// The upstream type string of the proxy driver (what `ref:` nodes become).
pub const PROXY_TYPE: &str = "jumpstarter_driver_composite.driver.Proxy";

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
    /// Controller endpoint: `host:port` or another of grpc's forms ([`crate::Endpoint`]).
    pub endpoint: Option<String>,
    /// Where `endpoint` came from (file position, `JMP_ENDPOINT`), for messages.
    pub endpoint_origin: crate::common::Origin,
    pub token: Option<String>,
    /// Where `token` was set (the file's `token:` or `JMP_TOKEN`), for errors.
    pub token_origin: Origin,
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
    /// Checks that the token (if any) has a JWT's shape: three base64url parts, the middle one
    /// a JSON object. Controller mode calls it before connecting, so a pasted fragment or a
    /// placeholder is named with its position instead of being refused by the controller.
    pub fn check_token(&self) -> Result<(), ConfigError> {
        let Some(token) = self.token.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(());
        };
        let Err(why) = crate::client::decode_jwt(token) else {
            return Ok(());
        };
        let message = format!(
            "the token is not a JWT ({why}); exporter tokens are JWTs issued by the controller: \
             `jmp-controller admin config exporter {}` prints this exporter's config with its token",
            self.metadata.name
        );
        Err(match &self.token_origin {
            Origin::File(at) => ConfigError::Invalid {
                at: at.clone(),
                message,
            },
            Origin::Env(var) => ConfigError::Env {
                var: var.clone(),
                message,
            },
            _ => ConfigError::NotFound(message),
        })
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
}

static EMPTY: Vec<ExportEntry> = Vec::new();
