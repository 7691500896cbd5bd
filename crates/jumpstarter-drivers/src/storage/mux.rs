//! `MockStorageMux` and `MockStorageMuxFlasher`.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use jumpstarter_core::{BuildContext, CallContext, ConfigError, DriverError, Logger, Value};

use super::StorageMux;
use super::medium::{Medium, file_into_resource, resource_into_file};

/// Where a mock storage mux's medium is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxState {
    Off,
    Host,
    Dut,
}

/// `MockStorageMux` / `MockStorageMuxFlasher` (the same driver under two client classes): the
/// medium is an unnamed temporary file.
pub struct MockStorageMux {
    client: &'static str,
    medium: Medium,
    state: std::sync::Mutex<MuxState>,
    logger: Logger,
}

impl MockStorageMux {
    pub fn new(client: &'static str, logger: Logger) -> std::io::Result<MockStorageMux> {
        Ok(MockStorageMux {
            client,
            medium: Medium::new()?,
            state: std::sync::Mutex::new(MuxState::Off),
            logger,
        })
    }

    /// The client class this instance reports.
    pub fn client_label(&self) -> &str {
        self.client
    }

    /// Where this process can open the medium (`/proc/self/fd/N`; the file has no name).
    pub fn path(&self) -> &Path {
        &self.medium.path
    }

    pub fn state(&self) -> MuxState {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, s: MuxState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = s;
        self.logger.debug(format!("storage connected to {s:?}"));
    }
}

#[async_trait]
impl StorageMux for MockStorageMux {
    async fn host(&self) -> Result<(), DriverError> {
        self.set(MuxState::Host);
        Ok(())
    }

    async fn dut(&self) -> Result<(), DriverError> {
        self.set(MuxState::Dut);
        Ok(())
    }

    async fn off(&self) -> Result<(), DriverError> {
        self.set(MuxState::Off);
        Ok(())
    }

    async fn write(&self, ctx: &CallContext, src: Value) -> Result<(), DriverError> {
        let n = resource_into_file(ctx, &src, self.path()).await?;
        self.logger.debug(format!("wrote {n} bytes"));
        Ok(())
    }

    async fn read(&self, ctx: &CallContext, dst: Value) -> Result<(), DriverError> {
        file_into_resource(ctx, &dst, self.path()).await?;
        Ok(())
    }
}

jumpstarter_core::export! {
    impl MockStorageMux {
        client = MockStorageMux::client_label;
        interfaces = [StorageMux];
    }
}

pub(super) fn build(
    ctx: &BuildContext<'_>,
    client: &'static str,
) -> Result<Arc<MockStorageMux>, ConfigError> {
    crate::config::ignore_unknown(ctx, &[]);
    let mux = MockStorageMux::new(client, ctx.logger.clone()).map_err(|e| {
        ctx.config
            .error(None, format!("cannot create the mock medium: {e}"))
    })?;
    Ok(Arc::new(mux))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{
        MOCK_STORAGE_MUX_FLASHER, STORAGE_MUX_FLASHER_CLIENT, Source, StorageMuxClient, Transfer,
    };
    use jumpstarter_core::Encoding;
    use jumpstarter_core::testing::serve;
    use jumpstarter_core::{DriverTree, Instance};
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::AsyncWriteExt;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn storage_mux_flash_and_dump_with_every_encoding() {
        let mux = Arc::new(
            MockStorageMux::new(STORAGE_MUX_FLASHER_CLIENT, Logger::detached("m")).unwrap(),
        );
        let tree = DriverTree::composite(vec![(
            "storage",
            Instance::new(mux.clone(), MOCK_STORAGE_MUX_FLASHER),
        )]);
        let served = serve(tree).await.unwrap();
        let client = StorageMuxClient::new(served.client.get("storage").unwrap().clone());
        let dir = tempfile::tempdir().unwrap();
        let image = data(1_000_000);
        let raw = dir.path().join("image.raw");
        std::fs::write(&raw, &image).unwrap();

        let moved = Arc::new(AtomicU64::new(0));
        let m = moved.clone();
        let opts = Transfer {
            encoding: None,
            progress: Some(Arc::new(move |n| {
                m.fetch_add(n, Ordering::SeqCst);
            })),
        };
        client
            .flash(&Source::Local(raw.clone()), &opts)
            .await
            .unwrap();
        assert_eq!(std::fs::read(mux.path()).unwrap(), image);
        assert_eq!(moved.load(Ordering::SeqCst), image.len() as u64);
        assert_eq!(mux.state(), MuxState::Dut);

        for e in Encoding::ALL {
            // The local file is compressed; the exporter decodes it.
            let compressed = dir.path().join(format!("image.{e}"));
            let mut enc = Vec::new();
            {
                let mut w = jumpstarter_core::resource::encoding::encoder(e, &mut enc);
                w.write_all(&image).await.unwrap();
                w.shutdown().await.unwrap();
            }
            std::fs::write(&compressed, &enc).unwrap();
            std::fs::write(mux.path(), b"").unwrap();
            let opts = Transfer {
                encoding: Some(e),
                progress: None,
            };
            client
                .flash(&Source::Local(compressed), &opts)
                .await
                .unwrap();
            assert_eq!(std::fs::read(mux.path()).unwrap(), image, "{e}");
            // A dump with an encoding produces a compressed local file.
            let out = dir.path().join(format!("dump.{e}"));
            client.dump(&out, &opts).await.unwrap();
            let dumped = std::fs::read(&out).unwrap();
            assert_eq!(Encoding::from_magic(&dumped), Some(e));
            let mut plain = Vec::new();
            let mut d =
                jumpstarter_core::resource::encoding::decoder(e, std::io::Cursor::new(dumped));
            tokio::io::AsyncReadExt::read_to_end(&mut d, &mut plain)
                .await
                .unwrap();
            assert_eq!(plain, image, "{e}");
        }
        served.shutdown().await;
    }

    #[tokio::test]
    async fn corrupt_uploads_fail_and_still_reconnect_the_dut() {
        let mux = Arc::new(
            MockStorageMux::new(STORAGE_MUX_FLASHER_CLIENT, Logger::detached("m")).unwrap(),
        );
        let tree = DriverTree::composite(vec![(
            "storage",
            Instance::new(mux.clone(), MOCK_STORAGE_MUX_FLASHER),
        )]);
        let served = serve(tree).await.unwrap();
        let client = StorageMuxClient::new(served.client.get("storage").unwrap().clone());
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.xz");
        std::fs::write(&bad, b"\xfd7zXZ\x00 this is not xz").unwrap();
        let opts = Transfer {
            encoding: Some(Encoding::Xz),
            progress: None,
        };
        let err = client.flash(&Source::Local(bad), &opts).await.unwrap_err();
        assert!(err.as_call().unwrap().is_invalid_argument(), "{err}");
        assert_eq!(mux.state(), MuxState::Dut);
        // A missing local file is a clear local error.
        let err = client
            .flash(
                &Source::Local(dir.path().join("missing")),
                &Transfer::default(),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        client.host().await.unwrap();
        served.shutdown().await;
    }
}
