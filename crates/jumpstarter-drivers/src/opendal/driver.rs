//! `Opendal`: the driver, over an OpenDAL operator.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use jumpstarter_core::interface::Items;
use jumpstarter_core::{BuildContext, CallContext, ConfigError, DriverError, Logger, Value};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{OPENDAL_CLIENT, OpendalInterface};

/// Why an `Opendal` driver cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum OpendalError {
    #[error(
        "cannot create the `{scheme}` storage operator: {source} (built-in schemes: fs, memory)"
    )]
    Operator {
        scheme: String,
        #[source]
        source: opendal::Error,
    },
}

/// The driver's `config:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpendalConfig {
    /// Any OpenDAL service name (`fs`, `memory`, ...).
    pub scheme: String,
    /// Service options (`root`, ...). Values are strings; numbers and booleans are accepted
    /// and passed on as text.
    #[serde(default)]
    pub kwargs: serde_json::Map<String, Value>,
    /// Delete the files this session created when it ends (`fs` only).
    #[serde(default)]
    pub remove_created_on_close: bool,
}

enum FileState {
    Read {
        reader: opendal::Reader,
        pos: u64,
        size: u64,
    },
    Write {
        writer: Option<opendal::Writer>,
        written: u64,
    },
}

struct File {
    state: FileState,
    closed: bool,
}

type Fd = Arc<tokio::sync::Mutex<File>>;

/// `Opendal`.
pub struct Opendal {
    config: OpendalConfig,
    op: opendal::Operator,
    fds: Mutex<HashMap<Uuid, Fd>>,
    created: Mutex<BTreeSet<String>>,
    logger: Logger,
}

fn od_err(e: opendal::Error) -> DriverError {
    DriverError::Other(e.to_string())
}

/// Upstream's path normalization (backslashes, dot segments, redundant and outer slashes).
pub fn normalize(path: &str) -> String {
    let path = path.replace('\\', "/");
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

impl Opendal {
    pub fn new(config: OpendalConfig, logger: Logger) -> Result<Opendal, OpendalError> {
        // Registers the services compiled in (fs, memory); idempotent.
        opendal::init_default_registry();
        let kwargs: Vec<(String, String)> = config
            .kwargs
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
        let op = opendal::Operator::via_iter(&config.scheme, kwargs).map_err(|source| {
            OpendalError::Operator {
                scheme: config.scheme.clone(),
                source,
            }
        })?;
        Ok(Opendal {
            config,
            op,
            fds: Mutex::new(HashMap::new()),
            created: Mutex::new(BTreeSet::new()),
            logger,
        })
    }

    fn created(&self, path: &str) {
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(normalize(path));
    }

    /// No longer created by this session (deleted, or renamed away), as upstream tracks it.
    fn forget(&self, path: &str) {
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&normalize(path));
    }

    /// The open file `fd` names.
    fn file(&self, text: &str) -> Result<Fd, DriverError> {
        let id = Uuid::parse_str(text)
            .map_err(|_| DriverError::invalid(format!("fd `{text}` is not a uuid")))?;
        self.fds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
            .ok_or_else(|| DriverError::Other(format!("UUID('{id}')")))
    }

    /// The open file `fd` names, locked; an error if it was closed.
    async fn open_file(&self, fd: &str) -> Result<tokio::sync::OwnedMutexGuard<File>, DriverError> {
        let file = self.file(fd)?.lock_owned().await;
        if file.closed {
            return Err(closed());
        }
        Ok(file)
    }

    async fn presign(&self, what: Presign, path: &str, expire: u64) -> Result<Value, DriverError> {
        let expire = Duration::from_secs(expire);
        let req = match what {
            Presign::Stat => self.op.presign_stat(path, expire).await,
            Presign::Read => self.op.presign_read(path, expire).await,
            Presign::Write => self.op.presign_write(path, expire).await,
        }
        .map_err(od_err)?;
        let headers: serde_json::Map<String, Value> = req
            .header()
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or_default())))
            .collect();
        Ok(
            json!({"url": req.uri().to_string(), "method": req.method().as_str(), "headers": headers}),
        )
    }

    /// Deletes what this session created, under the `fs` root only (upstream's rule).
    fn cleanup(&self) {
        let root = self
            .config
            .kwargs
            .get("root")
            .and_then(|v| v.as_str())
            .unwrap_or("/");
        let root = match std::path::absolute(root) {
            Ok(r) => r,
            Err(_) => return,
        };
        let created: Vec<String> = self
            .created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .rev()
            .cloned()
            .collect();
        for rel in created {
            let full = root.join(rel.trim_start_matches('/'));
            // Never outside the root, never the root itself.
            if full == root
                || !full.starts_with(&root)
                || full
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
            {
                continue;
            }
            let result = if full.is_dir() {
                std::fs::remove_dir_all(&full)
            } else if full.exists() {
                std::fs::remove_file(&full)
            } else {
                Ok(())
            };
            if let Err(e) = result {
                self.logger
                    .error(format!("Failed to remove path {rel}: {e}"));
            }
        }
    }

    fn forget_on_ok(&self, path: &str, r: Result<(), opendal::Error>) -> Result<(), DriverError> {
        r.map_err(od_err)?;
        self.forget(path);
        Ok(())
    }
}

