//! What the storage clients send and receive: a local file or URL in, a local file out
//! (atomically: a dump killed midway leaves nothing behind).

use std::path::{Path, PathBuf};

use jumpstarter_core::client::Progress;
use jumpstarter_core::{ClientError, DriverClient, Encoding, Value};
use serde_json::json;

/// What to flash: a local file, or an `http(s)://` URL the exporter fetches itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Local(PathBuf),
    Url(String),
}

impl Source {
    pub fn parse(s: &str) -> Source {
        if s.starts_with("http://") || s.starts_with("https://") {
            Source::Url(s.to_owned())
        } else {
            Source::Local(PathBuf::from(s))
        }
    }
}

/// Options of a transfer.
#[derive(Clone, Default)]
pub struct Transfer {
    /// The format the local file is in (decoded on the way in, encoded on the way out).
    pub encoding: Option<Encoding>,
    pub progress: Option<Progress>,
}

/// Sends a source to `method(handle, extra...)`.
pub(super) async fn send_source(
    driver: &DriverClient,
    method: &str,
    extra: Vec<Value>,
    source: &Source,
    opts: &Transfer,
) -> Result<Value, ClientError> {
    match source {
        Source::Url(url) => {
            if opts.encoding.is_some() {
                return Err(ClientError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "compression is not supported with direct HTTP URLs",
                )));
            }
            let mut args = vec![
                json!({"kind": "presigned_request", "headers": {}, "url": url, "method": "GET"}),
            ];
            args.extend(extra);
            driver.call(method, args).await
        }
        Source::Local(path) => {
            let file = tokio::fs::File::open(path).await.map_err(|e| {
                ClientError::Io(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", path.display()),
                ))
            })?;
            let args = move |h| std::iter::once(h).chain(extra).collect();
            driver
                .upload(method, args, file, opts.encoding, opts.progress.clone())
                .await
        }
    }
}

/// Receives into `path` atomically: the data goes to a file in the same directory that gets a
/// name only once it is complete, then is renamed over `path`.
pub(super) async fn receive_into(
    driver: &DriverClient,
    method: &str,
    extra: Vec<Value>,
    path: &Path,
    opts: &Transfer,
) -> Result<Value, ClientError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let in_dir = |e: std::io::Error| {
        ClientError::Io(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", dir.display()),
        ))
    };
    let partial = Partial::new(&dir).map_err(in_dir)?;
    let file = tokio::fs::File::from_std(partial.file().map_err(in_dir)?);
    let args = move |h| std::iter::once(h).chain(extra).collect();
    let v = driver
        .download(method, args, file, opts.encoding, opts.progress.clone())
        .await?;
    partial.persist(&dir, path).map_err(|e| {
        ClientError::Io(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        ))
    })?;
    Ok(v)
}

/// A download until it is complete. On Linux it is an unnamed file (`O_TMPFILE`) in the
/// destination's directory, linked in only when done, so a `j` killed mid-dump leaves nothing
/// behind; where the filesystem has no unnamed files, a hidden named file removed on failure.
enum Partial {
    Unnamed(std::fs::File),
    Named(tempfile::NamedTempFile),
}

impl Partial {
    fn new(dir: &Path) -> std::io::Result<Partial> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_TMPFILE)
                .mode(0o644)
                .open(dir)
            {
                Ok(f) => return Ok(Partial::Unnamed(f)),
                // The filesystem (or kernel) has no unnamed files: fall back.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::ENOENT | libc::EINVAL)
                    ) && dir.is_dir() => {}
                Err(e) => return Err(e),
            }
        }
        tempfile::Builder::new()
            .prefix(".jumpstarter-dump-")
            .tempfile_in(dir)
            .map(Partial::Named)
    }

    fn file(&self) -> std::io::Result<std::fs::File> {
        match self {
            Partial::Unnamed(f) => f.try_clone(),
            Partial::Named(t) => t.as_file().try_clone(),
        }
    }

    /// Gives the complete file its final name.
    fn persist(self, dir: &Path, path: &Path) -> std::io::Result<()> {
        match self {
            Partial::Named(t) => t.persist(path).map(drop).map_err(|e| e.error),
            Partial::Unnamed(f) => {
                use std::os::fd::AsRawFd;
                let from = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
                // link(2) does not replace: link under a fresh hidden name, then rename.
                let mut attempt = 0u32;
                loop {
                    let tmp = dir.join(format!(
                        ".jumpstarter-dump-{}-{attempt}",
                        std::process::id()
                    ));
                    match nix::unistd::linkat(
                        nix::fcntl::AT_FDCWD,
                        &from,
                        nix::fcntl::AT_FDCWD,
                        &tmp,
                        nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
                    ) {
                        Ok(()) => {
                            return std::fs::rename(&tmp, path).inspect_err(|_| {
                                let _ = std::fs::remove_file(&tmp);
                            });
                        }
                        Err(nix::errno::Errno::EEXIST) if attempt < 100 => attempt += 1,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
}
