//! The mock drivers' media: unnamed temporary files, filled from and read into resources.

use std::path::{Path, PathBuf};

use jumpstarter_core::{CallContext, DriverError, Value};

/// A mock medium: an unnamed temporary file (unlinked from the start, so nothing is left in
/// the temporary directory when the exporter is killed), reached through `/proc/self/fd/N`
/// so every operation opens it afresh with an offset of its own.
pub(super) struct Medium {
    file: std::fs::File,
    pub(super) path: PathBuf,
}

impl Medium {
    pub(super) fn new() -> std::io::Result<Medium> {
        use std::os::fd::AsRawFd;
        let file = tempfile::tempfile()?;
        let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        // Fails without /proc: say so now rather than at the first flash.
        std::fs::metadata(&path)?;
        Ok(Medium { file, path })
    }
}

impl std::fmt::Debug for Medium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Medium").field("file", &self.file).finish()
    }
}

/// Writes everything from a resource into a file, replacing its content. The file is written
/// in place and cut to the new length at the end, as a medium is overwritten; a thread of its
/// own writes while the next chunks arrive.
pub(super) async fn resource_into_file(
    ctx: &CallContext,
    handle: &Value,
    path: &Path,
) -> Result<u64, DriverError> {
    let mut src = ctx.open_resource(handle).await?;
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .await
        .map_err(|e| DriverError::io(format!("cannot open {}", path.display()), e))?
        .into_std()
        .await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        use std::io::Write;
        let mut file = file;
        let mut n = 0u64;
        while let Some(chunk) = rx.blocking_recv() {
            file.write_all(&chunk)?;
            n += chunk.len() as u64;
        }
        file.set_len(n)?;
        Ok(n)
    });
    let read = async {
        while let Some(chunk) = src.read_chunk().await? {
            if tx.send(chunk).await.is_err() {
                // The writer failed: its error is the one to report.
                return Ok(());
            }
        }
        src.close().await
    }
    .await;
    drop(tx);
    let written = writer
        .await
        .map_err(|e| DriverError::Other(format!("the writer thread failed: {e}")))?
        .map_err(|e| DriverError::io("cannot write to the target", e))?;
    read.map(|()| written)
}

/// Sends a file's content into a resource.
pub(super) async fn file_into_resource(
    ctx: &CallContext,
    handle: &Value,
    path: &Path,
) -> Result<u64, DriverError> {
    let dst = ctx.open_resource(handle).await?;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| DriverError::io(format!("cannot open {}", path.display()), e))?;
    file.set_max_buf_size(4 << 20);
    dst.copy_from(&mut file).await
}
