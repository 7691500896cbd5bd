//! The Jumpstarter controller and router in one daemon, with an embedded SQLite store.
//!
//! * [`start`] opens the data directory (an exclusive lock, the database, keys, the TLS
//!   certificate) and serves ControllerService, ClientService, RouterService and the
//!   unauthenticated `grpc.health.v1.Health` on one TLS port (ALPN h2). The router endpoint
//!   handed out by Dial is the controller's own advertised endpoint.
//! * [`store`]: SQLite (WAL) via sqlx. [`scheduler`]: one task running the lease rules of
//!   controller.md §6.2 in one transaction per pass, FIFO, woken by events and timers.
//! * [`auth`]: ES256 internal tokens, HS256 router tokens, the metadata contract.
//! * [`admin`]: what the `jmp-controller admin` commands do, working on the data directory
//!   directly (whoever can read the data directory is the administrator).

pub mod admin;
pub mod auth;
pub mod certs;
pub mod client_service;
pub mod controller_service;
pub mod convert;
pub mod dials;
pub mod model;
pub mod router;
pub mod scheduler;
pub mod selector;
pub mod store;
pub mod text;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jumpstarter_core::limits::Limits;
use jumpstarter_core::session::{ConnLimits, Listener};
use jumpstarter_protocol::client_v1::client_service_server::ClientServiceServer;
use jumpstarter_protocol::v1::controller_service_server::ControllerServiceServer;
use tokio::sync::oneshot;

use crate::auth::Keys;
use crate::scheduler::Shared;
use crate::store::{Store, StoreError};

/// File names inside the data directory.
pub const DB_FILE: &str = "controller.db";
pub const LOCK_FILE: &str = "controller.lock";
pub const TLS_DIR: &str = "tls";

