//! Storage: the storage-mux and flasher interfaces, their mock drivers, and their clients.
//!
//! Wire surface (drivers notes §2.4):
//! * StorageMux (`...StorageMuxClient`): `host`, `dut`, `off`, `write(src handle)`,
//!   `read(dst handle)`.
//! * StorageMuxFlasher (`...StorageMuxFlasherClient`): the same methods; its client flashes as
//!   `host` → `write` → `dut` (dut even when the write fails).
//! * Flasher (`jumpstarter_driver_opendal.client.FlasherClient` and the core
//!   `jumpstarter.client.flasher.FlasherClient`): `flash(src handle, target|null)`,
//!   `dump(dst handle, target|null)`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use jumpstarter_core::client::Progress;
use jumpstarter_core::{
    Args, CallContext, ClientError, Driver, DriverClient, DriverError, Encoding, Logger, Method,
    Param, Registry, Value,
};
use serde_json::json;

pub const STORAGE_MUX_CLIENT: &str = "jumpstarter_driver_opendal.client.StorageMuxClient";
pub const STORAGE_MUX_FLASHER_CLIENT: &str =
    "jumpstarter_driver_opendal.client.StorageMuxFlasherClient";
pub const FLASHER_CLIENT: &str = "jumpstarter_driver_opendal.client.FlasherClient";
/// The core flasher interface's client (QEMU, Cuttlefish); same wire contract.
pub const CORE_FLASHER_CLIENT: &str = "jumpstarter.client.flasher.FlasherClient";

pub const MOCK_STORAGE_MUX: &str = "jumpstarter_driver_opendal.driver.MockStorageMux";
pub const MOCK_STORAGE_MUX_FLASHER: &str =
    "jumpstarter_driver_opendal.driver.MockStorageMuxFlasher";
pub const MOCK_FLASHER: &str = "jumpstarter_driver_opendal.driver.MockFlasher";

const MUX_METHODS: &[Method] = &[
    Method::unary("host").help("Connect storage to host"),
    Method::unary("dut").help("Connect storage to dut"),
    Method::unary("off").help("Disconnect storage"),
    Method::unary("write")
        .params(&[Param::required("src")])
        .help("Write an image to the storage"),
    Method::unary("read")
        .params(&[Param::required("dst")])
        .help("Read the storage"),
];

const FLASHER_METHODS: &[Method] = &[
    Method::unary("flash")
        .params(&[Param::required("source"), Param::optional("partition")])
        .help("Flash an image"),
    Method::unary("dump")
        .params(&[Param::required("target"), Param::optional("partition")])
        .help("Dump an image"),
];

/// Where a mock storage mux's medium is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxState {
    Off,
    Host,
    Dut,
}

/// A mock medium: an unnamed temporary file (unlinked from the start, so nothing is left in
/// the temporary directory when the exporter is killed), reached through `/proc/self/fd/N`
/// so every operation opens it afresh with an offset of its own.
struct Medium {
    file: std::fs::File,
    path: PathBuf,
}