/// What a presigned request is for.
#[derive(Clone, Copy)]
enum Presign {
    Stat,
    Read,
    Write,
}

fn closed() -> DriverError {
    DriverError::invalid("I/O operation on closed file.")
}

#[async_trait]
impl OpendalInterface for Opendal {
    async fn open(&self, path: String, mode: String) -> Result<String, DriverError> {
        let path = path.as_str();
        let state = match mode.as_str() {
            "rb" => {
                let size = self.op.stat(path).await.map_err(od_err)?.content_length();
                let reader = self.op.reader(path).await.map_err(od_err)?;
                FileState::Read {
                    reader,
                    pos: 0,
                    size,
                }
            }
            "wb" => {
                let writer = self.op.writer(path).await.map_err(od_err)?;
                self.created(path);
                FileState::Write {
                    writer: Some(writer),
                    written: 0,
                }
            }
            other => {
                return Err(DriverError::invalid(format!(
                    "mode must be 'rb' or 'wb', not '{other}'"
                )));
            }
        };
        let id = Uuid::new_v4();
        self.fds.lock().unwrap_or_else(|e| e.into_inner()).insert(
            id,
            Arc::new(tokio::sync::Mutex::new(File {
                state,
                closed: false,
            })),
        );
        Ok(id.hyphenated().to_string())
    }

    async fn file_read(
        &self,
        ctx: &CallContext,
        fd: String,
        dst: Value,
    ) -> Result<(), DriverError> {
        let mut file = self.open_file(&fd).await?;
        let FileState::Read { reader, pos, size } = &mut file.state else {
            return Err(DriverError::invalid("File not readable"));
        };
        let dst = ctx.open_resource(&dst).await?;
        let start = *pos;
        let stream = reader
            .clone()
            .into_bytes_stream(start..*size)
            .await
            .map_err(od_err)?;
        let mut src = tokio_util::io::StreamReader::new(stream);
        let n = dst.copy_from(&mut src).await?;
        *pos = start + n;
        Ok(())
    }

    async fn file_write(
        &self,
        ctx: &CallContext,
        fd: String,
        src: Value,
    ) -> Result<(), DriverError> {
        let mut file = self.open_file(&fd).await?;
        let FileState::Write { writer, written } = &mut file.state else {
            return Err(DriverError::invalid("File not writable"));
        };
        let w = writer.as_mut().ok_or_else(closed)?;
        let mut src = ctx.open_resource(&src).await?;
        while let Some(chunk) = src.read_chunk().await? {
            let n = chunk.len() as u64;
            w.write(chunk).await.map_err(od_err)?;
            *written += n;
        }
        src.close().await?;
        Ok(())
    }

    async fn file_seek(&self, fd: String, pos: i64, whence: i64) -> Result<u64, DriverError> {
        let mut file = self.open_file(&fd).await?;
        let FileState::Read { pos: at, size, .. } = &mut file.state else {
            return Err(DriverError::invalid("File not seekable"));
        };
        let base = match whence {
            0 => 0i64,
            1 => *at as i64,
            2 => *size as i64,
            other => {
                return Err(DriverError::invalid(format!(
                    "invalid whence ({other}, should be 0, 1 or 2)"
                )));
            }
        };
        let new = base + pos;
        if new < 0 {
            return Err(DriverError::invalid(format!(
                "negative seek position {new}"
            )));
        }
        *at = new as u64;
        Ok(*at)
    }

    async fn file_tell(&self, fd: String) -> Result<u64, DriverError> {
        let file = self.open_file(&fd).await?;
        Ok(match &file.state {
            FileState::Read { pos, .. } => *pos,
            FileState::Write { written, .. } => *written,
        })
    }

