//! `serve(tree)`: a driver tree behind a real session on a temporary unix socket, with a real
//! client connected to it. Every driver test uses it, exactly as a user would reach the driver.

use std::path::Path;
use std::time::Duration;

use jumpstarter_protocol::v1::ExporterStatus;
use uuid::Uuid;

use crate::client::{Client, ClientError};
use crate::logs::LogHub;
use crate::session::{ServerHandle, Session};
use crate::socket::SocketDir;
use crate::transport::Target;
use crate::tree::DriverTree;

/// A served tree. Call [`Served::shutdown`] to close it (dropping also stops the server).
pub struct Served {
    pub client: Client,
    pub session: Session,
    server: Option<ServerHandle>,
    dir: SocketDir,
}

impl Served {
    /// The socket the session listens on (what `JUMPSTARTER_HOST` would hold).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the listener and closes the drivers.
    pub async fn shutdown(mut self) {
        self.session.close().await;
        if let Some(server) = self.server.take() {
            server.shutdown(Duration::from_secs(2)).await;
        }
    }
}

/// Serves `tree` in LEASE_READY and connects a client to it.
pub async fn serve(tree: DriverTree) -> Result<Served, ClientError> {
    serve_with_logs(tree, LogHub::new()).await
}

/// [`serve`] with a given log hub (to observe driver logs).
pub async fn serve_with_logs(tree: DriverTree, logs: LogHub) -> Result<Served, ClientError> {
    let session = Session::new(tree, logs, Uuid::new_v4());
    session.reset().await;
    session.set_status(ExporterStatus::LeaseReady, "");
    let dir = SocketDir::new()?;
    let server = session.serve_unix(dir.path())?;
    let client = Client::connect(&Target::Unix(dir.path().to_owned())).await?;
    Ok(Served {
        client,
        session,
        server: Some(server),
        dir,
    })
}
