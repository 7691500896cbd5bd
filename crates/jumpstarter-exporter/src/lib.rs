//! The exporter runtime: an [`Exporter`] turns an `ExporterConfig` into sessions.
//!
//! Drivers are rebuilt for every session (so uuids change per session, as upstream does),
//! `reset()` when a session starts and `close()` when it ends. The exporter uuid is made once
//! per process and reported by every session.
//!
//! Modes, and which layer provides them:
//! * local (`jmp shell --exporter-config`): [`Exporter::start_local`], one session on a private
//!   unix socket, LEASE_READY at once, no hooks (as upstream);
//! * direct (`jmp run --tls-grpc-listener`): [`Exporter::start_direct`] and
//!   [`direct::DirectExporter::run`], a TCP listener (TLS, passphrase) plus a hook socket, with
//!   the lifecycle hooks of [`hooks`] walked by [`lease`];
//! * controller mode (`jmp run` with endpoint and token): [`Exporter::run_controller`] in
//!   [`controller`], a fresh session per lease served through router tunnels, hooks walked by
//!   [`lease`].

pub mod controller;
pub mod direct;
pub mod driver_host;
pub mod hooks;
pub mod lease;

use std::path::Path;
use std::time::Duration;

use jumpstarter_config::{ConfigError, ExporterConfig};
use jumpstarter_core::logs::LogHub;
use jumpstarter_core::session::{ServerHandle, Session};
use jumpstarter_core::socket::SocketDir;
use jumpstarter_core::{DriverTree, Registry};
use jumpstarter_protocol::v1::ExporterStatus;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Controller(String),
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// An exporter: a validated config plus the driver types it can build.
pub struct Exporter {
    config: ExporterConfig,
    registry: Registry,
    uuid: Uuid,
    /// Subtrees whose types are not built in: served by driver hosts.
    hosted: Vec<driver_host::HostedSubtree>,
    host_options: driver_host::HostOptions,
}

impl Exporter {
    /// Checks that every driver of the config can be built (types known, configs valid) by
    /// building the tree once and closing it again.
    pub async fn new(
        config: ExporterConfig,
        registry: impl Into<Registry>,
    ) -> Result<Exporter, ExporterError> {
        let registry = registry.into();
        let hosted = driver_host::hosted_subtrees(&config, &registry)?;
        let host_options = driver_host::HostOptions::new(&config);
        let exporter = Exporter {
            config,
            registry,
            uuid: Uuid::new_v4(),
            hosted,
            host_options,
        };
        // Hosts are not started here: their subtrees are stand-ins for the check.
        let probe = exporter
            .build_tree_with(&LogHub::new(), &driver_host::placeholders(&exporter.hosted))?;
        probe.close().await;
        Ok(exporter)
    }

    /// Loads a config file and checks it, with the built-in drivers.
    pub async fn load(path: &Path) -> Result<Exporter, ExporterError> {
        let config = ExporterConfig::load(path)?;
        Exporter::new(config, jumpstarter_drivers::builtin()).await
    }

    pub fn config(&self) -> &ExporterConfig {
        &self.config
    }

    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// The subtrees served by driver hosts.
    pub fn hosted(&self) -> &[driver_host::HostedSubtree] {
        &self.hosted
    }

    /// How driver hosts are started (interpreter, timeouts); taken from the environment and
    /// the config when the exporter is made.
    pub fn host_options_mut(&mut self) -> &mut driver_host::HostOptions {
        &mut self.host_options
    }

    /// A fresh driver tree with hosted subtrees taken from `grafts`.
    fn build_tree_with(
        &self,
        logs: &LogHub,
        grafts: &std::collections::HashMap<String, std::sync::Arc<jumpstarter_core::Instance>>,
    ) -> Result<DriverTree, ConfigError> {
        DriverTree::from_config_with(&self.config, &self.registry, logs, grafts)
    }

    /// A fresh driver tree: native drivers built, a driver host started per hosted subtree.
    pub async fn build_tree(&self, logs: &LogHub) -> Result<DriverTree, ConfigError> {
        let grafts = driver_host::start_all(&self.hosted, &self.host_options, logs).await;
        let tree = self.build_tree_with(logs, &grafts);
        if tree.is_err() {
            for inst in grafts.values() {
                inst.driver.close().await;
            }
        }
        tree
    }

    /// A new session with freshly built drivers, reset and in AVAILABLE.
    pub async fn new_session(&self, logs: LogHub) -> Result<Session, ExporterError> {
        let tree = self.build_tree(&logs).await?;
        let session = Session::new(tree, logs, self.uuid);
        session.reset().await;
        session.set_motd(self.config.motd.clone().unwrap_or_default());
        Ok(session)
    }

    /// Problems with the configured hooks that can be seen before they run (a script file that
    /// is missing or unreadable), for warnings at start-up.
    pub fn hook_problems(&self) -> Vec<String> {
        let hooks = &self.config.hooks;
        [
            (hooks::HookKind::BeforeLease, hooks.before_lease.as_ref()),
            (hooks::HookKind::AfterLease, hooks.after_lease.as_ref()),
        ]
        .into_iter()
        .filter_map(|(kind, hook)| {
            let hook = hook?;
            hooks::check(hook).map(|p| format!("{} hook ({}): {p}", kind.name(), hook.at))
        })
        .collect()
    }

    /// Local mode: one session on a private unix socket, ready at once.
    pub async fn start_local(&self, logs: LogHub) -> Result<LocalSession, ExporterError> {
        let session = self.new_session(logs).await?;
        let dir = SocketDir::new().map_err(|source| ExporterError::Listen {
            path: "a temporary socket directory".into(),
            source,
        })?;
        let server = session
            .serve_unix(dir.path())
            .map_err(|source| ExporterError::Listen {
                path: dir.path().display().to_string(),
                source,
            })?;
        session.set_status(ExporterStatus::LeaseReady, "");
        tracing::debug!("session server started on {}", dir.path().display());
        Ok(LocalSession {
            session,
            server: Some(server),
            dir,
        })
    }
}

/// A running local-mode session.
pub struct LocalSession {
    pub session: Session,
    server: Option<ServerHandle>,
    dir: SocketDir,
}

impl LocalSession {
    /// The socket path (what `JUMPSTARTER_HOST` gets).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Ends streams, stops the listener, closes the drivers, removes the socket directory.
    pub async fn stop(mut self) {
        self.session.close().await;
        if let Some(server) = self.server.take() {
            server.shutdown(Duration::from_secs(2)).await;
        }
    }
}