    async fn file_close(&self, fd: String) -> Result<(), DriverError> {
        let mut file = self.open_file(&fd).await?;
        if let FileState::Write { writer, .. } = &mut file.state
            && let Some(mut w) = writer.take()
        {
            w.close().await.map_err(od_err)?;
        }
        file.closed = true;
        // The fd stays known, so `file_closed` answers true (as upstream).
        Ok(())
    }

    async fn file_closed(&self, fd: String) -> Result<bool, DriverError> {
        Ok(self.file(&fd)?.lock().await.closed)
    }

    async fn file_readable(&self, fd: String) -> Result<bool, DriverError> {
        let file = self.file(&fd)?;
        let file = file.lock().await;
        Ok(!file.closed && matches!(file.state, FileState::Read { .. }))
    }

    async fn file_seekable(&self, fd: String) -> Result<bool, DriverError> {
        self.file_readable(fd).await
    }

    async fn file_writable(&self, fd: String) -> Result<bool, DriverError> {
        let file = self.file(&fd)?;
        let file = file.lock().await;
        Ok(!file.closed && matches!(file.state, FileState::Write { .. }))
    }

    async fn stat(&self, path: String) -> Result<Value, DriverError> {
        let m = self.op.stat(&path).await.map_err(od_err)?;
        Ok(json!({
            "content_disposition": m.content_disposition(),
            "content_length": m.content_length(),
            "content_md5": m.content_md5(),
            "content_type": m.content_type(),
            "etag": m.etag(),
            "mode": {"entry_is_file": m.mode().is_file(), "entry_is_dir": m.mode().is_dir()},
        }))
    }

    async fn hash(&self, path: String, algo: String) -> Result<String, DriverError> {
        use sha2::Digest;
        enum H {
            Md5(md5::Md5),
            Sha256(sha2::Sha256),
        }
        let mut h = match algo.as_str() {
            "md5" => H::Md5(md5::Md5::new()),
            "sha256" => H::Sha256(sha2::Sha256::new()),
            other => {
                return Err(DriverError::invalid(format!(
                    "algo must be 'md5' or 'sha256', not '{other}'"
                )));
            }
        };
        let reader = self.op.reader(&path).await.map_err(od_err)?;
        let mut stream = reader.into_bytes_stream(..).await.map_err(od_err)?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| DriverError::Other(e.to_string()))?;
            match &mut h {
                H::Md5(m) => m.update(&chunk),
                H::Sha256(s) => s.update(&chunk),
            }
        }
        Ok(match h {
            H::Md5(m) => hex::encode(m.finalize()),
            H::Sha256(s) => hex::encode(s.finalize()),
        })
    }

    async fn copy(&self, source: String, target: String) -> Result<(), DriverError> {
        self.op.copy(&source, &target).await.map_err(od_err)?;
        self.created(&target);
        Ok(())
    }

    async fn rename(&self, source: String, target: String) -> Result<(), DriverError> {
        self.op.rename(&source, &target).await.map_err(od_err)?;
        self.forget(&source);
        self.created(&target);
        Ok(())
    }

    async fn remove_all(&self, path: String) -> Result<(), DriverError> {
        let r = self.op.delete_with(&path).recursive(true).await;
        self.forget_on_ok(&path, r)
    }

    async fn create_dir(&self, path: String) -> Result<(), DriverError> {
        self.op.create_dir(&path).await.map_err(od_err)?;
        self.created(&path);
        Ok(())
    }

    async fn delete(&self, path: String) -> Result<(), DriverError> {
        let r = self.op.delete(&path).await;
        self.forget_on_ok(&path, r)
    }

    async fn exists(&self, path: String) -> Result<bool, DriverError> {
        self.op.exists(&path).await.map_err(od_err)
    }

    fn list(self: Arc<Self>, path: String) -> Result<Items<String>, DriverError> {
        Ok(Box::pin(entries(self.op.clone(), path, false)))
    }

    fn scan(self: Arc<Self>, path: String) -> Result<Items<String>, DriverError> {
        Ok(Box::pin(entries(self.op.clone(), path, true)))
    }

    async fn presign_stat(&self, path: String, expire_second: u64) -> Result<Value, DriverError> {
        self.presign(Presign::Stat, &path, expire_second).await
    }

    async fn presign_read(&self, path: String, expire_second: u64) -> Result<Value, DriverError> {
        self.presign(Presign::Read, &path, expire_second).await
    }

    async fn presign_write(&self, path: String, expire_second: u64) -> Result<Value, DriverError> {
        self.presign(Presign::Write, &path, expire_second).await
    }

    async fn capability(&self) -> Result<Value, DriverError> {
        let c = self.op.info().capability();
        Ok(json!({
            "stat": c.stat,
            "stat_with_if_match": c.stat_with_if_match,
            "stat_with_if_none_match": c.stat_with_if_none_match,
            "read": c.read,
            "read_with_if_match": c.read_with_if_match,
            "read_with_if_none_match": c.read_with_if_none_match,
            "read_with_override_cache_control": c.read_with_override_cache_control,
            "read_with_override_content_disposition": c.read_with_override_content_disposition,
            "read_with_override_content_type": c.read_with_override_content_type,
            "write": c.write,
            "write_can_multi": c.write_can_multi,
            "write_can_empty": c.write_can_empty,
            "write_can_append": c.write_can_append,
            "write_with_content_type": c.write_with_content_type,
            "write_with_content_disposition": c.write_with_content_disposition,
            "write_with_cache_control": c.write_with_cache_control,
            "write_multi_max_size": c.write_multi_max_size,
            "write_multi_min_size": c.write_multi_min_size,
            "write_total_max_size": c.write_total_max_size,
            "create_dir": c.create_dir,
            "delete": c.delete,
            "copy": c.copy,
            "rename": c.rename,
            "list": c.list,
            "list_with_limit": c.list_with_limit,
            "list_with_start_after": c.list_with_start_after,
            "list_with_recursive": c.list_with_recursive,
            "presign": c.presign,
            "presign_read": c.presign_read,
            "presign_stat": c.presign_stat,
            "presign_write": c.presign_write,
            "shared": c.shared,
            // The blocking API of the Python binding; the crate no longer has one.
            "blocking": false,
        }))
    }

    async fn get_created_resources(&self) -> Result<Vec<String>, DriverError> {
        Ok(self
            .created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect())
    }

    async fn register_path(&self, path: String) -> Result<(), DriverError> {
        self.created(&path);
        Ok(())
    }
}