impl Medium {
    fn new() -> std::io::Result<Medium> {
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

/// `MockStorageMux` / `MockStorageMuxFlasher`: the medium is an unnamed temporary file.
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

/// Writes everything from a resource into a file, replacing its content. The file is written
/// in place and cut to the new length at the end, as a medium is overwritten; a thread of its
/// own writes while the next chunks arrive.
async fn resource_into_file(
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
async fn file_into_resource(
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

#[async_trait]
impl Driver for MockStorageMux {
    fn client(&self) -> &str {
        self.client
    }

    fn methods(&self) -> &[Method] {
        MUX_METHODS
    }

    async fn call(
        &self,
        method: &str,
        args: Args,
        ctx: &CallContext,
    ) -> Result<Value, DriverError> {
        match method {
            "host" => self.set(MuxState::Host),
            "dut" => self.set(MuxState::Dut),
            "off" => self.set(MuxState::Off),
            "write" => {
                let n = resource_into_file(ctx, args.raw(0).unwrap_or(&Value::Null), self.path())
                    .await?;
                self.logger.debug(format!("wrote {n} bytes"));
            }
            "read" => {
                file_into_resource(ctx, args.raw(0).unwrap_or(&Value::Null), self.path()).await?;
            }
            other => return Err(DriverError::method_not_found(other)),
        }
        Ok(Value::Null)
    }
}

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
impl Driver for MockFlasher {
    fn client(&self) -> &str {
        FLASHER_CLIENT
    }

    fn methods(&self) -> &[Method] {
        FLASHER_METHODS
    }

    async fn call(
        &self,
        method: &str,
        args: Args,
        ctx: &CallContext,
    ) -> Result<Value, DriverError> {
        let target: Option<String> = args.get_or(1, "partition", None)?;
        let handle = args.raw(0).unwrap_or(&Value::Null);
        let name = target.as_deref().unwrap_or("default");
        match method {
            "flash" => {
                let path = self
                    .target_path(target.as_deref(), true)?
                    .unwrap_or_default();
                let n = resource_into_file(ctx, handle, &path).await?;
                self.logger.debug(format!("flashed {n} bytes to {name}"));
            }
            "dump" => {
                let Some(path) = self.target_path(target.as_deref(), false)? else {
                    return Err(DriverError::Other(format!(
                        "nothing was flashed to target '{name}'"
                    )));
                };
                file_into_resource(ctx, handle, &path).await?;
            }
            other => return Err(DriverError::method_not_found(other)),
        }
        Ok(Value::Null)
    }
}

pub fn register(r: &mut Registry) {
    for (type_name, client) in [
        (MOCK_STORAGE_MUX, STORAGE_MUX_CLIENT),
        (MOCK_STORAGE_MUX_FLASHER, STORAGE_MUX_FLASHER_CLIENT),
    ] {
        r.register(type_name, move |ctx| {
            crate::config::ignore_unknown(ctx, &[]);
            let mux = MockStorageMux::new(client, ctx.logger.clone()).map_err(|e| {
                ctx.config
                    .error(None, format!("cannot create the mock medium: {e}"))
            })?;
            Ok(Arc::new(mux) as Arc<dyn Driver>)
        });
    }
    r.register(MOCK_FLASHER, |ctx| {
        crate::config::ignore_unknown(ctx, &[]);
        let f = MockFlasher::new(ctx.logger.clone()).map_err(|e| {
            ctx.config
                .error(None, format!("cannot create the mock flasher: {e}"))
        })?;
        Ok(Arc::new(f) as Arc<dyn Driver>)
    });
}

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
async fn send_source(
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
async fn receive_into(
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

/// The client of storage muxes.
#[derive(Debug, Clone)]
pub struct StorageMuxClient {
    pub driver: DriverClient,
}

impl StorageMuxClient {
    pub fn new(driver: DriverClient) -> Self {
        StorageMuxClient { driver }
    }
    pub async fn host(&self) -> Result<(), ClientError> {
        self.driver.call("host", vec![]).await.map(drop)
    }
    pub async fn dut(&self) -> Result<(), ClientError> {
        self.driver.call("dut", vec![]).await.map(drop)
    }
    pub async fn off(&self) -> Result<(), ClientError> {
        self.driver.call("off", vec![]).await.map(drop)
    }
    /// Writes a local file (or URL) to the medium (upstream's `write_local_file`).
    pub async fn write(&self, source: &Source, opts: &Transfer) -> Result<(), ClientError> {
        send_source(&self.driver, "write", vec![], source, opts)
            .await
            .map(drop)
    }
    /// Reads the medium into a local file.
    pub async fn read(&self, path: &Path, opts: &Transfer) -> Result<(), ClientError> {
        receive_into(&self.driver, "read", vec![], path, opts)
            .await
            .map(drop)
    }
    /// host → write → dut; dut also when the write fails.
    pub async fn flash(&self, source: &Source, opts: &Transfer) -> Result<(), ClientError> {
        self.host().await?;
        let written = self.write(source, opts).await;
        let dut = self.dut().await;
        written?;
        dut
    }
    /// host → read → dut.
    pub async fn dump(&self, path: &Path, opts: &Transfer) -> Result<(), ClientError> {
        self.host().await?;
        let read = self.read(path, opts).await;
        let dut = self.dut().await;
        read?;
        dut
    }
}

/// The client of flashers (both upstream flasher client labels).
#[derive(Debug, Clone)]
pub struct FlasherClient {
    pub driver: DriverClient,
}

impl FlasherClient {
    pub fn new(driver: DriverClient) -> Self {
        FlasherClient { driver }
    }
    pub async fn flash(
        &self,
        source: &Source,
        target: Option<&str>,
        opts: &Transfer,
    ) -> Result<Value, ClientError> {
        send_source(&self.driver, "flash", vec![json!(target)], source, opts).await
    }
    pub async fn dump(
        &self,
        path: &Path,
        target: Option<&str>,
        opts: &Transfer,
    ) -> Result<Value, ClientError> {
        receive_into(&self.driver, "dump", vec![json!(target)], path, opts).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
