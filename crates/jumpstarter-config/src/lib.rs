//! Jumpstarter configuration files.
//!
//! * [`yaml`]: YAML parsing into nodes that remember their line and column, with YAML 1.1
//!   scalar rules (what upstream's PyYAML uses) and warnings for surprising constructs.
//! * [`exporter`]: the `ExporterConfig` model (`export` tree, hooks, TLS, gRPC options...).
//! * [`paths`]: where configuration files live and how aliases map to files.
//! * [`driver_config`]: a driver's `config:` mapping, deserialized with errors that point at
//!   the offending line.

pub mod driver_config;
pub mod error;
pub mod exporter;
pub mod paths;
pub mod yaml;

pub use driver_config::DriverConfig;
pub use error::{ConfigError, ConfigWarning, Source};
pub use exporter::{DriverNode, ExportEntry, ExporterConfig, Hook, HookFailure, Hooks};

/// The `apiVersion` every Jumpstarter config file carries.
pub const API_VERSION: &str = "jumpstarter.dev/v1alpha1";
