//! `kind: ExporterConfig`: what an exporter exports and how it connects.
//!
//! The file format is upstream's (`apiVersion: jumpstarter.dev/v1alpha1`). Differences in how
//! files are *checked* (never in what a valid file means):
//! * every error names the file, line and column;
//! * a node that is not a valid driver, composite or proxy is an error (upstream silently turns
//!   it into an empty composite);
//! * `ref:` targets are resolved and checked (existence, cycles) when the file is loaded;
//! * unknown keys are kept out of the model and reported as warnings (upstream ignores them
//!   silently), except a near miss of a known key (`exports`, `typ`: an error naming the key
//!   meant) and any unknown key at the top level (an error listing the valid ones; a key that
//!   holds YAML anchors for reuse is fine).

mod io;
mod model;
mod parse;
mod refs;
#[cfg(test)]
mod tests;

pub use model::{
    COMPOSITE_TYPE, DriverHostConfig, DriverNode, ExportEntry, ExporterConfig, FailureDetection,
    Hook, HookFailure, Hooks, PROXY_TYPE,
};
pub use refs::ExportIndex;

pub use crate::common::{GrpcOptionValue, GrpcOptions, Metadata, TlsConfig};
