//! Jumpstarter configuration files.
//!
//! * [`yaml`]: YAML parsing into nodes that remember their line and column, with YAML 1.1
//!   scalar rules (what upstream's PyYAML uses) and warnings for surprising constructs.
//! * [`exporter`]: the `ExporterConfig` model (`export` tree, hooks, TLS, gRPC options...), its
//!   parsing, `ref:` resolution, env overrides and writing.
//! * [`client`], [`user`]: `ClientConfig` (`clients/*.yaml`) and `UserConfig` (`config.yaml`).
//! * [`resolve`]: the loading order (flags > environment > files) and env overrides.
//! * [`grpc`]: `grpcOptions`/`grpcConfig` as channel settings; [`drivers`]: the allow-list.
//! * [`emit`], [`write`]: YAML 1.1-safe writing, atomic 0600 files.
//! * [`endpoint`]: controller and router endpoints in grpc's target syntax.
//! * [`paths`]: where configuration files live and how aliases map to files.
//! * `load` (private): what loading every kind of file shares (reading, YAML limits, the load
//!   context, `apiVersion`/`kind`/`metadata`).
//! * [`driver_config`]: a driver's `config:` mapping, deserialized with errors that point at
//!   the offending line.

pub mod client;
pub mod common;
pub mod driver_config;
pub mod drivers;
pub mod emit;
pub mod endpoint;
pub mod error;
pub mod exporter;
pub mod grpc;
mod load;
pub mod paths;
pub mod resolve;
pub mod user;
pub mod write;
pub mod yaml;

pub use client::{ClientConfig, JwtError, LeaseSettings, ShellConfig};
pub use common::{Env, GrpcOptionValue, GrpcOptions, Metadata, Origin, TlsConfig};
pub use driver_config::DriverConfig;
pub use drivers::{DriverAllow, Drivers};
pub use endpoint::{Endpoint, EndpointError};
pub use error::{ConfigError, ConfigWarning, Source};
pub use exporter::{
    DriverNode, ExportEntry, ExportIndex, ExporterConfig, Hook, HookFailure, Hooks,
};
pub use grpc::ChannelOptions;
pub use paths::Locations;
pub use resolve::{ChosenBy, ClientSelection, require_client, resolve_client, resolve_exporter};
pub use user::UserConfig;

/// The `apiVersion` every Jumpstarter config file carries.
pub const API_VERSION: &str = "jumpstarter.dev/v1alpha1";
