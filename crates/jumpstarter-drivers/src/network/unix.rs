//! `UnixNetwork`: `connect` to a Unix domain socket.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use jumpstarter_core::{BoxStream, BuildContext, ConfigError, DriverError, Logger};
use serde::Deserialize;

use super::{NETWORK_CLIENT, Network};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnixConfig {
    pub path: PathBuf,
}

/// `UnixNetwork`.
pub struct UnixNetwork {
    config: UnixConfig,
    logger: Logger,
}

impl UnixNetwork {
    pub fn new(config: UnixConfig, logger: Logger) -> Self {
        UnixNetwork { config, logger }
    }
}

#[async_trait]
impl Network for UnixNetwork {
    async fn connect(&self) -> Result<BoxStream, DriverError> {
        let path = &self.config.path;
        self.logger
            .debug(format!("Connecting UDS path={}", path.display()));
        let s = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|e| DriverError::io(format!("cannot connect to {}", path.display()), e))?;
        Ok(Box::new(s))
    }
}

jumpstarter_core::export! {
    impl UnixNetwork {
        client = NETWORK_CLIENT;
        interfaces = [Network];
    }
}

pub(super) fn build(ctx: &BuildContext<'_>) -> Result<Arc<UnixNetwork>, ConfigError> {
    let config: UnixConfig = ctx.config.parse()?;
    Ok(Arc::new(UnixNetwork::new(config, ctx.logger.clone())))
}
