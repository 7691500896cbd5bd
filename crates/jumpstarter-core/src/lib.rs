//! The heart of Jumpstarter: drivers, sessions, streams and the session client.
//!
//! * [`driver`]: the driver model (the [`Driver`] trait, method tables, errors, arguments).
//! * [`interface`]: `#[interface]` and [`export!`]: an interface declared once (method table,
//!   dispatch, typed client).
//! * [`tree`] and [`registry`]: driver instances, `ref:` aliases, the `GetReport` layout, and
//!   constructors keyed by upstream `type:` strings.
//! * [`session`]: one tree served as `ExporterService` + `RouterService`.
//! * [`stream`]: the frame <-> byte-stream bridge, written once.
//! * [`client`] and [`transport`]: reaching a session and driving its drivers; [`tls`]: rustls
//!   configs for direct mode; [`forward`]: a local socket relaying every call to a remote
//!   session (what `jmp shell --tls-grpc` gives `j`).
//! * [`resource`]: resource handles (flash/dump transfers), encodings, presigned HTTP.
//! * [`remote`]: subtrees served by a driver host process, grafted and relayed.
//! * [`limits`]: every resource bound (connections, timeouts, handles, buffers), in one place.
//! * [`exit`]: [`exit::CliError`], how `jmp`, `j` and `jmp-controller` end.
//! * [`logs`]: what `LogStream` serves.
//! * [`testing`]: `serve(tree)`, a driver tree behind a real session on a temporary socket.

pub mod channel;
pub mod client;
pub mod controller;
pub mod driver;
pub mod exit;
pub mod forward;
pub mod interface;
pub mod limits;
pub mod logs;
pub mod out;
pub mod registry;
pub mod remote;
pub mod resource;
pub mod session;
pub mod socket;
pub mod stream;
pub mod testing;
pub mod tls;
pub mod transport;
pub mod tree;

pub use async_trait::async_trait;
pub use client::{Client, ClientError, DriverClient};
pub use driver::{
    Args, BoxStream, Driver, DriverError, Method, MethodKind, Param, Value, ValueStream,
};
pub use jumpstarter_config::ConfigError;
pub use jumpstarter_macros::interface;
pub use logs::{Level, LogHub, Logger};
pub use registry::{BuildContext, Built, Registry};
pub use resource::{CallContext, Encoding, Resource};
pub use session::Session;
pub use tree::{DriverTree, Instance};