/// Settings keys.
pub const SETTING_SIGNING_KEY: &str = "signing_key";
pub const SETTING_ROUTER_KEY: &str = "router_key";
pub const SETTING_ENDPOINT: &str = "endpoint";
pub const SETTING_CA: &str = "ca";
pub const SETTING_TOKEN_LIFETIME: &str = "token_lifetime_secs";

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `host:port` clients and exporters use; default `localhost:<port>`.
    pub advertise: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Lifetime of minted client/exporter tokens.
    pub token_lifetime: Duration,
    /// Lifetime of tokens issued by RotateToken (capped at `token_lifetime`).
    pub rotated_token_lifetime: Duration,
    /// Silence after which an exporter is marked offline (Go: 60 s).
    pub offline_after: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another controller is already running on the data directory {0} (it holds the lock \
         file); stop it or use another --data-dir"
    )]
    Locked(PathBuf),
    #[error(
        "{} holds no controller database ({DB_FILE}): check --data-dir, or initialise it by \
         running `jmp-controller serve --data-dir {}` once (or pass `admin --init`)",
        .0.display(),
        .0.display()
    )]
    NoDatabase(PathBuf),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] auth::KeyError),
    #[error(transparent)]
    Cert(#[from] certs::CertError),
    #[error("--tls-cert and --tls-key go together")]
    HalfCert,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Creates the data directory (owner only) if needed.
pub fn ensure_data_dir(dir: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::DirBuilderExt;
    let err = |source| StartError::DataDir {
        path: dir.to_owned(),
        source,
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    Ok(())
}

/// Opens the store of a data directory that already holds one (what `jmp-controller admin`
/// uses: a mistyped `--data-dir` must not become a new, empty controller).
pub async fn open_existing_store(dir: &Path) -> Result<(Store, Keys), StartError> {
    if !dir.join(DB_FILE).is_file() {
        return Err(StartError::NoDatabase(dir.to_owned()));
    }
    open_store(dir).await
}

/// Opens the store of a data directory and makes sure the keys exist.
pub async fn open_store(dir: &Path) -> Result<(Store, Keys), StartError> {
    ensure_data_dir(dir)?;
    let store = Store::open(&dir.join(DB_FILE)).await?;
    let signing = store.setting(SETTING_SIGNING_KEY).await?;
    let router = store.setting(SETTING_ROUTER_KEY).await?;
    let keys = match (signing, router) {
        (Some(s), Some(r)) => Keys::from_stored(&s, &r)?,
        _ => {
            let (s, r) = auth::generate_keys()?;
            store.set_setting(SETTING_SIGNING_KEY, &s).await?;
            store.set_setting(SETTING_ROUTER_KEY, &r).await?;
            Keys::from_stored(&s, &r)?
        }
    };
    Ok((store, keys))
}

/// A running controller.
pub struct Running {
    pub local_addr: SocketAddr,
    pub endpoint: String,
    stop_server: Option<oneshot::Sender<()>>,
    stop_scheduler: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    scheduler: Option<tokio::task::JoinHandle<()>>,
    shared: Arc<Shared>,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Running {
    /// Stops serving, lets calls finish for up to `grace`, stops the scheduler.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(s) = self.stop_server.take() {
            let _ = s.send(());
        }
        if let Some(mut t) = self.server.take()
            && tokio::time::timeout(grace, &mut t).await.is_err()
        {
            t.abort();
        }
        if let Some(s) = self.stop_scheduler.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.scheduler.take() {
            let _ = t.await;
        }
        self.shared.store.close().await;
    }

    /// Waits until the server stops on its own (it normally does not).
    pub async fn wait(&mut self) {
        if let Some(t) = self.server.as_mut() {
            let _ = t.await;
        }
    }
}

/// Opens the data directory and serves, under the process's limits
/// ([`jumpstarter_core::limits::global`]).
pub async fn start(opts: Options) -> Result<Running, StartError> {
    start_with_limits(opts, jumpstarter_core::limits::global().clone()).await
}

/// [`start`] under `limits` (connection cap, handshake and idle timeouts, streams per
/// connection).
pub async fn start_with_limits(opts: Options, limits: Limits) -> Result<Running, StartError> {
    ensure_data_dir(&opts.data_dir)?;
    let lock_path = opts.data_dir.join(LOCK_FILE);
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| StartError::DataDir {
            path: lock_path.clone(),
            source,
        })?;
    let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| StartError::Locked(opts.data_dir.clone()))?;
    let (store, keys) = open_store(&opts.data_dir).await?;

    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: opts.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: opts.listen,
        source,
    })?;
    // An advertised port 0 means "the port we got".
    let endpoint = match opts.advertise.as_deref() {
        Some(a) => match a.strip_suffix(":0") {
            Some(host) => format!("{host}:{}", local_addr.port()),
            None => a.to_string(),
        },
        None => format!("localhost:{}", local_addr.port()),
    };
    let files = match (&opts.tls_cert, &opts.tls_key) {
        (Some(cert), Some(key)) => {
            store.set_setting(SETTING_CA, "").await?;
            certs::CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            }
        }
        (None, None) => {
            let files =
                certs::self_signed(&opts.data_dir.join(TLS_DIR), certs::host_of(&endpoint))?;
            let pem = std::fs::read(&files.cert).map_err(|source| StartError::DataDir {
                path: files.cert.clone(),
                source,
            })?;
            use base64::Engine;
            store
                .set_setting(
                    SETTING_CA,
                    &base64::engine::general_purpose::STANDARD.encode(pem),
                )
                .await?;
            files
        }
        _ => return Err(StartError::HalfCert),
    };
    let tls = certs::server_config(&files)?;
    store.set_setting(SETTING_ENDPOINT, &endpoint).await?;
    store
        .set_setting(
            SETTING_TOKEN_LIFETIME,
            &opts.token_lifetime.as_secs().to_string(),
        )
        .await?;

    let mut shared = Shared::new(
        store,
        keys,
        endpoint.clone(),
        opts.token_lifetime,
        opts.offline_after,
    );
    shared.rotated_token_lifetime = opts.rotated_token_lifetime.min(opts.token_lifetime);
    shared.limits = limits.clone();
    let max_message = shared.limits.controller_max_message;
    let shared = Arc::new(shared);
    let (stop_sched_tx, stop_sched_rx) = oneshot::channel();
    let scheduler = tokio::spawn(scheduler::run(shared.clone(), stop_sched_rx));

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let routes = tonic::service::Routes::new(health)
        .add_service(
            ControllerServiceServer::new(controller_service::ControllerSvc {
                shared: shared.clone(),
            })
            .max_decoding_message_size(max_message),
        )
        .add_service(
            ClientServiceServer::new(client_service::ClientSvc {
                shared: shared.clone(),
            })
            .max_decoding_message_size(max_message),
        )
        .add_service(router::RouterSvc::new(shared.clone()))
        .prepare();
    // Handshake and idle timeouts, a connection cap, streams per connection: see
    // jumpstarter_core::session::serve. Every online exporter holds one connection (its Status
    // stream), so the cap is the controller's own.
    let conf = Listener::new(
        format!("controller port {local_addr}"),
        ConnLimits::controller(&limits),
    )
    .with_tls(Some(tls))
    .with_keepalive(true);
    let incoming = jumpstarter_core::session::tcp_incoming(listener);
    let server = tokio::spawn(jumpstarter_core::session::serve(
        conf,
        incoming,
        routes,
        async move {
            let _ = stop_rx.await;
        },
    ));
    Ok(Running {
        local_addr,
        endpoint,
        stop_server: Some(stop_tx),
        stop_scheduler: Some(stop_sched_tx),
        server: Some(server),
        scheduler: Some(scheduler),
        shared,
        _lock: lock,
    })
}
