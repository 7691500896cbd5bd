//! `MockFlasher`.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use jumpstarter_core::{BuildContext, CallContext, ConfigError, DriverError, Logger, Value};

use super::medium::{Medium, file_into_resource, resource_into_file};
use super::{FLASHER_CLIENT, Flasher};

/// `MockFlasher`: each target (`default` unless named) is an unnamed temporary file, created
/// by its first flash.
pub struct MockFlasher {
    targets: std::sync::Mutex<std::collections::HashMap<String, Medium>>,
    logger: Logger,
}

impl MockFlasher {
    pub fn new(logger: Logger) -> std::io::Result<MockFlasher> {
        Ok(MockFlasher {
            targets: Default::default(),
            logger,
        })
    }

    /// Where this process can open a target's image (`/proc/self/fd/N`); with `create`, a
    /// target not flashed yet gets an empty image, otherwise it is `None`.
    pub fn target_path(
        &self,
        target: Option<&str>,
        create: bool,
    ) -> Result<Option<PathBuf>, DriverError> {
        let name = target.unwrap_or("default");
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(DriverError::invalid(format!(
                "invalid target name '{name}'"
            )));
        }
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = targets.get(name) {
            return Ok(Some(m.path.clone()));
        }
        if !create {
            return Ok(None);
        }
        let medium = Medium::new()
            .map_err(|e| DriverError::io(format!("cannot create target '{name}'"), e))?;
        let path = medium.path.clone();
        targets.insert(name.to_owned(), medium);
        Ok(Some(path))
    }
}

#[async_trait]
impl Flasher for MockFlasher {
    async fn flash(
        &self,
        ctx: &CallContext,
        source: Value,
        partition: Option<String>,
    ) -> Result<(), DriverError> {
        let name = partition.as_deref().unwrap_or("default");
        let path = self
            .target_path(partition.as_deref(), true)?
            .unwrap_or_default();
        let n = resource_into_file(ctx, &source, &path).await?;
        self.logger.debug(format!("flashed {n} bytes to {name}"));
        Ok(())
    }

    async fn dump(
        &self,
        ctx: &CallContext,
        target: Value,
        partition: Option<String>,
    ) -> Result<(), DriverError> {
        let name = partition.as_deref().unwrap_or("default");
        let Some(path) = self.target_path(partition.as_deref(), false)? else {
            return Err(DriverError::Other(format!(
                "nothing was flashed to target '{name}'"
            )));
        };
        file_into_resource(ctx, &target, &path).await?;
        Ok(())
    }
}

jumpstarter_core::export! {
    impl MockFlasher {
        client = FLASHER_CLIENT;
        interfaces = [Flasher];
    }
}

pub(super) fn build(ctx: &BuildContext<'_>) -> Result<Arc<MockFlasher>, ConfigError> {
    crate::config::ignore_unknown(ctx, &[]);
    let f = MockFlasher::new(ctx.logger.clone()).map_err(|e| {
        ctx.config
            .error(None, format!("cannot create the mock flasher: {e}"))
    })?;
    Ok(Arc::new(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{FlasherClient, MOCK_FLASHER, Source, Transfer};
    use jumpstarter_core::testing::serve;
    use jumpstarter_core::{DriverTree, Instance};

    #[tokio::test]
    async fn mock_flasher_targets() {
        let f = Arc::new(MockFlasher::new(Logger::detached("f")).unwrap());
        let tree = DriverTree::composite(vec![("flasher", Instance::new(f.clone(), MOCK_FLASHER))]);
        let served = serve(tree).await.unwrap();
        let client = FlasherClient::new(served.client.get("flasher").unwrap().clone());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("boot.img"), b"boot").unwrap();
        std::fs::write(dir.path().join("root.img"), b"rootfs").unwrap();
        let t = Transfer::default();
        client
            .flash(
                &Source::Local(dir.path().join("boot.img")),
                Some("boot"),
                &t,
            )
            .await
            .unwrap();
        client
            .flash(&Source::Local(dir.path().join("root.img")), None, &t)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(f.target_path(Some("boot"), false).unwrap().unwrap()).unwrap(),
            b"boot"
        );
        assert_eq!(
            std::fs::read(f.target_path(None, false).unwrap().unwrap()).unwrap(),
            b"rootfs"
        );
        let out = dir.path().join("out.img");
        client.dump(&out, Some("boot"), &t).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"boot");
        // Dumping a target never flashed fails and leaves no partial file.
        let missing = dir.path().join("none.img");
        assert!(client.dump(&missing, Some("none"), &t).await.is_err());
        assert!(!missing.exists());
        let err = client
            .flash(
                &Source::Local(dir.path().join("boot.img")),
                Some("../x"),
                &t,
            )
            .await
            .unwrap_err();
        assert!(err.as_call().unwrap().is_invalid_argument(), "{err}");
        served.shutdown().await;
    }
}