jumpstarter_core::export! {
    impl Opendal {
        client = OPENDAL_CLIENT;
        interfaces = [OpendalInterface];

        async fn close(&self) {
            let created = self.created.lock().unwrap_or_else(|e| e.into_inner()).len();
            if created > 0 {
                self.logger.debug(format!(
                    "OpenDAL session summary - Created paths: {created}"
                ));
            }
            if self.config.remove_created_on_close {
                if self.config.scheme == "fs" {
                    self.cleanup();
                } else {
                    self.logger.warning(format!(
                        "Cleanup not supported for scheme '{}' - only 'fs' is supported",
                        self.config.scheme
                    ));
                }
            }
        }
    }
}

fn entries(
    op: opendal::Operator,
    path: String,
    recursive: bool,
) -> impl futures::Stream<Item = Result<String, DriverError>> + Send + 'static {
    futures::stream::once(async move {
        op.lister_with(&path)
            .recursive(recursive)
            .await
            .map_err(od_err)
    })
    .map(|lister| match lister {
        Ok(l) => l
            .map(|e| e.map(|e| e.path().to_owned()).map_err(od_err))
            .left_stream(),
        Err(e) => futures::stream::once(async move { Err(e) }).right_stream(),
    })
    .flatten()
}

pub(super) fn build(ctx: &BuildContext<'_>) -> Result<Arc<Opendal>, ConfigError> {
    let config: OpendalConfig = ctx.config.parse()?;
    let driver = Opendal::new(config, ctx.logger.clone())
        .map_err(|e| ctx.config.error(Some("scheme"), e.to_string()))?;
    Ok(Arc::new(driver))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opendal::{OPENDAL, OpendalClient};
    use jumpstarter_core::ClientError;
    use jumpstarter_core::testing::serve;
    use jumpstarter_core::{DriverTree, Instance};

    async fn served(
        config: serde_json::Value,
    ) -> (jumpstarter_core::testing::Served, OpendalClient) {
        let cfg: OpendalConfig = serde_json::from_value(config).unwrap();
        let driver = Arc::new(Opendal::new(cfg, Logger::detached("o")).unwrap());
        let served = serve(DriverTree::composite(vec![(
            "fs",
            Instance::new(driver, OPENDAL),
        )]))
        .await
        .unwrap();
        let client = OpendalClient::new(served.client.get("fs").unwrap().clone());
        (served, client)
    }

    async fn read(c: &OpendalClient, path: &str) -> Vec<u8> {
        let (tx, mut rx) = tokio::io::duplex(1 << 20);
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut rx, &mut out)
                .await
                .unwrap();
            out
        });
        c.read_into(path, tx, None).await.unwrap();
        reader.await.unwrap()
    }

    fn code(e: &ClientError) -> jumpstarter_core::client::Code {
        e.as_call().unwrap().code
    }

    #[tokio::test]
    async fn memory_scheme_full_surface() {
        let (served, c) = served(json!({"scheme": "memory", "kwargs": {}})).await;
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 256) as u8).collect();
        c.write_from("dir/a.bin", std::io::Cursor::new(data.clone()), None)
            .await
            .unwrap();
        assert_eq!(read(&c, "dir/a.bin").await, data);

        let stat = c.call("stat", vec![json!("dir/a.bin")]).await.unwrap();
        assert_eq!(stat["content_length"], json!(300_000));
        assert_eq!(
            stat["mode"],
            json!({"entry_is_file": true, "entry_is_dir": false})
        );
        let keys: Vec<&str> = stat
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "content_disposition",
                "content_length",
                "content_md5",
                "content_type",
                "etag",
                "mode"
            ]
        );

        use sha2::Digest;
        let want = hex::encode(sha2::Sha256::digest(&data));
        assert_eq!(
            c.call("hash", vec![json!("dir/a.bin")]).await.unwrap(),
            json!(want)
        );
        let md5 = hex::encode(md5::Md5::digest(&data));
        assert_eq!(
            c.call("hash", vec![json!("dir/a.bin"), json!("md5")])
                .await
                .unwrap(),
            json!(md5)
        );
        let err = c
            .call("hash", vec![json!("dir/a.bin"), json!("crc")])
            .await
            .unwrap_err();
        assert!(err.as_call().unwrap().is_invalid_argument());

        // The memory service cannot copy: OpenDAL says so, as upstream's binding does.
        let err = c
            .call("copy", vec![json!("dir/a.bin"), json!("dir/b.bin")])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("Unsupported"), "{err}");
        c.write_from("dir/c.bin", std::io::Cursor::new(b"c".to_vec()), None)
            .await
            .unwrap();
        c.call("create_dir", vec![json!("dir/sub/")]).await.unwrap();
        let listed = c
            .driver
            .streaming_call_collect("list", vec![json!("dir/")])
            .await
            .unwrap();
        for want in ["dir/a.bin", "dir/c.bin", "dir/sub/"] {
            assert!(listed.contains(&json!(want)), "{want} in {listed:?}");
        }
        c.write_from(
            "dir/sub/deep.txt",
            std::io::Cursor::new(b"x".to_vec()),
            None,
        )
        .await
        .unwrap();
        let scanned = c
            .driver
            .streaming_call_collect("scan", vec![json!("dir/")])
            .await
            .unwrap();
        assert!(scanned.contains(&json!("dir/sub/deep.txt")), "{scanned:?}");
        c.call("delete", vec![json!("dir/c.bin")]).await.unwrap();
        c.call("remove_all", vec![json!("dir/sub/")]).await.unwrap();
        assert_eq!(
            c.call("exists", vec![json!("dir/sub/deep.txt")])
                .await
                .unwrap(),
            json!(false)
        );

        let cap = c.call("capability", vec![]).await.unwrap();
        assert_eq!(cap.as_object().unwrap().len(), 33);
        assert_eq!(cap["read"], json!(true));
        let created = c.call("get_created_resources", vec![]).await.unwrap();
        assert!(
            created.as_array().unwrap().contains(&json!("dir/a.bin")),
            "{created}"
        );
        // Deleted paths are no longer "created" (as upstream tracks them).
        assert!(
            !created.as_array().unwrap().contains(&json!("dir/c.bin")),
            "{created}"
        );
        c.call("register_path", vec![json!("/x/../y/./z")])
            .await
            .unwrap();
        let created = c.call("get_created_resources", vec![]).await.unwrap();
        assert!(
            created.as_array().unwrap().contains(&json!("y/z")),
            "{created}"
        );

        // Presigning needs a service that can presign.
        let err = c
            .call("presign_read", vec![json!("dir/a.bin"), json!(60)])
            .await
            .unwrap_err();
        assert_eq!(code(&err), jumpstarter_core::client::Code::Unknown);
        // Missing files are errors with OpenDAL's message.
        let err = c.call("stat", vec![json!("nope")]).await.unwrap_err();
        assert!(err.to_string().contains("NotFound"), "{err}");
        served.shutdown().await;
    }

    #[tokio::test]
    async fn file_descriptors() {
        let (served, c) = served(json!({"scheme": "memory", "kwargs": {}})).await;
        c.write_from("f", std::io::Cursor::new(b"0123456789".to_vec()), None)
            .await
            .unwrap();
        let fd = c.call("open", vec![json!("f"), json!("rb")]).await.unwrap();
        let call = |m: &'static str, extra: Vec<Value>| {
            let c = c.clone();
            let fd = fd.clone();
            async move {
                let mut args = vec![fd];
                args.extend(extra);
                c.call(m, args).await
            }
        };
        assert_eq!(call("file_readable", vec![]).await.unwrap(), json!(true));
        assert_eq!(call("file_writable", vec![]).await.unwrap(), json!(false));
        assert_eq!(call("file_seekable", vec![]).await.unwrap(), json!(true));
        assert_eq!(call("file_seek", vec![json!(4)]).await.unwrap(), json!(4));
        assert_eq!(
            call("file_seek", vec![json!(2), json!(1)]).await.unwrap(),
            json!(6)
        );
        assert_eq!(
            call("file_seek", vec![json!(-1), json!(2)]).await.unwrap(),
            json!(9)
        );
        assert_eq!(call("file_tell", vec![]).await.unwrap(), json!(9));
        call("file_seek", vec![json!(7)]).await.unwrap();
        let (tx, mut rx) = tokio::io::duplex(64);
        let fd2 = fd.clone();
        c.driver
            .download("file_read", move |h| vec![fd2, h], tx, None, None)
            .await
            .unwrap();
        let mut tail = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut rx, &mut tail)
            .await
            .unwrap();
        assert_eq!(tail, b"789");
        call("file_close", vec![]).await.unwrap();
        assert_eq!(call("file_closed", vec![]).await.unwrap(), json!(true));
        let err = call("file_tell", vec![]).await.unwrap_err();
        assert!(err.as_call().unwrap().is_invalid_argument());
        let err = c
            .call("file_tell", vec![json!(Uuid::new_v4().to_string())])
            .await
            .unwrap_err();
        assert_eq!(code(&err), jumpstarter_core::client::Code::Unknown);
        let err = c
            .call("open", vec![json!("f"), json!("ab")])
            .await
            .unwrap_err();
        assert!(err.as_call().unwrap().is_invalid_argument());
        served.shutdown().await;
    }

    #[tokio::test]
    async fn fs_scheme_and_cleanup_of_created_files() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("keep.txt"), b"kept").unwrap();
        let (served, c) = served(json!({
            "scheme": "fs",
            "kwargs": {"root": root.path().to_str().unwrap()},
            "remove_created_on_close": true
        }))
        .await;
        c.write_from(
            "new/dir/file.txt",
            std::io::Cursor::new(b"hello".to_vec()),
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read(root.path().join("new/dir/file.txt")).unwrap(),
            b"hello"
        );
        assert_eq!(read(&c, "keep.txt").await, b"kept");
        c.call("copy", vec![json!("keep.txt"), json!("copy.txt")])
            .await
            .unwrap();
        c.call("rename", vec![json!("copy.txt"), json!("moved.txt")])
            .await
            .unwrap();
        assert_eq!(
            c.call("exists", vec![json!("copy.txt")]).await.unwrap(),
            json!(false)
        );
        assert_eq!(
            std::fs::read(root.path().join("moved.txt")).unwrap(),
            b"kept"
        );
        served.shutdown().await;
        assert!(
            !root.path().join("moved.txt").exists(),
            "renamed copy removed on close"
        );
        assert!(
            !root.path().join("new/dir/file.txt").exists(),
            "created file removed on close"
        );
        assert!(
            root.path().join("keep.txt").exists(),
            "other files untouched"
        );
    }

    #[test]
    fn paths_normalize_like_upstream() {
        assert_eq!(normalize("/a//b/./c/"), "a/b/c");
        assert_eq!(normalize("a\\b\\..\\c"), "a/c");
        assert_eq!(normalize("."), "");
        assert_eq!(normalize("../x"), "x");
    }

    #[test]
    fn unknown_schemes_fail_at_load() {
        let cfg: OpendalConfig =
            serde_json::from_value(json!({"scheme": "s4", "kwargs": {}})).unwrap();
        let err = Opendal::new(cfg, Logger::detached("o")).err().unwrap();
        let err = err.to_string();
        assert!(err.contains("built-in schemes: fs, memory"), "{err}");
    }
}
