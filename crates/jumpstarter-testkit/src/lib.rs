//! Helpers shared by the workspace's integration tests: where the workspace, our binaries and
//! the pinned upstream venv are, processes with deadlines and cleanup, small local servers,
//! test certificates, running exporters and controllers, and (feature `ctl`) the in-process
//! controller lab. Used only as a dev-dependency; helpers panic with a clear message, since
//! a helper failing is a test failing.

pub mod controller;
#[cfg(feature = "ctl")]
pub mod ctl;
pub mod data;
pub mod exporter;
pub mod net;
pub mod paths;
pub mod process;
pub mod tls;

pub use controller::{Controller, admin};
pub use data::{GIB, sha256_of, write_gib};
pub use exporter::{RunningExporter, demo_config, direct_config};
pub use net::{free_port, tcp_upper_server, udp_echo_server, unix_upper_server};
pub use paths::{
    controller_bin, j, jmp, our_bin, path_with_ours, path_with_upstream, py, script, upstream_j,
    upstream_jmp, venv, workspace_root,
};
pub use process::{Kill, Proc, alive, clean, descendants, ok, run, run_timeout, text, wait_output};
pub use tls::write_ca;
